#!/usr/bin/env bash
# Sets up the machine and runs the server on its embedded defaults.
# Until `mcu serve` lands (transport and MCU issues), this runs the compositor demo: synthetic
# participants composited in every layout on the best adapter found, written as PNGs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release -p mcu-server
exec ./target/release/mcu demo --out target/demo "$@"
