#!/usr/bin/env bash
# Cascade R-CNN inference time, vidpose (candle, CPU) against PyTorch + MMDetection: the same
# checkpoint, the same 1333x800 frame (a PoseTrack frame resized by OpenCV), 2 threads each,
# one timed run each after loading the model (vidpose: `vidpose bench detect --warmup 0
# --runs 1`). A benchmark, not a test.
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
torch_json=$("$py" scripts/bench_cascade.py --arch "$arch" --checkpoint "$ckpt" \
    --frame-out "$tmp/frame.png" --threads "$threads" | tail -n 1)
echo "pytorch: $torch_json"
target=${CARGO_TARGET_DIR:-$here/target}
ours_json=$(RAYON_NUM_THREADS=$threads "$target/release/vidpose" bench detect "$ckpt" \
    --model "$model" --image "$tmp/frame.png" --warmup 0 --runs 1 | tail -n 1)
echo "vidpose: $ours_json"
python3 - "$torch_json" "$ours_json" <<'PY'
import json, sys
t, o = (json.loads(a) for a in sys.argv[1:3])
ours_s = o['median_ms'] / 1e3
print(f"vidpose / pytorch = {ours_s:.2f} s / {t['inference_s']:.2f} s = "
      f"{ours_s / t['inference_s']:.2f}x (detections: {o['detections']} / {t['detections']})")
PY
