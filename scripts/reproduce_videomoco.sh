#!/usr/bin/env bash
# VideoMoCo: pretraining (D-only phase, then G/D adversarial phase resumed from the phase-1 checkpoint, as the
# README resumes the released checkpoint_0100.pth.tar) and the original evaluation (fine-tuning + 10-clip test).
#
#   SMOKE=1  the whole pipeline on the synthetic dataset (built in $DATA_ROOT/synth if missing), CPU-sized:
#            R(2+1)D-18, 8 frames at 32 px, one D-only + one adversarial epoch on 32 videos, then fine-tuning and
#            the video-level test on UCF101-format and HMDB51-format split 1, and a random-init baseline.
#   SMOKE=0  the paper's pipeline on real data:
#            $DATA_ROOT/kinetics400/train/<class>/*.mp4                       pretraining (K400)
#            $DATA_ROOT/UCF101/UCF-101/<Class>/*.avi, $DATA_ROOT/UCF101/ucfTrainTestlist/      evaluation
#            $DATA_ROOT/HMDB51/videos/<class>/*.avi, $DATA_ROOT/HMDB51/testTrainMulti_7030_splits/ (optional)
#            VIDEOMOCO_INIT=<checkpoint_0100.pth.tar> skips phase 1 and runs the README command from it.
# Env: SMOKE (0/1), DATA_ROOT, OUT, PY (python of the venv), NPROC (processes per node; default: GPUs).
set -euo pipefail
SMOKE=${SMOKE:-0}
DATA_ROOT=${DATA_ROOT:-data}
OUT=${OUT:-runs}
PY=${PY:-python}
mkdir -p "$DATA_ROOT" "$OUT/videomoco"
DATA_ROOT=$(cd "$DATA_ROOT" && pwd)
RUN=$(cd "$OUT/videomoco" && pwd)
cd "$(dirname "$0")/.."  # the repository root: videomoco/train.py and videomoco/eval.py as the README runs them
export TQDM_DISABLE=${TQDM_DISABLE:-1} PYTHONUNBUFFERED=1
START=$(date +%s)

fail() { echo "reproduce_videomoco: $*" >&2; exit 2; }

if [ "$SMOKE" = "1" ]; then
  SYN="$DATA_ROOT/synth"
  [ -f "$SYN/raw/testTrainMulti_7030_splits/ZoomOut_test_split1.txt" ] || PY="$PY" bash scripts/prepare_synth.sh "$SYN"
  RAW="$SYN/raw"
  # a third of split 1's training videos (4 per class) keeps the CPU pretraining to a few minutes
  awk 'NR % 3 == 1' "$RAW/ucfTrainTestlist/trainlist01.txt" > "$RUN/pretrain_list.txt"
  TINY=(-a r2plus1d_18 -fpc 8 -cs 32 -j 2 --seed 0 -p 2 --exact_dirs)
  TINY+=(--metadata_cache "$RUN/video_metadata.json")  # probe cache outside the shared synthetic dataset
  PRE=("$RAW" --train_subdir UCF-101 --video_exts avi --train_list "$RUN/pretrain_list.txt" "${TINY[@]}"
       -b 8 --moco-k 128 --lr 0.03 --schedule 120 160)
  # phase 1: D alone (no generator, no frame dropping) -> netD/checkpoint_0001.pth.tar
  "$PY" videomoco/train.py "${PRE[@]}" --epochs 1 --adversarial_start_epoch 1 --save_freq 1 \
    --log_dir "$RUN/phase1_log" --ckp_dir "$RUN/phase1"
  # phase 2: resume D (as the README resumes checkpoint_0100) and train G and D adversarially
  "$PY" videomoco/train.py "${PRE[@]}" --epochs 2 --adversarial_start_epoch 1 --save_freq 1 \
    --resume "$RUN/phase1/netD/checkpoint_0001.pth.tar" --log_dir "$RUN/phase2_log" --ckp_dir "$RUN/phase2"
  CKPT="$RUN/phase2/netD/checkpoint_0002.pth.tar"
  [ -f "$CKPT" ] || fail "pretraining did not write $CKPT"
  # fine-tuning + video-level test with --fix bn_train,test_resize (BN in train mode): a 2-epoch toy pretraining leaves
  # running statistics that the released eval-mode recipe cannot fine-tune from
  EVAL=("${TINY[@]}" -b 16 --epochs 1 -cpv 3 --train_clips_per_video 1 --fix bn_train,test_resize)
  UCF=(--video_dir "$RAW/UCF-101" --split_dir "$RAW/ucfTrainTestlist")
  HMDB=(--dataset hmdb51 --video_dir "$RAW/UCF-101" --split_dir "$RAW/testTrainMulti_7030_splits")
  "$PY" videomoco/eval.py "${EVAL[@]}" --pretrained "$CKPT" "${UCF[@]}" --log_dir "$RUN/eval_ucf_pretrained" \
    --ckp_dir "$RUN/eval_ucf_pretrained_ckp" | tee "$RUN/eval_ucf_pretrained.txt"
  "$PY" videomoco/eval.py "${EVAL[@]}" --pretrained "$CKPT" "${HMDB[@]}" --log_dir "$RUN/eval_hmdb_pretrained" \
    --ckp_dir "$RUN/eval_hmdb_pretrained_ckp" | tee "$RUN/eval_hmdb_pretrained.txt"
  "$PY" videomoco/eval.py "${EVAL[@]}" "${UCF[@]}" --log_dir "$RUN/eval_ucf_random" \
    --ckp_dir "$RUN/eval_ucf_random_ckp" | tee "$RUN/eval_ucf_random.txt"
  echo "== VideoMoCo SMOKE summary (synthetic data, split 1, fine-tuned 1 epoch; chance = 12.5 %) =="
  for f in "$RUN"/eval_ucf_pretrained.txt "$RUN"/eval_hmdb_pretrained.txt "$RUN"/eval_ucf_random.txt; do
    echo "$(basename "$f" .txt): $(grep '^test:' "$f" | tail -1)"
  done
  echo "pretraining: $(tail -1 "$RUN/phase2_log/log.txt")"
  echo "total $(($(date +%s) - START)) s"
  exit 0
