#!/usr/bin/env bash
# Full-size HRNet parity: MMPose 1.3.2 (reference environment) against vidpose on a real
# PoseTrack18 frame with its ground-truth boxes, random-initialised weights, flip test on and off.
#
#   scripts/parity_hrnet_full.sh [w32|w48 ...]      (default: w32 w48)
#
# W32 runs at 256x192, W48 at 384x288. Outputs (checkpoint, reference) go to
# $VIDPOSE_PARITY_OUT (default /tmp/vidpose-parity/<arch>); nothing is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${REFENV_PY:-$HOME/refenv/venv/bin/python}
OUT=${VIDPOSE_PARITY_OUT:-/tmp/vidpose-parity}
# The crops are compared pixel for pixel with cv2.warpAffine: OpenCV 5.1 rounds a few values
# differently from the reference environment's pinned 5.0.0, which vidpose follows.
cv=$("$PY" -c 'import cv2; print(cv2.__version__)' 2>/dev/null || echo none)
if [ "$cv" != 5.0.0 ]; then
  echo "warning: the reference environment has OpenCV $cv, not the pinned 5.0.0" \
    "(pip install opencv-python-headless==5.0.0.93): the crop comparison may differ by one level" >&2
fi
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(w32 w48)
for arch in "${archs[@]}"; do
  dir="$OUT/$arch"
  if [ ! -f "$dir/reference.json" ] || [ ! -f "$dir/frame.png" ]; then
    echo "== MMPose reference for $arch -> $dir"
    "$PY" scripts/make_hrnet_fixtures.py --full "$arch" --out "$dir"
  fi
  echo "== vidpose vs MMPose, $arch"
  VIDPOSE_PARITY_DIR="$dir" VIDPOSE_PARITY_ARCH="$arch" \
    cargo test --test hrnet_parity full_size_parity -- --ignored --nocapture
done
