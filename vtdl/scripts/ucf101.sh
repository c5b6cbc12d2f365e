#!/usr/bin/env bash
# VTDL pretraining on UCF101 split 1 (the original scripts/TemporalDis/ucf101.sh); extra flags are appended.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
TRAIN="$LISTS/ucf101/ucf101_rgb_train_split_1.txt"
VAL="$LISTS/ucf101/ucf101_rgb_val_split_1.txt"
need_file "$TRAIN" "$VAL"
exec "$PY" train_temporal_dis.py --batch_size 8 --num_workers 4 --nce_k 5000 --softmax --moco --print_freq 100 \
  --dataset ucf101 --train_list "$TRAIN" --val_list "$VAL" "$@"
