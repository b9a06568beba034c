//! Run the fake OpenAI-compatible upstream on a fixed port, to try confab without an API key:
//!
//!     cargo run --example fake_llm -- --port 8090
//!     OPENAI_BASE_URL=http://127.0.0.1:8090/v1 OPENAI_API_KEY=fake cargo run
//!
//! It answers `/v1/responses` and `/v1/chat/completions` (streamed or not) and `/v1/models`.
//! A message that starts with `echo:` is answered with the rest of it (the browser tests use this
//! to have an answer in Markdown). With `--tls-cert` and `--tls-key` it serves HTTPS, HTTP/2 or
//! HTTP/1.1 as the client prefers, as hosted providers do; confab then needs the certificate's
//! authority in `llm.ca_file`.

// Test and benchmark tooling: a failed unwrap is a failed run, with its line.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clap::Parser;

// The same fake the integration tests use, so the demo speaks exactly what the tests check.
use confab_fake_llm::{FakeLlm, Script};

const ANSWER: &str = "Hello! I am confab's fake language model, running on your own machine. \
I do not understand your question, but I stream my answer token by token just like a real \
provider would, so you can watch the chat page at work. Point confab at a real provider by \
setting OPENAI_API_KEY or OPENROUTER_API_KEY when you are ready.";

/// A fake OpenAI-compatible LLM server.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FAKE_LLM_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long, env = "FAKE_LLM_PORT", default_value_t = 8090)]
    port: u16,
    /// Pause between two streamed tokens, in milliseconds.
    #[arg(long, env = "FAKE_LLM_TOKEN_DELAY_MS", default_value_t = 40)]
    token_delay_ms: u64,
    /// Pause before the first token, in milliseconds.
    #[arg(long, env = "FAKE_LLM_FIRST_TOKEN_DELAY_MS", default_value_t = 300)]
    first_token_delay_ms: u64,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1, as the client prefers) with this certificate chain (PEM)…
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// …and this key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let addr = format!("{}:{}", args.host, args.port);
    let fake = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => FakeLlm::start_tls_at(&addr, cert, key)?,
        _ => FakeLlm::start_at(&addr)?,
    };
    fake.set_default(
        Script::answer(ANSWER)
            .token_delay(Duration::from_millis(args.token_delay_ms))
            .first_token_delay(Duration::from_millis(args.first_token_delay_ms))
            .echo_after("echo:"),
    );
    println!("fake LLM listening on {}", fake.base_url());
    let trust = if args.tls_cert.is_some() {
        " CONFAB_LLM__CA_FILE=<the certificate's authority, PEM>"
    } else {
        ""
    };
    println!(
        "try: OPENAI_BASE_URL={} OPENAI_API_KEY=fake{trust} confab serve",
        fake.base_url()
    );
    tokio::signal::ctrl_c().await?;
    fake.stop().await;
    Ok(())
}
