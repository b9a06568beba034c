//! A project's files: kept by confab under the data directory (content-addressed by sha256),
//! listed, downloaded and deleted; sent on to a provider's Files API and, as project knowledge,
//! searched by confab or put in the provider's vector store.

pub mod api;
pub mod knowledge;
pub mod model;
pub mod service;
pub mod store;
pub mod text;
pub mod web;
