//! The answers being generated right now, by message id. Each holds its text so far and a
//! broadcast channel of what comes next, so any number of readers (tabs, API clients, a reader
//! that reconnects) see the same text with nothing missing or repeated.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::conversations::model::Message;

/// Slots in each answer's channel. A reader that falls further behind re-reads the text so far,
/// so this only trades memory per answer against how often a slow reader catches up that way.
const CHANNEL_CAPACITY: usize = 32;

/// What readers receive.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// New text; `end` is the byte length of the whole text once it is appended.
    Delta { text: Arc<str>, end: usize },
    /// The answer ended; this is its stored row.
    Done(Arc<Message>),
}

/// Why an answer was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The person pressed Stop.
    User,
    /// confab is shutting down and the grace period ran out.
    Shutdown,
    /// Its message was deleted (with its conversation, agent or project).
    Deleted,
}

struct LiveState {
    text: String,
    /// Length of the text already written to the database.
    flushed: usize,
    /// The answer ended and its whole text is being saved (or was: `finished` comes after):
    /// the flusher leaves its row alone.
    saving: bool,
    finished: Option<Arc<Message>>,
    stop_reason: Option<StopReason>,
}

/// Where an answer belongs, so deleting its conversation, agent or project stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub conversation_id: Uuid,
    pub agent_id: Uuid,
    pub project_id: Uuid,
}

pub struct Live {
    pub message_id: Uuid,
    pub origin: Origin,
    state: Mutex<LiveState>,
    sender: broadcast::Sender<LiveEvent>,
    pub cancel: CancellationToken,
}

impl Live {
    fn new(message_id: Uuid, origin: Origin) -> Live {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Live {
            message_id,
            origin,
            state: Mutex::new(LiveState {
                text: String::new(),
                flushed: 0,
                saving: false,
                finished: None,
                stop_reason: None,
            }),
            sender,
            cancel: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends text and tells readers. Both happen under the lock, so a reader that takes a
    /// snapshot sees each delta either in the snapshot or on its channel, never both or neither.
    /// Returns the answer's length in bytes after it. The delta is shared with every reader as
    /// it came from the provider, not copied per token.
    pub fn push(&self, delta: impl Into<Arc<str>>) -> usize {
        let mut delta: Arc<str> = delta.into();
        // PostgreSQL text cannot hold NUL; one from a model would make every save of this
        // answer fail, so it is dropped here, before anyone sees it.
        if delta.contains('\0') {
            delta = Arc::from(delta.replace('\0', ""));
        }
        let mut state = self.lock();
        if delta.is_empty() {
            return state.text.len();
        }
        state.text.push_str(&delta);
        let end = state.text.len();
        let _ = self.sender.send(LiveEvent::Delta { text: delta, end });
        end
    }

    pub fn text(&self) -> String {
        self.lock().text.clone()
    }

    /// The whole text of an answer that ended, to save with how it ended (before
    /// [`Live::finish`] tells readers what was saved). From now on the
    /// flusher does not write its row: the save writes all of it, and two statements writing
    /// the same rows at once only wait for each other.
    pub fn ended_text(&self) -> String {
        let mut state = self.lock();
        state.saving = true;
        state.text.clone()
    }

    pub fn finish(&self, message: Arc<Message>) {
        let mut state = self.lock();
        state.finished = Some(message.clone());
        let _ = self.sender.send(LiveEvent::Done(message));
    }

    pub fn stop(&self, reason: StopReason) {
        self.lock().stop_reason.get_or_insert(reason);
        self.cancel.cancel();
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.lock().stop_reason
    }

    /// The text not yet written to the database, if any, marking it written.
    fn take_unflushed(&self) -> Option<String> {
        let mut state = self.lock();
        if state.saving || state.text.len() == state.flushed {
            return None;
        }
        state.flushed = state.text.len();
        Some(state.text.clone())
    }

    pub fn subscribe(self: &Arc<Live>) -> Subscription {
        let state = self.lock();
        let receiver = self.sender.subscribe();
        Subscription {
            live: self.clone(),
            receiver,
            snapshot: Some(state.text.clone()),
            offset: state.text.len(),
            pending: state
                .finished
                .clone()
                .map(Piece::Done)
                .into_iter()
                .collect(),
        }
    }
}

/// A piece of an answer, as a reader gets it.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Text that ends at byte `end` of the whole answer.
    Text {
        text: Arc<str>,
        end: usize,
    },
    Done(Arc<Message>),
}

/// One reader of a live answer: first the text so far, then what follows.
pub struct Subscription {
    live: Arc<Live>,
    receiver: broadcast::Receiver<LiveEvent>,
    snapshot: Option<String>,
    offset: usize,
    pending: VecDeque<Piece>,
}

impl Subscription {
    /// The text generated before this reader arrived (taken once).
    pub fn take_snapshot(&mut self) -> String {
        self.snapshot.take().unwrap_or_default()
    }

