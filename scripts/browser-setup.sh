#!/usr/bin/env bash
# Sets up the headless-browser end-to-end test (tests/browser/): Debian's Chromium at
# /usr/bin/chromium and playwright-core from tests/browser/package-lock.json. Never downloads a
# browser of Playwright's own (no `playwright install`). Idempotent and quick when done: apt runs
# only when /usr/bin/chromium is missing, `npm ci` only when node_modules is missing or the lock
# file changed since the last successful install (a stamp file keeps its hash).
# Usage: scripts/browser-setup.sh        then  node tests/browser/sfu.test.mjs
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=tests/browser
LOCK="$DIR/package-lock.json"
STAMP="$DIR/node_modules/.package-lock.sha256"

apt_install() {
  echo "browser-setup: installing $*"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

want=$(sha256sum "$LOCK" | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ ! -d "$DIR/node_modules/playwright-core" ] || [ "$want" != "$have" ]; then
  echo "browser-setup: npm ci in $DIR"
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$STAMP"
else
  echo "browser-setup: $DIR/node_modules is up to date"
fi
