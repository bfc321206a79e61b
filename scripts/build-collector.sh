#!/usr/bin/env bash
# Build otelcol-excellence from collector-config/builder-config.yaml with the OpenTelemetry
# Collector Builder, caching the binary outside the repo keyed by the manifest's hash:
# a rebuild only happens when the manifest changes. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."

manifest=collector-config/builder-config.yaml
min_go=1.26
digest=$(sha256sum "$manifest" | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/otel-excellence
out=$cache/otelcol-$digest
binary=$out/otelcol-excellence

if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "make collector: Go >= $min_go is needed to build the Collector and 'go' is not on PATH." >&2
  echo "Install Go $min_go or newer (https://go.dev/dl/) and run 'make collector' again." >&2
  exit 1
fi
go_version=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$min_go" "$go_version" | sort -V | head -n1)" != "$min_go" ]; then
  echo "make collector: Go $go_version is too old; the Collector Builder needs Go >= $min_go." >&2
  exit 1
fi

# The builder's version is core's version, read from the manifest (one release for all).
builder_version=$(grep -m1 -oE 'collector/receiver/otlpreceiver v[0-9.]+' "$manifest" | awk '{print $2}')
mkdir -p "$cache/bin"
echo "make collector: building otelcol-excellence (builder $builder_version, go $go_version); the first build takes a few minutes" >&2
started=$(date +%s)
GOBIN="$cache/bin" go install "go.opentelemetry.io/collector/cmd/builder@$builder_version" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|^\(  output_path:\).*|\1 $work/dist|" "$manifest" > "$work/manifest.yaml"
"$cache/bin/builder" --config="$work/manifest.yaml" >&2
mkdir -p "$out"
mv "$work/dist/otelcol-excellence" "$binary.tmp"
mv "$binary.tmp" "$binary"
echo "make collector: built in $(( $(date +%s) - started )) s: $binary" >&2
echo "$binary"
