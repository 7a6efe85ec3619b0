#!/usr/bin/env bash
# Reproduce MMPose's published PoseTrack18 validation results with vidpose: the four HRNet models
# (W32/W48 at 256x192 and 384x288), each with ground-truth boxes and with MMPose's Cascade R-CNN
# detection file, scored with `vidpose eval` and printed beside MMPose's published total AP.
#
#   scripts/reproduce_posetrack18.sh POSETRACK18_ROOT [OUT_DIR]
#
# POSETRACK18_ROOT is the PoseTrack 2018 release: images/val/<sequence>/*.jpg and
# annotations/val/<sequence>.json. MMPose's merged annotation file and its person detections
# (posetrack18_val.json, posetrack18_val_human_detections.json) are downloaded into
# POSETRACK18_ROOT/annotations when missing, and the published checkpoints into models/
# (`vidpose models fetch`). Outputs: OUT_DIR/<model>/{gt,det}/ (submission folders),
# OUT_DIR/<model>/{gt,det}.eval.json, OUT_DIR/table.md. OUT_DIR defaults to out/posetrack18.
#
# Options (environment):
#   VIDPOSE        the vidpose binary (default: built with `cargo build --release`)
#   MODELS         the models to run (default: all four)
#   MODELS_DIR     where the checkpoints are (default: models/)
#   OFFLINE=1      download nothing; use the checkpoints and files already there (for a test
#                  run with random weights on a small sample, where the AP will not match)
#   DET_FILE, DET_IMAGES   the detection results and the annotation file whose `images` map
#                  their image ids to frames (default: MMPose's two files named above)
#   EXTRA_SET      more `--set KEY=VALUE` arguments for every run, space-separated
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
ROOT=$(cd "$1" && pwd)
OUT=${2:-out/posetrack18}
MODELS=${MODELS:-"hrnet_w32_256x192 hrnet_w32_384x288 hrnet_w48_256x192 hrnet_w48_384x288"}
MODELS_DIR=${MODELS_DIR:-models}
ANN_TAR_URL=https://download.openmmlab.com/mmpose/datasets/posetrack18_annotations.tar
DET_FILE=${DET_FILE:-$ROOT/annotations/posetrack18_val_human_detections.json}
DET_IMAGES=${DET_IMAGES:-$ROOT/annotations/posetrack18_val.json}

[ -d "$ROOT/images/val" ] || { echo "error: $ROOT/images/val is not a folder" >&2; exit 2; }
[ -d "$ROOT/annotations/val" ] || { echo "error: $ROOT/annotations/val is not a folder" >&2; exit 2; }

if [ -z "${VIDPOSE:-}" ]; then
  cargo build --release --quiet
  VIDPOSE=target/release/vidpose
fi

if [ ! -f "$DET_FILE" ] || [ ! -f "$DET_IMAGES" ]; then
  if [ "${OFFLINE:-0}" = 1 ]; then
    echo "error: $DET_FILE or $DET_IMAGES is missing and OFFLINE=1" >&2
    exit 2
  fi
  echo "== downloading MMPose's PoseTrack18 annotations and detections"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -fL --retry 3 -o "$tmp/ann.tar" "$ANN_TAR_URL"
  tar -xf "$tmp/ann.tar" -C "$tmp"
  for f in posetrack18_val.json posetrack18_val_human_detections.json; do
    found=$(find "$tmp" -name "$f" | head -n 1)
    [ -n "$found" ] || { echo "error: $f is not in $ANN_TAR_URL" >&2; exit 1; }
    [ -f "$ROOT/annotations/$f" ] || cp "$found" "$ROOT/annotations/$f"
  done
fi

extra=()
for s in ${EXTRA_SET:-}; do extra+=(--set "$s"); done

mkdir -p "$OUT"
for model in $MODELS; do
  if [ "${OFFLINE:-0}" != 1 ]; then
    "$VIDPOSE" models fetch "$model" --dir "$MODELS_DIR"
  fi
  for mode in gt det; do
    dir="$OUT/$model/$mode"
    echo "== $model, $mode boxes -> $dir"
    boxes=()
    if [ "$mode" = det ]; then
      boxes=(--set "detector.boxes=$DET_FILE" --set "detector.boxes_images=$DET_IMAGES")
    fi
    # tracker.kind=given: MMPose's test loop writes every pose left by its OKS-NMS and links
    # nothing; the AP it reports is of that.
    "$VIDPOSE" run --input "$ROOT/images/val" --output "$dir" --overwrite \
      --set "pose.model=$model" --set "models_dir=$MODELS_DIR" --set tracker.kind=given \
      "${boxes[@]}" "${extra[@]}"
    "$VIDPOSE" eval --gt "$ROOT/annotations/val" --pred "$dir" --json "$OUT/$model/$mode.eval.json" \
      > "$OUT/$model/$mode.eval.txt"
  done
done

python3 - "$OUT" "$MODELS" <<'EOF'
import json, os, re, sys
out, models = sys.argv[1], sys.argv[2].split()
card_ap = {}
for m in models:
    text = open(os.path.join('models', m + '.yaml')).read()
    found = re.search(r'posetrack18_val_total_ap:\s*\{gt_boxes:\s*([\d.]+),\s*cascade_rcnn_x101_boxes:\s*([\d.]+)\}', text)
    card_ap[m] = found.groups() if found else ('?', '?')
lines = ['| model | boxes | vidpose total AP | MMPose published | difference |',
         '|---|---|---|---|---|']
for m in models:
    for mode, published in zip(('gt', 'det'), card_ap[m]):
        report = json.load(open(os.path.join(out, m, mode + '.eval.json')))
        total = report['ap']['ap'][report['names'].index('total')]
        ours = 'n/a' if total is None else f'{total:.1f}'
        diff = 'n/a' if total is None or published == '?' else f'{total - float(published):+.1f}'
        label = 'ground truth' if mode == 'gt' else 'Cascade R-CNN X101 (MMPose file)'
        lines.append(f'| {m} | {label} | {ours} | {published} | {diff} |')
table = '\n'.join(lines)
open(os.path.join(out, 'table.md'), 'w').write(table + '\n')
print(table)
EOF
