//! Server-sent events for an answer: what is already there, then what is generated, then its
//! end. The API gets JSON text deltas; a reader that reconnects with `Last-Event-ID` (the byte
//! offset of the text it has) continues exactly where it was.
//!
//! Pages get the answer as rendered Markdown for htmx-ext-sse, without rendering the whole text
//! for every token: top-level blocks that are complete are rendered once and appended
//! (`settled`), the last block, still growing, is rendered again and replaces the previous one
//! (`tail`) — at most every [`TAIL_INTERVAL`], and once more when the stream goes quiet. A page
//! that (re)opens the stream gets the whole rendered state first (`snapshot`, then `tail`), so it
//! needs no offset. `done` replaces the bubble with the final render.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, Responder};
use actix_web_lab::sse;
use futures_util::Stream;
use tokio::time::Instant;
use uuid::Uuid;

use crate::conversations::model::{Message, Status};
use crate::generation::registry::{Piece, Subscription};
use crate::render::markdown::Progressive;

/// A vanished reader is noticed only when a write fails; a comment every few seconds bounds that.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// The shortest time between two renders of a page's tail: a fast stream is not rendered once
/// per token, and 20 updates a second still look live.
const TAIL_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Rendered Markdown (settled blocks, the tail) and the final bubble, for htmx-ext-sse.
    Html,
    /// `{"text", "conversation_id", "message_id"}` per chunk, then a final status event.
    Json,
}

/// The byte offset a reconnecting reader already has. A `Last-Event-ID` that is not one (`abc`,
/// `-5`, a number past any text) still says the reader has something: it is answered as an
/// offset beyond the text, which gets the whole text as a snapshot to replace what it has, never
/// a continuation it would append to it.
pub fn last_event_id(req: &HttpRequest) -> Option<usize> {
    let sent = req.headers().get("last-event-id")?;
    Some(
        sent.to_str()
            .ok()
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or(usize::MAX),
    )
}

/// Where the events come from: a live answer, or the stored row of one that has ended.
pub enum Source {
    Live(Subscription),
    Stored(Box<Message>),
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
        Source::Stored(Box::new(message))
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
    /// A page's answer as it renders it (HTML only).
    page: Page,
    /// Events made but not sent yet (a render makes two).
    queue: VecDeque<sse::Event>,
}

/// The text a page reader has received and what of it has been rendered.
#[derive(Default)]
struct Page {
    text: String,
    blocks: Progressive,
    /// Bytes of `text` shown by the last render.
    rendered: usize,
    /// When the tail may be rendered again.
    next_render: Option<Instant>,
}

impl Page {
    /// Renders what is new: blocks that settled (appended to the page's, or replacing them for
    /// a `snapshot`) and the tail.
    fn render(&mut self, queue: &mut VecDeque<sse::Event>, snapshot: bool) {
        let (settled, tail) = self.blocks.render(&self.text);
        if snapshot {
            queue.push_back(sse::Event::Data(sse::Data::new(settled).event("snapshot")));
        } else if !settled.is_empty() {
            queue.push_back(sse::Event::Data(sse::Data::new(settled).event("settled")));
        }
        queue.push_back(sse::Event::Data(sse::Data::new(tail).event("tail")));
        self.rendered = self.text.len();
        self.next_render = Some(Instant::now() + TAIL_INTERVAL);
    }

    /// Text arrived that the page does not show yet.
    fn behind(&self) -> bool {
        self.rendered < self.text.len()
    }
}

/// One JSON chunk of the text, ending at byte `end`; a snapshot replaces what the reader has.
/// The text is escaped straight into the event's one buffer, not into a string of its own.
fn json_text_event(cursor: &Cursor, text: &str, end: usize, replace: bool) -> sse::Event {
    let mut data = Vec::with_capacity(cursor.json_prefix.len() + text.len() + 24);
    data.extend_from_slice(cursor.json_prefix.as_bytes());
    serde_json::to_writer(&mut data, text).expect("a string serializes");
    if replace {
        data.extend_from_slice(b",\"snapshot\":true}");
    } else {
        data.push(b'}');
    }
    let data = sse::Data::new(String::from_utf8(data).expect("JSON is UTF-8"));
    let data = if replace {
        data.event("snapshot")
    } else {
        data
    };
    sse::Event::Data(data.id(end.to_string()))
}

/// An API reader's event for a piece of the answer (written by hand from a prefix made once
/// per stream, so a token costs one small allocation; this type documents it).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TextEvent {
    /// The next piece of the answer; with `snapshot`, the whole answer so far.
    pub text: String,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    /// Present (true) when `text` replaces what the reader has, sent as event `snapshot`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
}

/// The last event of an API stream: how the answer ended.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct DoneEvent<'a> {
    /// Always empty: the answer's text came in the events before.
    pub text: &'a str,
    /// Always true.
    pub done: bool,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub status: Status,
    /// Why it failed, for people.
    pub error: Option<&'a str>,
    /// What the provider or the connection said.
    pub error_detail: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub usage: DoneUsage,
    /// Milliseconds to the first token.
    pub ttft_ms: Option<i32>,
    pub duration_ms: Option<i32>,
}

