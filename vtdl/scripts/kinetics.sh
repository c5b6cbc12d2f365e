#!/usr/bin/env bash
# VTDL pretraining on the Kinetics-400 1/10 subset (the original scripts/TemporalDis/kinetics.sh), decoding the
# videos with PyAV. Lists: $LISTS/kinetics-400/ssd_kinetics_video_{trainlist_1of10,vallist}.txt with lines
# '<relative video path> <label>'; videos under KINETICS_ROOT (default $DATA_ROOT/kinetics-400).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
KINETICS_ROOT="${KINETICS_ROOT:-$DATA_ROOT/kinetics-400}"
TRAIN="$LISTS/kinetics-400/ssd_kinetics_video_trainlist_1of10.txt"
VAL="$LISTS/kinetics-400/ssd_kinetics_video_vallist.txt"
need_file "$TRAIN" "$VAL"
exec "$PY" train_temporal_dis.py --batch_size 10 --num_workers 5 --nce_k 12500 --softmax --moco --print_freq 100 \
  --dataset kinetics --train_list "$TRAIN" --val_list "$VAL" --root "$KINETICS_ROOT" "$@"
