# The two commands a fresh machine needs: `make demo` (the main job) and `make test`.
# `make lint` runs ruff, mypy and the import contracts (lint-imports); `make test-fast` skips the tests marked slow (real training).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint install clean

$(BIN)/btk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(BIN)/btk

install: $(BIN)/btk

demo: install
	$(BIN)/btk run

# Worker processes (pytest-xdist: one per CPU core, at most 4), whole files to a worker so a file's
# shared fixtures (a PACS, a trained run) start once; the slowest tests listed at the end.
test: install
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --durations=15

test-fast: install
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile -m "not slow"

lint: install
	$(BIN)/ruff check btk plugins examples benchmarks tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs
