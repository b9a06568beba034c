#!/usr/bin/env bash
# Builds confab (release) and runs the load generator once per stream count: each run sends the
# same burst of N streams (all started in the same instant; the fake answers 50 tokens, 20 ms
# apart, the first after 200 ms) to the fake alone, through the bare relay and through confab,
# and prints them side by side, with confab minus relay. Then one history run: a conversation of
# 1,000 messages, its page and its API read at 500 requests/s for 5 s each (p50/p99/max, errors).
#
#   scripts/bench.sh                 # N = 200, then N = 1000
#   scripts/bench.sh 5000            # one run with N = 5000
#   scripts/bench.sh 1000 -- --start ramp --tokens 200 --json
#
# Everything after `--` goes to the load generator (`cargo bench --bench loadgen -- --help`).
# Run it on an otherwise idle machine: the numbers are latencies on shared cores.
set -euo pipefail
cd "$(dirname "$0")/.."

counts=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  counts+=("$1")
  shift
done
[ "${1:-}" = "--" ] && shift
[ ${#counts[@]} -gt 0 ] || counts=(200 1000)

# N streams need about 2N descriptors in the load generator and 2N in the relay and confab (each
# raises its own soft limit to the hard one too; N = 5000 needs a hard limit of about 10,300).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
hard=$(ulimit -Hn)
for n in "${counts[@]}"; do
  if [ "$hard" != unlimited ] && [ "$hard" -lt $((2 * n + 256)) ]; then
    echo "bench.sh: the hard open-files limit ($hard) is too low for N = $n; raise it (ulimit -Hn, as root)" >&2
  fi
done
# The accept queues of the fake, the relay and confab are SOMAXCONN deep, capped by this.
somaxconn=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 4096)
if [ "$somaxconn" -lt 4096 ]; then
  echo "bench.sh: net.core.somaxconn is $somaxconn: a burst of thousands may overflow the accept queues (sysctl -w net.core.somaxconn=4096)" >&2
fi

cargo build --release --bin confab
# `cargo bench` builds confab again, with the dev-dependencies' crate features, into the same
# place; its functions are named otherwise than linker/code-order.txt says, so its code is not
# placed by use (build.rs). The confab that ships is the one measured, kept aside.
release=${CARGO_TARGET_DIR:-target}/release
cp "$release/confab" "$release/confab-measured"
scripts/code-order.sh --check "$release/confab-measured"
status=0
for n in "${counts[@]}"; do
  cargo bench --bench loadgen -- --confab-bin "$release/confab-measured" --streams "$n" "$@" || status=$?
done
cargo bench --bench loadgen -- --confab-bin "$release/confab-measured" --phase history "$@" || status=$?
exit "$status"
