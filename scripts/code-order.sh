#!/usr/bin/env bash
# Writes linker/code-order.txt: the functions a release confab runs in an ordinary life (start-up,
# sign-up, the pages, a chat through the API and one through the page, the answers' rendering),
# hottest first, which the release link places together at the start of the binary's code
# (build.rs). Run under valgrind's callgrind, which lists every function that ran, not only the
# sampled ones. See docs/measurements.md, "Code placed by use".
#
#   scripts/code-order.sh            build, train, write linker/code-order.txt
#   scripts/code-order.sh --check BIN   how many listed functions BIN still has (a stale list only
#                                        loses its effect; the link never fails over it)
set -euo pipefail
cd "$(dirname "$0")/.."
ORDER=linker/code-order.txt

text_symbols() { nm --defined-only "$1" | awk '$2 == "t" || $2 == "T" { print $3 }'; }

if [ "${1:-}" = "--check" ]; then
  bin=${2:?usage: $0 --check BIN}
  listed=$(wc -l < "$ORDER")
  found=$(grep -cxFf <(text_symbols "$bin") "$ORDER" || true)
  echo "$found of $listed functions of $ORDER are in $bin"
  if [ $((found * 10)) -lt $((listed * 9)) ]; then
    echo "the list is stale (another compiler, or much changed code): run scripts/code-order.sh" >&2
  fi
  exit 0
fi

command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
# Two builds: with an example in the same build, the dependencies get the dev-dependencies'
# features too, and the functions' names differ from those of the confab that ships.
cargo build --release --example fake_llm
cargo build --release --bin confab
target=${CARGO_TARGET_DIR:-target}
bin=$(realpath "$target/release/confab")
work=$(mktemp -d)
chmod 755 "$work" # as root, confab's PostgreSQL runs as `postgres`, which must reach the data dir
fake_port=18391 port=18381
"$target/release/examples/fake_llm" --port $fake_port >/dev/null 2>&1 &
fake=$!
trap 'kill $fake ${confab:-} 2>/dev/null || true; rm -rf "$work"' EXIT
OPENAI_API_KEY=fake OPENAI_BASE_URL=http://127.0.0.1:$fake_port/v1 CONFAB_AUTH__BCRYPT_COST=4 \
  CONFAB_LOG=warn valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
  --callgrind-out-file="$work/callgrind.out" "$bin" --data-dir "$work/data" --port $port serve \
  >"$work/log" 2>&1 &
confab=$!
base=http://127.0.0.1:$port
for _ in $(seq 600); do
  curl -sf "$base/health" >/dev/null || ! kill -0 $confab 2>/dev/null && break
  sleep 0.5
done
curl -sf "$base/health" >/dev/null || { cat "$work/log" >&2; exit 1; }

# A field of a JSON object, or of a list's first.
json() { python3 -c 'import json, sys; v = json.load(sys.stdin); print((v[0] if isinstance(v, list) else v)[sys.argv[1]])' "$1"; }
api() { curl -sf -H "authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
for page in / /login /register /static/app.css /static/app.js; do curl -s -o /dev/null "$base$page"; done
curl -sf -XPOST "$base/api/auth/register" -H 'content-type: application/json' \
  -d '{"email":"order@example.com","password":"code order pass 1","display_name":"Order"}' >/dev/null
token=$(curl -sf -XPOST "$base/api/auth/login" -H 'content-type: application/json' \
  -d '{"email":"order@example.com","password":"code order pass 1"}' | json access_token)
project=$(api -XPOST "$base/api/projects" -d '{"name":"Code order"}' | json id)
agent=$(api "$base/api/projects/$project/agents" | json id)
for message in 'Hello there' 'And once more, with `code`'; do
  api -XPOST "$base/api/chat/agents/$agent" -H 'accept: text/event-stream' \
    -d "{\"message\":\"$message\"}" >/dev/null
done
# The pages, signed in with the API's token as the session cookie, and a turn sent the way htmx
# sends it (the CSRF token doubled in cookie and header).
csrf=$(printf 'c%.0s' $(seq 64))
cookies="confab_session=$token; confab_csrf=$csrf"
page() { curl -s -H "cookie: $cookies" "$@"; }
conversation=$(api "$base/api/conversations" | json id)
for path in / "/projects/$project" "/agents/$agent/chat" "/conversations/$conversation"; do
  page -o /dev/null "$base$path"
done
sent=$(page -XPOST -H "x-csrf-token: $csrf" -H 'hx-request: true' -H "origin: $base" \
  --data-urlencode 'message=A third turn, from the page' "$base/conversations/$conversation/messages")
stream=$(grep -o '/messages/[0-9a-f-]*/stream' <<<"$sent" | head -1)
[ -n "$stream" ] || { echo "the page's turn did not start an answer" >&2; exit 1; }
page -o /dev/null "$base$stream"
page -o /dev/null "$base/conversations/$conversation"
kill -INT $confab
wait $confab || true

# Self cost per function of confab's own binary; a call's inclusive cost line is skipped.
awk -v bin="$bin" '
  /^ob=/ { ours = (substr($0, 4) == bin); next }
  /^fn=/ { fn = substr($0, 4); sub(/\x27[0-9]+$/, "", fn); if (ours) cost[fn] += 0; next }
  /^calls=/ { call = 1; next }
  /^[0-9]/ { if (call) { call = 0 } else if (ours) { cost[fn] += $2 }; next }
  END { for (fn in cost) if (fn !~ /^0x/) print cost[fn], fn }
' "$work/callgrind.out" | sort -k1,1nr -k2 | awk '{ print $2 }' >"$ORDER"
echo "$(wc -l < "$ORDER") functions in $ORDER; $("$0" --check "$bin")"
