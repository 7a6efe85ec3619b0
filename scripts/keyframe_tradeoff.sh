#!/usr/bin/env bash
# The accuracy cost of key-frame detection on PoseTrack18 val with the published checkpoints:
# runs vidpose at detector.interval 1, 5 and 10 (Cascade R-CNN X101 + HRNet-W32 by default,
# `vidpose models fetch` first) and scores each output with `vidpose eval`; prints total AP,
# MOTA and ID switches per interval, and the run time.
#
#   scripts/keyframe_tradeoff.sh POSETRACK_ROOT [OUT_DIR] [vidpose run options ...]
#
# POSETRACK_ROOT holds images/val/<seq>/ and annotations/val/<seq>.json. Extra options go to
# every `vidpose run` (e.g. `--set tracker.motion=constant_velocity`, `--set
# pose.model=hrnet_w48_384x288`, `--set detector.kind=boxes` for ground-truth boxes on key
# frames). INTERVALS="1 5 10" and VIDPOSE=path/to/vidpose are read from the environment.
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
root=$(cd "$1" && pwd)
out=${2:-keyframe-tradeoff}
shift $(($# >= 2 ? 2 : 1))
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${VIDPOSE:-$repo/target/release/vidpose}
if [ -z "${VIDPOSE:-}" ]; then
  cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
fi
[ -d "$root/images/val" ] || { echo "$root/images/val: no such folder" >&2; exit 2; }
[ -d "$root/annotations/val" ] || { echo "$root/annotations/val: no such folder" >&2; exit 2; }
mkdir -p "$out"
for k in ${INTERVALS:-1 5 10}; do
  echo "== detector.interval=$k"
  start=$(date +%s)
  status=0
  "$bin" run -i "$root/images/val" -o "$out/k$k" --set detector.kind=cascade_rcnn \
    --set detector.interval="$k" --set pipeline.progress=false "$@" || status=$?
  echo "$(($(date +%s) - start))" > "$out/k$k.seconds"
  if [ "$status" -ne 0 ]; then
    echo "vidpose run exited with $status at interval $k (see $out/k$k/run.json)" >&2
  fi
  "$bin" eval --gt "$root/annotations/val" --pred "$out/k$k" --json "$out/k$k.eval.json" > "$out/k$k.eval.txt"
done
python3 - "$out" ${INTERVALS:-1 5 10} <<'PY'
import json, sys
out, intervals = sys.argv[1], sys.argv[2:]
print("| detector.interval | AP (total) | MOTA (total) | ID switches | run time s |")
print("|---|---|---|---|---|")
unavailable = set()
for k in intervals:
    e = json.load(open(f"{out}/k{k}.eval.json"))
    seconds = open(f"{out}/k{k}.seconds").read().strip()
    mot = e.get("mot")
    if not mot:
        unavailable.add(e.get("mot_unavailable", ""))
    mota = f"{mot['mota'][-1]:.1f}" if mot else "n/a"
    switches = str(sum(mot["num_switches"])) if mot else "n/a"
    print(f"| {k} | {e['ap']['ap'][-1]:.1f} | {mota} | {switches} | {seconds} |")
for reason in unavailable:
    print(f"\nno tracking metrics: {reason}")
PY
