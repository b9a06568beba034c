#!/usr/bin/env bash
# Installs what confab needs to build and run on Debian/Ubuntu, only when it is missing.
#   scripts/install-deps.sh          build + run: C toolchain, OpenSSL headers, PostgreSQL server binaries
#   scripts/install-deps.sh --test   also what `make test` needs: Node.js + npm, Chromium, Python venv
set -euo pipefail

want_test=false
[ "${1:-}" = "--test" ] && want_test=true

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
# The libpq built into confab (pq-sys's `bundled` feature) links OpenSSL, for TLS to an external
# PostgreSQL.
have_pkg libssl-dev || missing+=(libssl-dev)
# The embedded database needs the server binaries (initdb, pg_ctl, postgres).
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then missing+=(postgresql); fi
if $want_test; then
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # make venv: the official openai SDK (the tests run it against /v1) and schemathesis.
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "confab needs: ${missing[*]}. Install them with your package manager (or set DATABASE_URL to use an existing PostgreSQL)." >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "Installing: ${missing[*]}"
# Debian's postgresql package starts a system cluster on port 5432; confab does not need it.
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
