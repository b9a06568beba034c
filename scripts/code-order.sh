#!/usr/bin/env bash
# Writes linker/code-order.txt: the functions a release confab runs in an ordinary life (start-up,
# sign-up, the pages, chat turns through the API to a provider over HTTPS and HTTP/2 and to one
# over plain HTTP/1.1, the page and the OpenAI-compatible API, and the rendering of answers with
# code, lists and tables), hottest first, which the release link places
# together at the start of the binary's code (build.rs). Run under valgrind's callgrind, which
# lists every function that ran, not only the sampled ones. See docs/measurements.md, "Code placed
# by use".
#
#   scripts/code-order.sh               build, train, write linker/code-order.txt
#   scripts/code-order.sh --check BIN   how many listed functions BIN has (a stale list only loses
#                                       its effect; the link never fails over it)
set -euo pipefail
self=$(realpath "$0")
root=$(dirname "$self")/..
ORDER=$root/linker/code-order.txt

text_symbols() { nm --defined-only "$1" | awk '$2 ~ /^[tTwW]$/ { print $3 }'; }

if [ "${1:-}" = "--check" ]; then
  bin=$(realpath "${2:?usage: $0 --check BIN}")
  listed=$(wc -l <"$ORDER")
  found=$(grep -cxFf <(text_symbols "$bin") "$ORDER" || true)
  echo "$found of $listed functions of linker/code-order.txt are in $bin"
  if [ $((found * 10)) -lt $((listed * 9)) ]; then
    echo "the list is stale (another compiler, other crate features, much changed code): run scripts/code-order.sh" >&2
  fi
  exit 0
fi

for tool in valgrind curl python3 nm openssl; do
  command -v $tool >/dev/null || { echo "needs $tool (valgrind: apt-get install valgrind)" >&2; exit 1; }
