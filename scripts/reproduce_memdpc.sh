#!/usr/bin/env bash
# MemDPC: process_data -> self-supervised pretraining -> finetuning -> ten-crop test, RGB and flow streams, then
# two-stream late fusion.
#   make reproduce-memdpc DATA_ROOT=... [GPUS=0,1] [PRETRAIN=ucf101|k400] [SMOKE=1]
# SMOKE=1: the same pipeline on the synthetic dataset ($DATA_ROOT/synth, built with scripts/prepare_synth.sh if
#   missing) with a toy configuration on the CPU (a few minutes on 2 cores).
# Flow folders are found next to the frame trees (<root>/frames/<dataset> -> <root>/flow/<dataset>).
# SMOKE=0: the README commands, unchanged (no opt-in fix: the released recipe), on the real data, laid out as the official
#   archives unpack:
#   $DATA_ROOT/UCF-101/<Class>/*.avi + $DATA_ROOT/ucfTrainTestlist/
#   (PRETRAIN=k400 also needs $DATA_ROOT/kinetics400/<split>/<label>/*.mp4 + $DATA_ROOT/kinetics400/annotations/)
#   PRETRAIN=ucf101 (default): R-2D3D-18 at 128 px pretrained on UCF101 (paper: 69.2% UCF101 finetuned);
#   PRETRAIN=k400: R-2D3D-34 at 224 px pretrained on Kinetics-400 (paper: 78.1% UCF101 finetuned, 86.1% with flow).
set -euo pipefail
SMOKE=${SMOKE:-0}
DATA_ROOT=${DATA_ROOT:-data}
OUT=${OUT:-runs}
PY=${PY:-python}
GPUS=${GPUS:-0,1}
PRETRAIN=${PRETRAIN:-ucf101}
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA_ROOT=$(mkdir -p "$DATA_ROOT" && cd "$DATA_ROOT" && pwd)
mkdir -p "$OUT/memdpc" && RUN=$(cd "$OUT/memdpc" && pwd)
export TQDM_DISABLE=${TQDM_DISABLE:-1} PYTHONUNBUFFERED=1
die() { echo "reproduce_memdpc: error: $*" >&2; exit 2; }
pretrain() { (cd "$REPO/memdpc" && "$PY" main.py "$@"); }
evaluate() { (cd "$REPO/memdpc" && "$PY" test.py "$@"); }
START=$(date +%s)

if [ "$SMOKE" = 1 ]; then
  SYN="$DATA_ROOT/synth"
  PY="$PY" bash "$REPO/scripts/prepare_synth.sh" "$SYN"  # idempotent: finished steps are skipped
  LISTS="$SYN/lists"; DATASET=ucf101
  # 4 blocks x 5 frames at stride 2 (40 of the 48 synthetic frames, one test clip per video), 32 px
  COMMON="--gpu cpu -j 2 --net resnet18 --img_dim 32 --num_seq 4 --seq_len 5 --ds 2 --batch_size 4 --print_freq 4"
  PRE_FLAGS="$COMMON --dataset ucf101 --pred_step 2 --epochs 2 --iters_per_epoch 8"
  FT_FLAGS="$COMMON --train_what ft --epochs 2 --iters_per_epoch 8 --dropout 0.5"
  TEST_FLAGS="$COMMON --test_batch 32"
  PRE_EPOCH=1
