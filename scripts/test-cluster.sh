#!/usr/bin/env bash
# Stops the private PostgreSQL cluster that the integration tests start under target/tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
pgdata="target/tmp/confab-test-pg/pg"
[ "${1:-stop}" = "stop" ] || { echo "usage: $0 stop" >&2; exit 2; }
[ -f "$pgdata/postmaster.pid" ] || exit 0
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/pg_ctl" ] && bindir=$(pg_config --bindir)
owner=$(stat -c %U "$pgdata")
if [ "$(id -u)" -eq 0 ] && [ "$owner" != root ]; then
  runuser -u "$owner" -- "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
else
  "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
fi
