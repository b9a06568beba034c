#!/usr/bin/env bash
# Starts the fake LLM and confab (with its embedded PostgreSQL in a temporary data dir) and runs
# the browser journeys against them in headless Chromium.
# Usage: tests/browser/run.sh path/to/confab path/to/fake_llm
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(realpath "$1")"
fake="$(realpath "$2")"
cd "$here"
{ [ -d node_modules/playwright-core ] && [ -d node_modules/axe-core ]; } || npm ci --no-audit --no-fund --loglevel=error

data="$(mktemp -d)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
llm_port="$(free_port)"
# A page on this other origin may call confab's API (CORS); cors.test.mjs serves it.
cors_port="$(free_port)"
export CORS_ALLOWED_PORT="$cors_port"
# Slow enough that a person (or the test) can watch, stop and reload mid-answer.
FAKE_LLM_TOKEN_DELAY_MS=60 FAKE_LLM_FIRST_TOKEN_DELAY_MS=200 "$fake" --port "$llm_port" >"$data/fake_llm.log" 2>&1 &
fake_pid=$!
export JOURNEY_PASSWORD="journey pass $RANDOM 1"
# Debug logging, so the check below sees everything confab could ever log. Every journey signs
# up from 127.0.0.1: more than the default 10 sign-ups per hour per address.
OPENAI_BASE_URL="http://127.0.0.1:$llm_port/v1" OPENAI_API_KEY="sk-browser-test" \
CONFAB_SERVER__CORS_ORIGINS="http://127.0.0.1:$cors_port" \
RUST_LOG=debug CONFAB_AUTH__BCRYPT_COST=4 CONFAB_AUTH__REGISTRATIONS_PER_HOUR_PER_ADDRESS=1000 "$bin" --data-dir "$data" --port "$port" >"$data/confab.log" 2>&1 &
pid=$!
stop() {
  # Ctrl-C, as a person would: confab stops its PostgreSQL before it exits.
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  kill "$fake_pid" 2>/dev/null || true
  wait "$fake_pid" 2>/dev/null || true
  rm -rf "$data"
}
trap stop EXIT

ready=""
for _ in $(seq 1 150); do
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then ready=1; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "confab did not become healthy; its log:" >&2
  cat "$data/confab.log" >&2
  exit 1
fi
CONFAB_URL="http://127.0.0.1:$port" node --test --test-concurrency=1 --test-reporter=spec ${TESTS:-*.test.mjs}

# Passwords, tokens, API keys and secrets never appear in logs.
leaks=0
for secret in "$JOURNEY_PASSWORD" "sk-browser-test" "$(cat "$data/jwt_secret")" "eyJ0eXAi" "eyJhbGci" "confab_session=" "confab_csrf=" "cfk_"; do
  if grep -qF -- "$secret" "$data/confab.log"; then
    echo "the log contains a secret (${secret:0:8}…):" >&2
    grep -F -- "$secret" "$data/confab.log" | head -3 >&2
    leaks=1
  fi
done
[ "$leaks" -eq 0 ] || exit 1
echo "log checked: no password, token, cookie or JWT secret in $(wc -l <"$data/confab.log") lines"
