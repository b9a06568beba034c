//! confab: a self-hosted chatbot platform in one binary.
pub mod db;
pub mod llm;
