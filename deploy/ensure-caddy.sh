#!/usr/bin/env bash
# The scaffold tests check the generated Caddyfile with Debian's caddy (`caddy adapt
# --validate`). Install it when it is missing and we can: as root via apt-get, or via
# passwordless sudo. Otherwise say so; that one test is then skipped with this script's name.
set -euo pipefail
if command -v caddy >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "ensure-caddy: caddy is missing; install it with 'apt-get install caddy'" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-caddy: no apt-get here; install caddy to check the generated Caddyfile" >&2
  exit 0
fi
echo "ensure-caddy: installing Debian's caddy (about ten seconds)..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -qq --no-install-recommends caddy >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends caddy >/dev/null
fi
# Debian's package starts a caddy service where systemd runs; the tests need only the program.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet caddy 2>/dev/null; then
  $SUDO systemctl disable --now caddy >/dev/null 2>&1 || true
fi
caddy version >&2 || true
