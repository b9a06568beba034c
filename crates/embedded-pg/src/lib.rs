//! The private PostgreSQL that confab runs when no DATABASE_URL is set.
//!
//! A crate of its own so that the test suite's shared cluster and the `pg-cluster` tool that
//! stops it use this same code rather than copies of it; confab re-exports it as `db::embedded`.
//!
//! Everything lives under the data dir:
//!
//! - `pg/` — the cluster (PGDATA), owned by the user the server runs as, mode 0700;
//! - `run/` — the Unix socket directory, mode 0700 (`/tmp/confab-pg-<hash of the data dir>`
//!   instead when the socket path would be too long or has characters that need quoting);
//! - `pg.log` — the server's log;
//! - `pg.lock` — an flock that serializes init/start/stop between processes (confab, and test
//!   binaries sharing one cluster).
//!
//! The server listens on no TCP port and authentication is `trust`: whoever can reach the socket
//! is the superuser. The socket directory is 0700, so that is only the user the server runs as
//! (and root).
//!
//! The server is started with `pg_ctl start -w` rather than spawned directly: pg_ctl detaches it
//! (its own session, stdin from /dev/null, output appended to `pg.log`) and waits until it
//! accepts connections by reading `postmaster.pid` as PostgreSQL means it to be read. The server
//! then outlives a crashed confab, and the next start adopts it; confab has no child to reap.
//!
//! PostgreSQL refuses to run as root. When confab runs as root, the server programs run as the
//! owner of an existing cluster if that is not root, else as the `postgres` system user. The
//! cluster, socket dir and log belong to that user, and the data dir gets the search bit for
//! others (`o+x`, not read) so that user can reach `<data_dir>/pg`; a parent directory closed to
//! it (such as /root) is reported as [`EmbeddedError::Unreachable`]. The client programs
//! (`pg_isready`, `createdb`, `psql`) and confab itself connect as root, which passes the 0700
//! socket directory by root's DAC override.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Uid, User};

/// The superuser initdb creates; every URL connects as it.
const SUPERUSER: &str = "confab";
/// Only names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;
const SOCKET_FILE: &str = ".s.PGSQL.5432";
/// Unix socket paths must fit in `sun_path` (108 bytes on Linux); stay well below.
const SOCKET_PATH_MAX: usize = 100;
/// How long a server that is starting, recovering or shutting down gets before start() gives up.
const BUSY_WAIT: Duration = Duration::from_secs(90);
/// `pg_ctl -t`: crash recovery of a big cluster can take a while.
const PG_CTL_TIMEOUT_SECS: &str = "120";
/// How long [`PgServer::stop`] waits for the fast shutdown it asked for. A container's stop
/// timeout (30 s, README) leaves 10 s after the answers' 20 s of grace; a healthy embedded server
/// (16 MB of shared buffers to write) needs well under a second. One that takes longer goes on
/// shutting down by itself after confab exits (it has been told to); a frozen one (SIGSTOP, a
/// hung disk) is left as it is, and the next start adopts or recovers it.
const STOP_WAIT: Duration = Duration::from_secs(8);
/// The log is moved to `pg.log.1` at a start when it has grown past this.
const LOG_ROTATE_BYTES: u64 = 10 * 1024 * 1024;

/// How the server is run.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// For tests: -c fsync=off -c synchronous_commit=off -c full_page_writes=off, and initdb -N.
    pub fast_unsafe: bool,
    /// The most connections the server takes: the application's pool and a few for its tools
    /// (migrations, `pg_dump`, psql). Unset: PostgreSQL's default (100), for a cluster that many
    /// processes share, such as the tests'.
    pub max_connections: Option<u32>,
}

/// The server is one application's private database, on a machine it shares with that
/// application, not a dedicated database server with many clients; PostgreSQL's defaults are
/// sized for the latter. Given with `-c` at every start (so a cluster made by an older confab
/// gets them too; they win over `postgresql.conf`):
///
/// - `shared_buffers` 16 MB (default 128 MB): pages once read stay resident for good, so this is
///   what the cache costs after a while; the kernel's page cache holds the rest of the data.
///   `wal_buffers` is then 512 kB (1/32 of it), enough for an answer's flushes.
/// - `huge_pages` off: with huge pages the shared memory is taken in 2 MB steps, touched or not.
/// - `jit` off: JIT compiling maps LLVM into the backend that uses it (tens of MB); confab's
///   queries are small and indexed.
/// - no parallel query: each parallel worker is another process, for scans confab does not make.
/// - no logical replication launcher (a process of its own, idle for good).
/// - two autovacuum workers (default three): a few tables, one of them (`messages`) busy.
/// - `work_mem` (4 MB per sort or hash) keeps its default: it is taken only while a query runs.
const EMBEDDED_SETTINGS: &[(&str, &str)] = &[
    ("shared_buffers", "16MB"),
    ("wal_buffers", "512kB"),
    ("huge_pages", "off"),
    ("jit", "off"),
    ("max_parallel_workers_per_gather", "0"),
    ("max_parallel_maintenance_workers", "0"),
    ("max_logical_replication_workers", "0"),
    ("autovacuum_max_workers", "2"),
];

/// A running private PostgreSQL server (started by this call or adopted). Dropping it leaves the
/// server running: the same cluster may be shared with other processes; call [`PgServer::stop`].
#[derive(Debug)]
pub struct PgServer {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    /// Set when confab runs as root: the server programs run as this user.
    server_user: Option<ServerUser>,
    adopted: bool,
}

