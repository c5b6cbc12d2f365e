#!/usr/bin/env bash
# GPU readiness in one call (<= 8 min on one GPU): train-step s/iter fp32 / bf16 / bf16+channels_last and TFLOP/s per
# method at the papers' per-GPU batch, loader clips/s per worker vs the step's clips/s, a 1-GPU NCCL DDP smoke run.
#   bench/gpu_check.sh [--device cuda|cpu] [--tiny] [--methods ...] [--out FILE]      (JSON -> bench/gpu_check.json)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
cd "$ROOT"
exec "$PY" bench/gpu_check.py "$@"
