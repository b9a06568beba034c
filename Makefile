# confab — the two commands that matter: `make run` and `make test`.
CARGO ?= cargo
PORT ?= 8080

.PHONY: run test deps test-deps build release lint unit browser-test fake-llm bench vendor clean

## Build and start confab on http://127.0.0.1:$(PORT) with its own PostgreSQL under ./data.
run: deps
	$(CARGO) run --release --bin confab -- serve --port $(PORT)

## Everything CI checks: formatting, lints, unit + integration tests, the browser journey.
test: test-deps lint unit browser-test

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

build:
	$(CARGO) build --bin confab

release:
	$(CARGO) build --release --bin confab

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings

## Unit and integration tests (a private PostgreSQL cluster under target/ is started for them).
unit:
	$(CARGO) test --all-targets
	@scripts/test-cluster.sh stop

## The browser journey in headless Chromium against a freshly started confab.
browser-test:
	$(CARGO) build --bin confab --example fake_llm
	tests/browser/run.sh target/debug/confab target/debug/examples/fake_llm

## A fake OpenAI-compatible server on :8090, to try confab without an API key.
fake-llm:
	$(CARGO) run --example fake_llm -- --port 8090

## The chat load generator (release build): N = 100 and N = 1000 streams through confab vs the fake alone.
bench:
	scripts/bench.sh

vendor:
	scripts/vendor.sh

clean:
	$(CARGO) clean
	rm -rf tests/browser/node_modules
