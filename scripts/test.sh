#!/usr/bin/env bash
# Sets up the machine and runs the whole test suite. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TERM_COLOR=never
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== formatting (rustfmt.toml; fails fast, before the long suites)"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo fmt --all --check

echo "== GPU adapter the tests use"
cargo run -q -p mcu-server -- adapters --log warn

echo "== unit, golden and scenario tests (wgpu on the adapter above: lavapipe without a GPU)"
cargo test --workspace 2>&1 | tee -a "$log"

echo "== end to end: aiortc over WHIP/WHEP (and grpcio on the control API) against mcu serve"
scripts/e2e-setup.sh
cargo build -q -p mcu-server
target/e2e-venv/bin/python tests/e2e/selftest.py 2>&1 | tee -a "$log"
MCU_BIN="$PWD/target/debug/mcu" target/e2e-venv/bin/python tests/e2e/test_sfu.py 2>&1 | tee -a "$log"
MCU_BIN="$PWD/target/debug/mcu" target/e2e-venv/bin/python tests/e2e/test_mcu.py 2>&1 | tee -a "$log"
MCU_BIN="$PWD/target/debug/mcu" target/e2e-venv/bin/python tests/e2e/test_grpc.py 2>&1 | tee -a "$log"
MCU_BIN="$PWD/target/debug/mcu" target/e2e-venv/bin/python tests/e2e/test_record.py 2>&1 | tee -a "$log"

echo "== end to end: SIP phones (baresip, sipp) through the gateway, with aiortc in the same rooms"
target/e2e-venv/bin/python tests/e2e/sip_selftest.py 2>&1 | tee -a "$log"
MCU_BIN="$PWD/target/debug/mcu" target/e2e-venv/bin/python tests/e2e/test_sip.py 2>&1 | tee -a "$log"

echo "== end to end again, the composites on the GPU paths (wgpu canvases, compute-shader mixes; lavapipe without a GPU)"
for suite in mcu record sip; do
  MCU_E2E_SERVER_ARGS="--render-path gpu --mix-path gpu" MCU_BIN="$PWD/target/debug/mcu" target/e2e-venv/bin/python tests/e2e/test_$suite.py 2>&1 | tee -a "$log"
done

echo "== end to end: headless Chromium over WHIP/WHEP"
scripts/browser-setup.sh
# Once per video codec Chromium publishes: VP8 (its default), H.264, and AV1 (whose colour space
# travels in a header extension the SFU must forward).
for codec in VP8 H264 AV1; do
  echo "-- Chromium publishing $codec"
  MCU_BROWSER_VIDEO_CODEC=$codec MCU_BIN="$PWD/target/debug/mcu" node tests/browser/sfu.test.mjs 2>&1 | tee -a "$log"
done
echo "-- Chromium publishing VP8 in three simulcast layers (one is forwarded, the others dropped and counted)"
MCU_BROWSER_SIMULCAST=1 MCU_BIN="$PWD/target/debug/mcu" node tests/browser/sfu.test.mjs 2>&1 | tee -a "$log"
echo "-- the demo page at / (two people: MCU mix, its layout switcher over gRPC-web, then one switches to SFU tracks)"
MCU_BIN="$PWD/target/debug/mcu" node tests/browser/demo.test.mjs 2>&1 | tee -a "$log"

echo "== golden frames again on the GL fallback (llvmpipe through EGL)"
MCU_TEST_ADAPTER=gl cargo test -p mcu-tests 2>&1 | tee -a "$log"

echo "== NVENC compiles (behind the nvenc feature, the codec crate's and the server's; detected at run time, absent here)"
cargo build -q -p mcu-codec --features nvenc
cargo build -q -p mcu-server --features nvenc

echo "== lints (also keeps the clock out of the lower crates: clippy.toml)"
cargo clippy --workspace --all-targets -q -- -D warnings
cargo clippy -p mcu-codec -p mcu-server --features mcu-codec/nvenc,mcu-server/nvenc --all-targets -q -- -D warnings

# One closing line over every test run above: cargo's "test result: ok. N passed; M failed"
# lines and the end-to-end suites' "selftest: N passed, M failed" / "e2e sfu: N passed, M failed" /
# "e2e mcu: N passed, M failed" / "e2e grpc: N passed, M failed" / "e2e record: N passed, M failed" /
# "sip selftest: N passed, M failed" / "e2e sip: N passed, M failed" /
# "browser sfu: N passed, M failed" / "browser demo: N passed, M failed".
awk '/^test result:|^(selftest|e2e sfu|e2e mcu|e2e grpc|e2e record|sip selftest|e2e sip|browser sfu|browser demo): [0-9]+ passed, [0-9]+ failed$/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all suites: %d passed, %d failed\n", p, f }' "$log"