/// The unprivileged user the server runs as when confab is root.
#[derive(Debug, Clone)]
struct ServerUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// Why the embedded PostgreSQL could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries not found (looked at `pg_config --bindir` and \
         /usr/lib/postgresql/*/bin). Install them (Debian/Ubuntu: `apt-get install postgresql`; \
         Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`), or set \
         DATABASE_URL to use an existing PostgreSQL server"
    )]
    NoServerBinaries,
    #[error(
        "confab runs as root and PostgreSQL refuses to run as root, so the embedded server runs as \
         the `postgres` system user, which does not exist. Create it (installing the Debian/Ubuntu \
         `postgresql` package does, or `useradd --system --home-dir /var/lib/postgresql --shell \
         /usr/sbin/nologin postgres`), run confab as a normal user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    #[error(
        "the embedded PostgreSQL runs as user `{user}`, which cannot reach {path} ({source}). \
         Use a data dir that user can reach (e.g. under /var/lib), make the parent directories \
         searchable (chmod o+x), run confab as a normal user, or set DATABASE_URL"
    )]
    Unreachable {
        user: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot use {path} for the embedded PostgreSQL: {reason}")]
    BadPath { path: PathBuf, reason: String },
    #[error(
        "a PostgreSQL server is running in {pgdata} (pids {pids:?}) but does not accept \
         connections on {socket_dir} after {waited_secs} s"
    )]
    Busy {
        pgdata: PathBuf,
        socket_dir: PathBuf,
        pids: Vec<i32>,
        waited_secs: u64,
    },
    #[error(
        "PostgreSQL in {pgdata} (pid {pid}) was asked to shut down but had not within \
         {waited_secs} s; it is left to finish by itself. If it is frozen (a stopped process, a \
         hung disk), the next start adopts or recovers it once it can run again"
    )]
    StillRunning {
        pgdata: PathBuf,
        pid: i32,
        waited_secs: u64,
    },
    #[error("{what} failed ({status}){details}")]
    Command {
        what: String,
        status: String,
        /// The command's output and the end of the server log, ready to print.
        details: String,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

type Result<T, E = EmbeddedError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> EmbeddedError {
    let context = context.into();
    move |source| EmbeddedError::Io { context, source }
}

impl PgServer {
    /// Finds the server binaries: `pg_config --bindir` if that dir contains `postgres`, else the
    /// newest `/usr/lib/postgresql/*/bin`.
    pub fn find_bin_dir() -> Result<PathBuf> {
        let from_pg_config = Command::new("pg_config")
            .arg("--bindir")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        if let Ok(out) = from_pg_config {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && dir.join("postgres").is_file() {
                return Ok(dir);
            }
        }
        newest_bin_dir(Path::new("/usr/lib/postgresql")).ok_or(EmbeddedError::NoServerBinaries)
    }

    /// Initializes `<data_dir>/pg` on first use, then starts the server, or adopts the one already
    /// running for it, and returns once it accepts connections on its Unix socket.
    /// Safe to call from several processes (and threads) at once on the same data dir.
    pub fn start(data_dir: &Path, opts: &PgOptions) -> Result<PgServer> {
        let began = Instant::now();
        let data_dir = std::path::absolute(data_dir).map_err(io_err("resolving the data dir"))?;
        check_shell_safe(&data_dir)?;
        fs::create_dir_all(&data_dir).map_err(io_err(format!(
            "creating the data dir {}",
            data_dir.display()
        )))?;
        let _lock = lock_data_dir(&data_dir)?;

        let pgdata = data_dir.join("pg");
        let server_user = server_user_for(&pgdata)?;
        let bin_dir = bin_dir_for(&pgdata)?;
        let mut server = PgServer {
            socket_dir: socket_dir_for(&data_dir),
            log_file: data_dir.join("pg.log"),
            bin_dir,
            data_dir,
            pgdata,
            server_user,
            adopted: false,
        };
        server.prepare_dirs()?;
        let initialized = if server.pgdata.join("PG_VERSION").is_file() {
            false
        } else {
            server.init(opts)?;
            true
        };
        server.adopted = server.start_or_adopt(opts)?;
        tracing::info!(
            pgdata = %server.pgdata.display(),
            socket_dir = %server.socket_dir.display(),
            initialized,
            adopted = server.adopted,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "embedded PostgreSQL ready"
        );
        Ok(server)
    }

    /// The URL of `database` on the server for `data_dir`, without starting anything.
    pub fn url_for(data_dir: &Path, database: &str) -> String {
        let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        url_with_socket(&socket_dir_for(&data_dir), database)
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        url_with_socket(&self.socket_dir, database)
    }

    /// Creates the database unless it exists; fine when other processes do the same at once.
    pub fn ensure_database(&self, name: &str) -> Result<()> {
        if self.database_exists(name)? {
            return Ok(());
        }
        let mut attempts = 0;
        loop {
            let out = self
                .client_command("createdb")
                .args(self.connection_args())
                .args(["--", name])
                .output()
                .map_err(io_err("running createdb"))?;
            // Another process may have created it meanwhile (then createdb fails with "already
            // exists" or a unique violation on pg_database, depending on timing).
            if out.status.success() || self.database_exists(name)? {
                return Ok(());
            }
            // CREATE DATABASE refuses while someone is connected to the template; that passes.
            let busy_template =
                String::from_utf8_lossy(&out.stderr).contains("accessed by other users");
            attempts += 1;
            if !busy_template || attempts >= 25 {
                return Err(self.command_error(format!("createdb {name}"), &out, false));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server (`pg_ctl stop -m fast`) and waits until it is gone, for up to
    /// [`STOP_WAIT`]. Does nothing when it is not running.
    pub fn stop(&self) -> Result<()> {
        self.stop_within(STOP_WAIT)
    }

    /// [`PgServer::stop`], waiting up to `wait` for the server to be gone.
    pub fn stop_within(&self, wait: Duration) -> Result<()> {
        let _lock = lock_data_dir(&self.data_dir)?;
        let Some(pid) = read_lock_file_pid(&self.pgdata.join("postmaster.pid")) else {
            return Ok(());
        };
        // A pid file left by a crash may name an unrelated process by now: never signal that one.
        if self.is_postmaster_here(pid) == Some(false) {
            return Ok(());
        }
        let wait_secs = wait.as_secs().max(1);
        let out = self
            .server_command("pg_ctl")
            .args(["stop", "-s", "-m", "fast", "-w", "-t"])
            .arg(wait_secs.to_string())
            .arg("-D")
            .arg(&self.pgdata)
            .output()
            .map_err(io_err("running pg_ctl stop"))?;
        if out.status.success() || !self.pgdata.join("postmaster.pid").exists() {
            tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL stopped");
            return Ok(());
        }
        // pg_ctl says only that the server did not shut down (and with -s, nothing at all).
        if self.is_postmaster_here(pid) == Some(true) {
            return Err(EmbeddedError::StillRunning {
                pgdata: self.pgdata.clone(),
                pid,
                waited_secs: wait_secs,
            });
        }
        Err(self.command_error("pg_ctl stop", &out, true))
    }

    /// Stops the server of the cluster under `data_dir` (its `pg/`), if one runs, without starting
    /// or adopting anything first: for cleaning up after a run, e.g. the test cluster that test
    /// processes share and leave running (`pg-cluster stop`). Finds the binaries and, as root, the
    /// user to stop it as the way [`PgServer::start`] does. Does nothing when there is no cluster
    /// or its server is not running.
    pub fn stop_data_dir(data_dir: &Path) -> Result<()> {
        let data_dir = std::path::absolute(data_dir).map_err(io_err("resolving the data dir"))?;
        let pgdata = data_dir.join("pg");
        if !pgdata.join("PG_VERSION").is_file() {
            return Ok(());
        }
        let server = PgServer {
            bin_dir: bin_dir_for(&pgdata)?,
            server_user: server_user_for(&pgdata)?,
            socket_dir: socket_dir_for(&data_dir),
            log_file: data_dir.join("pg.log"),
            data_dir,
            pgdata,
            adopted: false,
        };
        server.stop()
    }

    /// Whether this cluster's postmaster is alive (its `postmaster.pid` names a live process
    /// working in the cluster). After a crash, [`PgServer::start`] brings it back.
    pub fn is_running(&self) -> bool {
        read_lock_file_pid(&self.pgdata.join("postmaster.pid"))
            .and_then(|pid| self.is_postmaster_here(pid))
            .unwrap_or(false)
    }

    /// The data dir this server was started for (the `data_dir` of [`PgServer::start`]).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether start() found the server already running (left by a crash or started by another
    /// process) instead of starting it.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Where the server programs (and `psql`, `createdb`) are.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The cluster directory (PGDATA).
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server's log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Creates the socket dir and log file with the right owner and modes, and, as root, makes sure
    /// the server user can reach the data dir.
    fn prepare_dirs(&self) -> Result<()> {
        if let Some(user) = &self.server_user {
            let meta = fs::metadata(&self.data_dir)
                .map_err(io_err(format!("reading {}", self.data_dir.display())))?;
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                // Search only (no listing) for others, so the server user can reach <data_dir>/pg.
                fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(mode | 0o001))
                    .map_err(io_err(format!("chmod o+x {}", self.data_dir.display())))?;
            }
            let pgdata_owner = fs::symlink_metadata(&self.pgdata).map(|m| m.uid()).ok();
            if pgdata_owner.is_some_and(|uid| uid != user.uid) {
                // A root-owned cluster (e.g. restored by root) or an empty dir: root can never run
                // it, so hand it over. A cluster of another user is run as that user instead.
                tracing::warn!(
                    pgdata = %self.pgdata.display(),
                    user = %user.name,
                    "chowning the cluster to the server user"
                );
                chown_tree(&self.pgdata, user)?;
            }
        }
        self.prepare_socket_dir()?;
        if let Some(user) = &self.server_user {
            // chdir happens after setuid in the child: a spawn that fails here means the server
            // user cannot reach the data dir (a parent directory such as /root is closed to it).
            let probe = self
                .server_command("pg_ctl")
                .arg("--version")
                .current_dir(&self.data_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Err(source) = probe {
                return Err(EmbeddedError::Unreachable {
                    user: user.name.clone(),
                    path: self.data_dir.clone(),
                    source,
                });
            }
        }
        Ok(())
    }

    fn prepare_socket_dir(&self) -> Result<()> {
        let dir = &self.socket_dir;
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
        }
        let meta =
            fs::symlink_metadata(dir).map_err(io_err(format!("reading {}", dir.display())))?;
        if !meta.is_dir() {
            return Err(EmbeddedError::BadPath {
                path: dir.clone(),
                reason: "the socket directory is not a directory".into(),
            });
        }
        let owner = self
            .server_user
            .as_ref()
            .map_or(Uid::effective().as_raw(), |u| u.uid);
        if meta.uid() != owner {
            let ours_to_fix = meta.uid() == 0 || dir.starts_with(&self.data_dir);
            if let Some(user) = self.server_user.as_ref().filter(|_| ours_to_fix) {
                std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
                    .map_err(io_err(format!("chown {}", dir.display())))?;
            } else {
                // Under /tmp anyone could have made it: never put a trust-auth socket in it.
                return Err(EmbeddedError::BadPath {
                    path: dir.clone(),
                    reason: format!(
                        "the socket directory belongs to uid {} (expected {owner}); remove it",
                        meta.uid()
                    ),
                });
            }
        }
        if meta.permissions().mode() & 0o777 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("chmod 700 {}", dir.display())))?;
        }
        Ok(())
    }

    /// Creates the cluster: into a scratch dir renamed into place, so a crash during initdb leaves
    /// nothing the next start trips over.
    fn init(&self, opts: &PgOptions) -> Result<()> {
        let began = Instant::now();
        let in_place = match fs::read_dir(&self.pgdata).map(|mut entries| entries.next().is_none())
        {
            Ok(true) => true, // an empty dir, e.g. a mount point
            Ok(false) => {
                return Err(EmbeddedError::BadPath {
                    path: self.pgdata.clone(),
                    reason: "it is not empty but has no PG_VERSION, so it is not a PostgreSQL \
                             cluster; move it away"
                        .into(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(format!("reading {}", self.pgdata.display()))(e)),
        };
        let target = if in_place {
            self.pgdata.clone()
        } else {
            let scratch = self.data_dir.join("pg.initdb");
            if scratch.exists() {
                fs::remove_dir_all(&scratch)
                    .map_err(io_err(format!("removing {}", scratch.display())))?;
            }
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&scratch)
                .map_err(io_err(format!("creating {}", scratch.display())))?;
            scratch
        };
        if let Some(user) = &self.server_user {
            std::os::unix::fs::chown(&target, Some(user.uid), Some(user.gid))
                .map_err(io_err(format!("chown {}", target.display())))?;
        }

        let mut initdb = self.server_command("initdb");
        initdb
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("-D")
            .arg(&target);
        // Byte-order collation (stable across libc upgrades, fast), Unicode-aware lower()/upper().
        if utf8_ctype_available() {
            initdb.arg("--lc-ctype=C.UTF-8");
        }
        if opts.fast_unsafe {
            initdb.arg("-N");
        }
        let out = initdb.output().map_err(io_err("running initdb"))?;
        if !out.status.success() {
            return Err(self.command_error("initdb", &out, false));
        }
        if !in_place {
            fs::rename(&target, &self.pgdata).map_err(io_err(format!(
                "renaming {} to {}",
                target.display(),
                self.pgdata.display()
            )))?;
        }
        tracing::info!(
            pgdata = %self.pgdata.display(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            "initialized the embedded PostgreSQL cluster"
        );
        Ok(())
    }

    /// Returns true when a server for this cluster was already answering.
    fn start_or_adopt(&self, opts: &PgOptions) -> Result<bool> {
        /// A server that is starting or recovering answers within about a second; past this,
        /// the operator is told what confab is waiting for rather than left with a silent start.
        const SAY_WAITING_AFTER: Duration = Duration::from_secs(2);
        let began = Instant::now();
        let mut said_waiting = false;
        loop {
            if self.is_ready() {
                return Ok(true);
            }
            match self.processes_in_pgdata() {
                Some(pids) if !pids.is_empty() => {
                    // Starting, recovering, shutting down, or the backends of a killed postmaster
                    // on their way out: wait until it answers or is gone.
                    if began.elapsed() > BUSY_WAIT {
                        return Err(EmbeddedError::Busy {
                            pgdata: self.pgdata.clone(),
                            socket_dir: self.socket_dir.clone(),
                            pids,
                            waited_secs: BUSY_WAIT.as_secs(),
                        });
                    }
                    if !said_waiting && began.elapsed() > SAY_WAITING_AFTER {
                        said_waiting = true;
                        tracing::warn!(
                            pgdata = %self.pgdata.display(),
                            ?pids,
                            "a PostgreSQL server is running in the data dir but does not answer \
                             yet (starting, recovering, shutting down or frozen); waiting up to {} s",
                            BUSY_WAIT.as_secs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Some(_) => {
                    self.remove_stale_lock_files();
                    break;
                }
                // Cannot tell (no /proc): PostgreSQL judges its lock files itself.
                None => break,
            }
        }
        self.prepare_log_file()?;
        let mut server_opts = format!(
            "-c listen_addresses='' -c port={PORT} -c unix_socket_directories='{}' \
             -c unix_socket_permissions=0700",
            self.socket_dir.display()
        );
        for (name, value) in EMBEDDED_SETTINGS {
            let _ = write!(server_opts, " -c {name}={value}");
        }
        if let Some(connections) = opts.max_connections {
            let _ = write!(server_opts, " -c max_connections={connections}");
        }
        if opts.fast_unsafe {
            server_opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let out = self
            .server_command("pg_ctl")
            .args(["start", "-s", "-w", "-t", PG_CTL_TIMEOUT_SECS, "-D"])
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&self.log_file)
            .arg("-o")
            .arg(server_opts)
            .output()
            .map_err(io_err("running pg_ctl start"))?;
        if !out.status.success() {
            return Err(self.command_error("pg_ctl start", &out, true));
        }
        Ok(false)
    }

    /// pg_isready on the socket: true when the server accepts connections.
    fn is_ready(&self) -> bool {
        self.client_command("pg_isready")
            .args(self.connection_args())
            .args(["-q", "-d", "postgres", "-t", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Pids of processes whose working directory is this cluster: a postmaster chdirs into its data
    /// dir and its children inherit that. None when that cannot be told (no /proc).
    fn processes_in_pgdata(&self) -> Option<Vec<i32>> {
        let pgdata = fs::canonicalize(&self.pgdata).ok()?;
        fs::read_link("/proc/self/cwd").ok()?;
        let me = std::process::id() as i32;
        let mut pids = Vec::new();
        for entry in fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid != me && fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == pgdata) {
                pids.push(pid);
            }
        }
        Some(pids)
    }

    /// Whether `pid` is a live process working in this cluster (None when that cannot be told).
    fn is_postmaster_here(&self, pid: i32) -> Option<bool> {
        fs::read_link("/proc/self/cwd").ok()?;
        let pgdata = fs::canonicalize(&self.pgdata).ok()?;
        match fs::read_link(format!("/proc/{pid}/cwd")) {
            Ok(cwd) => Some(cwd == pgdata),
            // Gone, or another user's process, which our server never is.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) =>
            {
                Some(false)
            }
            Err(_) => None,
        }
    }

    /// Removes lock files of a server that is gone. PostgreSQL itself ignores a lock file whose
    /// process is dead, but not one whose pid now belongs to an unrelated live process (pids are
    /// reused, e.g. after a container restart). Only called when no process works in the cluster,
    /// so no old backend can still be using its shared memory.
    fn remove_stale_lock_files(&self) {
        let socket_lock = self.socket_dir.join(format!("{SOCKET_FILE}.lock"));
        for lock in [self.pgdata.join("postmaster.pid"), socket_lock] {
            if !lock.exists() {
                continue;
            }
            tracing::warn!(
                file = %lock.display(),
                "removing a lock file left by a server that is gone"
            );
            if let Err(e) = fs::remove_file(&lock) {
                tracing::warn!(
                    file = %lock.display(),
                    error = %e,
                    "could not remove a stale lock file"
                );
            }
        }
    }

    /// Creates the log file for the server user, moving a big one to `pg.log.1` first.
    fn prepare_log_file(&self) -> Result<()> {
        if fs::metadata(&self.log_file).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
            let _ = fs::rename(&self.log_file, self.log_file.with_extension("log.1"));
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.log_file)
            .map_err(io_err(format!("creating {}", self.log_file.display())))?;
        if let Some(user) = &self.server_user {
            std::os::unix::fs::chown(&self.log_file, Some(user.uid), Some(user.gid))
                .map_err(io_err(format!("chown {}", self.log_file.display())))?;
        }
        Ok(())
    }

    fn database_exists(&self, name: &str) -> Result<bool> {
        let sql = format!(
            "SELECT 1 FROM pg_database WHERE datname = '{}'",
            name.replace('\'', "''")
        );
        let out = self
            .client_command("psql")
            .args(self.connection_args())
            .args(["-X", "-q", "-t", "-A", "-d", "postgres", "-c", &sql])
            .output()
            .map_err(io_err("running psql"))?;
        if !out.status.success() {
            return Err(self.command_error("psql (checking the database exists)", &out, false));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "1")
    }

    fn connection_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "-h".into(),
            self.socket_dir.clone().into_os_string(),
            "-p".into(),
            PORT.to_string().into(),
            "-U".into(),
            SUPERUSER.into(),
        ]
    }

    /// A client program of this server's version (`pg_dump`, `pg_restore`, `psql`, …), with no
    /// `PG*` variables of the caller's environment to redirect it.
    pub fn client_program(&self, program: &str) -> Command {
        self.client_command(program)
    }

    /// initdb / pg_ctl: as the server user when confab is root, in their own process group so a
    /// Ctrl-C at confab's terminal does not reach them (confab stops the server itself).
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = self.client_command(program);
        cmd.process_group(0).current_dir("/");
        if let Some(user) = &self.server_user {
            cmd.uid(user.uid)
                .gid(user.gid)
                .env("HOME", &user.home)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
        cmd
    }

    /// A program from bin_dir with no PG* variables from confab's environment (PGPORT, PGOPTIONS,
    /// PGDATA... would change what it does) and English messages.
    fn client_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        for (name, _) in std::env::vars_os() {
            if name.as_bytes().starts_with(b"PG") {
                cmd.env_remove(name);
            }
        }
        cmd.env("LC_ALL", "C").stdin(Stdio::null());
        cmd
    }

    fn command_error(
        &self,
        what: impl Into<String>,
        out: &Output,
        with_log: bool,
    ) -> EmbeddedError {
        let mut details = String::new();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !output.trim().is_empty() {
            let _ = write!(details, ":\n{}", output.trim_end());
        }
        if with_log {
            let tail = log_tail(&self.log_file, 20);
            if !tail.is_empty() {
                let _ = write!(
                    details,
                    "\n--- end of {} ---\n{}",
                    self.log_file.display(),
                    tail
                );
            }
        }
        EmbeddedError::Command {
            what: what.into(),
            status: out.status.to_string(),
            details,
        }
    }
}

/// Takes the exclusive lock on `<data_dir>/pg.lock`; released when dropped. Each call opens the
/// file anew, so threads of one process exclude each other too (an flock belongs to the open file).
fn lock_data_dir(data_dir: &Path) -> Result<Flock<File>> {
    let path = data_dir.join("pg.lock");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(format!("opening {}", path.display())))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => {
                return Err(io_err(format!("locking {}", path.display()))(errno.into()));
            }
        }
    }
}

/// None when confab is not root. As root: the owner of an existing cluster if that is not root
/// (a cluster made by an unprivileged run keeps its owner), else the `postgres` system user.
fn server_user_for(pgdata: &Path) -> Result<Option<ServerUser>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let existing = fs::metadata(pgdata)
        .ok()
        .filter(|meta| meta.uid() != 0 && pgdata.join("PG_VERSION").is_file());
    if let Some(meta) = existing {
        let user = User::from_uid(Uid::from_raw(meta.uid())).ok().flatten();
        return Ok(Some(ServerUser {
            name: user
                .as_ref()
                .map_or_else(|| meta.uid().to_string(), |u| u.name.clone()),
            uid: meta.uid(),
            gid: user.as_ref().map_or(meta.gid(), |u| u.gid.as_raw()),
            home: user.map_or_else(|| PathBuf::from("/"), |u| u.dir),
        }));
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(ServerUser {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            name: user.name,
        })),
        Ok(None) => Err(EmbeddedError::NoPostgresUser),
        Err(errno) => Err(io_err("looking up the postgres user")(errno.into())),
    }
}

/// An existing cluster needs the binaries of its major version; a new one gets the newest found.
fn bin_dir_for(pgdata: &Path) -> Result<PathBuf> {
    if let Ok(version) = fs::read_to_string(pgdata.join("PG_VERSION")) {
        let dir = Path::new("/usr/lib/postgresql")
            .join(version.trim())
            .join("bin");
        if dir.join("postgres").is_file() {
            return Ok(dir);
        }
    }
    PgServer::find_bin_dir()
}

/// The newest `<root>/<version>/bin` holding `postgres`, in numeric version order (15 > 9.6).
fn newest_bin_dir(root: &Path) -> Option<PathBuf> {
    fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version: Vec<u32> = name
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// `<data_dir>/run`, unless the socket path would be too long or the path has characters that
/// pg_ctl's shell command line or the unix_socket_directories list would need quoted: then
/// `/tmp/confab-pg-<hash of data_dir>`, the same for the same data dir every time.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let preferred = data_dir.join("run");
    let bytes = preferred.as_os_str().as_bytes();
    let plain = bytes
        .iter()
        .all(|b| !b.is_ascii_whitespace() && !b.is_ascii_control() && !b"'\",\\$`".contains(b));
    if plain && bytes.len() + 1 + SOCKET_FILE.len() + ".lock".len() < SOCKET_PATH_MAX {
        preferred
    } else {
        PathBuf::from(format!(
            "/tmp/confab-pg-{:016x}",
            fnv1a(data_dir.as_os_str().as_bytes())
        ))
    }
}

