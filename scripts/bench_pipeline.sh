#!/usr/bin/env bash
# The pose stage inside the pipeline against the pose model alone (a benchmark, not a test):
# a 40-frame sequence of a real PoseTrack frame with its 11 people given, HRNet-W32 (random
# full-size weights), flip test, batch 8, through `vidpose bench run`, interleaved with
# `vidpose bench pose` at batch 16 (the flip test doubles each batch of 8 crops); prints the
# cost of one crop's forward pass in each, min and median over ROUNDS.
#
#   scripts/bench_pipeline.sh [ROUNDS]     (default 3; CKPT=path to a W32 checkpoint, else one
#                                           is written with the reference environment)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
dir=${BENCH_DIR:-/tmp/vidpose-bench-pipeline}
mkdir -p "$dir"
ckpt=${CKPT:-/tmp/vidpose-parity/w32/hrnet_w32_zip.pth}
if [ ! -f "$ckpt" ]; then
  echo "== writing a random full-size W32 checkpoint (reference environment)"
  "${REFENV_PY:-$HOME/refenv/venv/bin/python}" scripts/make_hrnet_fixtures.py --full w32 --out "$(dirname "$ckpt")"
fi
python3 - "$dir" <<'PY'
import json, os, shutil, sys
out = sys.argv[1]
src = "samples/posetrack18/images/val/012834_mpii_test/000000.jpg"
ann = json.load(open("samples/posetrack18/annotations/val/012834_mpii_test.json"))
boxes = [a["bbox"] for a in ann["annotations"] if a.get("bbox")]
os.makedirs(f"{out}/seq", exist_ok=True)
images, anns = [], []
for f in range(40):
    shutil.copyfile(src, f"{out}/seq/{f:06d}.jpg")
    images.append({"id": f + 1, "file_name": f"seq/{f:06d}.jpg"})
    anns += [{"image_id": f + 1, "bbox": b, "category_id": 1} for b in boxes]
json.dump({"images": images, "annotations": anns}, open(f"{out}/boxes.json", "w"))
print(f"{len(boxes)} people per frame")
PY
cargo build --release --quiet
bin=target/release/vidpose
crops=$((40 * 11))
for round in $(seq "$rounds"); do
  "$bin" bench pose "$ckpt" --batch 16 --runs 3 --warmup 1 > "$dir/pose_$round.json"
  "$bin" bench run -i "$dir/seq" --set detector.kind=boxes --set "detector.boxes='$dir/boxes.json'" \
    --set "pose.checkpoint='$ckpt'" --set tracker.kind=given --json "$dir/run_$round.json" \
    > "$dir/run_$round.txt"
done
python3 - "$dir" "$rounds" "$crops" <<'PY'
import json, statistics, sys
d, rounds, crops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
alone, inside = [], []
for r in range(1, rounds + 1):
    p = json.load(open(f"{d}/pose_{r}.json"))
    alone.append(p["median_ms"] / 16)
    run = json.load(open(f"{d}/run_{r}.json"))
    pose = next(s for s in run["stages"] if s["stage"] == "pose")
    busy = pose["frames"] / pose["frames_per_s_busy"]
    inside.append(1000 * busy / (2 * crops))
print(open(f"{d}/run_{rounds}.txt").read())
print("| ms per crop forward (flip counted as a crop) | min | median |")
print("|---|---|---|")
print(f"| `vidpose bench pose --batch 16` | {min(alone):.1f} | {statistics.median(alone):.1f} |")
print(f"| pose stage of `vidpose bench run` | {min(inside):.1f} | {statistics.median(inside):.1f} |")
print(f"pipeline / alone (medians): {statistics.median(inside) / statistics.median(alone):.2f}x")
PY
