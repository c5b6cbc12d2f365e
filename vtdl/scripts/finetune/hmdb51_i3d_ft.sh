#!/usr/bin/env bash
# The README's HMDB51 I3D fine-tuning command. WEIGHTS: a VTDL pretraining checkpoint (ckpt_epoch_N.pth or
# current.pth); extra flags are appended (e.g. --output_dir).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../_env.sh"
: "${WEIGHTS:?set WEIGHTS to a VTDL pretraining checkpoint, e.g. ../experiments/TemporalDis/hmdb51/models/<run>/ckpt_epoch_48.pth}"
TRAIN="$LISTS/hmdb51/hmdb51_rgb_train_split_1.txt"
VAL="$LISTS/hmdb51/hmdb51_rgb_val_split_1.txt"
need_file "$TRAIN" "$VAL" "$WEIGHTS"
exec "$PY" main.py --method ft --train_list "$TRAIN" --val_list "$VAL" --dataset hmdb51 --arch i3d --mode rgb \
  --lr 0.001 --lr_steps 10 20 25 30 35 40 --epochs 45 --batch_size 4 --data_length 64 --workers 8 --dropout 0.5 \
  --gpus 0 --logs_path ../experiments/logs/hmdb51_i3d_ft --print-freq 100 --weights "$WEIGHTS" "$@"
