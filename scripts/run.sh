#!/usr/bin/env bash
# Sets up the machine and runs the server on its embedded defaults (development mode, loopback).
# First it runs the compositor demo (synthetic participants composited in every layout on the
# best adapter, written as PNGs to target/demo/), then it serves: today the WebSocket room
# protocol at ws://127.0.0.1:8080/ws and /healthz; media transport and the MCU pipeline are the
# next issues. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release -p mcu-server
./target/release/mcu demo --out target/demo
exec ./target/release/mcu serve --dev --http-listen "${MCU_HTTP_LISTEN:-127.0.0.1:8080}" "$@"
