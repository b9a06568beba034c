//! Projects: a user's workspaces, each with agents and prompts.
pub mod api;
pub mod model;
pub mod service;
pub mod web;
