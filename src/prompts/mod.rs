//! Prompts: instructions at project or agent level, versioned and orderable.
pub mod api;
pub mod model;
pub mod service;
pub mod web;
