#!/usr/bin/env bash
# The original scripts/evaluation/hmdb51_i3d_eval.sh. WEIGHTS: a fine-tuned checkpoint
# (fine_tune_rgb_model_latest.pth.tar). Default protocol: 10 uniform 64-frame clips; add
# '--eval_protocol original' for the original two-window rule. Extra flags are appended.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../_env.sh"
: "${WEIGHTS:?set WEIGHTS to a fine-tuned checkpoint (fine_tune_rgb_model_latest.pth.tar)}"
TRAIN="$LISTS/hmdb51/hmdb51_rgb_train_split_1.txt"
VAL="$LISTS/hmdb51/hmdb51_rgb_val_split_1.txt"
need_file "$TRAIN" "$VAL" "$WEIGHTS"
exec "$PY" test.py --method ft --train_list "$TRAIN" --val_list "$VAL" --dataset hmdb51 --arch i3d --mode rgb \
  --batch_size 1 --stride 1 --data_length 64 --clip_size 64 --spatial_size 224 --workers 1 --dropout 0.5 --gpus 0 \
  --weights "$WEIGHTS" "$@"
