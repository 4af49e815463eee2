# Quickstart: `make up` serves the sample app on http://127.0.0.1:8000, `make test` runs the suite.
# Both create .venv and install on first use; later runs reuse it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/quickstart.yaml
# test processes (pytest-xdist, one test file each at a time): much of the suite waits on
# subprocesses and servers, so two keep a 2-core machine busy; each one loads its own models
TEST_WORKERS ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export MLFLOW_DISABLE_TELEMETRY := true
export RAGAS_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install up test lint typecheck importlint check clean

install: $(STAMP)

# torch==2.13.0 first: that is the CPU build; anything unpinned would pull CUDA wheels.
# Then one joint resolve of the package, its extras and the dev tools under constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	$(BIN)/python scripts/check_install.py
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/llmops up $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check llmops tests bench scripts
	$(BIN)/ruff format --check llmops tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

importlint: $(STAMP)
	$(BIN)/lint-imports

check: lint typecheck importlint test

clean:
	rm -rf $(VENV) .llmops
