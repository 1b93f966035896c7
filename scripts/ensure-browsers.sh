#!/usr/bin/env bash
# Browser tests drive Debian's browsers, never downloaded ones: Chromium (through Playwright),
# WebKitGTK's MiniBrowser (through WebKitWebDriver, on an Xvfb screen) and Firefox ESR
# (through its own WebDriver BiDi server). Install what is
# missing when we can: as root via apt-get, or via passwordless sudo. Otherwise say so; the
# browser tests then fail with a message naming this script.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
[ -x /usr/bin/WebKitWebDriver ] || missing+=(webkit2gtk-driver)
[ -x /usr/bin/Xvfb ] || missing+=(xvfb)
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "ensure-browsers: missing; install them with 'apt-get install ${missing[*]}'" >&2
  exit 0
fi
echo "ensure-browsers: installing ${missing[*]} from Debian (a minute or two)..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
/usr/bin/chromium --version >&2 || true
