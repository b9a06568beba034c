//! The command line: `confab serve` (default), `confab migrate`, `confab db-url`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::web;
use clap::{Parser, Subcommand};
use diesel::Connection;
use tracing_subscriber::EnvFilter;

use crate::auth::token::load_or_create_secret;
use crate::db::embedded::{PgOptions, PgServer};
use crate::db::pool::{build_pool, run_migrations};
use crate::settings::{Overrides, Settings};
use crate::startup::{self, AppState};

/// Name of the database confab creates in its embedded PostgreSQL.
pub const EMBEDDED_DATABASE: &str = "confab";

#[derive(Parser)]
#[command(
    name = "confab",
    version,
    about = "Self-hosted chatbot platform: projects, agents, prompts and streaming chat in one binary."
)]
struct Cli {
    /// Configuration file (default: ./confab.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the embedded PostgreSQL, the generated JWT secret and uploads.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, global = true)]
    host: Option<String>,
    /// Port to listen on.
    #[arg(long, global = true)]
    port: Option<u16>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the web server (the default).
    Serve {
        /// Do not run pending database migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Run pending database migrations and exit.
    Migrate,
    /// Print the database URL (for `diesel migration run --database-url "$(confab db-url)"`).
    DbUrl,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        config_file: cli.config,
        host: cli.host,
        port: cli.port,
        data_dir: cli.data_dir,
    };
    let settings = match Settings::load(&overrides) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("confab: {error}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&settings.log);
    let result = match cli.command.unwrap_or(Command::Serve { no_migrate: false }) {
        Command::Serve { no_migrate } => serve(settings, !no_migrate),
        Command::Migrate => migrate(&settings),
        Command::DbUrl => {
            println!("{}", database_url_without_starting(&settings));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("confab: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // A request's span closes with its method, route, status and time: one line per request.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .try_init();
}

fn database_url_without_starting(settings: &Settings) -> String {
    match &settings.database.url {
        Some(url) => url.expose().to_string(),
        None => PgServer::url_for(&settings.data_dir, EMBEDDED_DATABASE),
    }
}

/// The configured database, or the embedded one, started (and its database created) if needed.
fn open_database(settings: &Settings) -> Result<(String, Option<PgServer>), String> {
    if let Some(url) = &settings.database.url {
        return Ok((url.expose().to_string(), None));
    }
    let started = std::time::Instant::now();
    let server = PgServer::start(&settings.data_dir, &PgOptions { fast_unsafe: false })
        .map_err(|e| e.to_string())?;
    server
        .ensure_database(EMBEDDED_DATABASE)
        .map_err(|e| e.to_string())?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, data_dir = %settings.data_dir.display(), "embedded PostgreSQL is up");
    Ok((server.url(EMBEDDED_DATABASE), Some(server)))
}

fn apply_migrations(url: &str) -> Result<usize, String> {
    let mut conn = diesel::PgConnection::establish(url)
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    run_migrations(&mut conn).map_err(|e| format!("migrations failed: {e}"))
}

fn migrate(settings: &Settings) -> Result<(), String> {
    let (url, embedded) = open_database(settings)?;
    let result = apply_migrations(&url);
    if let Some(server) = embedded {
        let _ = server.stop();
    }
    let ran = result?;
    println!("{ran} migration(s) applied");
    Ok(())
}

fn serve(settings: Settings, migrate: bool) -> Result<(), String> {
    let (url, embedded) = open_database(&settings)?;
    let result = serve_with(settings, &url, migrate);
    if let Some(server) = embedded {
        tracing::info!("stopping embedded PostgreSQL");
        if let Err(error) = server.stop() {
            tracing::warn!(%error, "embedded PostgreSQL did not stop cleanly");
        }
    }
    result
}

fn serve_with(settings: Settings, url: &str, migrate: bool) -> Result<(), String> {
    if migrate {
        let ran = apply_migrations(url)?;
        if ran > 0 {
            tracing::info!(count = ran, "applied database migrations");
        }
    }
    let secret = load_or_create_secret(settings.auth.jwt_secret.as_ref(), &settings.data_dir)
        .map_err(|e| {
            format!(
                "cannot read or create the JWT secret in {}: {e}",
                settings.data_dir.display()
            )
        })?;
    let pool = build_pool(
        url,
        settings.database.pool_size,
        Duration::from_secs(settings.database.connect_timeout_secs),
    );
    let address = format!("{}:{}", settings.server.host, settings.server.port);
    let listener =
        TcpListener::bind(&address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
    tracing::info!("confab listening on http://{address}");
    let grace = Duration::from_secs(settings.server.shutdown_grace_secs);
    let state = web::Data::new(AppState::new(settings, pool, &secret));
    actix_web::rt::System::new().block_on(async move {
        match crate::generation::mark_interrupted(&state.pool).await {
            Ok(0) => {}
            Ok(count) => tracing::warn!(count, "marked answers left streaming by an earlier run as interrupted"),
            Err(error) => tracing::warn!(%error, "could not check for interrupted answers"),
        }
        let server = startup::run(listener, state.clone()).map_err(|e| e.to_string())?;
        let handle = server.handle();
        let mut serving = actix_web::rt::spawn(server);
        tokio::select! {
            result = &mut serving => return result.map_err(|e| e.to_string())?.map_err(|e| e.to_string()),
            signal = shutdown_signal() => tracing::info!(signal, "shutting down; live answers get {} s to finish", grace.as_secs()),
        }
        // Pages keep streaming while answers finish; whatever is left after the grace period is
        // saved with its partial text.
        state.generations.shutdown(grace).await;
        handle.stop(true).await;
        serving.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
    })
}

/// Ctrl-C (SIGINT) or SIGTERM (what `docker stop` and systemd send).
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
