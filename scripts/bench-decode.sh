#!/usr/bin/env bash
# Decode + RGB throughput of vidpose's source stage against the ffmpeg command on the same
# file, in one run. Makes a 720p H.264 test clip when none is given.
# Usage: scripts/bench-decode.sh [VIDEO] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
video="${1:-}"
runs="${2:-3}"
if [ -z "$video" ]; then
  video=/tmp/vidpose-bench-720p.mp4
  [ -f "$video" ] || ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
      -t 20 -c:v libx264 -preset medium -pix_fmt yuv420p "$video"
fi
cargo build --release --quiet
bin=target/release/vidpose
frames=$(ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets -of csv=p=0 "$video")
best() { sort -n | head -n 1; }
ff=$(for _ in $(seq "$runs"); do
  s=$(date +%s.%N); ffmpeg -loglevel error -i "$video" -f rawvideo -pix_fmt rgb24 -y /dev/null; e=$(date +%s.%N)
  echo "$e - $s" | bc -l
done | best)
vp=$(for _ in $(seq "$runs"); do
  s=$(date +%s.%N); "$bin" bench decode "$video" >/dev/null; e=$(date +%s.%N)
  echo "$e - $s" | bc -l
done | best)
printf 'video: %s (%s frames)\n' "$video" "$frames"
printf 'ffmpeg -f rawvideo -pix_fmt rgb24: %.3f s = %.1f frames/s\n' "$ff" "$(echo "$frames / $ff" | bc -l)"
printf 'vidpose bench decode:             %.3f s = %.1f frames/s\n' "$vp" "$(echo "$frames / $vp" | bc -l)"
printf 'throughput ratio vidpose/ffmpeg:  %.2fx\n' "$(echo "$ff / $vp" | bc -l)"
