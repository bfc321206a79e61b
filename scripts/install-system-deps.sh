#!/usr/bin/env bash
# Install the servers the test suite runs for real, from Debian packages, when missing:
# PostgreSQL (initdb/pg_ctl), Redis (redis-server), and openssl (the doctor's TLS test
# makes a certificate with it). Prometheus 3 is built by scripts/build-prometheus.sh
# (Debian's 2.42 evaluates range windows differently).
# The tests start their own instances on loopback ports; nothing here starts a service.
set -euo pipefail

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v openssl >/dev/null || need+=(openssl)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "make test: need ${need[*]} from Debian packages; run as root or install sudo." >&2
    exit 1
  fi
fi
echo "make test: installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >&2; then
  "${sudo[@]}" apt-get update >&2
  "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >&2
fi
