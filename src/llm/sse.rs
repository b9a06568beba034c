//! The SSE framing of a provider's stream (the HTML spec's event stream rules), read the way
//! eventsource-stream 0.2 read it, without its per-line copies: that crate moved the rest of its
//! buffer into a new `String` after every line and gave each event freshly allocated strings,
//! which was most of confab's work per token. Here a chunk is decoded into one buffer, lines are
//! parsed in place, and an event's name and data are kept in two strings reused for every event,
//! so a token costs no allocation in the framing.
//!
//! What is kept of eventsource-stream's behaviour, because decoders and error messages rely on
//! it: a byte order mark at the start is skipped (eventsource-stream panicked on one); lines end with CRLF, CR or LF (a CR at the end
//! of what has arrived waits for the next chunk, which may start with its LF); `data` lines are
//! joined with LF; an event without data is not dispatched; an event without a name is called
//! `message`; comments, `id`, `retry` and unknown fields are ignored (confab uses none of them).
//! Bytes that are not UTF-8 end the events there: what came before is read, and the stream's end
//! is then reported as `UTF8 error: …`, the same words as before.

/// One event, borrowed from the reader until its next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    /// The `event` field, or `message` when it had none.
    pub event: &'a str,
    pub data: &'a str,
}

#[derive(Default)]
pub(crate) struct SseReader {
    /// Decoded text not parsed yet starts at `parsed`.
    text: String,
    parsed: usize,
    /// The end of a chunk that stopped inside a character (at most 3 bytes), waiting for the rest.
    split_char: Vec<u8>,
    /// The first bytes that are not UTF-8, once seen: nothing after them is read.
    not_utf8: Option<Vec<u8>>,
    /// Whether any text has arrived (a byte order mark is only skipped at the start).
    started: bool,
    /// The event being read; cleared on the call after it was handed out.
    name: String,
    data: String,
    handed_out: bool,
}

