#!/usr/bin/env bash
# HRNet-W32 256x192 forward pass, batch 8, 2 threads: vidpose (candle, CPU) against PyTorch
# (the reference environment), same checkpoint, in one run. Not a test.
#
#   scripts/bench_hrnet.sh            (BENCH_PROFILE=dev for a quicker, unoptimised-crate build)
#
# The machine has 2 shared cores: the two sides take turns, ROUNDS times (vidpose, PyTorch,
# vidpose, ..., vidpose), PyTorch's script waiting for the other processes to go quiet and
# reporting their load; the minimum and median of every timed run of each side are compared.
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
ROUNDS=${BENCH_ROUNDS:-3}
OUT=${BENCH_OUT:-/tmp/vidpose-bench}
mkdir -p "$OUT"

if [ ! -f "$CKPT" ]; then
  echo "== writing the random-initialised W32 checkpoint (reference environment)"
  "$PY" "$REFENV_SRC/hrnet_reference.py"
fi

echo "== building vidpose ($PROFILE)"
cargo build --quiet --profile "$PROFILE"
dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
BIN=${CARGO_TARGET_DIR:-$REPO/target}/$dir/vidpose

export RAYON_NUM_THREADS=2
rm -f "$OUT"/vidpose_*.json "$OUT"/torch_*.json
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round/$ROUNDS: vidpose"
  "$BIN" bench pose "$CKPT" --batch "$BATCH" --runs "$RUNS" --warmup 2 | tee "$OUT/vidpose_$round.json"
  echo "== round $round/$ROUNDS: PyTorch"
  "$PY" "$REFENV_SRC/bench_hrnet.py" --threads 2 --batches "$BATCH" --runs "$RUNS" --out "$OUT/torch_$round.json" | tail -1
done
echo "== vidpose, closing"
"$BIN" bench pose "$CKPT" --batch "$BATCH" --runs "$RUNS" --warmup 2 | tee "$OUT/vidpose_$((ROUNDS + 1)).json"

python3 - "$OUT" "$BATCH" <<'PY'
import glob, json, statistics, sys
out, batch = sys.argv[1], sys.argv[2]
ours = [t for f in sorted(glob.glob(f"{out}/vidpose_*.json")) for t in json.load(open(f))["runs_ms"]]
theirs, load = [], []
for f in sorted(glob.glob(f"{out}/torch_*.json")):
    r = json.load(open(f))[f"batch{batch}"]
    theirs += r["runs_ms"]
    load.append(r["other_cores_during"])
lo, md = min(ours), statistics.median(ours)
tlo, tmd = min(theirs), statistics.median(theirs)
print(f"HRNet-W32 256x192 batch {batch}, 2 threads, {len(ours)} vidpose and {len(theirs)} PyTorch runs:")
print(f"  vidpose min {lo:.0f} ms, median {md:.0f} ms; PyTorch min {tlo:.0f} ms, median {tmd:.0f} ms "
      f"(other load during PyTorch: {', '.join(f'{l:.2f}' for l in load)} cores)")
print(f"  ratio (vidpose / PyTorch): min {lo / tlo:.2f}x, median {md / tmd:.2f}x")
PY
