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

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check btk plugins examples benchmarks tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs
