#!/usr/bin/env bash
# Cascade R-CNN inference time, vidpose (candle, CPU) against PyTorch + MMDetection: the same
# checkpoint, the same 1333x800 frame (a PoseTrack frame resized by OpenCV), 2 threads each,
# one timed run each after loading the model (vidpose: `vidpose bench detect --warmup 0
# --runs 1`), the two sides taking turns ROUNDS times (default 3); min and median of each.
# A benchmark, not a test.
#
#   scripts/bench_cascade.sh [x101|r50] [checkpoint.pth]
#
# The default checkpoint is the random published-layout one written by
# `scripts/compare_cascade_full.sh <arch>` (make_cascade_fixtures.py full).
set -euo pipefail
arch=${1:-x101}
home=${REFENV_HOME:-$HOME/refenv}
ckpt=${2:-$home/out/cascade_rcnn_${arch}_vidpose_random.pth}
py=${PY:-$home/venv/bin/python}
threads=${THREADS:-2}
case "$arch" in
  x101) model=cascade_rcnn_x101_64x4d_fpn_20e_coco ;;
  r50) model=cascade_rcnn_r50_fpn_1x_coco ;;
  *) echo "unknown architecture $arch (x101 or r50)" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$here"
cargo build --release --bin vidpose
target=${CARGO_TARGET_DIR:-$here/target}
rounds=${ROUNDS:-3}
: > "$tmp/torch.jsonl"
: > "$tmp/ours.jsonl"
# The two sides take turns, ROUNDS times: the machine is shared, so one pair says little.
for round in $(seq 1 "$rounds"); do
  torch_json=$("$py" scripts/bench_cascade.py --arch "$arch" --checkpoint "$ckpt" \
      --frame-out "$tmp/frame.png" --threads "$threads" | tail -n 1)
  echo "round $round/$rounds pytorch: $torch_json"
  echo "$torch_json" >> "$tmp/torch.jsonl"
  ours_json=$(RAYON_NUM_THREADS=$threads "$target/release/vidpose" bench detect "$ckpt" \
      --model "$model" --image "$tmp/frame.png" --warmup 0 --runs 1 | tail -n 1)
  echo "round $round/$rounds vidpose: $ours_json"
  echo "$ours_json" >> "$tmp/ours.jsonl"
done
python3 - "$tmp/torch.jsonl" "$tmp/ours.jsonl" <<'PY'
import json, statistics, sys
theirs = [json.loads(l) for l in open(sys.argv[1])]
ours = [json.loads(l) for l in open(sys.argv[2])]
t = [r['inference_s'] for r in theirs]
o = [r['median_ms'] / 1e3 for r in ours]
print(f"{len(o)} rounds; vidpose min {min(o):.2f} s, median {statistics.median(o):.2f} s; "
      f"PyTorch min {min(t):.2f} s, median {statistics.median(t):.2f} s")
print(f"ratio (vidpose / PyTorch): min {min(o) / min(t):.2f}x, median "
      f"{statistics.median(o) / statistics.median(t):.2f}x "
      f"(detections: {ours[-1]['detections']} / {theirs[-1]['detections']})")
PY
