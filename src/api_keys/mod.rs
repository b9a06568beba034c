//! API keys (personal access tokens): made, listed and revoked by their owner, from the account
//! page (`accounts::web` shows them) or `/api/keys`. How a key is made and hashed is
//! `auth::api_key`; how a request signed with one is recognised is `session::extract`.
pub mod api;
pub mod model;
pub mod service;
