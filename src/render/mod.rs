//! Turning stored text into safe HTML for pages.
pub mod markdown;
