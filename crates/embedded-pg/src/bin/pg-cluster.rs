//! Stops the server of an embedded PostgreSQL cluster, e.g. the one the integration tests share
//! and leave running for the next test binary (`make unit` stops it at the end):
//!
//!     pg-cluster stop target/tmp/confab-test-pg
//!
//! DIR is the data dir given to `PgServer::start` (the cluster is `DIR/pg`). Stopping a cluster
//! that is not running, or a DIR without one, succeeds and does nothing.

use std::path::Path;
use std::process::ExitCode;

use confab_embedded_pg::PgServer;

const USAGE: &str = "usage: pg-cluster stop DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.as_slice() {
        [command, dir] if command == "stop" => dir,
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match PgServer::stop_data_dir(Path::new(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pg-cluster: stopping the cluster in {dir}: {error}");
            ExitCode::FAILURE
        }
    }
}
