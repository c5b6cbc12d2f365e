#!/usr/bin/env bash
# Build the synthetic UCF101-format dataset through the real pipeline, idempotently:
#   <DIR>/raw     official layout (UCF-101/<Class>/*.avi, ucfTrainTestlist/, captions.tsv) + HMDB51-format
#                 split files for the same videos (testTrainMulti_7030_splits/)
#   <DIR>/frames  <Class>/<stem>/image_%05d.jpg        <DIR>/flow  <Class>/<stem>/flow_%05d.jpg
#   <DIR>/lists   ucf101/{ClassInd.txt, *_split0N.csv, *_rgb_*_split_N.txt, ucf101_0N.json}, hmdb51/ (same)
# Usage: [FLOW=0] bash scripts/prepare_synth.sh DIR [extra process_data.synth flags]
set -euo pipefail
DIR=${1:?usage: prepare_synth.sh DIR [synth flags...]}
shift
PY=${PY:-python}
WORKERS=${WORKERS:-2}
FLOW=${FLOW:-1}  # FLOW=0: RGB frames only (the demo reads no flow; flow is most of the extraction time)
FLOW_FLAGS=()
if [ "$FLOW" != 0 ]; then FLOW_FLAGS=(--flow --flow_root "$DIR/flow"); fi
if [ ! -f "$DIR/raw/ucfTrainTestlist/classInd.txt" ]; then
  "$PY" -m process_data.synth --out "$DIR/raw" "$@"
fi
# Resumable: finished videos are skipped, so a re-run only fills in what is missing.
"$PY" -m process_data.extract_frames --video_root "$DIR/raw/UCF-101" --frame_root "$DIR/frames" \
  --short_side 0 "${FLOW_FLAGS[@]}" -j "$WORKERS"
"$PY" -m process_data.write_splits --dataset ucf101 --split_dir "$DIR/raw/ucfTrainTestlist" \
  --frame_root "$DIR/frames" --out "$DIR/lists" --video_root "$DIR/raw/UCF-101"
# The same videos also carry HMDB51-format split files, so every HMDB51 path runs on synthetic data too.
"$PY" -m process_data.write_splits --dataset hmdb51 --split_dir "$DIR/raw/testTrainMulti_7030_splits" \
  --frame_root "$DIR/frames" --out "$DIR/lists" --video_root "$DIR/raw/UCF-101"
echo "synthetic dataset ready in $DIR"
