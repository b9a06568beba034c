//! A file's text, and the passages it is searched by: pieces of about [`PASSAGE_CHARS`]
//! characters, cut at a blank line where there is one, else at a line, else at a space.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::settings::FilesSettings;

/// About how long a passage is: long enough to answer from, short enough that four of them fit
/// in a request beside the conversation.
pub const PASSAGE_CHARS: usize = 800;

/// Reads stored files' text. A PDF is read by a child process (`confab extract-text`) with a
/// memory and CPU limit and a deadline: a crafted PDF (a compression bomb, a page tree that
/// loops) can make the parser take gigabytes or never finish, and that must cost one child, not
/// the server's memory or a blocking thread forever.
#[derive(Clone, Debug)]
pub struct TextReader {
    /// `files.pdf_reader`; unset: this program ([`this_program`]).
    program: Option<PathBuf>,
    limits: Limits,
}

/// What one PDF may take to read.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub seconds: u64,
    pub memory_mb: u64,
}

/// The most text taken from one PDF's reader; more than any file that is searched or attached
/// can use (both stop at [`crate::files::service::MAX_INDEXED_BYTES`] of file).
const MAX_PDF_TEXT_BYTES: u64 = 64 << 20;

impl TextReader {
    pub fn new(settings: &FilesSettings) -> Self {
        Self {
            program: settings.pdf_reader.clone(),
            limits: Limits {
                seconds: settings.pdf_text_seconds,
                memory_mb: settings.pdf_text_memory_mb,
            },
        }
    }

    /// The file's text, when it has one confab can read: UTF-8 without NUL (plain text,
    /// Markdown, CSV, JSON, code), or the text layer of a PDF.
    pub async fn text_of(&self, path: &Path) -> Option<String> {
        // A PDF is read by the child alone: only its first bytes are read here.
        let mut head = [0; PDF_MAGIC.len()];
        let mut file = tokio::fs::File::open(path).await.ok()?;
        let got = file.read(&mut head).await.ok()?;
        if is_pdf(&head[..got]) {
            return self.pdf_text_of(path).await;
        }
        drop(file);
        let bytes = tokio::fs::read(path).await.ok()?;
        tokio::task::spawn_blocking(move || utf8_text(bytes))
            .await
            .ok()
            .flatten()
    }

    async fn pdf_text_of(&self, path: &Path) -> Option<String> {
        let program = self.program.as_deref().unwrap_or_else(|| this_program());
        let mut child = tokio::process::Command::new(program)
            .arg("extract-text")
            .arg("--max-seconds")
            .arg(self.limits.seconds.to_string())
            .arg("--max-memory-mb")
            .arg(self.limits.memory_mb.to_string())
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Past the deadline the future is dropped, and the child with it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                tracing::error!(%error, program = %program.display(), "could not start the PDF text reader");
            })
            .ok()?;
        let mut stdout = child.stdout.take()?;
        let read = async {
            let mut text = Vec::new();
            (&mut stdout)
                .take(MAX_PDF_TEXT_BYTES)
                .read_to_end(&mut text)
                .await
                .ok()?;
            // A reader with more to say than that stops at its next write.
            drop(stdout);
            let status = child.wait().await.ok()?;
            status.success().then_some(text)
        };
        match tokio::time::timeout(Duration::from_secs(self.limits.seconds), read).await {
            Ok(text) => text
                .and_then(|text| String::from_utf8(text).ok())
                .filter(|text| !text.trim().is_empty()),
            Err(_) => {
                tracing::warn!(path = %path.display(), seconds = self.limits.seconds, "a PDF's text took too long to read; the file is kept without text");
                None
            }
        }
    }
}

/// How every PDF starts.
const PDF_MAGIC: &[u8] = b"%PDF-";

fn is_pdf(bytes: &[u8]) -> bool {
    bytes.starts_with(PDF_MAGIC)
}

/// This program's path, looked up once (it is the PDF reader unless `files.pdf_reader` says).
fn this_program() -> &'static Path {
    static PROGRAM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PROGRAM.get_or_init(|| std::env::current_exe().unwrap_or_else(|_| PathBuf::from("confab")))
}

/// `confab extract-text`: prints the PDF's text, under the limits, or exits 1 when it has none.
/// Runs as its own process (see [`TextReader`]).
pub fn extract_text_command(path: &Path, limits: Limits) -> std::process::ExitCode {
    use nix::sys::resource::{Resource, setrlimit};
    let memory = limits.memory_mb.saturating_mul(1 << 20);
    // RLIMIT_DATA bounds the heap (brk and anonymous mappings) without counting the program's
    // own mapped image, so the limit means the same for a debug and a release build.
    let limited = setrlimit(Resource::RLIMIT_DATA, memory, memory)
        .and_then(|()| setrlimit(Resource::RLIMIT_CPU, limits.seconds, limits.seconds));
    if let Err(error) = limited {
        eprintln!("confab extract-text: could not set limits: {error}");
        return std::process::ExitCode::from(2);
    }
    let Ok(bytes) = std::fs::read(path) else {
        return std::process::ExitCode::from(2);
    };
    match pdf_text(&bytes) {
        Some(text) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_ok()
            {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(2)
            }
        }
        None => std::process::ExitCode::from(1),
    }
}

