//! The command line.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Opens N concurrent streams against the fake LLM alone, through a bare relay and through
/// confab; prints TTFT, inter-token gaps, errors, memory and CPU side by side.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen")]
pub struct Args {
    /// Concurrent streams (conversations) per phase.
    #[arg(long, default_value_t = 200)]
    pub streams: usize,
    /// Tokens (deltas) in every answer.
    #[arg(long, default_value_t = 50)]
    pub tokens: usize,
    /// Bytes of the message every stream sends ("hello", padded with words): a long one stands
    /// for a long conversation's request (its history), which a live answer should not keep.
    #[arg(long, default_value_t = 5)]
    pub message_bytes: usize,
    /// Pause between two tokens, in ms (the upstream's token rate).
    #[arg(long, default_value_t = 20)]
    pub token_delay_ms: u64,
    /// Pause before the first token, in ms (the upstream "thinking").
    #[arg(long, default_value_t = 200)]
    pub first_token_delay_ms: u64,
    /// How the N streams start: `burst` opens N connections first, then sends all N requests at
    /// the same instant; `ramp` spreads the starts over `--ramp-ms` (connecting as they go).
    #[arg(long, value_enum, default_value_t = Start::Burst)]
    pub start: Start,
    /// With `--start ramp`: stream starts are spread evenly over this window, in ms. Keep it
    /// shorter than one stream (first delay + (tokens-1) × token delay) so that all N are live at
    /// the same time.
    #[arg(long, default_value_t = 2000)]
    pub ramp_ms: u64,
    /// The history phase: requests per second to the 1,000-message conversation's page, then
    /// to its API read.
    #[arg(long, default_value_t = 500)]
    pub history_rate: u32,
    /// The history phase: seconds at that rate, for each of the two.
    #[arg(long, default_value_t = 5)]
    pub history_secs: u64,
    /// Which phases to run, in this order, comma-separated (`history` is not a stream phase: a
    /// 1,000-message conversation's page and API read at `--history-rate`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "fake,relay,confab"
    )]
    pub phase: Vec<Phase>,
    /// The confab binary to run (default: `confab` in the target directory this bench was built
    /// in, i.e. target/release/confab; build it first: `cargo build --release --bin confab`).
    #[arg(long)]
    pub confab_bin: Option<PathBuf>,
    /// The fake upstream's port (0: a free one). A fixed port lets a front stand between the
    /// servers under test and the fake, e.g. nginx with TLS and HTTP/2 (see `--front`).
    #[arg(long, default_value_t = 0)]
    pub fake_port: u16,
    /// A front to the fake on `--fake-port` (which it needs), e.g. nginx with TLS and HTTP/2:
    /// `https://127.0.0.1:8443/v1`. The relay and confab are given its URL instead of the fake's;
    /// they inherit the load generator's environment, so the front's certificate authority goes
    /// there (`SSL_CERT_FILE`, which both read; or confab's `CONFAB_LLM__CA_FILE`).
    #[arg(long, value_name = "URL")]
    pub front: Option<String>,
    /// Data directory for confab's embedded PostgreSQL (default: a fresh temporary one).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Accounts the streams are spread over (round robin), each with its own project.
    #[arg(long, default_value_t = 1)]
    pub users: usize,
    /// Run the servers under test (the bare relay; confab, and so its PostgreSQL) on these CPUs
    /// only, through `taskset -c LIST` (e.g. `1`); start the load generator itself with
    /// `taskset -c` on the others, so that the client and the fake do not compete with them.
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<String>,
    /// Client worker threads (default: number of cores).
    #[arg(long)]
    pub client_threads: Option<usize>,
    /// Upper bound for one phase's streams, in seconds (default: 3 × the scripted duration + 30).
    #[arg(long)]
    pub phase_timeout_secs: Option<u64>,
    /// Also print the summary as one JSON line (prefixed `loadgen-json: `).
    #[arg(long)]
    pub json: bool,
    /// Instead of a load run, serve the bare relay on this address (`127.0.0.1:0`: a free port;
    /// the address is printed on stdout) in front of `--upstream`. The relay phase starts this
    /// binary that way; by hand it relays to e.g. `make fake-llm`.
    #[arg(long, value_name = "ADDR")]
    pub serve_relay: Option<String>,
    /// With `--serve-relay`: the upstream's base URL, e.g. `http://127.0.0.1:8090/v1`.
    #[arg(long, value_name = "URL", requires = "serve_relay")]
    pub upstream: Option<String>,
    /// With `--serve-relay`: exit when stdin reaches its end. The relay phase passes it with a
    /// pipe, so a relay never outlives a load generator that was killed.
    #[arg(long, hide = true, requires = "serve_relay")]
    pub exit_on_stdin_eof: bool,
    /// Passed by `cargo bench`; without it only a quick check runs (see `main`).
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl Args {
    pub fn runs(&self, phase: Phase) -> bool {
        self.phase.contains(&phase)
    }

    /// The command that starts a server under test: `program` itself, or through `taskset`
    /// with `--server-cpus` (which execs it, so the child's pid is the server's).
    pub fn server_command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        match &self.server_cpus {
            None => std::process::Command::new(program),
            Some(cpus) => {
                let mut command = std::process::Command::new("taskset");
                command.arg("-c").arg(cpus).arg(program);
                command
            }
        }
    }

    /// The provider URL the relay and confab are given: `--front`, or the fake's own.
    pub fn upstream_of(&self, fake: &confab_fake_llm::FakeLlm) -> String {
        self.front.clone().unwrap_or_else(|| fake.base_url())
    }

    /// What failed to start, for an error message: with `--server-cpus`, `taskset` may be the
    /// missing program.
    pub fn starting(&self, server: &str) -> String {
        match &self.server_cpus {
            None => format!("starting {server}"),
            Some(_) => format!("starting {server} through taskset (util-linux)"),
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// The fake upstream alone.
    Fake,
    /// The bare relay (actix-web + reqwest, no auth, no database) in front of the fake.
    Relay,
    /// confab in front of the fake.
    Confab,
    /// A 1,000-message conversation's page and API read, at a fixed rate.
    History,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Start {
    Burst,
    Ramp,
}
