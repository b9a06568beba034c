#!/usr/bin/env bash
# Builds the confab image with podman and checks it end to end:
#
#   1. build the Dockerfile (timed);
#   2. run it with a fresh named volume on /data and a loopback port: /health answers 200 (timed),
#      `podman healthcheck run` passes;
#   3. register a user, log in, create a project through the API;
#   4. `podman stop`: confab exits 0, says it stopped PostgreSQL, and pg.log ends with a clean
#      shutdown;
#   5. a NEW container on the same volume: healthy again (timed), the user logs in, the project is
#      there;
#   6. `podman kill` (SIGKILL) it, and a new container on the same volume still starts (crash
#      recovery) with the data intact.
#
# Containers and the volume are removed at the end, whatever happens; the image is kept (so a rerun
# reuses the build cache) unless --rmi is given.
#
# Usage: scripts/container-check.sh [--rmi] [--no-build]
#   IMAGE=localhost/confab:check  the tag to build and test
#   PULL=never                    podman build --pull=...; `missing` on a host that reaches registries
#
# ASSUMES the base images of the Dockerfile exist locally (this machine has no registry):
# docker.io/library/rust:1.95.0-bookworm and docker.io/library/debian:bookworm-slim. When they are
# missing (and PULL=never) it stops and prints how to make them. podman's own settings are taken
# from CONTAINERS_CONF / CONTAINERS_STORAGE_CONF when set, else from
# ~/.config/confab-podman/{containers,storage}.conf when those exist (the help shows them).
set -euo pipefail

cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/confab:check}
PULL=${PULL:-never}
REMOVE_IMAGE=0
BUILD=1
for arg in "$@"; do
    case $arg in
    --rmi) REMOVE_IMAGE=1 ;;
    --no-build) BUILD=0 ;;
    -h | --help)
        sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "unknown argument: $arg" >&2
        exit 2
        ;;
    esac
done

conf_dir=${XDG_CONFIG_HOME:-$HOME/.config}/confab-podman
if [[ -z ${CONTAINERS_CONF:-} && -f $conf_dir/containers.conf ]]; then
    export CONTAINERS_CONF=$conf_dir/containers.conf
fi
if [[ -z ${CONTAINERS_STORAGE_CONF:-} && -f $conf_dir/storage.conf ]]; then
    export CONTAINERS_STORAGE_CONF=$conf_dir/storage.conf
fi

