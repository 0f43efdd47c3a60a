# Every target sets itself up: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SWEEP ?= sweeps/lr_optimizer.yaml
AGENTS ?= 2
STORE ?= .sweepmap
GPU_SWEEP ?= sweeps/gestures_hidden_dropout.yaml
# One cell's replicates, the runs a stack takes together (dropout 0: a 2-layer GRU with dropout
# between its layers packs its batches, which a stack cannot); sized for a short device loan.
GPU_CELL ?= hidden_size=64,dropout=0.0
GPU_RUNS ?= 48
GPU_EPOCHS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install run test test-slow lint format bench bench-peers bench-gpu bench-gestures lock clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the locked versions

run: $(STAMP)  ## run the lr_optimizer study locally and write its one-page report
	$(PY) -m localsweep run $(SWEEP) --agents $(AGENTS) --store $(STORE)
	$(PY) -m analysis report --store $(STORE) --yaml $(SWEEP)

test: $(STAMP)  ## the default test suite (offline, CPU, a few minutes)
	$(PY) -m pytest

test-slow: $(STAMP)  ## the slow tests too (crash windows, random kills, stalled agent, fill, publish, sync, scans, stacks, peers)
	$(PY) -m pytest -m ""

lint: $(STAMP)  ## ruff check, ruff format --check, mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)  ## throughput of the local runner against one process per run
	$(PY) -m bench.sweep_throughput --sweep $(SWEEP) --out bench/results.md

bench-peers: $(STAMP)  ## sweepmap (one at a time, and --stack 6) against Optuna on one grid
	$(PY) -m bench.peers --sweep $(SWEEP) --agents $(AGENTS) --rounds 3 --stack 6 --out bench/results.md

bench-gpu: $(STAMP)  ## runs/min on one GPU: 1, 2, 4, 8 agents (fp32, bf16) against stacks of 3, 12, 48 (gestures)
	$(PY) -m bench.packing --sweep $(GPU_SWEEP) --cell $(GPU_CELL) --runs $(GPU_RUNS) \
	  --epochs $(GPU_EPOCHS) --agents 1,2,4,8 --stack 3,12,48 --bf16 --device cuda \
	  --out bench/packing.md

# The course's packages cannot share .venv (bench/course.in says why): their own venv.
COURSE_VENV := .venv-course
COURSE_STAMP := $(COURSE_VENV)/.installed-stamp

$(COURSE_STAMP): bench/course.lock
	@test -x $(COURSE_VENV)/bin/python || $(PYTHON) -m venv $(COURSE_VENV)
	$(COURSE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/course.lock
	@touch $(COURSE_STAMP)

bench-gestures: $(STAMP) $(COURSE_STAMP)  ## s/epoch of the gestures GRU against the course's pipeline (set SWEEPMAP_GESTURES_ZIP)
	SWEEPMAP_GESTURES_ZIP="$(SWEEPMAP_GESTURES_ZIP)" $(PY) -m bench.gestures_epoch --epochs 20 --rounds 3 \
	  --course-python $(COURSE_VENV)/bin/python --out bench/results.md

lock: $(STAMP)  ## re-resolve requirements.lock from pyproject.toml
	$(VENV)/bin/pip-compile -q --extra dev --extra bench --strip-extras --no-emit-index-url \
	  --no-emit-find-links --no-header --no-annotate -o requirements.lock pyproject.toml
	sed -i 's/^torch==\(.*\)+cpu$$/torch==\1/' requirements.lock

clean:  ## remove the venvs, the local store and the reports
	rm -rf $(VENV) .venv-course $(STORE) reports wandb .pytest_cache .mypy_cache .ruff_cache
