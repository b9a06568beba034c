#!/usr/bin/env bash
# Schema-driven fuzzing of the JSON API: starts the fake LLM and confab (embedded PostgreSQL in
# a temporary data dir), signs a user in, and runs schemathesis against /api/openapi.json with
# that user's token: every operation, `API_FUZZ_EXAMPLES` cases each (default 20), checking that
# no input gets a 5xx and every answer matches the document. Exits non-zero on any finding.
# Usage: tests/api/fuzz.sh path/to/confab path/to/fake_llm path/to/schemathesis
set -euo pipefail
bin="$(realpath "$1")"
fake="$(realpath "$2")"
schemathesis="$(realpath "$3")"
examples="${API_FUZZ_EXAMPLES:-20}"

data="$(mktemp -d)"
chmod o+x "$data"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
llm_port="$(free_port)"
FAKE_LLM_TOKEN_DELAY_MS=1 "$fake" --port "$llm_port" >"$data/fake_llm.log" 2>&1 &
fake_pid=$!
# The fuzzer signs up and sends many requests from one address: the per-address caps are
# lifted here (they have their own tests); everything else is as shipped.
OPENAI_BASE_URL="http://127.0.0.1:$llm_port/v1" OPENAI_API_KEY="sk-fuzz-test" \
CONFAB_LOG=warn CONFAB_AUTH__BCRYPT_COST=4 CONFAB_AUTH__REGISTRATIONS_PER_HOUR_PER_ADDRESS=100000 \
CONFAB_AUTH__LOGIN_ATTEMPTS_PER_MINUTE=100000 CONFAB_CHAT__ANSWERS_PER_MINUTE_PER_USER=100000 \
CONFAB_SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE=1000000 CONFAB_SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE_PER_ADDRESS=1000000 \
"$bin" --data-dir "$data" --port "$port" >"$data/confab.log" 2>&1 &
pid=$!
stop() {
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  kill "$fake_pid" 2>/dev/null || true
  wait "$fake_pid" 2>/dev/null || true
  rm -rf "$data"
}
trap stop EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
  curl -sf "$base/health" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/confab.log" >&2; exit 1; }
  sleep 0.2
done
password="fuzz pass $RANDOM 1"
curl -sf -X POST "$base/api/auth/register" -H 'Content-Type: application/json' \
  -d "{\"email\":\"fuzz@example.com\",\"password\":\"$password\"}" >/dev/null
token="$(curl -sf -X POST "$base/api/auth/login" -H 'Content-Type: application/json' \
  -d "{\"email\":\"fuzz@example.com\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
# The fuzzer must not end its own session (or every later request is a 401 that tests nothing).
set +e
"$schemathesis" run "$base/api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "$examples" --seed "${API_FUZZ_SEED:-1}" \
  --exclude-path /api/auth/logout --exclude-path /api/auth/logout-everywhere \
  --exclude-path /api/auth/password \
  --request-timeout 30 --no-color --warnings off
status=$?
set -e
# An error in confab's log is a finding too. actix's own line for a request it cannot parse
# (schemathesis probes whether headers may hold a NUL byte) is about the client, not confab.
errors="$(grep -F 'ERROR' "$data/confab.log" | grep -vF 'request parse error' || true)"
if [ -n "$errors" ]; then
  echo "confab logged errors during the run:" >&2
  echo "$errors" | head -20 >&2
  status=1
fi
exit "$status"