fi

# ------------------------------------------------------------------------------------------------ real data
K400="$DATA_ROOT/kinetics400"
UCF="$DATA_ROOT/UCF101"
HMDB="$DATA_ROOT/HMDB51"
[ -d "$K400/train" ] || [ -n "${VIDEOMOCO_INIT:-}" ] || fail "missing $K400/train/<class>/*.mp4 (Kinetics-400)"
[ -d "$UCF/UCF-101" ] && [ -d "$UCF/ucfTrainTestlist" ] || fail "missing $UCF/UCF-101 and $UCF/ucfTrainTestlist"
NPROC_FLAG=(); [ -n "${NPROC:-}" ] && NPROC_FLAG=(--nproc_per_node "$NPROC")
README=(-a r2plus1d_18 --lr 0.005 -fpc 32 -b 32 -j 128 --epochs 200 --schedule 120 160
        --dist_url tcp://localhost:10001 --multiprocessing_distributed --world_size 1 --rank 0 "${NPROC_FLAG[@]}"
        --log_dir "$RUN/logs_moco" --ckp_dir "$RUN/checkpoints_moco" --exact_dirs)
if [ -n "${VIDEOMOCO_INIT:-}" ]; then
  "$PY" videomoco/train.py "${README[@]}" --resume "$VIDEOMOCO_INIT" "$K400"  # the README command
else
  "$PY" videomoco/train.py "${README[@]}" "$K400"  # epochs 0-99 D-only, 100-199 adversarial
fi
CKPT="$RUN/checkpoints_moco/netD/checkpoint_0200.pth.tar"
EVAL=(-a r2plus1d_18 --pretrained "$CKPT" --multiprocessing-distributed --world-size 1 --rank 0 "${NPROC_FLAG[@]}"
      --split all --exact_dirs)
"$PY" videomoco/eval.py "${EVAL[@]}" --video_dir "$UCF/UCF-101" --split_dir "$UCF/ucfTrainTestlist" \
  --log_dir "$RUN/eval_ucf101" --ckp_dir "$RUN/eval_ucf101_ckp" | tee "$RUN/eval_ucf101.txt"
if [ -d "$HMDB/videos" ]; then
  "$PY" videomoco/eval.py "${EVAL[@]}" --dataset hmdb51 --video_dir "$HMDB/videos" \
    --split_dir "$HMDB/testTrainMulti_7030_splits" --log_dir "$RUN/eval_hmdb51" --ckp_dir "$RUN/eval_hmdb51_ckp" \
    | tee "$RUN/eval_hmdb51.txt"
fi
grep -h "mean over splits" "$RUN"/eval_*.txt || true
