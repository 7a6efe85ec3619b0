#!/usr/bin/env bash
# HRNet-W32 256x192 forward pass, batch 8, 2 threads: vidpose (candle, CPU) against PyTorch
# (the reference environment), same checkpoint, in one run. Not a test.
#
#   scripts/bench_hrnet.sh            (BENCH_PROFILE=dev for a quicker, unoptimised-crate build)
#
# The machine has 2 shared cores: PyTorch's script waits for the other processes to go quiet
# and reports their load; vidpose runs right before and after it, and the better of the two
# vidpose medians is compared.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
REFENV_SRC=${REFENV_SRC:-$REPO/../shared/refenv}
REFENV_HOME=${REFENV_HOME:-$HOME/refenv}
PY=${REFENV_PY:-$REFENV_HOME/venv/bin/python}
CKPT=$REFENV_HOME/out/hrnet_w32_posetrack18_256x192_random.pth
PROFILE=${BENCH_PROFILE:-release}
BATCH=${BENCH_BATCH:-8}
RUNS=${BENCH_RUNS:-5}
OUT=${BENCH_OUT:-/tmp/vidpose-bench}
mkdir -p "$OUT"

if [ ! -f "$CKPT" ]; then
  echo "== writing the random-initialised W32 checkpoint (reference environment)"
  "$PY" "$REFENV_SRC/hrnet_reference.py"
fi

echo "== building vidpose bench ($PROFILE)"
cargo build --quiet --profile "$PROFILE" --example bench_hrnet
dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
BIN=${CARGO_TARGET_DIR:-$REPO/target}/$dir/examples/bench_hrnet

export RAYON_NUM_THREADS=2
echo "== vidpose (1/2)"
"$BIN" "$CKPT" "$BATCH" "$RUNS" 2 | tee "$OUT/vidpose_1.json"
echo "== PyTorch"
"$PY" "$REFENV_SRC/bench_hrnet.py" --threads 2 --batches "$BATCH" --runs "$RUNS" --out "$OUT/torch.json" | tail -1
echo "== vidpose (2/2)"
"$BIN" "$CKPT" "$BATCH" "$RUNS" 2 | tee "$OUT/vidpose_2.json"

python3 - "$OUT" "$BATCH" <<'PY'
import json, sys
out, batch = sys.argv[1], sys.argv[2]
ours = min(json.load(open(f"{out}/vidpose_{i}.json"))["median_ms"] for i in (1, 2))
t = json.load(open(f"{out}/torch.json"))[f"batch{batch}"]
print(f"HRNet-W32 256x192 batch {batch}, 2 threads: vidpose {ours:.1f} ms, PyTorch {t['median_ms']:.1f} ms "
      f"(other load {t['other_cores_during']} cores) -> ratio {ours / t['median_ms']:.2f}x")
PY
