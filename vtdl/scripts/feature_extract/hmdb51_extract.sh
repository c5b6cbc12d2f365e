#!/usr/bin/env bash
# The original scripts/feature_extract/hmdb51_extract.sh. WEIGHTS: a VTDL pretraining checkpoint. Writes one
# float32 array [videos, 1024] (+ _labels.npy, _video_ids.txt) to ../experiments/visualization/TSNE/ unless
# --feature_path is given. Extra flags are appended.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../_env.sh"
: "${WEIGHTS:?set WEIGHTS to a VTDL pretraining checkpoint (ckpt_epoch_N.pth)}"
TRAIN="$LISTS/hmdb51/hmdb51_rgb_train_split_1.txt"
VAL="$LISTS/hmdb51/hmdb51_rgb_val_split_1.txt"
need_file "$TRAIN" "$VAL" "$WEIGHTS"
exec "$PY" feature_extractor.py --eval_indict feature_extract --method ft --train_list "$TRAIN" --val_list "$VAL" \
  --dataset hmdb51 --arch i3d --mode rgb --lr 0.001 --lr_steps 10 20 25 30 35 40 --epochs 45 --batch_size 1 \
  --data_length 64 --spatial_size 224 --workers 8 --dropout 0.5 --gpus 0 --logs_path ../experiments/logs/hmdb51_i3d_ft \
  --print-freq 100 --weights "$WEIGHTS" "$@"
