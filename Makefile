# Two commands set everything up on a fresh machine:
#   make demo   -> .venv with diptych[all], then `diptych compare mnist1d-cnn`
#   make test   -> .venv with diptych[all,dev], then ruff (lint, format) and the fast test tier (at most 5 min)
#   make test-full -> the full tier: every task's full-budget target in both twins, kill-and-resume,
#                     distributed, the whole cookbook, the port pitfalls, the long fuzz profile
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The fast tier runs in this many pytest-xdist workers, a test file to each (module fixtures train once):
# XLA compiles and interpreters start on one core each, so two workers on 2 cores take ~0.7x the time of one.
WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0))))")

.PHONY: demo test test-full venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $@ $(VENV)/.installed-all

venv: $(VENV)/.installed-all

demo: $(VENV)/.installed-all
	$(BIN)/diptych compare mnist1d-cnn --out runs/demo

test: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/python -m pytest -m "not full" -n $(WORKERS) --dist loadfile

# The targets' run.json files are summed up in runs/test-full/results.md (and .json).
test-full: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m full

clean:
	rm -rf $(VENV) runs
