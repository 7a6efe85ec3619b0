#!/usr/bin/env bash
# Compiles every kernels/*.cu to PTX with the real nvcc, as build.rs does for --features cuda,
# so that a kernel that does not compile fails CI on machines without a GPU.
#
#   scripts/ci/check_kernels.sh [VENV_DIR]
#
# nvcc comes from $NVCC, else from `nvcc` on PATH, else it is installed from PyPI
# (cuda-toolkit 13.0: the GPU machines run driver 580, which rejects newer PTX) into VENV_DIR
# (default: a temporary folder, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."

cleanup=""
trap '[ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT
nvcc="${NVCC:-}"
if [ -z "$nvcc" ] && command -v nvcc >/dev/null 2>&1; then nvcc=$(command -v nvcc); fi
if [ -z "$nvcc" ]; then
    venv="${1:-}"
    if [ -z "$venv" ]; then venv=$(mktemp -d); cleanup="$venv"; fi
    start=$(date +%s)
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --no-cache-dir 'cuda-toolkit[nvcc,cccl]==13.0.3.0'
    nvcc=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "bin", "nvcc"))')
    echo "nvcc installed from PyPI in $(( $(date +%s) - start )) s"
fi
"$nvcc" --version | tail -2

out=$(mktemp -d)
trap '[ -n "$cleanup" ] && rm -rf "$cleanup"; rm -rf "$out"' EXIT
status=0
for cu in kernels/*.cu; do
    ptx="$out/$(basename "$cu" .cu).ptx"
    # the flags of build.rs; compute_90 is the H100/H200 target
    if "$nvcc" --ptx -O3 -std=c++17 --fmad=false -arch=compute_90 -o "$ptx" "$cu"; then
        echo "ok   $cu ($(grep -c '^.visible .entry' "$ptx") kernels, PTX $(sed -n 's/^\.version //p' "$ptx"))"
    else
        echo "FAIL $cu"
        status=1
    fi
done
exit $status
