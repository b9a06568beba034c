//! Every page URL that carries an id, built in one place for handlers and templates alike
//! (templates call `crate::urls::…`, with ids or references to them). The patterns they match
//! are in `startup`'s route table.

use std::borrow::Borrow;

use uuid::Uuid;

pub fn project(id: impl Borrow<Uuid>) -> String {
    format!("/projects/{}", id.borrow())
}

pub fn project_delete(id: impl Borrow<Uuid>) -> String {
    format!("/projects/{}/delete", id.borrow())
}

pub fn project_agents(id: impl Borrow<Uuid>) -> String {
    format!("/projects/{}/agents", id.borrow())
}

pub fn project_prompts(id: impl Borrow<Uuid>) -> String {
    format!("/projects/{}/prompts", id.borrow())
}

pub fn agent(id: impl Borrow<Uuid>) -> String {
    format!("/agents/{}", id.borrow())
}

pub fn agent_delete(id: impl Borrow<Uuid>) -> String {
    format!("/agents/{}/delete", id.borrow())
}

pub fn agent_prompts(id: impl Borrow<Uuid>) -> String {
    format!("/agents/{}/prompts", id.borrow())
}

/// A new conversation with the agent (GET shows the page, POST sends the first message).
pub fn agent_chat(id: impl Borrow<Uuid>) -> String {
    format!("/agents/{}/chat", id.borrow())
}

pub fn prompt(id: impl Borrow<Uuid>) -> String {
    format!("/prompts/{}", id.borrow())
}

pub fn prompt_delete(id: impl Borrow<Uuid>) -> String {
    format!("/prompts/{}/delete", id.borrow())
}

pub fn prompt_toggle(id: impl Borrow<Uuid>) -> String {
    format!("/prompts/{}/toggle", id.borrow())
}

pub fn prompt_move(id: impl Borrow<Uuid>) -> String {
    format!("/prompts/{}/move", id.borrow())
}

pub fn prompt_restore(id: impl Borrow<Uuid>, version: impl Borrow<i32>) -> String {
    format!(
        "/prompts/{}/versions/{}/restore",
        id.borrow(),
        version.borrow()
    )
}

pub fn conversation(id: impl Borrow<Uuid>) -> String {
    format!("/conversations/{}", id.borrow())
}

pub fn conversation_delete(id: impl Borrow<Uuid>) -> String {
    format!("/conversations/{}/delete", id.borrow())
}

pub fn conversation_messages(id: impl Borrow<Uuid>) -> String {
    format!("/conversations/{}/messages", id.borrow())
}

pub fn message_stream(id: impl Borrow<Uuid>) -> String {
    format!("/messages/{}/stream", id.borrow())
}

pub fn message_stop(id: impl Borrow<Uuid>) -> String {
    format!("/messages/{}/stop", id.borrow())
}

pub fn message_retry(id: impl Borrow<Uuid>) -> String {
    format!("/messages/{}/retry", id.borrow())
}

/// Ends one of the signed-in user's sessions (a device on the account page).
pub fn session_end(id: impl Borrow<Uuid>) -> String {
    format!("/account/sessions/{}/end", id.borrow())
}

/// The chat home: a new chat with the last or default agent, and every conversation.
pub const HOME: &str = "/chat";

/// The sidebar's search over conversation titles (`?q=`), answered with the list alone.
pub const CONVERSATION_SEARCH: &str = "/chat/conversations";

/// A project's files: the page's upload form posts here.
pub fn project_files(id: impl Borrow<Uuid>) -> String {
    format!("/projects/{}/files", id.borrow())
}

/// The same upload for scripts and the page's per-file progress (JSON answer).
pub fn api_project_files(id: impl Borrow<Uuid>) -> String {
    format!("/api/projects/{}/files", id.borrow())
}

pub fn file_download(id: impl Borrow<Uuid>) -> String {
    format!("/files/{}/download", id.borrow())
}

/// GET asks for confirmation (no JavaScript), POST deletes.
pub fn file_delete(id: impl Borrow<Uuid>) -> String {
    format!("/files/{}/delete", id.borrow())
}

/// Project knowledge on or off (POST `enabled=true|false`).
pub fn project_knowledge(id: impl Borrow<Uuid>) -> String {
    format!("/projects/{}/knowledge", id.borrow())
}

/// Revokes one of the signed-in user's API keys (POST).
pub fn api_key_revoke(id: impl Borrow<Uuid>) -> String {
    format!("/account/keys/{}/revoke", id.borrow())
}
