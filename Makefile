# confab — the two commands that matter: `make run` and `make test`.
CARGO ?= cargo
PORT ?= 8080
# Where the integration tests keep their shared cluster: $CARGO_TARGET_TMPDIR/confab-test-pg.
TARGET = $(or $(CARGO_TARGET_DIR),target)
TEST_CLUSTER = $(TARGET)/tmp/confab-test-pg

.PHONY: run test deps test-deps venv build release lint unit browser-test api-fuzz api-fuzz-short screenshots fake-llm bench code-order soak fuzz vendor clean

## Build and start confab on http://127.0.0.1:$(PORT) with its own PostgreSQL under ./data.
run: deps
	$(CARGO) run --release --bin confab -- serve --port $(PORT)

## Everything CI checks: formatting, lints, unit + integration tests (with the official openai
## Python SDK against /v1, from the venv), the browser journeys, a short schema-driven fuzz.
test: test-deps lint venv unit browser-test api-fuzz-short

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

## .venv/: the Python packages the tests use (the official `openai` SDK, schemathesis), at the
## versions tests/requirements.txt pins. Made once; made again when the requirements change.
VENV = .venv
venv: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

build:
	$(CARGO) build --bin confab

release:
	$(CARGO) build --release --bin confab

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings

## Unit and integration tests of every crate (a private PostgreSQL cluster under target/ is
## started for them and left running between test binaries; stopped at the end, with the same
## code that started it).
unit:
	$(CARGO) test --workspace --all-targets
	@$(CARGO) run -q -p confab-embedded-pg --bin pg-cluster -- stop $(TEST_CLUSTER)

## The browser journey in headless Chromium against a freshly started confab.
browser-test:
	$(CARGO) build --bin confab --example fake_llm
	tests/browser/run.sh $(TARGET)/debug/confab $(TARGET)/debug/examples/fake_llm

## Schema-driven fuzzing of the JSON API (schemathesis against /api/openapi.json, signed in):
## 200 cases per operation; no input may get a 5xx, every answer must match the document.
api-fuzz: venv
	$(CARGO) build --bin confab --example fake_llm
	API_FUZZ_EXAMPLES=200 tests/api/fuzz.sh $(TARGET)/debug/confab $(TARGET)/debug/examples/fake_llm $(VENV)/bin/schemathesis

## The same, 10 cases per operation (part of `make test`).
api-fuzz-short: venv
	$(CARGO) build --bin confab --example fake_llm
	API_FUZZ_EXAMPLES=10 tests/api/fuzz.sh $(TARGET)/debug/confab $(TARGET)/debug/examples/fake_llm $(VENV)/bin/schemathesis

## docs/screenshots/: the main pages at phone and desktop size, light and dark, against a fresh
## confab and the fake LLM (started the way the browser journeys start them).
screenshots:
	$(CARGO) build --bin confab --example fake_llm
	TESTS=screenshots.mjs tests/browser/run.sh $(TARGET)/debug/confab $(TARGET)/debug/examples/fake_llm

## A fake OpenAI-compatible server on :8090, to try confab without an API key.
fake-llm:
	$(CARGO) run --example fake_llm -- --port 8090

## The chat load generator (release build): bursts of N = 200 and N = 1000 streams to the fake alone,
## through a bare relay and through confab, side by side (docs/measurements.md).
bench:
	scripts/bench.sh

## linker/code-order.txt again: the functions an ordinary run uses (under valgrind's callgrind),
## which the release link places together (build.rs; docs/measurements.md, "Code placed by use").
code-order:
	scripts/code-order.sh

## The fault-injection soak at full size: 1,000 answers under upstream faults while the embedded
## PostgreSQL is killed twice and frozen once (make test runs 40 of them).
soak:
	SOAK_ANSWERS=$${SOAK_ANSWERS:-1000} $(CARGO) test --test it soak -- --nocapture

## Each fuzz target for FUZZ_SECONDS (libFuzzer through cargo fuzz; stable toolchains get
## RUSTC_BOOTSTRAP=1 for its -Z flags).
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for target in responses_stream chat_completions_stream markdown settings; do \
	  mkdir -p work/$$target && \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$target work/$$target corpus/$$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

vendor:
	scripts/vendor.sh

clean:
	$(CARGO) clean
	rm -rf tests/browser/node_modules $(VENV)
