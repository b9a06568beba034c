//! Load generator: N concurrent streamed chats against confab with the fake OpenAI-compatible
//! upstream at a fixed token rate, and the same N streams against the fake alone.
//!
//!     cargo build --release --bin confab
//!     cargo bench --bench loadgen -- --streams 1000
//!
//! (`scripts/bench.sh 1000` does both.) Phase 1 sends N `POST /v1/responses` streams straight to
//! the fake; phase 2 starts `target/release/confab` on a fresh embedded database, signs up, makes
//! a project and sends N `POST /api/chat/agents/{id}` streams through it, the fake answering
//! behind. It prints time-to-first-token and inter-token gaps of both, their difference (what
//! confab adds), errors, confab's RSS (idle, peak, per live stream) and CPU, and the latency of
//! ordinary API calls made while the streams run. Exit status 1 when any stream failed, 2 when
//! the run could not be set up.
//!
//! The load generator, the fake and confab (with its PostgreSQL) share the machine's cores: at
//! 1,000 streams × 50 tokens/s the generator and the fake alone use about one core, mostly kernel
//! time for the loopback TCP writes and reads of every token. Compare runs made on an idle
//! machine, and read "confab CPU … per token" and "loadgen process CPU" before the latencies.
//!
//! `cargo test --all-targets` runs this target too, without `--bench`: then it only checks
//! quickly that the harness works against the fake.
//!
//! Everything is bounded: every wait has a deadline and the whole run stops by itself; Ctrl-C
//! or SIGTERM stops confab (and its PostgreSQL) before exiting.

// Test and benchmark tooling: a failed unwrap is a failed run, with its line.
#![allow(clippy::unwrap_used)]

mod cli;
mod client;
mod confab;
mod report;
mod sampling;

use std::fs;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use confab_fake_llm::{FakeLlm, Script};

use crate::cli::{Args, Phase};
use crate::client::{Target, http_client, run_streams};
use crate::confab::{confab_bin, confab_phase};
use crate::report::{Stats, summary};
use crate::sampling::CpuTimes;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench targets too, without
    // it (and possibly with test filters): then only check quickly that the harness works.
    let args = if std::env::args().any(|arg| arg == "--bench") {
        Args::parse()
    } else {
        println!(
            "loadgen: not run by `cargo bench` (no --bench): a quick check against the fake only"
        );
        Args::parse_from([
            "loadgen",
            "--phase",
            "fake",
            "--streams",
            "20",
            "--tokens",
            "10",
            "--token-delay-ms",
            "1",
            "--ramp-ms",
            "20",
        ])
    };
    if args.streams == 0 || args.tokens == 0 || args.users == 0 {
        eprintln!("--streams, --tokens and --users must be at least 1");
        return ExitCode::from(2);
    }
    let threads = args
        .client_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let outcome = runtime.block_on(async {
        // Ctrl-C or SIGTERM: drop the run, which stops confab (and its PostgreSQL) on the way.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            outcome = run(args) => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = terminate.recv() => Err("terminated".into()),
        }
    });
    // Streams still open after a deadline must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::from(2)
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn run(args: Args) -> Result<bool, Error> {
    check_fd_limit(args.streams)?;
    let tokens: Vec<String> = (0..args.tokens).map(|i| format!("t{i} ")).collect();
    let expected: String = tokens.concat();
    let fake = FakeLlm::start_at("127.0.0.1:0")?;
    fake.set_default(
        Script::tokens(tokens)
            .token_delay(Duration::from_millis(args.token_delay_ms))
            .first_token_delay(Duration::from_millis(args.first_token_delay_ms)),
    );
    let scripted = Duration::from_millis(
        args.first_token_delay_ms + args.token_delay_ms * (args.tokens as u64 - 1),
    );
    let phase_timeout = Duration::from_secs(
        args.phase_timeout_secs
            .unwrap_or(3 * (args.ramp_ms / 1000 + scripted.as_secs() + 1) + 30),
    );
    println!(
        "loadgen: {} streams × {} tokens, {} ms apart (first after {} ms): each stream ≈ {:.2} s; \
         starts spread over {} ms",
        args.streams,
        args.tokens,
        args.token_delay_ms,
        args.first_token_delay_ms,
        scripted.as_secs_f64(),
        args.ramp_ms
    );
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1: f64 = load
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!(
        "loadgen: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if load1 > 0.5 {
        println!(
            "loadgen: warning: the machine is busy (load {load1}); latencies will include that"
        );
    }
    if Duration::from_millis(args.ramp_ms) >= scripted {
        println!(
            "loadgen: warning: the ramp is not shorter than one stream, so fewer than N streams \
             are ever live at once (see \"peak live\")"
        );
    }

    let mut fake_stats = None;
    if args.phase != Phase::Confab {
        println!(
            "\n== phase 1: the fake upstream alone ({})",
            fake.base_url()
        );
        let target = Target::Fake {
            url: format!("{}/responses", fake.base_url()),
        };
        let cpu_before = CpuTimes::of_self();
        // A client per phase: dropping it closes its idle connections, so the two phases never
        // hold 2N sockets each at the same time.
        let client = http_client(args.streams)?;
        let results = run_streams(&client, &target, &args, &expected, phase_timeout, None).await;
        drop(client);
        let cpu = CpuTimes::of_self().since(&cpu_before);
        let stats = Stats::from_results(results);
        stats.print_short("fake");
        println!(
            "  loadgen process CPU (client + fake): {:.2} s over {:.2} s wall",
            cpu.total_secs(),
            stats.wall.as_secs_f64()
        );
        fake_stats = Some(stats);
    }

    let mut confab_report = None;
    if args.phase != Phase::Fake {
        println!(
            "\n== phase 2: through confab ({})",
            confab_bin(&args).display()
        );
        let client = http_client(args.streams)?;
        let report = confab_phase(&client, &fake, &args, &expected, phase_timeout).await?;
        confab_report = Some(report);
    }

    let ok = summary(&args, fake_stats.as_ref(), confab_report.as_ref());
    Ok(ok)
}

/// N=1000 needs about 2N descriptors in this process (client sockets plus the fake's server
/// sockets) and 2N in confab, which inherits our limit.
fn check_fd_limit(streams: usize) -> Result<(), Error> {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|value| value.parse::<usize>().ok());
    if let Some(soft) = soft {
        let need = 2 * streams + 256;
        if soft < need {
            return Err(format!(
                "the open-files limit is {soft}, {streams} streams need about {need}: \
                 raise it first (`ulimit -n {need}`)"
            )
            .into());
        }
    }
    Ok(())
}
