//! confab: a self-hosted chatbot platform in one binary.
pub mod accounts;
pub mod agents;
pub mod auth;
pub mod chat;
pub mod cli;
pub mod db;
pub mod domain;
pub mod error;
pub mod generation;
pub mod llm;
pub mod metrics;
pub mod projects;
pub mod prompts;
pub mod render;
pub mod settings;
pub mod site;
pub mod startup;
