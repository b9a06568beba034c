//! Chat: conversations with an agent, answers streamed as they are generated.
pub mod api;
pub mod cards;
pub mod service;
pub mod stream;
pub mod web;