setup_help() {
    cat <<EOF
How to make the base images on a machine without a registry (as root; about 4 minutes):

  apt-get install -y podman runc debootstrap uidmap
  # podman settings, written BEFORE the first podman call (else every run waits 20 s):
  mkdir -p $conf_dir
  printf '[containers]\\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\\n\\n[engine]\\nruntime = "runc"\\n' \\
      "\$(ulimit -Hn)" "\$(ulimit -Hn)" > $conf_dir/containers.conf
  printf '[storage]\\ndriver = "overlay"\\nrunroot = "/run/containers/storage"\\ngraphroot = "/var/lib/containers/storage"\\n' \\
      > $conf_dir/storage.conf
  export CONTAINERS_CONF=$conf_dir/containers.conf CONTAINERS_STORAGE_CONF=$conf_dir/storage.conf

  # debian:bookworm-slim from the Debian mirror apt uses, with this machine's apt sources and CAs:
  R=/var/tmp/bookworm-rootfs
  debootstrap --variant=minbase --include=ca-certificates bookworm \$R http://deb.debian.org/debian
  rm -f \$R/etc/apt/sources.list; cp /etc/apt/sources.list.d/*.sources \$R/etc/apt/sources.list.d/
  cp /usr/local/share/ca-certificates/*.crt \$R/usr/local/share/ca-certificates/ 2>/dev/null || true
  chroot \$R update-ca-certificates
  rm -rf \$R/var/lib/apt/lists/* \$R/var/cache/apt/archives/*.deb
  tar -C \$R --numeric-owner -c . | podman import --change 'CMD ["bash"]' - docker.io/library/debian:bookworm-slim

  # rust:1.95.0-bookworm stand-in: that base plus the host's stable toolchain (no rustup download),
  # which must be that version (rustc --version), or the image's code is not placed by use:
  mkdir -p /var/tmp/rust-standin && cat > /var/tmp/rust-standin/Containerfile <<'CF'
  FROM docker.io/library/debian:bookworm-slim
  ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev make pkg-config libssl-dev git && rm -rf /var/lib/apt/lists/*
  RUN mkdir -p \$RUSTUP_HOME/toolchains \$CARGO_HOME/bin \\
   && cp -a /h/rustup/toolchains/stable-x86_64-unknown-linux-gnu \$RUSTUP_HOME/toolchains/ \\
   && cp /h/rustup/settings.toml \$RUSTUP_HOME/ && cp /h/cargobin/rustup \$CARGO_HOME/bin/ \\
   && for t in cargo rustc rustdoc; do ln -s rustup \$CARGO_HOME/bin/\$t; done && cargo --version
  CF
  podman build --pull=never --format docker -v "\$HOME/.rustup:/h/rustup:ro" -v "\$HOME/.cargo/bin:/h/cargobin:ro" \\
      -t docker.io/library/rust:1.95.0-bookworm /var/tmp/rust-standin

(On a host that reaches Docker Hub, run this script with PULL=missing instead.)
EOF
}

# podman prints an error for every container with a HEALTHCHECK when there is no systemd to run
# the checks on a timer; nothing runs them here anyway (this script calls `podman healthcheck run`).
pm() {
    local status=0
    podman "$@" 2> >(grep -v 'systemd connection' >&2) || status=$?
    return $status
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f s", ms / 1000 }'; }
step() { printf '\n== %s\n' "$*"; }
fail() {
    echo "FAILED: $*" >&2
    exit 1
}

command -v podman >/dev/null || {
    echo "podman is not installed (apt-get install -y podman runc uidmap)" >&2
    setup_help >&2
    exit 2
}
command -v curl >/dev/null || fail "curl is needed"

if [[ $PULL == never ]]; then
    missing=()
    for base in docker.io/library/rust:1.95.0-bookworm docker.io/library/debian:bookworm-slim; do
        podman image exists "$base" || missing+=("$base")
    done
    if ((BUILD)) && ((${#missing[@]})); then
        echo "missing base image(s): ${missing[*]}" >&2
        setup_help >&2
        exit 2
    fi
fi

tag="confab-check-$$"
volume=$tag
containers=()
cleanup() {
    local status=$?
    if ((status != 0)) && ((${#containers[@]})); then
        local last=${containers[-1]}
        echo "--- last 40 lines of $last's log:" >&2
        pm logs --tail 40 "$last" >&2 || true
        echo "--- end of pg.log:" >&2
        pm run --rm -v "$volume:/data" --entrypoint tail "$IMAGE" -n 20 /data/pg.log >&2 || true
    fi
    for c in "${containers[@]}"; do
        pm rm -f -t 0 "$c" >/dev/null 2>&1 || true
    done
    pm volume rm -f "$volume" >/dev/null 2>&1 || true
    if ((REMOVE_IMAGE)); then
        pm rmi -f "$IMAGE" >/dev/null 2>&1 || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a container on the volume with a random loopback port; sets $name, $base, $healthy_ms.
start_container() {
    name="$tag-$1"
    containers+=("$name")
    local began
    began=$(now_ms)
    pm run -d --name "$name" -p 127.0.0.1::8080 -v "$volume:/data" --stop-timeout 30 "$IMAGE" >/dev/null
    base="http://$(pm port "$name" 8080/tcp)"
    local deadline=$((began + 120000))
    until curl -fsS -o /dev/null "$base/health" 2>/dev/null; do
        [[ $(pm inspect -f '{{.State.Running}}' "$name") == true ]] || fail "$name exited before it was healthy"
        (($(now_ms) < deadline)) || fail "$name not healthy after 120 s"
        sleep 0.1
    done
    healthy_ms=$(($(now_ms) - began))
    echo "$name healthy at $base after $(secs "$healthy_ms")"
}

# POSTs JSON; prints the body, fails unless the status is $1.
post_json() {
    local want=$1 url=$2 body=$3
    shift 3
    local out code
    out=$(curl -sS -w '\n%{http_code}' -X POST "$url" -H 'content-type: application/json' "$@" -d "$body")
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    [[ $code == "$want" ]] || fail "POST $url answered $code, wanted $want: $out"
    printf '%s' "$out"
}

json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

login() {
    local token
    token=$(post_json 200 "$base/api/auth/login" '{"email":"c@example.com","password":"container 1"}' | json_field access_token)
    [[ -n $token ]] || fail "login gave no access_token"
    printf '%s' "$token"
}

expect_project() {
    local token=$1 list
    list=$(curl -fsS "$base/api/projects" -H "authorization: Bearer $token")
    [[ $list == *"\"id\":\"$project_id\""* ]] || fail "project $project_id missing: $list"
    echo "project $project_id is there"
}

healthcheck() {
    pm healthcheck run "$1" || fail "podman healthcheck run $1 failed"
    echo "podman healthcheck run $1: healthy"
}

pg_log_tail() { pm run --rm -v "$volume:/data" --entrypoint tail "$IMAGE" -n "$1" /data/pg.log; }

if ((BUILD)); then
    step "build $IMAGE (podman build --pull=$PULL --format docker)"
    began=$(now_ms)
    pm build --pull="$PULL" --format docker -t "$IMAGE" . >"/tmp/$tag-build.log" 2>&1 || {
        tail -30 "/tmp/$tag-build.log" >&2
        fail "build failed; full log in /tmp/$tag-build.log"
    }
    build_ms=$(($(now_ms) - began))
    rm -f "/tmp/$tag-build.log"
    echo "built in $(secs "$build_ms")"
fi
image_size=$(pm image inspect -f '{{.Size}}' "$IMAGE")
echo "image size: $((image_size / 1000000)) MB"

step "first start on a new volume"
pm volume create "$volume" >/dev/null
start_container 1
first_ms=$healthy_ms
healthcheck "$name"

step "register, log in, create a project"
post_json 201 "$base/api/auth/register" '{"email":"c@example.com","password":"container 1"}' >/dev/null
echo "registered c@example.com (201)"
token=$(login)
echo "logged in"
project_id=$(post_json 201 "$base/api/projects" '{"name":"Survives restarts"}' -H "authorization: Bearer $token" | json_field id)
[[ -n $project_id ]] || fail "no project id"
echo "created project $project_id (201)"

step "podman stop (SIGTERM): confab stops PostgreSQL cleanly"
began=$(now_ms)
pm stop "$name" >/dev/null
stop_ms=$(($(now_ms) - began))
exit_code=$(pm inspect -f '{{.State.ExitCode}}' "$name")
[[ $exit_code == 0 ]] || fail "$name exited with $exit_code"
echo "stopped in $(secs "$stop_ms")"
pm logs "$name" 2>&1 | grep -q 'embedded PostgreSQL stopped' || fail "no 'embedded PostgreSQL stopped' in the log"
echo "exit code 0; log: $(pm logs "$name" 2>&1 | grep -o 'embedded PostgreSQL stopped.*' | tail -1)"
pg_log_tail 1 | grep -q 'database system is shut down' || fail "pg.log does not end with a clean shutdown"
echo "pg.log: database system is shut down"

step "a new container on the same volume"
start_container 2
restart_ms=$healthy_ms
token=$(login)
echo "logged in again"
expect_project "$token"
healthcheck "$name"

step "podman kill (SIGKILL), then a new container on the same volume (crash recovery)"
pm kill "$name" >/dev/null
echo "$name killed, exit code $(pm inspect -f '{{.State.ExitCode}}' "$name")"
start_container 3
recovery_ms=$healthy_ms
pg_log_tail 40 | grep -q 'automatic recovery in progress' || fail "pg.log shows no crash recovery"
echo "pg.log: database system was not properly shut down; automatic recovery in progress"
token=$(login)
expect_project "$token"
healthcheck "$name"
pm stop "$name" >/dev/null

step "summary"
if ((BUILD)); then echo "build:                 $(secs "$build_ms")"; fi
echo "image size:            $((image_size / 1000000)) MB"
echo "first start → healthy: $(secs "$first_ms") (initdb included)"
echo "podman stop:           $(secs "$stop_ms")"
echo "restart → healthy:     $(secs "$restart_ms")"
echo "after SIGKILL → healthy: $(secs "$recovery_ms") (crash recovery included)"
echo "all checks passed"
