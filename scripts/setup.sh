#!/usr/bin/env bash
# Installs what the build and tests need on a Debian machine (idempotent; quick when done).
# Used by scripts/run.sh and scripts/test.sh; safe to run by hand.
set -euo pipefail

# Debian packages:
# - mesa-vulkan-drivers, libvulkan1: lavapipe, the software Vulkan adapter the GPU paths run on
#   without a GPU (CI included); libegl1, libegl-mesa0, libgl1-mesa-dri: the GL/llvmpipe fallback.
# - ffmpeg: the reference the benchmarks compare against, and ffprobe/ffmpeg for the recordings
#   the end-to-end tests examine (tests/e2e/test_record.py).
# - pkg-config, cmake, nasm, g++: native builds of codec crates.
# - libvpx-dev, libdav1d-dev: libvpx (VP8) and dav1d (AV1 decoding), linked by the codec crate.
# - libyuv-dev: libyuv, the plane scaler of the compositor's CPU path.
# - libavcodec-dev, libavutil-dev: FFmpeg's VP8 and H.264 decoders, the codec crate's first choice.
# - python3, python3-venv: the aiortc end-to-end clients (scripts/e2e-setup.sh makes the venv).
# - openssl: the certificate the gRPC TLS test serves (server/tests/grpc_api.rs).
# - baresip-core, baresip-ffmpeg, sip-tester (sipp): the real SIP phones and scenarios the
#   gateway's end-to-end tests call with (tests/e2e/test_sip.py).
APT_PACKAGES=(
  mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri
  ffmpeg pkg-config cmake nasm g++
  libvpx-dev libdav1d-dev libyuv-dev libavcodec-dev libavutil-dev
  python3 python3-venv
  openssl
  baresip-core baresip-ffmpeg sip-tester
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no Rust toolchain found. Install one with rustup (https://rustup.rs), Rust 1.87 or newer." >&2
  exit 1
fi

# lavapipe warns on every start without a runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