else
  [ -d "$DATA_ROOT/UCF-101" ] || die "missing $DATA_ROOT/UCF-101 (see the layout at the top of $0)"
  [ -d "$DATA_ROOT/ucfTrainTestlist" ] || die "missing $DATA_ROOT/ucfTrainTestlist"
  LISTS="$DATA_ROOT/lists"
  # as the original extract_ff.py: native resolution (UCF101 320x240, so the 224 crops come from the full frame) and
  # JPEG quality 100
  "$PY" -m process_data.extract_frames --video_root "$DATA_ROOT/UCF-101" --frame_root "$DATA_ROOT/frames/ucf101" \
    --short_side 0 --quality 100 --flow --flow_root "$DATA_ROOT/flow/ucf101" -j 16
  "$PY" -m process_data.write_splits --dataset ucf101 --split_dir "$DATA_ROOT/ucfTrainTestlist" \
    --frame_root "$DATA_ROOT/frames/ucf101" --out "$LISTS"
  if [ "$PRETRAIN" = k400 ]; then
    [ -d "$DATA_ROOT/kinetics400/annotations" ] || die "missing $DATA_ROOT/kinetics400/annotations"
    "$PY" -m process_data.resize_video --video_root "$DATA_ROOT/kinetics400" --out_root "$DATA_ROOT/kinetics400_256" \
      --short_side 256 -j 16
    "$PY" -m process_data.extract_frames --video_root "$DATA_ROOT/kinetics400_256" --frame_root "$DATA_ROOT/frames/k400" \
      --short_side 0 --quality 100 --flow --flow_root "$DATA_ROOT/flow/k400" -j 16
    "$PY" -m process_data.write_splits --dataset kinetics400 --split_dir "$DATA_ROOT/kinetics400/annotations" \
      --frame_root "$DATA_ROOT/frames/k400" --out "$LISTS"
    DATASET=k400
    PRE_FLAGS="--gpu $GPUS --net resnet34 --dataset k400 --batch_size 16 --img_dim 224 --epochs 200"
    COMMON="--gpu $GPUS --net resnet34 --img_dim 224 --batch_size 16"
    PRE_EPOCH=199
  else
    DATASET=ucf101
    PRE_FLAGS="--gpu $GPUS --net resnet18 --dataset ucf101 --batch_size 16 --img_dim 128 --epochs 500"
    COMMON="--gpu $GPUS --net resnet18 --img_dim 128 --batch_size 16"
    PRE_EPOCH=499
  fi
  FT_FLAGS="$COMMON --train_what ft --epochs 500 --schedule 300 400"
  TEST_FLAGS="$COMMON"
fi

summary=()
for MODALITY in rgb flow; do
  echo "== [$MODALITY] pretraining"
  # shellcheck disable=SC2086
  pretrain $PRE_FLAGS --modality "$MODALITY" --csv_root "$LISTS" \
    --output_dir "$RUN/pretrain_$MODALITY"
  LOSS=$(tail -1 "$RUN/pretrain_$MODALITY/log.txt" | "$PY" -c "import json,sys; r=json.load(sys.stdin); \
print(f\"train loss {r['train_loss']:.4f}, val loss {r['val_loss']:.4f}, val F-top1 {r['val_F-top1']:.3f}\")")
  echo "== [$MODALITY] finetuning"
  # shellcheck disable=SC2086
  evaluate $FT_FLAGS --dataset ucf101 --modality "$MODALITY" --csv_root "$LISTS" \
    --pretrain "$RUN/pretrain_$MODALITY/model/epoch$PRE_EPOCH.pth.tar" --output_dir "$RUN/finetune_$MODALITY"
  echo "== [$MODALITY] ten-crop test"
  # shellcheck disable=SC2086
  evaluate $TEST_FLAGS --dataset ucf101 --modality "$MODALITY" --csv_root "$LISTS" \
    --test "$RUN/finetune_$MODALITY/model/model_best.pth.tar" --ten_crop | tee "$RUN/test_$MODALITY.txt"
  ACC=$(grep '^\[ten\]' "$RUN/test_$MODALITY.txt" | tail -1)
  summary+=("$MODALITY pretraining ($DATASET): $LOSS" "$MODALITY test: $ACC")
done

echo "== two-stream late fusion"
CKPT="$RUN/finetune_%s/model/model_best.pth.tar-prob-ten.json"
# shellcheck disable=SC2059
evaluate --dataset ucf101 --csv_root "$LISTS" --fuse "$(printf "$CKPT" rgb)" "$(printf "$CKPT" flow)" \
  --fuse_out "$RUN/fused-prob-ten.json" | tee "$RUN/fuse.txt"
summary+=("$(grep '^\[fused\]' "$RUN/fuse.txt")")

echo "== MemDPC summary (SMOKE=$SMOKE, $(($(date +%s) - START)) s; outputs in $RUN)"
printf '%s\n' "${summary[@]}" | tee "$RUN/summary.txt"
