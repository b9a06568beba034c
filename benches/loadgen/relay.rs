//! The bare relay: the floor any relay has on this machine. An actix-web server with one shared
//! reqwest client; `POST /relay` sends the fake a streamed Responses request and re-emits every
//! text delta to its own client as an SSE event the moment it arrives. No auth, no database, no
//! storage of the answer.
//!
//! It is meant as a floor, not a straw man, so it does what confab's own path to the provider
//! does and nothing more: the listener is bound the same way (std `TcpListener`, its accept
//! queue deepened to `SOMAXCONN` as confab's), the workers are actix's default (as confab's), TCP_NODELAY is on both ways,
//! the upstream body is parsed with eventsource-stream (as confab reads its providers), each
//! delta's JSON is parsed, and each event goes out as its own chunk (actix flushes whenever the
//! body stream is pending, so nothing waits in a buffer). Its events have the shape of confab's
//! API stream (`data: {"text":…}`, ending with `{"done":true,"status":"complete"}`), so the load
//! generator reads the relay and confab with the same code.
//!
//! It runs in a process of its own (this binary started with `--serve-relay`), like confab, so
//! its CPU and memory are measured the same way and it does not share the load generator's
//! runtime.

use std::fs;
use std::io::{self, BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use confab_fake_llm::FakeLlm;

use crate::Error;
use crate::cli::Args;
use crate::client::Target;
use crate::confab::{ServerChild, ServerReport, indent, measured_run, warm_up};
use crate::sampling::ServerProcesses;

/// Serves the relay on `addr` in front of the upstream base URL `upstream` until SIGTERM/SIGINT
/// (or, with `exit_on_stdin_eof`, until stdin ends). Prints `relay listening on http://ADDR` once
/// it accepts connections.
pub fn serve(addr: &str, upstream: &str, exit_on_stdin_eof: bool) -> io::Result<()> {
    if exit_on_stdin_eof {
        std::thread::spawn(|| {
            // Nothing is ever written: this returns when the parent's end closes.
            let _ = io::Read::read_to_end(&mut io::stdin(), &mut Vec::new());
            std::process::exit(0);
        });
    }
    let listener = TcpListener::bind(addr)?;
    // As confab does: std's backlog of 128 overflows when a burst opens thousands at once.
    nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::MAXCONN)?;
    let local = listener.local_addr()?;
    // One client for every stream, as confab has: its pool keeps the upstream connections.
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .map_err(io::Error::other)?;
    let state = web::Data::new(Upstream {
        client,
        url: format!("{}/responses", upstream.trim_end_matches('/')),
    });
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/relay", web::post().to(relay))
                .route("/health", web::get().to(HttpResponse::Ok))
        })
        .on_connect(|connection, _| {
            if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        // stdout is line-buffered: the parent reads this line as soon as it is printed.
        println!("relay listening on http://{local}");
        server.await
    })
}

struct Upstream {
    client: reqwest::Client,
    url: String,
}

/// What the load generator sends (confab's chat request body).
#[derive(Deserialize)]
struct Ask {
    message: String,
}

/// The part of a `response.output_text.delta` event the relay needs.
#[derive(Deserialize)]
struct Delta {
    delta: String,
}

async fn relay(upstream: web::Data<Upstream>, ask: web::Json<Ask>) -> HttpResponse {
    let sent = upstream
        .client
        .post(&upstream.url)
        .bearer_auth("fake")
        .header("accept", "text/event-stream")
        .json(&json!({"model": "gpt-4o-mini", "input": ask.message, "stream": true}))
        .send()
        .await;
    let response = match sent {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            return HttpResponse::BadGateway().body(format!("upstream: {}", response.status()));
        }
        Err(error) => return HttpResponse::BadGateway().body(format!("upstream: {error}")),
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(relayed(response))
}

