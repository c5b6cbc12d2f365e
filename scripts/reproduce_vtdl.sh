#!/usr/bin/env bash
# VTDL: self-supervised pretraining, then fine-tuning and video-level test, on UCF101 and HMDB51 split 1.
#   make reproduce-vtdl DATA_ROOT=... [OUT=runs] [SMOKE=1]
# SMOKE=1: the same three steps on the synthetic dataset (built with scripts/prepare_synth.sh if missing) at toy
#   size (I3D, 8 frames, 32 px, a few iterations); HMDB51 is exercised through HMDB-format split files written
#   from the synthetic splits.
# SMOKE=0: the original commands, unchanged and with no opt-in fix (vtdl/scripts/{ucf101,hmdb51}.sh, the README
#   fine-tune commands, the evaluation scripts) on lists written by process_data:
#     $DATA_ROOT/lists/ucf101/ucf101_rgb_{train,val}_split_1.txt   $DATA_ROOT/lists/hmdb51/hmdb51_rgb_{train,val}_split_1.txt
#   Pretraining stops at the epoch of the README's released checkpoints (HMDB51 48, UCF101 45; the LR schedule is
#   unchanged before epoch 120), overridable with PRETRAIN_EPOCHS; fine-tuning runs the README's 45 epochs.
set -euo pipefail
SMOKE=${SMOKE:-0}
DATA_ROOT=${DATA_ROOT:-data}
OUT=${OUT:-runs}
PY=${PY:-python}
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA_ROOT=$(mkdir -p "$DATA_ROOT" && cd "$DATA_ROOT" && pwd)
mkdir -p "$OUT/vtdl" && RUN=$(cd "$OUT/vtdl" && pwd)
export TQDM_DISABLE=${TQDM_DISABLE:-1} PYTHONUNBUFFERED=1
die() { echo "reproduce_vtdl: error: $*" >&2; exit 2; }
SUMMARY="$RUN/summary.tsv"
START=$(date +%s)

if [ "$SMOKE" = 1 ]; then
  SYN="$DATA_ROOT/synth"
  [ -f "$SYN/lists/ucf101/ucf101_rgb_train_split_1.txt" ] || PY="$PY" bash "$REPO/scripts/prepare_synth.sh" "$SYN"
  if [ ! -f "$SYN/lists/hmdb51/hmdb51_rgb_train_split_1.txt" ]; then
    # HMDB51 split files (<class>_test_split1.txt: '<video> 1' train, '<video> 2' test) from synthetic split 1
    "$PY" - "$SYN/raw/ucfTrainTestlist" "$SYN/raw/hmdb51_splits" <<'PYEOF'
import collections, os, sys
src, dst = sys.argv[1:3]
os.makedirs(dst, exist_ok=True)
per_class = collections.defaultdict(list)
for list_name, tag in (("trainlist01.txt", 1), ("testlist01.txt", 2)):
    with open(os.path.join(src, list_name), newline="") as handle:
        for line in handle.read().splitlines():
            if line.strip():
                class_name, video = line.split()[0].split("/")
                per_class[class_name].append(f"{video} {tag}")
for class_name, rows in per_class.items():
    with open(os.path.join(dst, f"{class_name}_test_split1.txt"), "w") as handle:
        handle.write("\n".join(rows) + "\n")
PYEOF
    "$PY" -m process_data.write_splits --dataset hmdb51 --split_dir "$SYN/raw/hmdb51_splits" \
      --frame_root "$SYN/frames" --out "$SYN/lists" --splits 1 --formats vtdl --quiet
  fi
  LISTS="$SYN/lists"
  TOY="--data_length 8 --spatial_size 32 --iters_per_epoch 3 --no_tensorboard"
  PRE_FLAGS="$TOY --epochs 1 --batch_size 4 --nce_k 64 --stride 2 --num_workers 2 --print_freq 1 --save_freq 1"
  FT_FLAGS="$TOY --epochs 1 --batch_size 4 --workers 2 --print-freq 1"
  TEST_FLAGS="--data_length 8 --spatial_size 32 --clip_size 8 --test_clips 3 --workers 2"
else
  LISTS="$DATA_ROOT/lists"
  PRE_FLAGS=""; FT_FLAGS=""; TEST_FLAGS=""
fi
for ds in ucf101 hmdb51; do
  for split in train val; do
    f="$LISTS/$ds/${ds}_rgb_${split}_split_1.txt"
    [ -f "$f" ] || die "missing $f (write it with python -m process_data.write_splits --formats vtdl; see vtdl/README.md)"
  done
done

printf "dataset\tins_loss\tins_prob\tbest_prec1\tlast_val_top1\ttest_top1\ttest_top5\ttest_mean_class\n" > "$SUMMARY"
for ds in ucf101 hmdb51; do
  if [ "$ds" = hmdb51 ]; then EPOCH=${PRETRAIN_EPOCHS:-48}; else EPOCH=${PRETRAIN_EPOCHS:-45}; fi
  [ "$SMOKE" = 1 ] && EPOCH=1
  PT="$RUN/$ds/pretrain"; FT="$RUN/$ds/finetune"; TEST="$RUN/$ds/test"
  echo "== VTDL $ds: pretraining ($EPOCH epochs) -> $PT"
  # the original script's command, with the run folder, the stop epoch and (SMOKE) the toy size appended
  # shellcheck disable=SC2086
  VTDL_LISTS="$LISTS" PY="$PY" bash "$REPO/vtdl/scripts/$ds.sh" \
    --output_dir "$PT" --epochs "$EPOCH" $PRE_FLAGS
  WEIGHTS="$PT/ckpt_epoch_$EPOCH.pth"
  [ -f "$WEIGHTS" ] || WEIGHTS="$PT/current.pth"
  echo "== VTDL $ds: fine-tuning from $WEIGHTS -> $FT"
  # shellcheck disable=SC2086
  WEIGHTS="$WEIGHTS" VTDL_LISTS="$LISTS" PY="$PY" bash "$REPO/vtdl/scripts/finetune/${ds}_i3d_ft.sh" \
    --output_dir "$FT" $FT_FLAGS
  echo "== VTDL $ds: 10-clip video-level test -> $TEST"
  # shellcheck disable=SC2086
  WEIGHTS="$FT/fine_tune_rgb_model_latest.pth.tar" VTDL_LISTS="$LISTS" PY="$PY" \
    bash "$REPO/vtdl/scripts/evaluation/${ds}_i3d_eval.sh" --output_dir "$TEST" $TEST_FLAGS
  "$PY" - "$ds" "$PT/log.txt" "$FT/log.txt" "$TEST/test_results.json" >> "$SUMMARY" <<'PYEOF'
import json, sys
ds, pt_log, ft_log, test_json = sys.argv[1:5]
pt = [json.loads(line) for line in open(pt_log)][-1]
ft = [json.loads(line) for line in open(ft_log)][-1]
test = json.load(open(test_json))
# best_prec1: the README's figure (best epoch's single-clip val top-1, selected on the val list = the test split)
print("\t".join([ds, f"{pt['ins_loss']:.4f}", f"{pt['ins_prob']:.4f}", f"{ft.get('best_prec1', float('nan')):.2f}",
                 f"{ft.get('val_top1', float('nan')):.2f}", f"{test['top1']:.2f}", f"{test['top5']:.2f}",
                 f"{test['mean_class']:.2f}"]))
PYEOF
done
echo "== VTDL summary (ins_prob is the original's mean positive logit l_pos/T, not a probability; $(( $(date +%s) - START )) s)"
column -t -s $'\t' "$SUMMARY" 2>/dev/null || cat "$SUMMARY"
