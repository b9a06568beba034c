//! The OpenAI-compatible API under `/v1`: each of a person's agents is a model that any OpenAI
//! SDK (or LiteLLM, Open WebUI, LangChain) can call with `/v1/chat/completions` or
//! `/v1/responses`. It is a thin translation over confab's own chat pipeline
//! (`chat::service::send_with`): every call is a stored conversation of the agent, answered by
//! the same detached generation task, with the agent's system message, provider fallback and
//! usage. See docs/ARCHITECTURE.md, "The OpenAI-compatible API".
pub mod api;
pub mod chat_completions;
pub mod error;
pub mod responses;
pub mod service;
