#!/usr/bin/env bash
# The scaffold tests check the generated Caddyfile with Debian's caddy (`caddy adapt
# --validate`). Install it when it is missing; without it that one test is skipped with this
# script's name.
set -euo pipefail
if command -v caddy >/dev/null 2>&1; then
  exit 0
fi
"$(dirname "$0")/../scripts/apt-install.sh" ensure-caddy caddy
command -v caddy >/dev/null 2>&1 || exit 0
# Debian's package starts a caddy service where systemd runs; the tests need only the program.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet caddy 2>/dev/null; then
  systemctl disable --now caddy >/dev/null 2>&1 || sudo -n systemctl disable --now caddy >/dev/null 2>&1 || true
fi
caddy version >&2 || true
