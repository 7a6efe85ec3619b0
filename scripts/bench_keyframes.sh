#!/usr/bin/env bash
# Key-frame detection speed (a benchmark, not a test): a 300-frame 1120x630 clip panning over a
# real PoseTrack frame, through decode, the detector (resizing to 1333x800), the pose model and
# the tracker at detector.interval 1, 5 and 10, interleaved over ROUNDS rounds; prints frames/s
# (min and median) per interval.
#
#   scripts/bench_keyframes.sh [ROUNDS] [FRAMES]     (default 3 rounds, 300 frames; files in
#                                                     $BENCH_DIR, default /tmp/vidpose-keyframes)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
frames=${2:-300}
dir=${BENCH_DIR:-/tmp/vidpose-keyframes}
mkdir -p "$dir"
video="$dir/pan_$frames.mp4"
frame=samples/posetrack18/images/val/012834_mpii_test/000000.jpg
if [ ! -f "$video" ]; then
  echo "== making a $frames-frame clip panning over $frame"
  # The crop window moves half a pixel a frame and back: everyone in it moves.
  ffmpeg -v error -y -loop 1 -i "$frame" \
    -vf "crop=1120:630:x='80+80*sin(n/40)':y=45" -frames:v "$frames" -r 25 \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p "$video"
fi
cargo build --release --example keyframe_bench --quiet
target/release/examples/keyframe_bench "$video" "$rounds" 1,5,10
