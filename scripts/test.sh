#!/usr/bin/env bash
# Sets up the machine and runs the whole test suite. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TERM_COLOR=never
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== GPU adapter the tests use"
cargo run -q -p mcu-server -- adapters --log warn

echo "== unit, golden and scenario tests (wgpu on the adapter above: lavapipe without a GPU)"
cargo test --workspace 2>&1 | tee -a "$log"

echo "== golden frames again on the GL fallback (llvmpipe through EGL)"
MCU_TEST_ADAPTER=gl cargo test -p mcu-tests 2>&1 | tee -a "$log"

echo "== NVENC compiles (behind the nvenc feature; detected at run time, absent here)"
cargo build -q -p mcu-codec --features nvenc

echo "== lints (also keeps the clock out of the lower crates: clippy.toml)"
cargo clippy --workspace --all-targets -q -- -D warnings
cargo clippy -p mcu-codec --features nvenc --all-targets -q -- -D warnings

# One closing line over every cargo test run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all suites: %d passed, %d failed\n", p, f }' "$log"