/// pg_ctl runs the server through `/bin/sh -c` with the data dir and log path in double quotes.
fn check_shell_safe(data_dir: &Path) -> Result<()> {
    let bytes = data_dir.as_os_str().as_bytes();
    if let Some(bad) = bytes.iter().find(|b| b"\"$`\\\n".contains(b)) {
        return Err(EmbeddedError::BadPath {
            path: data_dir.to_path_buf(),
            reason: format!(
                "the path contains {:?}, which pg_ctl cannot quote",
                *bad as char
            ),
        });
    }
    Ok(())
}

/// `localhost` in the authority is never used (the `host` parameter names the socket directory),
/// but tools that parse the URL themselves, like `diesel database setup`, refuse an empty host.
fn url_with_socket(socket_dir: &Path, database: &str) -> String {
    format!(
        "postgres://{SUPERUSER}@localhost/{}?host={}&port={PORT}",
        percent_encode(database.as_bytes()),
        percent_encode(socket_dir.as_os_str().as_bytes())
    )
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// FNV-1a: a hash that stays the same across Rust releases, so `confab db-url` of one build finds
/// the socket of a server started by another.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn utf8_ctype_available() -> bool {
    ["/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"]
        .iter()
        .any(|p| Path::new(p).exists())
}

/// The first line of postmaster.pid or a socket lock file.
fn read_lock_file_pid(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

/// Hands a cluster to the server user, without following symlinks.
fn chown_tree(path: &Path, user: &ServerUser) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .map_err(io_err(format!("chown {}", path.display())))?;
    let meta = fs::symlink_metadata(path).map_err(io_err(format!("reading {}", path.display())))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io_err(format!("reading {}", path.display())))? {
            let entry = entry.map_err(io_err(format!("reading {}", path.display())))?;
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// The last `lines` lines of the server log (read from its last 16 KB).
fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn fast() -> PgOptions {
        PgOptions {
            fast_unsafe: true,
            ..PgOptions::default()
        }
    }

    /// Stops the server when a test ends, passing or failing (declare it after the tempdir).
    struct Running(PgServer);

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.stop();
        }
    }

    /// The process group of `pid`, from /proc/<pid>/stat (the fields after the command name).
    fn process_group(pid: i32) -> i32 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(2).unwrap().parse().unwrap()
    }

    /// Runs `sql` with psql through `url`, as confab would connect; returns stdout.
    fn psql(bin_dir: &Path, url: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(bin_dir.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
                url,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("psql runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    #[test]
    fn starts_answers_stops_and_keeps_data_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let began = Instant::now();
        let server = Running(PgServer::start(dir.path(), &fast()).unwrap());
        eprintln!("first start (initdb + start): {:?}", began.elapsed());
        assert!(!server.0.adopted());
        let bin = server.0.bin_dir().to_path_buf();
        assert_eq!(
            psql(&bin, &server.0.url("postgres"), "SELECT 1").unwrap(),
            "1"
        );

        server.0.ensure_database("app").unwrap();
        server.0.ensure_database("app").unwrap();
        let url = server.0.url("app");
        assert_eq!(url, PgServer::url_for(dir.path(), "app"));
        psql(
            &bin,
            &url,
            "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')",
        )
        .unwrap();
        // Only the socket: no TCP.
        assert_eq!(psql(&bin, &url, "SHOW listen_addresses").unwrap(), "");
        assert_eq!(psql(&bin, &url, "SHOW server_encoding").unwrap(), "UTF8");
        if utf8_ctype_available() {
            assert_eq!(psql(&bin, &url, "SELECT lower('ÀÉ')").unwrap(), "àé");
        }
        // A Ctrl-C at confab's terminal goes to confab's process group, not to the server's.
        let postmaster = read_lock_file_pid(&server.0.pgdata().join("postmaster.pid")).unwrap();
        assert_ne!(
            process_group(postmaster),
            process_group(std::process::id() as i32)
        );
        if let Some(user) = &server.0.server_user {
            assert_eq!(fs::metadata(server.0.pgdata()).unwrap().uid(), user.uid);
            assert_eq!(fs::metadata(server.0.socket_dir()).unwrap().uid(), user.uid);
        }

        server.0.stop().unwrap();
        server.0.stop().unwrap();
        assert!(
            psql(&bin, &url, "SELECT 1").is_err(),
            "the server should be down"
        );

        let began = Instant::now();
        let again = Running(PgServer::start(dir.path(), &fast()).unwrap());
        eprintln!("restart: {:?}", began.elapsed());
        assert!(!again.0.adopted());
        assert_eq!(
            psql(&bin, &again.0.url("app"), "SELECT body FROM notes").unwrap(),
            "kept"
        );
    }

    #[test]
    fn the_server_is_sized_for_one_application() {
        let dir = tempfile::tempdir().unwrap();
        let opts = PgOptions {
            max_connections: Some(26),
            ..fast()
        };
        let server = Running(PgServer::start(dir.path(), &opts).unwrap());
        let show = |setting: &str| {
            psql(
                server.0.bin_dir(),
                &server.0.url("postgres"),
                &format!("SHOW {setting}"),
            )
            .unwrap()
        };
        assert_eq!(show("max_connections"), "26");
        assert_eq!(show("shared_buffers"), "16MB");
        assert_eq!(show("huge_pages"), "off");
        assert_eq!(show("jit"), "off");
        let launchers = psql(
            server.0.bin_dir(),
            &server.0.url("postgres"),
            "SELECT count(*) FROM pg_stat_activity \
             WHERE backend_type = 'logical replication launcher'",
        )
        .unwrap();
        assert_eq!(
            launchers, "0",
            "no process waits for replication nobody sets up"
        );
    }

    #[test]
    fn stop_data_dir_stops_a_running_server_and_is_a_no_op_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing there yet, and a data dir that does not exist at all.
        PgServer::stop_data_dir(dir.path()).unwrap();
        PgServer::stop_data_dir(&dir.path().join("missing")).unwrap();

        let server = Running(PgServer::start(dir.path(), &fast()).unwrap());
        let bin = server.0.bin_dir().to_path_buf();
        let url = server.0.url("postgres");
        assert_eq!(psql(&bin, &url, "SELECT 1").unwrap(), "1");
        PgServer::stop_data_dir(dir.path()).unwrap();
        assert!(
            psql(&bin, &url, "SELECT 1").is_err(),
            "the server should be down"
        );
        assert!(!server.0.pgdata().join("postmaster.pid").exists());
        // Stopped already: still fine.
        PgServer::stop_data_dir(dir.path()).unwrap();
    }

    #[test]
    fn stopping_a_frozen_server_gives_up_after_the_wait_and_says_so() {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let dir = tempfile::tempdir().unwrap();
        let server = Running(PgServer::start(dir.path(), &fast()).unwrap());
        let bin = server.0.bin_dir().to_path_buf();
        let url = server.0.url("postgres");
        let pid = read_lock_file_pid(&server.0.pgdata().join("postmaster.pid")).unwrap();
        // Frozen: a stopped process (or one stuck on a hung disk) answers no signal but SIGKILL,
        // so pg_ctl waited its whole timeout (two minutes, past any container's stop timeout).
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        let stopped = server.0.stop_within(Duration::from_secs(1));
        kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
        let error = stopped
            .expect_err("a frozen server cannot have stopped")
            .to_string();
        assert!(
            error.contains(&format!("(pid {pid})")) && error.contains("left to finish by itself"),
            "the operator is told which server did not stop, and what becomes of it: {error}"
        );
        // Told to shut down, it does so once it runs again.
        server.0.stop().unwrap();
        assert!(
            psql(&bin, &url, "SELECT 1").is_err(),
            "the server should be down"
        );
    }

    #[test]
    fn concurrent_starts_share_one_server() {
        let dir = tempfile::tempdir().unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let path = dir.path().to_path_buf();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    let server = PgServer::start(&path, &fast())?;
                    barrier.wait();
                    server.ensure_database("shared")?;
                    Ok::<_, EmbeddedError>(server)
                })
            })
            .collect();
        let servers: Vec<PgServer> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert_eq!(
            servers.iter().filter(|s| s.adopted()).count(),
            1,
            "one starts, one adopts"
        );
        let running: Vec<Running> = servers.into_iter().map(Running).collect();
        for server in &running {
            assert_eq!(
                psql(server.0.bin_dir(), &server.0.url("shared"), "SELECT 1").unwrap(),
                "1"
            );
        }
    }

    #[test]
    fn adopts_a_server_left_by_a_crashed_process_and_recovers_from_a_killed_one() {
        // Durable settings, as in production: with fast_unsafe a commit not yet written by the WAL
        // writer dies with the postmaster.
        let safe = PgOptions::default();
        let dir = tempfile::tempdir().unwrap();
        let began = Instant::now();
        let first = PgServer::start(dir.path(), &safe).unwrap();
        eprintln!(
            "first start with fsync (initdb + start): {:?}",
            began.elapsed()
        );
        let bin = first.bin_dir().to_path_buf();
        drop(first); // "crash": the server keeps running

        let began = Instant::now();
        let adopted = Running(PgServer::start(dir.path(), &safe).unwrap());
        eprintln!("adopting a running server: {:?}", began.elapsed());
        assert!(adopted.0.adopted());
        psql(
            &bin,
            &adopted.0.url("postgres"),
            "CREATE TABLE t AS SELECT 42 AS answer",
        )
        .unwrap();

        // The postmaster itself dies hard: its children go, crash recovery runs at the next start.
        let pid = read_lock_file_pid(&adopted.0.pgdata().join("postmaster.pid")).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let began = Instant::now();
        let recovered = Running(PgServer::start(dir.path(), &safe).unwrap());
        eprintln!(
            "start after the postmaster was killed: {:?}",
            began.elapsed()
        );
        assert!(!recovered.0.adopted());
        assert_eq!(
            psql(&bin, &recovered.0.url("postgres"), "SELECT answer FROM t").unwrap(),
            "42"
        );
    }

    #[test]
    fn a_lock_file_naming_a_reused_pid_does_not_block_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let server = Running(PgServer::start(dir.path(), &fast()).unwrap());
        server.0.stop().unwrap();

        // After a crash and a reboot, the pid in the lock files belongs to some other live process,
        // of the same user (PostgreSQL ignores a pid it may not signal).
        let mut sleep = Command::new("sleep");
        sleep.arg("60");
        if let Some(user) = &server.0.server_user {
            sleep.uid(user.uid).gid(user.gid);
        }
        let mut other = sleep.spawn().unwrap();
        let pid_file = server.0.pgdata().join("postmaster.pid");
        let socket_lock = server.0.socket_dir().join(format!("{SOCKET_FILE}.lock"));
        let contents = format!("{}\n{}\n", other.id(), server.0.pgdata().display());
        fs::write(&pid_file, &contents).unwrap();
        fs::write(&socket_lock, &contents).unwrap();
        // stop() must not signal that process.
        server.0.stop().unwrap();
        assert!(
            other.try_wait().unwrap().is_none(),
            "stop() signalled an unrelated process"
        );

        let again = Running(PgServer::start(dir.path(), &fast()).unwrap());
        assert_eq!(
            psql(again.0.bin_dir(), &again.0.url("postgres"), "SELECT 1").unwrap(),
            "1"
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn a_long_data_dir_puts_the_socket_under_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("a".repeat(50)).join("b".repeat(40));
        let url = PgServer::url_for(&data_dir, "app");
        assert!(url.contains("host=%2Ftmp%2Fconfab-pg-"), "{url}");

        let server = Running(PgServer::start(&data_dir, &fast()).unwrap());
        assert!(server.0.socket_dir().starts_with("/tmp"));
        assert_eq!(server.0.url("app"), url);
        assert_eq!(
            psql(server.0.bin_dir(), &server.0.url("postgres"), "SELECT 1").unwrap(),
            "1"
        );
        let mode = fs::metadata(server.0.socket_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(server);
        fs::remove_dir_all(socket_dir_for(&data_dir)).unwrap();
    }

    #[test]
    fn as_root_a_data_dir_the_server_user_cannot_reach_is_a_clear_error() {
        if !Uid::effective().is_root() {
            return;
        }
        let closed = tempfile::tempdir().unwrap();
        fs::set_permissions(closed.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let err = match PgServer::start(&closed.path().join("data"), &fast()) {
            Ok(server) => {
                server.stop().unwrap();
                panic!("started in a directory the server user cannot reach");
            }
            Err(err) => err,
        };
        assert!(matches!(err, EmbeddedError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("cannot reach"), "{err}");
    }

    #[test]
    fn urls_encode_the_socket_dir() {
        assert_eq!(
            PgServer::url_for(Path::new("/srv/confab"), "confab"),
            "postgres://confab@localhost/confab?host=%2Fsrv%2Fconfab%2Frun&port=5432"
        );
        // Characters pg_ctl's command line cannot take move the socket to /tmp, keyed by the dir.
        let odd = socket_dir_for(Path::new("/srv/it's mine"));
        assert!(
            odd.to_str().unwrap().starts_with("/tmp/confab-pg-"),
            "{}",
            odd.display()
        );
        assert_eq!(odd, socket_dir_for(Path::new("/srv/it's mine")));
        assert_ne!(odd, socket_dir_for(Path::new("/srv/it's yours")));
    }

    #[test]
    fn newest_bin_dir_compares_versions_numerically() {
        let root = tempfile::tempdir().unwrap();
        for (version, has_server) in [("9.6", true), ("15", true), ("10", true), ("16", false)] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            if has_server {
                fs::write(bin.join("postgres"), "").unwrap();
            }
        }
        assert_eq!(
            newest_bin_dir(root.path()),
            Some(root.path().join("15/bin"))
        );
        assert_eq!(newest_bin_dir(&root.path().join("missing")), None);
    }

    #[test]
    fn finds_the_installed_server() {
        let bin = PgServer::find_bin_dir().unwrap();
        assert!(bin.join("postgres").is_file(), "{}", bin.display());
    }
}
