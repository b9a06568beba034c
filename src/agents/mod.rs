//! Agents: a model, its settings and instructions, inside a project.
pub mod api;
pub mod model;
pub mod service;
pub mod web;
