//! The command line: `confab serve` (default), `confab migrate`, `confab db-url`,
//! `confab backup FILE`, `confab restore FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::settings::{Overrides, Settings};
use crate::startup::{self, Application};

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
    /// Write everything confab keeps (database and JWT secret) to FILE; fine while confab runs.
    Backup {
        /// Where to write the backup (a tar archive).
        file: PathBuf,
    },
    /// Restore a backup into an empty data dir (or empty external database), before starting.
    Restore {
        /// A file written by `confab backup`.
        file: PathBuf,
    },
    /// Print a PDF's text under a memory and CPU limit (what the server runs, one child per
    /// PDF, so a crafted PDF costs that child and never the server).
    #[command(hide = true)]
    ExtractText {
        #[arg(long)]
        max_seconds: u64,
        #[arg(long)]
        max_memory_mb: u64,
        file: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs no settings, and must not touch the data dir.
    if let Some(Command::ExtractText {
        max_seconds,
        max_memory_mb,
        file,
    }) = &cli.command
    {
        return crate::files::text::extract_text_command(
            file,
            crate::files::text::Limits {
                seconds: *max_seconds,
                memory_mb: *max_memory_mb,
            },
        );
    }
    let overrides = Overrides {
        config_file: cli.config,
        host: cli.host,
        port: cli.port,
        data_dir: cli.data_dir,
    };
    let mut settings = match Settings::load(&overrides) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("confab: {error}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&settings.log);
    let result = match cli.command.unwrap_or(Command::Serve { no_migrate: false }) {
        Command::Serve { no_migrate } => {
            settings.database.migrate &= !no_migrate;
            serve(settings)
        }
        Command::Migrate => migrate(&settings),
        Command::Backup { file } => crate::backup::create(&settings, &file).map(|()| {
            println!("backup written to {}", file.display());
        }),
        Command::Restore { file } => crate::backup::restore(&settings, &file).map(|()| {
            println!(
                "restored {} into {}",
                file.display(),
                settings.data_dir.display()
            );
        }),
        Command::DbUrl => {
            println!("{}", startup::database_url(&settings));
            Ok(())
        }
        Command::ExtractText { .. } => unreachable!("handled before the settings are read"),
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
    // Colours only on a terminal: in a file or a log collector they are escape codes.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_ansi(colours)
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .try_init();
}

fn migrate(settings: &Settings) -> Result<(), String> {
    let (url, embedded) = startup::open_database(settings)?;
    let result = startup::apply_migrations(&url);
    if let Some(server) = embedded {
        let _ = server.stop();
    }
    let ran = result?;
    println!("{ran} migration(s) applied");
    Ok(())
}

fn serve(settings: Settings) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        Application::build(settings)
            .await?
            .run_until_stopped()
            .await
    })
}
