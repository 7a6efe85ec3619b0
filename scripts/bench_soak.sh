#!/usr/bin/env bash
# Soak run: a synthetic 640x360 video (30 minutes at 25 fps by default) with one given box per
# frame through decode + pose (the narrow HRNet fixture) + tracking, sampling RSS every 10 s.
# A benchmark, not a test: it prints the RSS curve and the largest departure from the minute-2
# value (target: within 5%).
#
#   scripts/bench_soak.sh [MINUTES]        (default 30; files in $SOAK_DIR, default /tmp/vidpose-soak)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
dir=${SOAK_DIR:-/tmp/vidpose-soak}
mkdir -p "$dir"
video="$dir/soak.mp4"
frames=$((minutes * 60 * 25))
if [ ! -f "$video" ] || [ "$(ffprobe -v error -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$video")" != "$frames" ]; then
  echo "== making a ${minutes}-minute 640x360 video"
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=640x360:rate=25:duration=$((minutes * 60))" \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p "$video"
fi
python3 - "$dir/boxes.json" "$frames" <<'PY'
import json, math, sys
path, frames = sys.argv[1], int(sys.argv[2])
images = [{"id": f + 1, "file_name": f"soak/{f:06d}.jpg"} for f in range(frames)]
# One person walking back and forth.
anns = [{"image_id": f + 1, "bbox": [200 + 150 * math.sin(f / 50), 60, 120, 260], "track_id": 0}
        for f in range(frames)]
json.dump({"images": images, "annotations": anns}, open(path, "w"))
PY
cargo build --release --example soak --quiet
target/release/examples/soak "$video" "$dir/boxes.json" "$dir/out"
