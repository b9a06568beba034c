//! The one integration-test binary: confab over real HTTP, against a real PostgreSQL.
mod accounts;
mod architecture;
mod chat;
mod isolation;
mod llm_client;
mod pages;
mod platform;
mod process;
mod projects;
mod support;
