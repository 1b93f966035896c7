#!/usr/bin/env bash
# Install Debian packages for the test tools when we can: as root via apt-get, or via
# passwordless sudo. Otherwise say which packages to install and exit 0: the tests that need
# them then fail or skip with a message naming the script that called this one.
#
# Usage: scripts/apt-install.sh WHO PACKAGE...   (WHO names the caller in messages)
set -euo pipefail
who="$1"
shift
if [ "$(id -u)" = "0" ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "$who: missing; install them with 'apt-get install $*'" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$who: no apt-get here; install $* by hand" >&2
  exit 0
fi
echo "$who: installing $* from Debian..." >&2
export DEBIAN_FRONTEND=noninteractive
# Try from the current package lists first; refresh them only when that fails.
if ! $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
fi
