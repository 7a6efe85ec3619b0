#!/usr/bin/env bash
# Full-size end-to-end parity: MMPose 1.3.2's own PoseTrack18 test loop (Runner.test, the
# PoseTrack18 configs, PoseTrack18Metric, poseval) against vidpose's pipeline on the committed
# PoseTrack sample (samples/posetrack18: the JPEG frames, the annotation files, the detection
# file), with random-initialised W32 256x192 / W48 384x288 checkpoints in the published layout,
# in both box modes.
#
#   scripts/parity_e2e_full.sh [w32|w48 ...]      (default: w32 w48)
#
# Needs the reference environment (~/refenv, see make_e2e_fixtures.py) and a poseval checkout
# at commit 4258a15 in $POSEVAL. Outputs go to $VIDPOSE_E2E_OUT (default /tmp/vidpose-e2e/<arch>);
# nothing is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${REFENV_PY:-$HOME/refenv/venv/bin/python}
OUT=${VIDPOSE_E2E_OUT:-/tmp/vidpose-e2e}
: "${POSEVAL:?set POSEVAL to a poseval checkout (commit 4258a15)}"
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(w32 w48)
for arch in "${archs[@]}"; do
  case "$arch" in
    w32) model=hrnet_w32_256x192 ;;
    w48) model=hrnet_w48_384x288 ;;
    *) echo "unknown architecture $arch (w32 or w48)" >&2; exit 2 ;;
  esac
  dir="$OUT/$arch"
  if [ ! -f "$dir/det/ap.json" ]; then
    echo "== MMPose's test loop, $arch -> $dir"
    "$PY" scripts/make_e2e_fixtures.py --full "$arch" --out "$dir" --poseval "$POSEVAL"
  fi
  echo "== vidpose vs MMPose's test loop, $arch ($model)"
  VIDPOSE_E2E_DIR="$dir" VIDPOSE_E2E_MODEL="$model" \
    cargo test --release --test e2e_parity full_size_matches_mmposes_test_loop -- --ignored --nocapture
done
