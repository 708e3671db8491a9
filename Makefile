# The README's commands. Rust builds go to a cache outside the clone so repeat runs are fast.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/interleaf-target
PYTHON ?= python3
DEMO_OUT ?= interleaf-demo

.PHONY: install install-test demo test test-rust test-python bench fixtures sample-data

install:
	$(PYTHON) -m pip install --quiet .

install-test:
	$(PYTHON) -m pip install --quiet ".[test]"

## Install and run the main job on the bundled sample.
demo: install
	interleaf demo --out $(DEMO_OUT)

## Install and run every test: Rust core unit tests, then the Python suite.
test: install-test test-rust test-python

test-rust:
	cargo test --locked -p interleaf-core

test-python:
	$(PYTHON) -m pytest tests -q

bench: install
	$(PYTHON) -m pip install --quiet ".[bench]"
	$(PYTHON) benches/shard_read.py

sample-data:
	$(PYTHON) scripts/make_sample_data.py
