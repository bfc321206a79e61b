#!/usr/bin/env bash
# Build prometheus and promtool 3.x from the Prometheus Go module (release 3.X.Y is module
# v0.3XX.Y), the release docker-compose.yml runs, and cache both binaries outside the repo
# keyed by version: a rebuild only happens when the version below changes. Prints the
# directory that holds them.
#
# Why not Debian's prometheus 2.42: 3.x evaluates range windows differently (left-open),
# so alert-rule unit tests written against 2.42 are wrong on the release we ship.
# Why not `go install ...@v0.314.0`: the module's go.mod has a replace directive, which
# `go install pkg@version` refuses; building inside a copy of the module directory works.
set -euo pipefail
cd "$(dirname "$0")/.."

version=3.14.0                 # keep equal to docker-compose.yml's prom/prometheus tag
module_version=v0.314.0
min_go=1.25
cache=${XDG_CACHE_HOME:-$HOME/.cache}/otel-excellence
out=$cache/prometheus-$version

if [ -x "$out/prometheus" ] && [ -x "$out/promtool" ]; then
  echo "$out"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "make prometheus: Go >= $min_go is needed to build Prometheus $version and 'go' is not on PATH." >&2
  echo "Install Go $min_go or newer (https://go.dev/dl/) and run 'make prometheus' again." >&2
  exit 1
fi
go_version=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$min_go" "$go_version" | sort -V | head -n1)" != "$min_go" ]; then
  echo "make prometheus: Go $go_version is too old; Prometheus $version needs Go >= $min_go." >&2
  exit 1
fi

echo "make prometheus: building prometheus and promtool $version (go $go_version); the first build takes several minutes" >&2
started=$(date +%s)
module=github.com/prometheus/prometheus
go mod download "$module@$module_version" >&2
source_dir=$(go mod download -json "$module@$module_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$source_dir" ] || { echo "make prometheus: no module directory for $module@$module_version" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$source_dir" "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$work/bin"
flags="-X github.com/prometheus/common/version.Version=$version"
flags="$flags -X github.com/prometheus/common/version.Branch=release-${version%.*}"
flags="$flags -X github.com/prometheus/common/version.Revision=$module_version"
(cd "$work/src" && GOWORK=off go build -trimpath -ldflags "$flags" -o "$work/bin/" \
  ./cmd/prometheus ./cmd/promtool) >&2
"$work/bin/prometheus" --version 2>&1 | grep -q "version $version" || {
  echo "make prometheus: the built binary does not report version $version" >&2
  exit 1
}
mkdir -p "$out.tmp"
mv "$work/bin/prometheus" "$work/bin/promtool" "$out.tmp/"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "make prometheus: built in $(( $(date +%s) - started )) s: $out" >&2
echo "$out"
