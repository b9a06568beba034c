//! Reading `text/event-stream` responses in tests, event by event.

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

pub struct Events {
    inner: std::pin::Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>,
}

impl Events {
    pub fn of(response: reqwest::Response) -> Events {
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
            "not an event stream: {:?}",
            response.headers()
        );
        Events {
            inner: Box::pin(
                response
                    .bytes_stream()
                    .eventsource()
                    .map(|e| e.map_err(|e| e.to_string())),
            ),
        }
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Event> {
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), self.inner.next())
            .await
            .expect("an event within 30 s")?;
        Some(event.expect("a well-formed event"))
    }

    /// Reads JSON events until the final one; returns the text chunks and the final event.
    pub async fn collect_json(&mut self) -> (Vec<(String, String)>, Value) {
        let mut chunks = Vec::new();
        while let Some(event) = self.next().await {
            let data: Value = serde_json::from_str(&event.data).unwrap();
            if data["done"] == true {
                return (chunks, data);
            }
            chunks.push((event.id.clone(), data["text"].as_str().unwrap().to_string()));
        }
        panic!("the stream ended without its final event");
    }
}

pub fn joined(chunks: &[(String, String)]) -> String {
    chunks.iter().map(|(_, text)| text.as_str()).collect()
}