/// Text in memory: UTF-8 without NUL, or a PDF's text layer read on the calling thread (for
/// the child process and the tests; the server goes through [`TextReader`]).
pub fn readable(bytes: Vec<u8>) -> Option<String> {
    if is_pdf(&bytes) {
        return pdf_text(&bytes);
    }
    utf8_text(bytes)
}

fn utf8_text(bytes: Vec<u8>) -> Option<String> {
    String::from_utf8(bytes)
        .ok()
        .filter(|text| !text.contains('\0'))
}

/// A PDF's text layer; `None` for a scan without one, or a file the parser cannot read (it
/// panics on some broken files, which must not take a worker thread with it).
fn pdf_text(bytes: &[u8]) -> Option<String> {
    let text = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes))
        .ok()?
        .ok()?;
    // Page breaks and the layout's runs of blank lines say nothing to a search or a model.
    let mut tidy = String::with_capacity(text.len());
    let mut blank_lines = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank_lines += 1;
            continue;
        }
        if !tidy.is_empty() {
            tidy.push_str(if blank_lines > 0 { "\n\n" } else { "\n" });
        }
        blank_lines = 0;
        tidy.push_str(line);
    }
    (!tidy.trim().is_empty()).then_some(tidy)
}

/// The text cut into passages, in order, none empty.
pub fn passages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let limit = rest
            .char_indices()
            .nth(PASSAGE_CHARS)
            .map_or(rest.len(), |(at, _)| at);
        if limit == rest.len() {
            out.push(rest.to_string());
            break;
        }
        let window = &rest[..limit];
        // The latest good place to cut in the second half of the window.
        let half = limit / 2;
        let cut = ["\n\n", "\n", ". ", " "]
            .iter()
            .find_map(|mark| {
                window
                    .rfind(mark)
                    .filter(|&at| at >= half)
                    .map(|at| at + mark.len())
            })
            .unwrap_or(limit);
        let piece = rest[..cut].trim();
        if !piece.is_empty() {
            out.push(piece.to_string());
        }
        rest = rest[cut..].trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pdfs_have_no_text_and_take_nothing_down() {
        assert_eq!(readable(b"%PDF-1.4\n garbage".to_vec()), None);
        assert_eq!(readable(b"%PDF-".to_vec()), None);
        assert_eq!(
            readable(b"plain words".to_vec()).as_deref(),
            Some("plain words")
        );
        assert_eq!(readable(vec![0xff, 0xfe, 0]), None);
    }

    #[test]
    fn short_texts_are_one_passage() {
        assert_eq!(passages("  Hello there.  "), vec!["Hello there."]);
        assert!(passages("   ").is_empty());
    }

    #[test]
    fn long_texts_are_cut_at_paragraphs_and_lose_nothing() {
        let paragraph = "word ".repeat(100);
        let text = format!("{paragraph}\n\n{paragraph}\n\n{paragraph}");
        let pieces = passages(&text);
        assert!(pieces.len() >= 2, "{}", pieces.len());
        assert!(pieces.iter().all(|p| p.chars().count() <= PASSAGE_CHARS));
        let words: usize = pieces.iter().map(|p| p.split_whitespace().count()).sum();
        assert_eq!(words, 300, "every word is in a passage once");
    }

    #[test]
    fn text_without_spaces_is_cut_at_characters() {
        let text = "é".repeat(2000);
        let pieces = passages(&text);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| p.chars().count() <= PASSAGE_CHARS));
    }

    /// A reader that is given `seconds` and `script` as the program.
    fn reader_running(script: &str, seconds: u64) -> (TextReader, tempfile::TempDir) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("reader");
        std::fs::write(&program, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let reader = TextReader {
            program: Some(program),
            limits: Limits {
                seconds,
                memory_mb: 64,
            },
        };
        (reader, dir)
    }

    #[tokio::test]
    async fn a_pdf_reader_past_its_deadline_gives_no_text() {
        let (reader, dir) = reader_running("sleep 5; echo late words", 1);
        let pdf = dir.path().join("slow.pdf");
        std::fs::write(&pdf, b"%PDF-1.4 slow").unwrap();
        assert_eq!(reader.text_of(&pdf).await, None);

        let (reader, dir) = reader_running("echo quick words", 1);
        let pdf = dir.path().join("quick.pdf");
        std::fs::write(&pdf, b"%PDF-1.4 quick").unwrap();
        assert_eq!(reader.text_of(&pdf).await.as_deref(), Some("quick words\n"));
        // Not a PDF: read in the server, no child.
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "plain notes").unwrap();
        assert_eq!(reader.text_of(&text).await.as_deref(), Some("plain notes"));
    }

    #[test]
    fn binary_is_not_text() {
        assert_eq!(readable(b"plain".to_vec()).as_deref(), Some("plain"));
        assert!(readable(vec![0xff, 0xfe]).is_none());
        assert!(readable(b"a\0b".to_vec()).is_none());
    }
}
