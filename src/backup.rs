//! `confab backup FILE` and `confab restore FILE`: everything confab keeps, in one file — a
//! consistent `pg_dump` of its database (embedded or external) and the generated JWT secret
//! (without it, every session would end on restore). The file is a tar archive:
//!
//! ```text
//! confab-backup.json   what this is: {"format": 1, "created_at", "confab_version"}
//! database.dump        pg_dump --format=custom (compressed), restored with pg_restore
//! jwt_secret           <data_dir>/jwt_secret, when the secret is generated, not configured
//! ```
//!
//! A backup can be taken while confab runs (pg_dump reads one snapshot). A restore goes into an
//! empty data dir (or an empty external database), before confab starts on it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use confab_embedded_pg::PgServer;

use crate::settings::Settings;
use crate::startup;

const MANIFEST: &str = "confab-backup.json";
const DUMP: &str = "database.dump";
const SECRET: &str = "jwt_secret";
const FORMAT: u64 = 1;

/// Writes a backup of what `settings` point at to `file` (replaced only once it is complete).
pub fn create(settings: &Settings, file: &Path) -> Result<(), String> {
    let work = scratch_dir_beside(file)?;
    let (url, embedded) = startup::open_database(settings)?;
    let dumped = run(
        client(embedded.as_ref(), "pg_dump")?
            .args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
            .arg(work.path().join(DUMP))
            .arg("--dbname")
            .arg(&url),
        "pg_dump",
    );
    stop_unless_adopted(embedded);
    dumped?;

    let partial = file.with_extension("partial");
    let write = || -> std::io::Result<()> {
        // It holds the JWT secret and every password hash: for its owner's eyes only.
        let archive_file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        let mut archive = tar::Builder::new(archive_file);
        let manifest = serde_json::json!({
            "format": FORMAT,
            "created_at": chrono::Utc::now(),
            "confab_version": env!("CARGO_PKG_VERSION"),
        });
        let manifest = serde_json::to_vec_pretty(&manifest)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        archive.append_data(&mut header, MANIFEST, manifest.as_slice())?;
        archive.append_path_with_name(work.path().join(DUMP), DUMP)?;
        let secret = settings.data_dir.join(SECRET);
        if settings.auth.jwt_secret.is_none() && secret.is_file() {
            archive.append_path_with_name(&secret, SECRET)?;
        }
        archive.into_inner()?.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    fs::rename(&partial, file).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// Restores `file` into the empty data dir (or database) `settings` point at.
pub fn restore(settings: &Settings, file: &Path) -> Result<(), String> {
    if settings.database.url.is_none() && settings.data_dir.join("pg").exists() {
        return Err(format!(
            "{} already holds a database; restore into an empty data dir",
            settings.data_dir.display()
        ));
    }
    let work = scratch_dir_beside(&settings.data_dir.join("restore"))?;
    let archive =
        fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    tar::Archive::new(archive)
        .unpack(work.path())
        .map_err(|e| format!("{} is not a complete confab backup: {e}", file.display()))?;
    let manifest: serde_json::Value = fs::read(work.path().join(MANIFEST))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| format!("{} is not a confab backup (no {MANIFEST})", file.display()))?;
    if manifest["format"].as_u64() != Some(FORMAT) {
        return Err(format!(
            "{} is a backup format this confab does not know ({})",
            file.display(),
            manifest["format"]
        ));
    }

    let (url, embedded) = startup::open_database(settings)?;
    let restored = run(
        client(embedded.as_ref(), "pg_restore")?
            .args([
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--dbname",
            ])
            .arg(&url)
            .arg(work.path().join(DUMP)),
        "pg_restore",
    );
    stop_unless_adopted(embedded);
    restored?;

    let secret = work.path().join(SECRET);
    if secret.is_file() && settings.auth.jwt_secret.is_none() {
        let value = fs::read(&secret).map_err(|e| e.to_string())?;
        fs::create_dir_all(&settings.data_dir).map_err(|e| e.to_string())?;
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(settings.data_dir.join(SECRET))
            .and_then(|mut f| f.write_all(&value))
            .map_err(|e| format!("cannot write the JWT secret: {e}"))?;
    }
    Ok(())
}

/// A client program of the embedded server's version, or of the newest installed for an
/// external database.
fn client(embedded: Option<&PgServer>, program: &str) -> Result<Command, String> {
    match embedded {
        Some(server) => Ok(server.client_program(program)),
        None => {
            let bin = PgServer::find_bin_dir().map_err(|e| e.to_string())?;
            let mut command = Command::new(bin.join(program));
            command.stdin(Stdio::null());
            Ok(command)
        }
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            crate::error::bounded(String::from_utf8_lossy(&out.stderr).trim())
        ))
    }
}

/// Leaves a server running that was running before (a backup of a live confab).
fn stop_unless_adopted(embedded: Option<PgServer>) {
    if let Some(server) = embedded
        && !server.adopted()
    {
        let _ = server.stop();
    }
}

/// A private working directory on the same file system as `file` (dumps can be large).
fn scratch_dir_beside(file: &Path) -> Result<tempfile::TempDir, String> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    tempfile::Builder::new()
        .prefix(".confab-backup-")
        .tempdir_in(&dir)
        .map_err(|e| {
            format!(
                "cannot create a working directory in {}: {e}",
                dir.display()
            )
        })
}