/// The upstream's events, each text delta re-emitted as it arrives; ends after the final event.
fn relayed(response: reqwest::Response) -> impl Stream<Item = Result<Bytes, io::Error>> {
    let events = response.bytes_stream().eventsource();
    futures_util::stream::unfold(Some(events), |events| async move {
        let mut events = events?;
        loop {
            let Some(event) = events.next().await else {
                return Some((Ok(done("failed", Some("upstream ended early"))), None));
            };
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    return Some((Ok(done("failed", Some(&error.to_string()))), None));
                }
            };
            match event.event.as_str() {
                "response.output_text.delta" => {
                    let Ok(delta) = serde_json::from_str::<Delta>(&event.data) else {
                        return Some((Ok(done("failed", Some("bad delta"))), None));
                    };
                    let data = json!({"text": delta.delta});
                    return Some((Ok(Bytes::from(format!("data: {data}\n\n"))), Some(events)));
                }
                "response.completed" => return Some((Ok(done("complete", None)), None)),
                "response.failed" | "response.incomplete" | "error" => {
                    return Some((Ok(done("failed", Some(&event.event))), None));
                }
                // Lifecycle events carry no text.
                _ => {}
            }
        }
    })
}

fn done(status: &str, error: Option<&str>) -> Bytes {
    let data = json!({"text": "", "done": true, "status": status, "error": error});
    Bytes::from(format!("data: {data}\n\n"))
}

/// Starts this binary as the relay in front of `upstream`; returns the child and its base URL.
pub async fn start(
    args: &Args,
    upstream: &str,
    log: PathBuf,
) -> Result<(ServerChild, String), Error> {
    let exe = std::env::current_exe()?;
    let child = args
        .server_command(exe)
        .args(["--serve-relay", "127.0.0.1:0", "--upstream", upstream])
        .arg("--exit-on-stdin-eof")
        // Held open by `child` (ours ends with this process, however it ends).
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log)?)
        .spawn()
        .map_err(|e| format!("{}: {e}", args.starting("the relay")))?;
    let mut child = ServerChild { child, log };
    let stdout = child.child.stdout.take().ok_or("the relay's stdout")?;
    // The first line names the address. A blocking read on a thread of its own, bounded: if the
    // relay never prints it, the child is killed when dropped, which ends the read too.
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let Ok(Ok(Ok(line))) = tokio::time::timeout(Duration::from_secs(30), first_line).await else {
        return Err(format!("the relay did not start within 30 s:\n{}", child.log_tail()).into());
    };
    let base = line
        .trim()
        .strip_prefix("relay listening on ")
        .ok_or_else(|| format!("the relay said {line:?}:\n{}", child.log_tail()))?
        .to_owned();
    Ok((child, base))
}

/// The relay phase: the relay in front of the fake, warmed up, then the measured streams.
pub async fn relay_phase(
    client: &reqwest::Client,
    fake: &FakeLlm,
    args: &Args,
    expected: &str,
    phase_timeout: Duration,
) -> Result<ServerReport, Error> {
    let temp = tempfile::Builder::new()
        .prefix("confab-loadgen-relay")
        .tempdir()?;
    let (mut relay, base) =
        start(args, &args.upstream_of(fake), temp.path().join("relay.log")).await?;
    println!("  relay pid {} on {base}", relay.pid());
    let target = Target::Relay { base };
    warm_up(client, &target, args, expected, phase_timeout).await;
    let mut report = measured_run(
        client,
        ServerProcesses {
            pid: relay.pid(),
            postmaster: None,
        },
        &target,
        args,
        expected,
        phase_timeout,
        None,
    )
    .await;
    report.stats.note_asked(fake);
    report.stats.print_short("relay");
    let (ended, log) = tokio::task::spawn_blocking(move || {
        let ended = relay.stop(Duration::from_secs(10));
        (ended, relay.log_tail())
    })
    .await?;
    println!("  relay {ended}");
    if report.stats.errors > 0 && !log.trim().is_empty() {
        println!("  relay log (last lines):\n{}", indent(&log));
    }
    Ok(report)
}
