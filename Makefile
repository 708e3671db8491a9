# The README's commands. Rust builds go to a cache outside the clone so repeat runs are fast.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/interleaf-target
PYTHON ?= python3
DEMO_OUT ?= interleaf-demo

.PHONY: install install-test demo test lint rust-tools test-rust test-python bench fuzz fixtures sample-data

install:
	$(PYTHON) -m pip install --quiet .

install-test:
	$(PYTHON) -m pip install --quiet ".[test]"

## Install and run the main job on the bundled sample.
demo: install
	interleaf demo --out $(DEMO_OUT)

## Install and run every test: the checks that keep the code in shape, the Rust core unit
## tests, then the Python suite.
test: install-test lint test-rust test-python

## ruff, rustfmt, clippy (warnings are errors) and the native module's stubs against the build.
lint: rust-tools
	$(PYTHON) -m ruff check python tests benches scripts
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	$(PYTHON) -m mypy.stubtest interleaf._native

## rustfmt and clippy ship with rustup's default profile; add them where a minimal one left them out.
rust-tools:
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

test-rust:
	cargo test --locked -p interleaf-core

test-python:
	$(PYTHON) -m pytest tests -q

bench: install
	$(PYTHON) -m pip install --quiet ".[bench]"
	$(PYTHON) benches/shard_read.py

## Fuzz decode + preprocess + stats + hash decodes (needs a nightly toolchain and cargo-fuzz); FUZZ_SECONDS=600.
FUZZ_SECONDS ?= 600
fuzz:
	mkdir -p fuzz/corpus/image
	cd fuzz && cargo +nightly fuzz run image corpus/image seeds -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1

## Rebuild the tiny ONNX model fixtures and their torch references (needs the export extra: torch).
fixtures:
	$(PYTHON) -m pip install --quiet ".[export]"
	$(PYTHON) scripts/make_test_models.py

sample-data:
	$(PYTHON) scripts/make_sample_data.py
