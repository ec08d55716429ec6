# The venv is created on first use, so `make test` works on a fresh clone.
# When a virtual environment is already active, it is used instead.
PY ?= python3
ifdef VIRTUAL_ENV
  VENV := $(VIRTUAL_ENV)
else
  VENV := .venv
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.charrnn-installed

.PHONY: install test lint demo bench docs docs-serve clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)  ## install charrnn and its test tools into the venv

test: $(STAMP)  ## run the whole test suite
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## byte-compile everything and run ruff when it is installed
	$(BIN)/python -m compileall -q charrnn tests bench
	@if $(BIN)/python -m ruff --version >/dev/null 2>&1; then $(BIN)/python -m ruff check charrnn tests bench; \
	else echo "ruff not installed (pip install ruff); compile check only"; fi

DEMO_MINUTES ?= 2
demo: $(STAMP)  ## train briefly on the bundled corpus, then sample from it (runs/demo is redone)
	rm -rf runs/demo
	$(BIN)/charrnn train --minutes $(DEMO_MINUTES) --out runs/demo
	$(BIN)/charrnn sample --checkpoint runs/demo --prime "ROMEO:" --length 400 --seed 1
	@echo

bench: $(STAMP)  ## speed table: charrnn vs the machine's matmul rate (and PyTorch if installed)
	$(BIN)/python bench/bench.py

docs: $(STAMP)  ## build the documentation site into site/ (strict: a broken link or missing page fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

docs-serve: $(STAMP)  ## serve the documentation at http://127.0.0.1:8000, rebuilt on every edit
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve

clean:
	rm -rf .venv build *.egg-info .pytest_cache site
