//! A project's files: kept by confab under the data directory (content-addressed by sha256),
//! listed, downloaded and deleted.

pub mod api;
pub mod model;
pub mod service;
pub mod store;
pub mod text;
pub mod web;
