#!/usr/bin/env bash
# The GPU machine's check of vidpose, in two steps.
#
#   scripts/device_check.sh build   # on a build machine (Rust, network; no GPU needed)
#   scripts/device_check.sh run     # on the GPU machine, from the repository root
#
# build: installs nvcc 13.0 from PyPI with link-only CUDA stubs (CUDA_SETUP, default
#   ../shared/cuda/setup-cuda.sh, into CUDA_DIR, default /tmp/vidpose-cuda), builds
#   examples/device_check in release mode with --features cuda (6-9 min on 2 cores) and puts
#   it with the libturbojpeg it links into target/device-check/ (carry that folder over).
# run: points LD_LIBRARY_PATH at the CUDA 13 libraries inside the machine's PyTorch install
#   (no CUDA toolkit, FFmpeg or libturbojpeg needed there), runs the check (CPU-vs-GPU parity
#   on the committed fixtures and random full-size models, then throughput) and writes
#   $OUT/device_check.json (OUT defaults to target/device-check/out), then times PyTorch's
#   HRNet-W32 on the same GPU where python3 has torch with CUDA ($OUT/torch_hrnet.json). Exit
#   status 1 when an f32 parity check fails. Under 5 minutes on an H200 (expected; not yet
#   measured there).
#   DEVICE (default cuda:0) and DEVICE_CHECK_ARGS (e.g. "--f32-only --skip-timing") pass on:
#   DEVICE=cpu is a smoke test of the whole script on any machine with the CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/device-check

case "${1:-}" in
build)
    cuda_dir=${CUDA_DIR:-/tmp/vidpose-cuda}
    setup=${CUDA_SETUP:-../shared/cuda/setup-cuda.sh}
    [ -f "$cuda_dir.env" ] || bash "$setup" "$cuda_dir" > "$cuda_dir.env"
    # shellcheck disable=SC1090
    eval "$(cat "$cuda_dir.env")"
    cu=$CUDA_ROOT
    export CUDA_COMPUTE_CAP=90 CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
    export LIBRARY_PATH="$cu/lib:$cu/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
    cargo build --release --locked --features cuda --example device_check
    mkdir -p "$dir/lib"
    cp "$CARGO_TARGET_DIR/release/examples/device_check" "$dir/"
    # the one non-system library the binary needs that a GPU machine may lack
    jpeg=$(ldconfig -p | awk '/libturbojpeg\.so\.0 /{print $NF; exit}')
    [ -n "$jpeg" ] && cp -L "$jpeg" "$dir/lib/"
    strip "$dir/device_check" 2>/dev/null || true
    ls -la "$dir" "$dir/lib"
    ;;
run)
    [ -x "$dir/device_check" ] || { echo "no $dir/device_check: run '$0 build' on a build machine and carry $dir over" >&2; exit 2; }
    libs="$PWD/$dir/lib"
    # CUDA 13 runtime libraries (cublas, cublasLt, curand, nvrtc, cudart) inside PyTorch's wheels
    nv=$(python3 -c 'import nvidia, os; print(" ".join(nvidia.__path__))' 2>/dev/null || true)
    for root in $nv; do
        for d in "$root"/*/lib "$root"/cu13/lib; do
            [ -d "$d" ] && libs="$libs:$d"
        done
    done
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export OUT=${OUT:-$dir/out}
    mkdir -p "$OUT"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt" || true
    if ldd "$dir/device_check" | grep 'not found' >&2; then
        echo "libraries missing (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)" >&2
    fi
    # shellcheck disable=SC2086  # DEVICE_CHECK_ARGS: extra flags, e.g. --skip-timing
    timeout "${DEVICE_CHECK_TIMEOUT:-230}" "$dir/device_check" --device "${DEVICE:-cuda:0}" --out "$OUT" ${DEVICE_CHECK_ARGS:-} 2>&1 | tee "$OUT/device_check.log"
    status=${PIPESTATUS[0]}
    # PyTorch eager on the same GPU, where the machine's Python has it with CUDA: the other side
    # of the HRNet ratios (scripts/torch_hrnet_gpu.py, MMPose's HRNet-W32 module for module)
    if [ "${DEVICE:-cuda:0}" != cpu ] &&
        python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        timeout 60 python3 scripts/torch_hrnet_gpu.py --device "${DEVICE:-cuda:0}" --out "$OUT" 2>&1 |
            tee "$OUT/torch_hrnet.log" || echo "PyTorch timing failed (see $OUT/torch_hrnet.log)" >&2
    fi
    exit "$status"
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
