//! The one integration-test binary: confab over real HTTP, against a real PostgreSQL.

// Test and benchmark tooling: a failed unwrap is a failed run, with its line.
#![allow(clippy::unwrap_used)]
mod accounts;
mod api_keys;
mod architecture;
mod backup;
mod chat;
mod chat_files;
mod chat_home;
mod cors;
mod files;
mod isolation;
mod llm_client;
mod openai_compat;
mod openapi;
mod pages;
mod platform;
mod process;
mod projects;
mod rate_limits;
mod seeds;
mod soak;
mod statements;
mod supervision;
mod support;
