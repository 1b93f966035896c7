#!/usr/bin/env bash
# Browser tests drive Debian's browsers, never downloaded ones: Chromium (through Playwright),
# WebKitGTK's MiniBrowser (through WebKitWebDriver, on an Xvfb screen) and Firefox ESR
# (through its own Marionette and WebDriver BiDi servers). Install whichever is missing.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
[ -x /usr/bin/WebKitWebDriver ] || missing+=(webkit2gtk-driver)
[ -x /usr/bin/Xvfb ] || missing+=(xvfb)
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
if [ "${#missing[@]}" -gt 0 ]; then
  "$(dirname "$0")/apt-install.sh" ensure-browsers "${missing[@]}"
fi
