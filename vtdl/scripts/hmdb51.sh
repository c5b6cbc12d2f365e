#!/usr/bin/env bash
# VTDL pretraining on HMDB51 split 1 (the original scripts/TemporalDis/hmdb51.sh); extra flags are appended.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
TRAIN="$LISTS/hmdb51/hmdb51_rgb_train_split_1.txt"
VAL="$LISTS/hmdb51/hmdb51_rgb_val_split_1.txt"
need_file "$TRAIN" "$VAL"
exec "$PY" train_temporal_dis.py --batch_size 16 --num_workers 8 --nce_k 3569 --softmax --moco --print_freq 100 \
  --dataset hmdb51 --train_list "$TRAIN" --val_list "$VAL" "$@"