done
cd "$root"
# The fake LLM in a debug build of its own (the tests build it too): built with confab, the
# dependencies would get the dev-dependencies' features, and the functions' names would differ
# from those of the confab that ships.
cargo build --example fake_llm
cargo build --release --bin confab
target=${CARGO_TARGET_DIR:-target}
bin=$(realpath "$target/release/confab")
work=$(mktemp -d)
chmod 755 "$work" # as root, confab's PostgreSQL runs as `postgres`, which must reach the data dir
fake_port=18391 tls_port=18392 port=18381
fake='' tls_fake='' confab=''
cleanup() {
  # confab stops its PostgreSQL (in $work) before it exits: wait for it before removing the files.
  if [ -n "$confab" ]; then kill -TERM "$confab" 2>/dev/null || true; wait "$confab" 2>/dev/null || true; fi
  for pid in $fake $tls_fake; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# Two providers, as confab meets them: a hosted one over HTTPS and HTTP/2 (`openai`, the
# Responses API) and a local one over plain HTTP/1.1 (`openrouter`'s Chat Completions here). The
# TLS and HTTP/2 code is most of what an answer runs; untrained, it kept 4 MB more code resident.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=order-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
  -keyout "$work/ca.key" -out "$work/ca.pem"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.csr"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile <(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') \
  -out "$work/tls.pem"
"$target/debug/examples/fake_llm" --port $fake_port --token-delay-ms 5 --first-token-delay-ms 20 \
  >"$work/fake.log" 2>&1 &
fake=$!
"$target/debug/examples/fake_llm" --port $tls_port --token-delay-ms 5 --first-token-delay-ms 20 \
  --tls-cert "$work/tls.pem" --tls-key "$work/tls.key" >"$work/tls-fake.log" 2>&1 &
tls_fake=$!
OPENAI_API_KEY=fake OPENAI_BASE_URL=https://127.0.0.1:$tls_port/v1 CONFAB_LLM__CA_FILE="$work/ca.pem" \
  OPENROUTER_API_KEY=fake OPENROUTER_BASE_URL=http://127.0.0.1:$fake_port/v1 CONFAB_AUTH__BCRYPT_COST=4 \
  CONFAB_LOG=warn valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
  --callgrind-out-file="$work/callgrind.out" "$bin" --data-dir "$work/data" --port $port serve \
  >"$work/confab.log" 2>&1 &
confab=$!
base=http://127.0.0.1:$port
until curl -sf --max-time 5 "$base/health" >/dev/null; do
  if ! kill -0 $confab 2>/dev/null || ! kill -0 $fake 2>/dev/null || ! kill -0 $tls_fake 2>/dev/null; then
    cat "$work/confab.log" "$work/fake.log" "$work/tls-fake.log" >&2
    exit 1
  fi
  sleep 0.5
done

# A field of a JSON object, or of a list's first.
json() { python3 -c 'import json, sys; v = json.load(sys.stdin); print((v[0] if isinstance(v, list) else v)[sys.argv[1]])' "$1"; }
get() { curl -sf --max-time 60 "$@"; }
api() { get -H "authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
for page in / /login /register /static/app.css /static/app.js; do get -o /dev/null "$base$page"; done
get -XPOST "$base/api/auth/register" -H 'content-type: application/json' \
  -d '{"email":"order@example.com","password":"code order pass 1","display_name":"Order"}' >/dev/null
token=$(get -XPOST "$base/api/auth/login" -H 'content-type: application/json' \
  -d '{"email":"order@example.com","password":"code order pass 1"}' | json access_token)
project=$(api -XPOST "$base/api/projects" -d '{"name":"Code order"}' | json id)
agent=$(api "$base/api/projects/$project/agents" | json id)
# The fake answers `echo:` messages with the rest: an answer with a highlighted code block, a
# list and a table, as models write them.
markdown='echo:Here:\n\n```rust\nfn main() {\n    println!(\"hi\");\n}\n```\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |'
# A turn that must be answered by provider $2: without a fallback order confab would try the other
# provider when one fails, and the list would silently miss that one's code.
turn() {
  local out
  out=$(api -XPOST "$base/api/chat/agents/$agent" -H 'accept: text/event-stream' \
    -d "{\"message\":\"$1\"}") || out='(the request failed)'
  if ! grep -q "\"status\":\"complete\".*\"provider\":\"$2\"" <<<"$out"; then
    echo "a turn on $2 did not complete there: ${out: -400}" >&2
    cat "$work/confab.log" "$work/fake.log" "$work/tls-fake.log" >&2
    exit 1
  fi
}
for message in 'Hello there' "$markdown"; do turn "$message" openai; done
# The rest of the run (a turn, /v1 and the page's turn) over plain HTTP/1.1.
api -XPATCH "$base/api/agents/$agent" -d '{"provider":"openrouter"}' >/dev/null
turn 'Hello again' openrouter
model=$(api "$base/v1/models" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')
api -XPOST "$base/v1/responses" -d "{\"model\":\"$model\",\"input\":\"Hi\",\"stream\":true}" >/dev/null
api -XPOST "$base/v1/chat/completions" \
  -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}" >/dev/null
# The pages, signed in with the API's token as the session cookie, and a turn sent the way htmx
# sends it (the CSRF token doubled in cookie and header).
csrf=$(printf 'c%.0s' $(seq 64))
cookies="confab_session=$token; confab_csrf=$csrf"
page() { get -H "cookie: $cookies" "$@"; }
conversation=$(api "$base/api/conversations" | json id)
for path in / "/projects/$project" "/agents/$agent/chat" "/conversations/$conversation"; do
  page -o /dev/null "$base$path"
done
sent=$(page -XPOST -H "x-csrf-token: $csrf" -H 'hx-request: true' -H "origin: $base" \
  --data-urlencode 'message=A third turn, from the page' "$base/conversations/$conversation/messages")
stream=$(grep -o -m1 '/messages/[0-9a-f-]*/stream' <<<"$sent" || true)
[ -n "$stream" ] || { echo "the page's turn did not start an answer" >&2; exit 1; }
page -o /dev/null "$base$stream"
page -o /dev/null "$base/conversations/$conversation"
kill -TERM $confab
wait $confab || { echo "confab did not stop cleanly: $work/confab.log" >&2; cat "$work/confab.log" >&2; exit 1; }
confab=''

# Self cost per function of confab's own binary; a call's inclusive cost line is skipped, and so
# are addresses without a name and valgrind's "(below main)".
awk -v bin="$bin" '
  /^ob=/ { ours = (substr($0, 4) == bin); next }
  /^fn=/ { fn = substr($0, 4); sub(/\047[0-9]+$/, "", fn); if (ours) cost[fn] += 0; next }
  /^calls=/ { call = 1; next }
  /^[0-9]/ { if (call) { call = 0 } else if (ours) { cost[fn] += $2 }; next }
  END { for (fn in cost) if (fn !~ /^0x|[ ()]/) print cost[fn], fn }
' "$work/callgrind.out" | LC_ALL=C sort -k1,1nr -k2 | awk '{ print $2 }' >"$work/order"
count=$(wc -l <"$work/order")
if [ "$count" -lt 1000 ]; then
  echo "only $count functions ran in $bin: the run went wrong ($work kept)" >&2
  kill "$fake" "$tls_fake" 2>/dev/null || true
  trap - EXIT
  exit 1
fi
mv "$work/order" "$ORDER"
echo "$count functions in linker/code-order.txt"
"$self" --check "$bin"
