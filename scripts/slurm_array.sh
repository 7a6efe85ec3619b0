#!/usr/bin/env bash
# A Slurm job array running vidpose over a folder of videos, one shard per array task. Each task
# processes the videos `--shard I/N` assigns to it (deterministic by name), writes its outputs
# into the shared output folder, and its run report as run.shard-I-of-N.json; a task that is
# retried skips the videos already written. The outputs merge by being in one folder.
#
#   sbatch --array=0-15 scripts/slurm_array.sh INPUT_DIR OUTPUT_DIR [vidpose run options...]
#
# The array size is the number of shards (here 16). Set VIDPOSE to the binary (default: vidpose
# on PATH) and CONFIG to a pipeline.yaml (default: ./pipeline.yaml or the built-in defaults).
#SBATCH --job-name=vidpose
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=vidpose-%A_%a.log
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
: "${SLURM_ARRAY_TASK_ID:?run this with sbatch --array=0-(N-1)}"
input=$1
output=$2
shift 2
index=$SLURM_ARRAY_TASK_ID
# SLURM_ARRAY_TASK_COUNT is the array size; fall back to MAX - MIN + 1.
count=${SLURM_ARRAY_TASK_COUNT:-$((SLURM_ARRAY_TASK_MAX - SLURM_ARRAY_TASK_MIN + 1))}
# Array ids may start above 0 (--array=1-16): shards are counted from the first one.
shard=$((index - ${SLURM_ARRAY_TASK_MIN:-0}))
exec "${VIDPOSE:-vidpose}" run ${CONFIG:+"$CONFIG"} --input "$input" --output "$output" \
  --shard "$shard/$count" "$@"
