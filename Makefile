# The two commands a newcomer needs are in README.md; this file is where they live.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.labelplan-installed

.PHONY: test test-unit lint install demo

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## The whole suite: pure unit tests and integration tests against a real Label Studio 1.23.2.
test: $(STAMP)
	$(BIN)/python -m pytest

## Only the pure tests (no server): fast feedback while editing the core.
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not labelstudio"

## The demo: Label Studio + ML backend + sync on the example dataset (Ctrl-C stops it all).
## make demo ARGS=--simulate-annotators  also drives three simulated annotators.
demo: $(STAMP) examples/emoji/data/items.jsonl
	$(BIN)/labelplan demo $(ARGS)

examples/emoji/data/items.jsonl: $(STAMP) examples/emoji/build.py
	$(BIN)/python examples/emoji/build.py

lint: $(STAMP)
	$(BIN)/ruff check plugin backend tests examples benchmarks
	$(BIN)/ruff format --check plugin backend tests examples benchmarks
