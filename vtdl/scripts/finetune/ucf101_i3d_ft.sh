#!/usr/bin/env bash
# The README's UCF101 I3D fine-tuning command. WEIGHTS: a VTDL pretraining checkpoint (ckpt_epoch_N.pth or
# current.pth); extra flags are appended (e.g. --output_dir).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../_env.sh"
: "${WEIGHTS:?set WEIGHTS to a VTDL pretraining checkpoint, e.g. ../experiments/TemporalDis/ucf101/models/<run>/ckpt_epoch_48.pth}"
TRAIN="$LISTS/ucf101/ucf101_rgb_train_split_1.txt"
VAL="$LISTS/ucf101/ucf101_rgb_val_split_1.txt"
need_file "$TRAIN" "$VAL" "$WEIGHTS"
exec "$PY" main.py --method ft --train_list "$TRAIN" --val_list "$VAL" --dataset ucf101 --arch i3d --mode rgb \
  --lr 0.0005 --lr_steps 10 20 25 30 35 40 --epochs 45 --batch_size 4 --data_length 64 --workers 8 --dropout 0.5 \
  --gpus 0 --logs_path ../experiments/logs/ucf101_i3d_ft --print-freq 100 --weights "$WEIGHTS" "$@"
