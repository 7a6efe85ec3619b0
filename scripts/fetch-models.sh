#!/usr/bin/env bash
# Downloads the published checkpoints into models/ (or $VIDPOSE_MODELS), checks the sha256
# prefix carried in each file name, and never leaves a partial file under the final name.
# Usage: scripts/fetch-models.sh [NAME ...]   (names: see models/README.md; default: all HRNet)
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${VIDPOSE_MODELS:-models}"
mkdir -p "$dest"

declare -A url=(
  [hrnet_w32_256x192]=https://download.openmmlab.com/mmpose/top_down/hrnet/hrnet_w32_posetrack18_256x192-1ee951c4_20201028.pth
  [hrnet_w32_384x288]=https://download.openmmlab.com/mmpose/top_down/hrnet/hrnet_w32_posetrack18_384x288-806f00a3_20211130.pth
  [hrnet_w48_256x192]=https://download.openmmlab.com/mmpose/top_down/hrnet/hrnet_w48_posetrack18_256x192-b5d9b3f1_20211130.pth
  [hrnet_w48_384x288]=https://download.openmmlab.com/mmpose/top_down/hrnet/hrnet_w48_posetrack18_384x288-5fd6d3ff_20211130.pth
  [cascade_rcnn_x101]=https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_rcnn_x101_64x4d_fpn_20e_coco/cascade_rcnn_x101_64x4d_fpn_20e_coco_20200509_224357-051557b1.pth
)

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(hrnet_w32_256x192 hrnet_w32_384x288 hrnet_w48_256x192 hrnet_w48_384x288)

for name in "${names[@]}"; do
  u="${url[$name]:-}"
  if [ -z "$u" ]; then
    echo "unknown model '$name'; known: ${!url[*]}" >&2
    exit 2
  fi
  file="$dest/$(basename "$u")"
  # The 8 hex digits after the last '-' of the stem (MMLab's publish_model.py naming).
  prefix=$(basename "$u" .pth | grep -oE -- '-[0-9a-f]{8}(_|$)' | tail -n 1 | tr -d '_-')
  if [ -f "$file" ]; then
    echo "$name: $file already present"
    continue
  fi
  echo "$name: downloading $u"
  curl -fL --retry 3 --progress-bar -o "$file.partial" "$u"
  got=$(sha256sum "$file.partial" | cut -c1-8)
  if [ -n "$prefix" ] && [ "$got" != "$prefix" ]; then
    rm -f "$file.partial"
    echo "$name: sha256 starts with $got, expected $prefix: download discarded" >&2
    exit 1
  fi
  mv "$file.partial" "$file"
  echo "$name: $file (sha256 $got...)"
done
