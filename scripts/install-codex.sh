#!/usr/bin/env bash
# Install the pinned Codex CLI (tools/codex/package.json + package-lock.json) into a cache
# directory, once. Later runs find the same version already there and return at once.
#
# Usage: scripts/install-codex.sh            # installs into <repo>/.cache/codex
#        CODEX_CACHE_DIR=/some/dir scripts/install-codex.sh
# Prints the path of the `codex` launcher as its last line of stdout.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pin_dir="$repo/tools/codex"
cache="${CODEX_CACHE_DIR:-$repo/.cache/codex}"
launcher="$cache/node_modules/.bin/codex"

command -v npm >/dev/null || { echo "install-codex: npm is not installed" >&2; exit 3; }
want="$(node -p "require('$pin_dir/package.json').dependencies['@openai/codex']")"

installed_version() {
  local manifest="$cache/node_modules/@openai/codex/package.json"
  [[ -f "$manifest" && -x "$launcher" ]] || return 1
  node -p "require('$manifest').version"
}

is_current() {
  [[ "$(installed_version 2>/dev/null || true)" == "$want" ]] \
    && cmp -s "$pin_dir/package-lock.json" "$cache/package-lock.json"
}

mkdir -p "$cache"
# One installer at a time (parallel test workers may all ask for the CLI).
exec 9>"$cache/.install.lock"
flock 9

if ! is_current; then
  echo "install-codex: installing @openai/codex@$want into $cache" >&2
  rm -rf "$cache/node_modules"
  cp "$pin_dir/package.json" "$pin_dir/package-lock.json" "$cache/"
  npm ci --prefix "$cache" --no-audit --no-fund --loglevel=error >&2
  is_current || { echo "install-codex: install finished but $launcher is not $want" >&2; exit 1; }
fi

echo "$launcher"
