#!/usr/bin/env bash
# Full-size parity of vidpose's Cascade R-CNN with MMDetection (not part of `cargo test`):
# a random-initialised checkpoint of the published architecture and key layout (written by
# make_cascade_fixtures.py to $OUT_DIR), one 1920x1080 PoseTrack frame; FPN features, RPN
# proposals, every cascade stage and the final detections compared.
#
#   scripts/compare_cascade_full.sh r50|x101
#
# Needs ../shared/refenv set up (bash ../shared/refenv/setup.sh).
set -euo pipefail
arch=${1:-r50}
here=$(cd "$(dirname "$0")/.." && pwd)
home=${REFENV_HOME:-$HOME/refenv}
py=${PY:-$home/venv/bin/python}
out=${OUT_DIR:-$home/out}
"$py" "$here/scripts/make_cascade_fixtures.py" full --arch "$arch" --out "$out"
# float64 FPN levels: puts the float32 differences in context
"$py" "$here/scripts/make_cascade_fixtures.py" f64 --arch "$arch" --out "$out"
cd "$here"
VIDPOSE_CASCADE_FULL="$out" VIDPOSE_CASCADE_ARCH="$arch" \
VIDPOSE_CASCADE_CKPT="$out/cascade_rcnn_${arch}_vidpose_random.pth" \
    cargo test --release --test cascade_parity full_size -- --ignored --nocapture