impl SseReader {
    /// Adds a chunk of the body as it arrived from the network.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.not_utf8.is_some() || chunk.is_empty() {
            return;
        }
        // Parsed text is dropped once per chunk, not once per line.
        self.text.drain(..self.parsed);
        self.parsed = 0;
        let joined;
        let bytes = if self.split_char.is_empty() {
            chunk
        } else {
            let mut both = std::mem::take(&mut self.split_char);
            both.extend_from_slice(chunk);
            joined = both;
            &joined[..]
        };
        let valid = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                let (valid, rest) = bytes.split_at(error.valid_up_to());
                if error.error_len().is_some() {
                    self.not_utf8 = Some(rest[..rest.len().min(4)].to_vec());
                } else {
                    self.split_char = rest.to_vec();
                }
                std::str::from_utf8(valid).expect("valid up to here")
            }
        };
        let valid = if !self.started && !valid.is_empty() {
            self.started = true;
            valid.strip_prefix('\u{feff}').unwrap_or(valid)
        } else {
            valid
        };
        self.text.push_str(valid);
    }

    /// The next complete event in what has arrived, if there is one.
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        if self.handed_out {
            self.handed_out = false;
            self.name.clear();
            self.data.clear();
        }
        loop {
            let rest = &self.text[self.parsed..];
            let bytes = rest.as_bytes();
            // Bytes, not chars: `str::find` with a set of chars decodes every character, which
            // made this search the costliest step per token.
            let end = bytes.iter().position(|&b| b == b'\r' || b == b'\n')?;
            let eol = match bytes[end] {
                b'\n' => 1,
                _ if end + 1 == bytes.len() => return None,
                _ if bytes[end + 1] == b'\n' => 2,
                _ => 1,
            };
            let line = &rest[..end];
            self.parsed += end + eol;
            if line.is_empty() {
                if self.data.is_empty() {
                    self.name.clear();
                    continue;
                }
                self.data.pop();
                self.handed_out = true;
                let event = if self.name.is_empty() {
                    "message"
                } else {
                    &self.name
                };
                return Some(Event {
                    event,
                    data: &self.data,
                });
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                // A comment (the line starts with a colon).
                "" => {}
                "event" => {
                    self.name.clear();
                    self.name.push_str(value);
                }
                "data" => {
                    self.data.push_str(value);
                    self.data.push('\n');
                }
                _ => {}
            }
        }
    }

    /// At the end of the body: the error for bytes that were not UTF-8 (or a character cut off
    /// by the end), in eventsource-stream's words.
    pub fn finish(&mut self) -> Option<String> {
        let bytes = self.not_utf8.take().or_else(|| {
            (!self.split_char.is_empty()).then(|| std::mem::take(&mut self.split_char))
        })?;
        let error = std::str::from_utf8(&bytes).err()?;
        Some(format!("UTF8 error: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// What eventsource-stream 0.2 makes of `chunks`: (name, data) per event, then its error.
    fn old_reader(chunks: &[&[u8]]) -> (Vec<(String, String)>, Option<String>) {
        use eventsource_stream::Eventsource;
        use futures_util::FutureExt;
        let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> =
            chunks.iter().map(|chunk| Ok(chunk.to_vec())).collect();
        let mut events = futures_util::stream::iter(chunks).eventsource();
        let mut out = Vec::new();
        let mut error = None;
        while let Some(item) = events.next().now_or_never().expect("all chunks are there") {
            match item {
                Ok(event) => out.push((event.event, event.data)),
                Err(failure) => {
                    error = Some(failure.to_string());
                    break;
                }
            }
        }
        (out, error)
    }

    fn new_reader(chunks: &[&[u8]]) -> (Vec<(String, String)>, Option<String>) {
        let mut reader = SseReader::default();
        let mut out = Vec::new();
        for chunk in chunks {
            reader.feed(chunk);
            while let Some(event) = reader.next_event() {
                out.push((event.event.to_owned(), event.data.to_owned()));
            }
        }
        (out, reader.finish())
    }

    /// Every way of cutting `body` in two and in three pieces reads the same as eventsource-stream.
    fn same_as_before(body: &[u8]) {
        let whole = old_reader(&[body]);
        assert_eq!(
            new_reader(&[body]),
            whole,
            "{:?}",
            String::from_utf8_lossy(body)
        );
        for cut in 0..=body.len() {
            let pieces = [&body[..cut], &body[cut..]];
            assert_eq!(new_reader(&pieces), old_reader(&pieces), "cut at {cut}");
            assert_eq!(new_reader(&pieces).0, whole.0, "cut at {cut}");
        }
        for first in (0..=body.len()).step_by(5) {
            for second in (first..=body.len()).step_by(3) {
                let pieces = [&body[..first], &body[first..second], &body[second..]];
                assert_eq!(
                    new_reader(&pieces),
                    old_reader(&pieces),
                    "cut at {first}, {second}"
                );
            }
        }
    }

    #[test]
    fn reads_events_as_eventsource_stream_did() {
        for body in [
            // A Responses stream as OpenAI sends it, with escapes and characters of 2 to 4 bytes.
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"caf\\u00e9 \\\"q\\\"\\n\"}\n\n\
             event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Grüße, 東京 🎉\"}\n\n\
             event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n",
            // Chat Completions: no event names, then [DONE].
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
            // Comments, keepalives, CRLF and CR line ends, a field without a colon or a space.
            ": OPENROUTER PROCESSING\r\n\r\nevent:keepalive\rdata:{}\r\rdata\n\nid: 7\nretry: 10\ndata: x\n\n",
            // Data on several lines, an event name without data, an unknown field.
            "data: one\ndata:  two\nevent: named\nfoo: bar\n\nevent: nothing\n\ndata: three\n\n",
            // A last event that never ends, and a CR at the very end.
            "data: done\n\ndata: cut off",
            "data: done\n\ndata: waits\r",
        ] {
            same_as_before(body.as_bytes());
        }
    }

    /// eventsource-stream panicked on one (it cut the 3-byte mark after its first byte), which
    /// ended the answer as confab's internal error.
    #[test]
    fn a_byte_order_mark_at_the_start_is_skipped() {
        let body = "\u{feff}data: one\n\n\u{feff}data: two\n\n".as_bytes();
        for cut in 0..=body.len() {
            let (events, error) = new_reader(&[&body[..cut], &body[cut..]]);
            let data: Vec<&str> = events.iter().map(|(_, data)| data.as_str()).collect();
            // Later, the mark is part of a field's name (the spec's rule), so that field is unknown.
            assert_eq!(data, ["one"], "cut at {cut}");
            assert_eq!(error, None);
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_end_the_events_with_the_same_error() {
        same_as_before(b"data: before\n\ndata: \xff\xfe after\n\ndata: never\n\n");
        // A character cut off by the end of the body.
        same_as_before(
            "data: ok\n\ndata: \u{1f389}"
                .as_bytes()
                .split_last()
                .unwrap()
                .1,
        );
        let (events, error) = new_reader(&[b"data: a\n\n\xc3"]);
        assert_eq!(events, [("message".to_owned(), "a".to_owned())]);
        assert_eq!(
            error.as_deref(),
            Some("UTF8 error: incomplete utf-8 byte sequence from index 0")
        );
    }
}
