//! Server-sent events for an answer: what is already there, then what is generated, then its
//! end. Pages get HTML fragments for htmx-ext-sse; the API gets JSON. A reader that reconnects
//! with `Last-Event-ID` (the byte offset of the text it has) continues exactly where it was.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, Responder};
use actix_web_lab::sse;
use futures_util::Stream;
use serde_json::json;
use uuid::Uuid;

use crate::conversations::model::{Message, Status};
use crate::generation::registry::{Piece, Subscription};

/// A vanished reader is noticed only when a write fails; a comment every few seconds bounds that.
const HEARTBEAT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Escaped text fragments and the final bubble, for htmx-ext-sse.
    Html,
    /// `{"text", "conversation_id", "message_id"}` per chunk, then a final status event.
    Json,
}

/// The byte offset a reconnecting reader already has, if it sent a usable one.
pub fn last_event_id(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Where the events come from: a live answer, or the stored row of one that has ended.
pub enum Source {
    Live(Subscription),
    Stored(Message),
}

impl Source {
    /// A stored answer. One still marked `streaming` has no task here (its final save failed,
    /// or the process that generated it is gone), so readers are told it failed instead of
    /// reconnecting forever; the next start-up writes the same thing to the database.
    pub fn stored(mut message: Message) -> Source {
        if message.status == Status::Streaming {
            message.status = Status::Failed;
            message.error.get_or_insert_with(|| {
                "interrupted: this answer is no longer being generated".into()
            });
        }
        Source::Stored(message)
    }
}

struct Cursor {
    source: Source,
    format: Format,
    conversation_id: Uuid,
    resume_from: Option<usize>,
    started: bool,
    finished: bool,
    render_final: fn(&Message) -> String,
    /// `{"conversation_id":…,"message_id":…,"text":` — the same for every chunk, made once.
    json_prefix: String,
}

fn text_event(
    format: Format,
    cursor: &Cursor,
    text: &str,
    end: usize,
    replace: bool,
) -> sse::Event {
    let data = match format {
        Format::Html => {
            sse::Data::new(escape(text)).event(if replace { "snapshot" } else { "delta" })
        }
        Format::Json => {
            let mut data = String::with_capacity(cursor.json_prefix.len() + text.len() + 24);
            data.push_str(&cursor.json_prefix);
            data.push_str(&serde_json::to_string(text).expect("a string serializes"));
            if replace {
                data.push_str(",\"snapshot\":true}");
                sse::Data::new(data).event("snapshot")
            } else {
                data.push('}');
                sse::Data::new(data)
            }
        }
    };
    sse::Event::Data(data.id(end.to_string()))
}

fn done_event(cursor: &Cursor, message: &Message) -> sse::Event {
    match cursor.format {
        Format::Html => sse::Event::Data(sse::Data::new((cursor.render_final)(message)).event("done")),
        Format::Json => sse::Event::Data(
            sse::Data::new(
                json!({
                    "text": "",
                    "done": true,
                    "conversation_id": cursor.conversation_id,
                    "message_id": message.id,
                    "status": message.status,
                    "error": message.error,
                    "error_detail": message.error_detail,
                    "provider": message.provider,
                    "model": message.model,
                    "usage": {"input_tokens": message.input_tokens, "output_tokens": message.output_tokens},
                    "ttft_ms": message.ttft_ms,
                    "duration_ms": message.duration_ms,
                })
                .to_string(),
            )
            .id(message.content.len().to_string()),
        ),
    }
}

/// The first text a reader gets: the part it does not have yet. An offset that cannot be a
/// place in this text (beyond it — the reader saw text a crash lost — or inside a character)
/// gets the whole text as a snapshot that replaces the reader's, never a continuation that would
/// repeat or garble it.
fn opening(cursor: &Cursor, text: &str) -> Option<sse::Event> {
    let snapshot = || Some(text_event(cursor.format, cursor, text, text.len(), true));
    match cursor.resume_from {
        Some(offset) if offset <= text.len() && text.is_char_boundary(offset) => (offset
            < text.len())
        .then(|| text_event(cursor.format, cursor, &text[offset..], text.len(), false)),
        Some(_) => snapshot(),
        // A page (re)opening a stream replaces what it shows with the whole text so far.
        None if cursor.format == Format::Html => snapshot(),
        None => {
            (!text.is_empty()).then(|| text_event(cursor.format, cursor, text, text.len(), false))
        }
    }
}

async fn next_event(cursor: &mut Cursor) -> Option<sse::Event> {
    if cursor.finished {
        return None;
    }
    if !cursor.started {
        cursor.started = true;
        let text = match &mut cursor.source {
            Source::Live(reader) => reader.take_snapshot(),
            Source::Stored(message) => message.content.clone(),
        };
        if let Some(event) = opening(cursor, &text) {
            return Some(event);
        }
    }
    match &mut cursor.source {
        Source::Stored(message) => {
            let message = message.clone();
            cursor.finished = true;
            Some(done_event(cursor, &message))
        }
        Source::Live(reader) => match reader.next().await {
            Some(Piece::Text { text, end }) => {
                Some(text_event(cursor.format, cursor, &text, end, false))
            }
            Some(Piece::Done(message)) => {
                cursor.finished = true;
                Some(done_event(cursor, &message))
            }
            None => {
                cursor.finished = true;
                None
            }
        },
    }
}

pub struct Params {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub resume_from: Option<usize>,
    pub render_final: fn(&Message) -> String,
}

fn events(
    source: Source,
    format: Format,
    params: Params,
) -> impl Stream<Item = Result<sse::Event, Infallible>> {
    let cursor = Cursor {
        source,
        format,
        conversation_id: params.conversation_id,
        resume_from: params.resume_from,
        started: false,
        finished: false,
        render_final: params.render_final,
        json_prefix: format!(
            "{{\"conversation_id\":\"{}\",\"message_id\":\"{}\",\"text\":",
            params.conversation_id, params.message_id
        ),
    };
    futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = next_event(&mut cursor).await?;
        Some((Ok(event), cursor))
    })
}

/// The `text/event-stream` response. Proxies are told not to buffer it.
pub fn respond(req: &HttpRequest, source: Source, format: Format, params: Params) -> HttpResponse {
    sse::Sse::from_stream(events(source, format, params))
        .with_keep_alive(HEARTBEAT)
        .with_retry_duration(Duration::from_secs(1))
        .customize()
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header(("Cache-Control", "no-cache"))
        .respond_to(req)
        .map_into_boxed_body()
}

/// Minimal HTML escaping for text fragments swapped into the page.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
