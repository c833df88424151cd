#!/usr/bin/env bash
# Sets up the Python venv the end-to-end clients (tests/e2e/) run in: target/e2e-venv.
# Idempotent and quick when done: the venv is created once, and pip runs again only when
# tests/e2e/requirements.txt changed since the last successful install (a stamp file keeps its hash).
# Usage: scripts/e2e-setup.sh            then  target/e2e-venv/bin/python tests/e2e/selftest.py
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/e2e-venv
REQ=tests/e2e/requirements.txt
STAMP="$VENV/.requirements.sha256"

if [ ! -x "$VENV/bin/python" ]; then
  echo "e2e-setup: creating $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi

want=$(sha256sum "$REQ" | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  echo "e2e-setup: installing $REQ"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
  echo "$want" >"$STAMP"
else
  echo "e2e-setup: $VENV is up to date"
fi