/// Tokens the provider counted.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct DoneUsage {
    pub input_tokens: Option<i32>,
    pub output_tokens: Option<i32>,
}

fn done_event(cursor: &Cursor, message: &Message) -> sse::Event {
    match cursor.format {
        Format::Html => {
            sse::Event::Data(sse::Data::new((cursor.render_final)(message)).event("done"))
        }
        Format::Json => {
            let done = DoneEvent {
                text: "",
                done: true,
                conversation_id: cursor.conversation_id,
                message_id: message.id,
                status: message.status,
                error: message.error.as_deref(),
                error_detail: message.error_detail.as_deref(),
                provider: message.provider.as_deref(),
                model: message.model.as_deref(),
                usage: DoneUsage {
                    input_tokens: message.input_tokens,
                    output_tokens: message.output_tokens,
                },
                ttft_ms: message.ttft_ms,
                duration_ms: message.duration_ms,
            };
            sse::Event::Data(
                sse::Data::new(serde_json::to_string(&done).expect("an event serializes"))
                    .id(message.content.len().to_string()),
            )
        }
    }
}

/// The first text an API reader gets: the part it does not have yet. An offset that cannot be a
/// place in this text (beyond it — the reader saw text a crash lost — or inside a character)
/// gets the whole text as a snapshot that replaces the reader's, never a continuation that would
/// repeat or garble it.
fn json_opening(cursor: &Cursor, text: &str) -> Option<sse::Event> {
    match cursor.resume_from {
        Some(offset) if offset <= text.len() && text.is_char_boundary(offset) => (offset
            < text.len())
        .then(|| json_text_event(cursor, &text[offset..], text.len(), false)),
        Some(_) => Some(json_text_event(cursor, text, text.len(), true)),
        None => (!text.is_empty()).then(|| json_text_event(cursor, text, text.len(), false)),
    }
}

async fn next_event(cursor: &mut Cursor) -> Option<sse::Event> {
    loop {
        if let Some(event) = cursor.queue.pop_front() {
            return Some(event);
        }
        if cursor.finished {
            return None;
        }
        if !cursor.started {
            cursor.started = true;
            let text = match &mut cursor.source {
                Source::Live(reader) => reader.take_snapshot(),
                // A page gets the whole bubble of an ended answer with `done`.
                Source::Stored(_) if cursor.format == Format::Html => continue,
                Source::Stored(message) => message.content.clone(),
            };
            match cursor.format {
                Format::Json => cursor.queue.extend(json_opening(cursor, &text)),
                Format::Html => {
                    cursor.page.text = text;
                    cursor.page.render(&mut cursor.queue, true);
                }
            }
            continue;
        }
        let piece = match &mut cursor.source {
            Source::Stored(message) => {
                let message = message.clone();
                cursor.finished = true;
                return Some(done_event(cursor, &message));
            }
            Source::Live(reader) => match cursor.page.next_render {
                // Text the page does not show yet waits for more only until the tail may be
                // rendered again: a stream that pauses still shows all it sent.
                Some(deadline) if cursor.page.behind() => {
                    match tokio::time::timeout_at(deadline, reader.next()).await {
                        Ok(piece) => piece,
                        Err(_) => {
                            cursor.page.render(&mut cursor.queue, false);
                            continue;
                        }
                    }
                }
                _ => reader.next().await,
            },
        };
        match piece {
            Some(Piece::Text { text, end }) => match cursor.format {
                Format::Json => return Some(json_text_event(cursor, &text, end, false)),
                Format::Html => {
                    cursor.page.text.push_str(&text);
                    if cursor
                        .page
                        .next_render
                        .is_none_or(|deadline| Instant::now() >= deadline)
                    {
                        cursor.page.render(&mut cursor.queue, false);
                    }
                }
            },
            Some(Piece::Done(message)) => {
                cursor.finished = true;
                return Some(done_event(cursor, &message));
            }
            None => {
                cursor.finished = true;
                return None;
            }
        }
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
        page: Page::default(),
        queue: VecDeque::new(),
    };
    futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = next_event(&mut cursor).await?;
        Some((Ok(event), cursor))
    })
}

/// The `text/event-stream` response. Proxies are told not to buffer it.
pub fn respond(req: &HttpRequest, source: Source, format: Format, params: Params) -> HttpResponse {
    unbuffered(
        req,
        sse::Sse::from_stream(events(source, format, params))
            .with_keep_alive(HEARTBEAT)
            .with_retry_duration(Duration::from_secs(1)),
    )
}

/// Any stream of events as a `text/event-stream` response, with the same heartbeat and headers
/// (the OpenAI-compatible API's streams; no `retry:`, which OpenAI's streams do not have).
pub fn event_stream<S>(req: &HttpRequest, events: S) -> HttpResponse
where
    S: Stream<Item = Result<sse::Event, Infallible>> + 'static,
{
    unbuffered(
        req,
        sse::Sse::from_stream(events).with_keep_alive(HEARTBEAT),
    )
}

fn unbuffered<S>(req: &HttpRequest, stream: sse::Sse<S>) -> HttpResponse
where
    sse::Sse<S>: Responder,
{
    stream
        .customize()
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header(("Cache-Control", "no-cache"))
        .respond_to(req)
        .map_into_boxed_body()
}
