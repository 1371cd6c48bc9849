# The two commands a fresh machine needs: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/btk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(BIN)/btk

install: $(BIN)/btk

demo: install
	$(BIN)/btk run

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
