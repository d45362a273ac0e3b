# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
# Each creates the project's own virtual environment (.venv) on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest workers; the reference machine has 2 cores.
JOBS   ?= 2

.PHONY: demo test lint env clean help

help:
	@echo "make demo   - set up .venv and run the main job on the real data"
	@echo "make test   - set up .venv and run the whole test suite"
	@echo "make env    - only set up .venv (training + edge + dev extras)"
	@echo "make clean  - remove .venv and build leftovers"

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

env: $(STAMP)

demo: $(STAMP)
	$(BIN)/ppg-edge demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --durations=15

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
