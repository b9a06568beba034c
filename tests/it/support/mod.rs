pub mod app;
// The fake LLM upstream is a workspace crate (crates/fake-llm), shared with the example and the
// load generator; re-exported so `support::fake_llm::…` paths stay as they were.
pub use confab_fake_llm as fake_llm;
pub mod pdf;
pub mod remote;
pub mod routes;
pub mod sse;
pub mod tls_upstream;
