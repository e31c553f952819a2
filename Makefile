# atrest: the two commands a newcomer needs are `make demo` and `make test`.
# Both create what they need (.venv for the code and tests, .venv-tools for the
# SAM/template tooling) from pinned requirement files.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.12; use it locally too when it can be found (pyenv keeps
# it off PATH unless selected), else any python3 >= 3.11 (the MPL's minimum).
PYTHON ?= $(shell for p in python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) /usr/bin/python3.12 python3.13 python3.11 python3; do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then command -v $$p; break; fi; done)
VENV := .venv
TOOLS := .venv-tools
BIN := $(VENV)/bin
# `sam build` looks for the runtime's interpreter (python3.12) on PATH.
PYDIR := $(dir $(PYTHON))
export PATH := $(CURDIR)/$(BIN):$(PYDIR):$(PATH)

.PHONY: help venv tools test test-fast demo demo-rekey local-up bench bench-scale build lint clean

help:
	@echo "make demo   - run the encrypt pipeline end to end on the embedded AWS emulator"
	@echo "make demo-rekey - switch the KMS key on existing data (atrest rekey) on the emulator"
	@echo "make test   - run every test (unit, integration on the emulator, template checks)"
	@echo "make bench  - run the benchmarks in bench/ (not part of make test)"
	@echo "make bench-scale - operator views against the size of the archive (bench/scale.md)"
	@echo "make build  - sam build (no container, offline)"

$(BIN)/.installed: requirements-dev.txt constraints.txt layers/atrest/requirements.txt pyproject.toml cli/pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: need Python >= 3.11 (3.12 preferred); install it and retry" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	# The library (layers/atrest, what the Lambda layer ships) and the CLI package (cli/).
	$(BIN)/python -m pip install --quiet --no-deps -e . -e cli
	@touch $@

$(TOOLS)/.installed: requirements-tools.txt
	@test -n "$(PYTHON)" || { echo "error: need Python >= 3.11 (3.12 preferred); install it and retry" >&2; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r requirements-tools.txt
	@touch $@

venv: $(BIN)/.installed
tools: $(TOOLS)/.installed

# Test workers (pytest-xdist): each runs its own emulator and stack, and takes whole files
# (module fixtures stay in one process). Most tests wait on queues and clocks, so two
# workers on two cores nearly halve the time; TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)

test: venv tools
	ATREST_TOOLS_BIN=$(CURDIR)/$(TOOLS)/bin $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# Unit and integration tests only, without the template tooling.
test-fast: venv
	$(BIN)/python -m pytest $(XDIST) tests/unit tests/integration cli/tests $(PYTEST_ARGS)

demo: venv
	$(BIN)/atrest demo

# Bring your own key: re-wrap every branch key under a second KMS key (docs/byok.md).
demo-rekey: venv
	$(BIN)/python -m atrest_cli.demos.rekey

local-up: venv
	$(BIN)/atrest local up

# BENCH_ARGS: --quick (smoke run, ~2 min), --big (adds 1 GiB peak RSS runs), --runs N.
bench: venv
	$(BIN)/python -m pip install --quiet --no-deps -r bench/requirements.txt
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Operator views at 10,000 and 200,000 records, and the busiest partition key of a 10,000-object
# run (~15 min; writes bench/scale.md; docs/scale.md explains it).
bench-scale: venv
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

build: tools
	$(TOOLS)/bin/sam build --cached

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache
