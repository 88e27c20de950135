# omnivox: set up, serve, test. Everything lives in ./.venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# llama-cpp-python builds from source; a portable build runs on any x86-64 with AVX2.
# (A native build was no faster for the default chat model on a 2-core AVX-512 VM, and
# on a CPU with AMX in a VM that does not enable AMX it crashes in its first matmul.)
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
ARGS ?=

.PHONY: setup setup-test system-deps serve test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

# The omni engine's tests need torch: the CPU build is pinned first, so that the extra's
# torch requirement is already met and pip never pulls a multi-GB CUDA build.
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test,omni]'
	touch $@

# The last 1.x SDK, for tests/api/test_sdk_v1.py: installed apart from the current one (the
# test puts this folder first on its client's path), so that no test installs anything.
SDK_V1 := 1.109.1
$(VENV)/sdk-v1/.openai-$(SDK_V1): | $(BIN)/python
	rm -rf $(VENV)/sdk-v1
	$(BIN)/pip install --quiet --no-warn-conflicts --target $(VENV)/sdk-v1 'openai==$(SDK_V1)'
	touch $@

# JavaScript clients the tests drive (the Vercel AI SDK, the OpenAI Node SDK), pinned by
# tests/node/package-lock.json.
NODE_TESTS := tests/node
$(NODE_TESTS)/node_modules/.installed: $(NODE_TESTS)/package-lock.json
	cd $(NODE_TESTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test $(VENV)/sdk-v1/.openai-$(SDK_V1) $(NODE_TESTS)/node_modules/.installed system-deps

# ffmpeg decodes test audio independently of omnivox; espeak-ng speaks test questions in
# a voice other than the server's; redis-server backs the shared rate-limit tests.
system-deps:
	@command -v ffmpeg >/dev/null && command -v espeak-ng >/dev/null && command -v redis-server >/dev/null && command -v chromium >/dev/null || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg espeak-ng redis-server chromium; }

serve: setup
	$(BIN)/omnivox serve $(ARGS)

test: setup-test
	$(BIN)/pytest $(ARGS)

lint: setup-test
	$(BIN)/ruff check src tests bench devtools
	$(BIN)/ruff format --check src tests bench devtools
	$(BIN)/mypy src

bench: setup-test
	$(BIN)/python -m bench.api_overhead

clean:
	rm -rf $(VENV) $(NODE_TESTS)/node_modules .pytest_cache .mypy_cache .ruff_cache
