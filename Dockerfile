# confab in a container: one binary plus the PostgreSQL server programs it runs as its private
# database under /data (a volume).
#
#   docker build -t confab .          (or: podman build --format docker -t confab .)
#   docker run -d --name confab -p 127.0.0.1:8080:8080 -v confab-data:/data --stop-timeout 30 confab
#
# /data belongs to uid 10001 (`confab`): a named volume gets that from the image; chown a bind-mounted
# directory to 10001:10001 first. To use an existing PostgreSQL instead, set DATABASE_URL; /data then
# holds only the JWT secret.
# scripts/container-check.sh builds this image with podman and checks it end to end.

# ---- build ------------------------------------------------------------------------------------
# The compiler linker/code-order.txt was made with: another names the functions differently, and
# the release link's code placement (build.rs) would then place none of them (about 8 MB more
# resident). Moving it means running scripts/code-order.sh with the new one.
FROM rust:1.95.0-bookworm AS build

# libssl-dev, pkg-config: the libpq built into confab (pq-sys's `bundled` feature) links OpenSSL.
# The rust image has both; named so that a slimmer base builds too.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Cache mounts keep the crate registry and target/ between builds (docker with BuildKit, podman and
# buildah), so a rebuild after a source change compiles only confab. Nothing of them ends up in an
# image layer. COPY keeps the files' mtimes, which may be older than the cached build (e.g. a context
# made by `git archive`): drop confab's own fingerprints so it is always rebuilt from these sources.
RUN --mount=type=cache,id=confab-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=confab-target,target=/src/target \
    rm -rf target/release/.fingerprint/confab-* \
 && cargo build --release --locked --bin confab \
 && install -D -m 0755 target/release/confab /out/confab

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim

# postgresql-15: initdb, pg_ctl and postgres under /usr/lib/postgresql/15/bin (and, through
# postgresql-client-15, the pg_isready/psql/createdb that confab calls). No default cluster: confab
# makes its own in /data/pg. Left out through dpkg's path-exclude (as the slim base image does for
# docs): the LLVM JIT provider and the libraries only it uses (libLLVM, libz3), ~130 MB of a ~410 MB
# image. PostgreSQL then runs without JIT, silently (it checks for llvmjit.so before loading it);
# confab's short queries never reach jit_above_cost anyway.
# curl: for HEALTHCHECK (and for people debugging inside the container).
RUN printf '%s\n' \
      'path-exclude /usr/lib/postgresql/*/lib/llvmjit*' \
      'path-exclude /usr/lib/postgresql/*/lib/bitcode/*' \
      'path-exclude /usr/lib/*/libLLVM*' \
      'path-exclude /usr/lib/*/libz3.so*' \
      > /etc/dpkg/dpkg.cfg.d/confab-no-jit \
 && mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/confab.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && test -x /usr/lib/postgresql/15/bin/postgres

# PostgreSQL refuses to run as root; as a normal user confab runs it as that same user.
# A fixed uid, so a bind-mounted data dir can be chowned to it: chown 10001:10001 DIR.
RUN groupadd --system --gid 10001 confab \
 && useradd --system --uid 10001 --gid confab --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin confab \
 && mkdir -p /data \
 && chown confab:confab /data \
 && chmod 0700 /data

COPY --from=build /out/confab /usr/local/bin/confab

# Listen on all interfaces of the container; keep everything (cluster, JWT secret) in /data.
# NO_COLOR: plain log lines for `docker logs`. MALLOC_ARENA_MAX: glibc's malloc keeps at most two
# arenas instead of eight per core, which held a few KB less per live stream in our runs
# (docs/measurements.md).
ENV CONFAB_SERVER__HOST=0.0.0.0 \
    CONFAB_SERVER__PORT=8080 \
    CONFAB_DATA_DIR=/data \
    NO_COLOR=1 \
    MALLOC_ARENA_MAX=2

USER confab
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# /health answers 200 once the database answers, 503 when it does not. The first start runs initdb
# (a few seconds), hence the start period. PORT wins over CONFAB_SERVER__PORT, as in confab.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT:-${CONFAB_SERVER__PORT:-8080}}/health" || exit 1

# On SIGTERM confab stops taking requests, lets live answers finish (server.shutdown_grace_secs,
# 20 s by default), then stops PostgreSQL (a fast shutdown with a checkpoint, waited for up to 8 s).
# `docker stop` waits 10 s before SIGKILL: run with --stop-timeout 30. (A SIGKILL is survivable:
# the next start removes the stale lock files and PostgreSQL recovers from its WAL.)
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/confab"]
CMD ["serve"]
