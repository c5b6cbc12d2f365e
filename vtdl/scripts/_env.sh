# Sourced by every VTDL script: paths, the interpreter and a one-line check for missing lists.
#   DATA_ROOT   data root (default <repo>/data); lists are read from $DATA_ROOT/lists/<dataset>/ as written by
#               process_data (override the folder with VTDL_LISTS)
#   PY          python interpreter (default: the repo's .venv if present, else python)
# Scripts run from vtdl/ (the original ran from src/), so ../experiments is <repo>/experiments.
VTDL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(dirname "$VTDL_DIR")"
DATA_ROOT="${DATA_ROOT:-$REPO_DIR/data}"
LISTS="${VTDL_LISTS:-$DATA_ROOT/lists}"
if [ -z "${PY:-}" ]; then
  if [ -x "$REPO_DIR/.venv/bin/python" ]; then PY="$REPO_DIR/.venv/bin/python"; else PY=python; fi
fi
need_file() {
  for f in "$@"; do
    if [ ! -f "$f" ]; then
      echo "error: not found: $f (set DATA_ROOT so that \$DATA_ROOT/lists/<dataset>/ holds the lists; see vtdl/README.md)" >&2
      exit 2
    fi
  done
}
cd "$VTDL_DIR"
