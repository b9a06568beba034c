//! Accounts: sign-up, sign-in, sign-out (here or everywhere) and password changes.
pub mod api;
pub mod model;
pub mod service;
pub mod web;