    /// The next piece; `None` once the answer is done or its generator is gone.
    pub async fn next(&mut self) -> Option<Piece> {
        if let Some(piece) = self.pending.pop_front() {
            return Some(piece);
        }
        loop {
            match self.receiver.recv().await {
                Ok(LiveEvent::Delta { text, end }) if end > self.offset => {
                    self.offset = end;
                    return Some(Piece::Text { text, end });
                }
                Ok(LiveEvent::Delta { .. }) => continue,
                Ok(LiveEvent::Done(message)) => return Some(Piece::Done(message)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow to keep up: catch up from the text itself.
                    let mut fresh = self.live.subscribe();
                    let text = fresh.take_snapshot();
                    self.receiver = fresh.receiver;
                    self.pending = fresh.pending;
                    if text.len() > self.offset {
                        let missed: Arc<str> = Arc::from(&text[self.offset..]);
                        self.offset = text.len();
                        return Some(Piece::Text {
                            text: missed,
                            end: self.offset,
                        });
                    }
                    if let Some(piece) = self.pending.pop_front() {
                        return Some(piece);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<Uuid, Arc<Live>>>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Live>>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn insert(&self, message_id: Uuid, origin: Origin) -> Arc<Live> {
        let live = Arc::new(Live::new(message_id, origin));
        self.map().insert(message_id, live.clone());
        live
    }

    pub fn get(&self, message_id: Uuid) -> Option<Arc<Live>> {
        self.map().get(&message_id).cloned()
    }

    pub fn remove(&self, message_id: Uuid) {
        self.map().remove(&message_id);
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Arc<Live>> {
        self.map().values().cloned().collect()
    }

    /// Every answer's text not yet written, for one batched write.
    pub fn unflushed(&self) -> (Vec<Uuid>, Vec<String>) {
        let lives = self.all();
        lives
            .iter()
            .filter_map(|live| live.take_unflushed().map(|text| (live.message_id, text)))
            .unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_origin() -> Origin {
        Origin {
            conversation_id: Uuid::now_v7(),
            agent_id: Uuid::now_v7(),
            project_id: Uuid::now_v7(),
        }
    }

    #[test]
    fn an_answer_being_saved_is_not_flushed() {
        let registry = Registry::default();
        let (ended, streaming) = (Uuid::now_v7(), Uuid::now_v7());
        registry.insert(ended, test_origin()).push("All of it");
        registry.insert(streaming, test_origin()).push("So far");
        // Its last words since the last flush go with its final save, not the flush: two
        // statements writing the same row at once would only wait for each other.
        assert_eq!(registry.get(ended).unwrap().ended_text(), "All of it");
        assert_eq!(
            registry.unflushed(),
            (vec![streaming], vec!["So far".to_string()])
        );
    }

    #[tokio::test]
    async fn a_reader_gets_the_snapshot_then_exactly_the_rest() {
        let registry = Registry::default();
        let live = registry.insert(Uuid::now_v7(), test_origin());
        live.push("Hello");
        let mut reader = live.subscribe();
        live.push(", world");
        assert_eq!(reader.take_snapshot(), "Hello");
        match reader.next().await.unwrap() {
            Piece::Text { text, end } => assert_eq!((&*text, end), (", world", 12)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_reader_that_lags_catches_up_from_the_text() {
        let registry = Registry::default();
        let live = registry.insert(Uuid::now_v7(), test_origin());
        let mut reader = live.subscribe();
        let mut expected = String::new();
        for i in 0..(CHANNEL_CAPACITY * 3) {
            let piece = format!("{i} ");
            expected.push_str(&piece);
            live.push(piece.as_str());
        }
        let mut got = reader.take_snapshot();
        while got.len() < expected.len() {
            match reader.next().await.unwrap() {
                Piece::Text { text, .. } => got.push_str(&text),
                Piece::Done(_) => unreachable!(),
            }
        }
        assert_eq!(got, expected);
    }
}
