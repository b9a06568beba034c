//! Files' bytes under `<data_dir>/files`, named by their sha256 (`ab/abcdef…`), so the same bytes
//! are kept once. An upload is written to `tmp/` while it is hashed and counted, then renamed
//! into place: a refused or cut-off upload leaves nothing behind, and nobody reads half a file.
//! Nothing is held in memory beyond the chunk being written.

use std::path::{Path, PathBuf};

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::files::text::TextReader;

#[derive(Clone)]
pub struct Store {
    root: PathBuf,
    text: TextReader,
}

/// Bytes that were received whole, waiting in `tmp/` to be [`Received::place`]d under their
/// name (by the caller, while it holds the lock on those bytes and records them).
pub struct Received {
    pub sha256: String,
    pub bytes: u64,
    temporary: Temporary,
    target: PathBuf,
}

impl Received {
    /// Moves the bytes to their name (blocking; call it on the blocking pool, under the lock
    /// that [`crate::files::model::StoredFile::lock_bytes`] takes). The same bytes already
    /// there stay as they are.
    pub fn place(mut self) -> std::io::Result<()> {
        let Some(from) = self.temporary.0.take() else {
            return Ok(());
        };
        if let Some(dir) = self.target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let placed = std::fs::rename(&from, &self.target);
        if placed.is_err() {
            let _ = std::fs::remove_file(&from);
        }
        placed
    }
}

/// Removes a temporary file if the upload does not get as far as placing it.
struct Temporary(Option<PathBuf>);

impl Drop for Temporary {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How many first bytes tell a program.
const PROGRAM_MAGIC_BYTES: usize = 4;

/// A native program, by its first bytes: ELF (Linux), PE (Windows, `MZ`), Mach-O (macOS).
fn is_program(head: &[u8]) -> bool {
    // `MZ` alone starts words too; a program's next bytes are binary (`MZ\x90\0`).
    let pe = head.starts_with(b"MZ") && head[2..].iter().any(|&b| b == 0 || b >= 0x80);
    head.starts_with(b"\x7fELF")
        || pe
        || [
            [0xfe, 0xed, 0xfa, 0xce],
            [0xfe, 0xed, 0xfa, 0xcf],
            [0xce, 0xfa, 0xed, 0xfe],
            [0xcf, 0xfa, 0xed, 0xfe],
        ]
        .iter()
        .any(|magic| head.starts_with(magic))
}

fn refused_program() -> AppError {
    AppError::invalid(
        "file",
        "Programs cannot be uploaded: an agent cannot read them.",
    )
}

fn internal(error: std::io::Error) -> AppError {
    AppError::Internal(Box::new(error))
}

impl Store {
    pub fn new(data_dir: &Path, text: TextReader) -> Store {
        Store {
            root: data_dir.join("files"),
            text,
        }
    }

    /// The text of the bytes with this hash, when they have one confab can read (see
    /// [`TextReader::text_of`]).
    pub async fn text_of(&self, sha256: &str) -> Option<String> {
        self.text.text_of(&self.path_of(sha256)?).await
    }

    /// Where the bytes with this hash are (a hash that is not 64 hex digits is nowhere).
    pub fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.root.join(&sha256[..2]).join(sha256))
    }

    /// Writes `body` into the store, refusing it past `limit` bytes or when empty.
    pub async fn receive<S, E>(&self, mut body: S, limit: u64) -> AppResult<Received>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(internal)?;
        let tmp_path = tmp_dir.join(Uuid::now_v7().to_string());
        let mut temporary = Temporary(Some(tmp_path.clone()));
        let mut file = tokio::fs::File::create(&tmp_path).await.map_err(internal)?;
        let mut hasher = Sha256::new();
        let mut bytes: u64 = 0;
        let mut head = Vec::with_capacity(PROGRAM_MAGIC_BYTES);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| {
                AppError::BadRequest(format!("The upload was cut off: {error}"))
            })?;
            bytes += chunk.len() as u64;
            if bytes > limit {
                return Err(AppError::FileTooLarge(limit));
            }
            if head.len() < PROGRAM_MAGIC_BYTES {
                let wanted = (PROGRAM_MAGIC_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..wanted]);
                if head.len() == PROGRAM_MAGIC_BYTES && is_program(&head) {
                    return Err(refused_program());
                }
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(internal)?;
        }
        if bytes == 0 {
            return Err(AppError::invalid("file", "The file is empty."));
        }
        if is_program(&head) {
            return Err(refused_program());
        }
        file.sync_all().await.map_err(internal)?;
        drop(file);
        let sha256 = hex::encode(hasher.finalize());
        let target = self.path_of(&sha256).expect("a sha256 is 64 hex digits");
        Ok(Received {
            sha256,
            bytes,
            temporary: Temporary(temporary.0.take()),
            target,
        })
    }

    /// Removes the bytes with this hash (nothing if they are not there). Blocking: call it on
    /// the blocking pool, under the lock on those bytes.
    pub fn remove(&self, sha256: &str) -> std::io::Result<()> {
        let Some(path) = self.path_of(sha256) else {
            return Ok(());
        };
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_program;

    #[test]
    fn programs_are_told_by_their_first_bytes_and_words_are_not() {
        assert!(is_program(b"\x7fELF"));
        assert!(is_program(b"MZ\x90\x00"));
        assert!(is_program(&[0xcf, 0xfa, 0xed, 0xfe]));
        assert!(!is_program(b"MZ, "), "a CSV row");
        assert!(!is_program(b"M"));
        assert!(!is_program(b"%PDF"));
    }
}
