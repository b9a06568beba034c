//! Clients for OpenAI-compatible LLM providers. Nothing here knows about HTTP handlers or the
//! database: it turns a `ChatRequest` into a stream of `StreamEvent`s.

pub mod chat_completions;
mod clients;
pub mod files;
mod http;
pub mod provider;
pub mod responses;
pub mod router;
mod sse;

pub use clients::{ClientOptions, Clients, read_ca_file};
pub use http::decode_body;
pub use provider::{
    Api, Attachments, ChatRequest, EventStream, FileSearch, Finish, LlmError, ProviderConfig, Role,
    StreamEvent, Turn, Usage,
};
pub use router::{Failure, RetryPolicy, Router, Started, open};
