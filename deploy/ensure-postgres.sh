#!/usr/bin/env bash
# The PostgreSQL backend's tests start a real server (initdb into a temporary directory) from
# Debian's postgresql package. Install it when its programs are missing.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
"$(dirname "$0")/../scripts/apt-install.sh" ensure-postgres postgresql
# Debian's package starts a cluster service where systemd runs; the tests need only the programs.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postgresql 2>/dev/null; then
  systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
