pub mod app;
pub mod fake_llm;
pub mod sse;
