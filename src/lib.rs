//! confab: a self-hosted chatbot platform in one binary.
pub mod accounts;
pub mod agents;
pub mod auth;
pub mod cli;
pub mod db;
pub mod domain;
pub mod error;
pub mod llm;
pub mod projects;
pub mod prompts;
pub mod settings;
pub mod site;
pub mod startup;
