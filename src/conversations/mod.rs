//! Conversations and their messages as stored: the rows, their typed states, and every query on
//! them. The chat pages and API (`chat`) and the answer generator (`generation`) both build on it.
pub mod model;
