# The two newcomer commands: `make demo` and `make test`. Both build .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0

.PHONY: setup setup-test demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages.
	$(BIN)/pip install -q torch==$(TORCH_VERSION)

setup: $(BIN)/python
	$(BIN)/pip install -q -e .

setup-test: $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	# fastai without its requirements (torchvision would replace the pinned torch): the AWD-LSTM oracle.
	$(BIN)/pip install -q --no-deps "fastai>=2.7,<2.9"

demo: setup
	$(BIN)/python -m lmforge.demo

test: setup-test
	$(BIN)/python -m pytest tests

bench: $(BIN)/python
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python benchmarks/pretrain_step.py --device cpu
	$(BIN)/python benchmarks/encode.py

clean:
	rm -rf $(VENV) runs
