#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (Debian 12, a Rust toolchain, network for the
# first build), builds with NVENC, runs the GPU tests on the real adapter and the capacity
# benchmarks on the GPU path, and writes what it measured to benches/results/ (one summary,
# gpu-check-DATE.md, beside each benchmark's own file). About 10 minutes on a 16-core machine
# once the crates are fetched.
#
#   bash scripts/gpu-check.sh            # on the GPU machine
#   GPU_CHECK_ANY_ADAPTER=1 GPU_CHECK_QUICK=1 bash scripts/gpu-check.sh
#                                        # the same steps here, on lavapipe, short benchmarks:
#                                        # to check the script itself, not a GPU
#
# What it runs, in order (a step that fails is recorded and the next one runs):
#   1. nvidia-smi, the adapter wgpu chooses (`mcu demo` logs it) and the NVENC probe;
#   2. the golden frames, the mixer and the engine's fault tests on the real adapter
#      (MCU_TEST_ADAPTER=hardware), and the NVENC driver tests (they encode and decode back
#      where NVENC is present, and say so where it is absent: H100/H200 have none);
#   3. benchmarks: compositor (GPU vs CPU canvases), mixer (GPU vs CPU, with Opus encodes),
#      codec (NVENC where present), rooms in real time on the cpu and gpu paths
#      (mcu_capacity --paths cpu,gpu), classrooms on the gpu path.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
results=benches/results
date=$(date -u +%F)
summary="$results/gpu-check-$date.md"
quick=${GPU_CHECK_QUICK:-}
log=$(mktemp -d)/gpu-check.log
failed=()

step() {
  local name=$1
  shift
  echo "== $name" | tee -a "$log"
  local t0=$SECONDS
  if "$@" 2>&1 | tee -a "$log"; then
    echo "- $name: ok ($((SECONDS - t0)) s)" >>"$summary.steps"
  else
    echo "- $name: **failed** ($((SECONDS - t0)) s)" >>"$summary.steps"
    failed+=("$name")
  fi
}

if ! nvidia-smi -L >/dev/null 2>&1 && [ -z "${GPU_CHECK_ANY_ADAPTER:-}" ]; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi -L failed); GPU_CHECK_ANY_ADAPTER=1 runs the steps on whatever adapter there is" >&2
  exit 2
fi
adapter=hardware
[ -n "${GPU_CHECK_ANY_ADAPTER:-}" ] && adapter=auto
: >"$summary.steps"

bash scripts/setup.sh >/dev/null
step "build (release, --features nvenc)" cargo build --release -q -p mcu-server --features nvenc
step "build benchmarks" cargo build --release -q -p mcu-benches --benches --features mcu-codec/nvenc

gpu_info=$( (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no NVIDIA GPU") | head -3)
probe=$(target/release/mcu serve --dev --http-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --sip-listen off --render-path auto --log info 2>&1 &
  pid=$!
  sleep 4
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null)
chosen=$(echo "$probe" | grep -E "GPU adapter chosen|video encoders:|room composites draw" | sed 's/\x1b\[[0-9;]*m//g' | sed 's/^.*\(INFO\|WARN\|ERROR\) //')

export MCU_TEST_ADAPTER=$adapter
step "golden frames on the $adapter adapter" cargo test --release -q -p mcu-tests
step "compositor tests" cargo test --release -q -p mcu-compositor
step "mixer: GPU and CPU agree, a lost device" cargo test --release -q -p mcu-mixer
step "engine: faults move rooms to the CPU" cargo test --release -q -p mcu-pipeline --test gpu_and_hardware_faults_move_the_room_to_the_cpu
step "NVENC driver tests (encode, decode back; or why absent)" cargo test --release -q -p mcu-codec --features nvenc -- --nocapture nvenc

seconds=10
rooms=4,12
classrooms=1,3
if [ -n "$quick" ]; then
  seconds=4
  rooms=1
  classrooms=1
fi
step "benchmark: compositor" cargo bench -q -p mcu-benches --bench compositor -- --save
step "benchmark: mixer" cargo bench -q -p mcu-benches --bench mixer -- --save --ticks "$([ -n "$quick" ] && echo 20 || echo 200)"
step "benchmark: codec (NVENC where present)" cargo bench -q -p mcu-benches --features mcu-codec/nvenc --bench codec -- --save
step "benchmark: rooms in real time, cpu and gpu paths" cargo bench -q -p mcu-benches --bench mcu_capacity -- --save --paths cpu,gpu --rooms "$rooms" --seconds "$seconds" --codec h264
step "benchmark: classrooms on the gpu path" cargo bench -q -p mcu-benches --bench classroom -- --save --render-path gpu --classrooms "$classrooms" --seconds "$seconds"

{
  echo "# GPU check, $date"
  echo
  echo "- GPU: $gpu_info"
  echo "- Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
  echo "- Commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
  echo "- Command: \`bash scripts/gpu-check.sh\`${quick:+ (GPU_CHECK_QUICK=1: short benchmarks)}"
  echo "- What \`mcu serve\` chose at start:"
  echo "$chosen" | sed 's/^/  - /'
  echo
  echo "## Steps"
  echo
  cat "$summary.steps"
  echo
  echo "The benchmarks' own files in benches/results/ dated $date hold their tables."
} >"$summary"
rm -f "$summary.steps"
echo "wrote $summary; log: $log"
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu-check: ${#failed[@]} step(s) failed: ${failed[*]}" >&2
  exit 1
fi
