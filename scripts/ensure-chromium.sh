#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (never a downloaded browser). Install it when it is
# missing and we can: as root via apt-get, or via passwordless sudo. Otherwise say so; the
# browser tests then fail with a message naming this script.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "ensure-chromium: /usr/bin/chromium is missing; install it with 'apt-get install chromium'" >&2
  exit 0
fi
echo "ensure-chromium: installing Debian's chromium (about a minute)..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version >&2 || true
