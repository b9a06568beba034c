//! A file's text, and the passages it is searched by: pieces of about [`PASSAGE_CHARS`]
//! characters, cut at a blank line where there is one, else at a line, else at a space.

/// About how long a passage is: long enough to answer from, short enough that four of them fit
/// in a request beside the conversation.
pub const PASSAGE_CHARS: usize = 800;

/// The file's text, when it has one confab can read: UTF-8 without NUL (plain text, Markdown,
/// CSV, JSON, code), or the text layer of a PDF. Run on the blocking pool: a PDF's text takes
/// real work to get.
pub async fn extract(bytes: Vec<u8>) -> Option<String> {
    tokio::task::spawn_blocking(move || readable(bytes))
        .await
        .ok()
        .flatten()
}

/// [`extract`], on the calling thread.
pub fn readable(bytes: Vec<u8>) -> Option<String> {
    if bytes.starts_with(b"%PDF-") {
        return pdf_text(&bytes);
    }
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

    #[test]
    fn binary_is_not_text() {
        assert_eq!(readable(b"plain".to_vec()).as_deref(), Some("plain"));
        assert!(readable(vec![0xff, 0xfe]).is_none());
        assert!(readable(b"a\0b".to_vec()).is_none());
    }
}
