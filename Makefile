# Two commands set everything up on a fresh machine:
#   make demo   -> .venv with diptych[all], then `diptych compare mnist1d-cnn`
#   make test   -> .venv with diptych[all,dev], then ruff (lint, format) and the test suite (doctests included)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test venv clean

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
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
