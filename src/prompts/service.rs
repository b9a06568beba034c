//! Prompt rules: every text edit is a new immutable version; rollback points at an old one.

use serde::Deserialize;
use uuid::Uuid;

use crate::db;
use crate::db::PgPool;
use crate::domain::{self, Checks};
use crate::error::{AppError, AppResult};
use crate::prompts::model::{OwnerSummary, Prompt, PromptOwner, PromptVersion, PromptWithText};
use crate::session::CurrentUser;

/// A prompt as the form or the JSON API sends it; `None` leaves a field as it is.
#[derive(Default, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptInput {
    /// A new prompt without one takes its content's first line.
    pub title: Option<String>,
    pub content: Option<String>,
    pub enabled: Option<bool>,
    /// 0-based place among its siblings.
    pub position: Option<i64>,
}

/// A prompt edit that obeys the rules; `None` leaves a field as it is.
pub struct PromptChanges {
    pub title: Option<String>,
    pub content: Option<String>,
    pub enabled: Option<bool>,
    /// 0-based place among its siblings (a negative one means the first).
    pub position: Option<usize>,
}

impl TryFrom<PromptInput> for PromptChanges {
    type Error = AppError;

    /// Every field's message at once, or changes that obey the rules.
    fn try_from(input: PromptInput) -> AppResult<PromptChanges> {
        let mut c = Checks::new();
        let title = input
            .title
            .as_deref()
            .and_then(|t| c.check(domain::prompt_title(t)));
        let content = input
            .content
            .as_deref()
            .and_then(|t| c.check(domain::prompt_content(t)));
        c.finish()?;
        Ok(PromptChanges {
            title,
            content,
            enabled: input.enabled,
            position: input.position.map(|p| usize::try_from(p).unwrap_or(0)),
        })
    }
}

/// Checks that the owner (project or agent) belongs to the user.
fn check_owner(conn: &mut diesel::PgConnection, user: Uuid, owner: PromptOwner) -> AppResult<()> {
    owner.find_owned(conn, user)?;
    Ok(())
}

/// The system message an agent sends, and the prompt versions it is made of.
pub struct SystemMessage {
    pub text: String,
    pub parts: Vec<PromptWithText>,
}

impl SystemMessage {
    pub fn compose(parts: Vec<PromptWithText>) -> SystemMessage {
        let text = parts
            .iter()
            .map(|p| p.current.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        SystemMessage { text, parts }
    }

    /// What an agent (of `project_id`) sends: its project's enabled prompts, then its own, or
    /// `default` when they say nothing.
    pub fn of_agent(
        conn: &mut diesel::PgConnection,
        project_id: Uuid,
        agent_id: Uuid,
        default: &str,
    ) -> diesel::QueryResult<SystemMessage> {
        let parts = Prompt::for_system_message(conn, project_id, agent_id)?;
        Ok(SystemMessage::compose(parts).or_default(default))
    }

    /// `default` (`chat.default_system_prompt`) when no prompt says anything.
    pub fn or_default(self, default: &str) -> SystemMessage {
        if self.text.trim().is_empty() && !default.trim().is_empty() {
            SystemMessage {
                text: default.to_string(),
                parts: self.parts,
            }
        } else {
            self
        }
    }
}

/// The system message of an agent (of `project_id`): its project's enabled prompts, then its own.
pub async fn system_message(
    pool: &PgPool,
    project_id: Uuid,
    agent_id: Uuid,
) -> AppResult<SystemMessage> {
    let parts = db::run(pool, move |conn| {
        Ok(Prompt::for_system_message(conn, project_id, agent_id)?)
    })
    .await?;
    Ok(SystemMessage::compose(parts))
}

/// The owner's name and project, checking it is the user's.
pub async fn owner(
    pool: &PgPool,
    user: &CurrentUser,
    owner: PromptOwner,
) -> AppResult<OwnerSummary> {
    let user = user.id;
    db::run(pool, move |conn| Ok(owner.find_owned(conn, user)?)).await
}

pub async fn list(
    pool: &PgPool,
    user: &CurrentUser,
    owner: PromptOwner,
) -> AppResult<Vec<PromptWithText>> {
    let user = user.id;
    db::run(pool, move |conn| {
        check_owner(conn, user, owner)?;
        Ok(Prompt::list_with_text(conn, owner)?)
    })
    .await
}

/// How long a title taken from a prompt's first line may be.
const TITLE_FROM_CONTENT_CHARS: usize = 80;

pub async fn create(
    pool: &PgPool,
    user: &CurrentUser,
    owner: PromptOwner,
    input: PromptInput,
) -> AppResult<PromptWithText> {
    // A new prompt needs a title and a text: a missing title is the text's first line (as
    // clients that only send `content` expect), a missing text an empty one.
    let title = input.title.clone().unwrap_or_else(|| {
        let first_line = input
            .content
            .as_deref()
            .and_then(|c| c.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or_default();
        domain::title_from(first_line, TITLE_FROM_CONTENT_CHARS)
    });
    let changes = PromptChanges::try_from(PromptInput {
        title: Some(title),
        content: Some(input.content.unwrap_or_default()),
        ..input
    })?;
    let (title, content) = (
        changes.title.unwrap_or_default(),
        changes.content.unwrap_or_default(),
    );
    let enabled = changes.enabled.unwrap_or(true);
    let user = user.id;
    db::transaction(pool, move |conn| {
        check_owner(conn, user, owner)?;
        let created = Prompt::create(conn, owner, &title, &content, enabled)?;
        if let Some(position) = changes.position {
            Prompt::move_to(conn, &created.prompt, position)?;
            let moved = Prompt::find_owned(conn, user, created.prompt.id)?;
            return Ok(Prompt::current_text(conn, moved)?);
        }
        Ok(created)
    })
    .await
}

pub async fn get(pool: &PgPool, user: &CurrentUser, id: Uuid) -> AppResult<PromptWithText> {
    let user = user.id;
    db::run(pool, move |conn| {
        let prompt = Prompt::find_owned(conn, user, id)?;
        Ok(Prompt::current_text(conn, prompt)?)
    })
    .await
}

/// Applies an edit: new text → a new version (only if it differs); `enabled` and `position` are
/// state, not text, and make no version.
pub async fn update(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
    input: PromptInput,
) -> AppResult<PromptWithText> {
    let PromptChanges {
        title,
        content,
        enabled,
        position,
    } = PromptChanges::try_from(input)?;
    let user = user.id;
    db::transaction(pool, move |conn| {
        let prompt = Prompt::find_owned_for_update(conn, user, id)?;
        let mut current = Prompt::current_text(conn, prompt)?;
        let new_title = title.unwrap_or_else(|| current.current.title.clone());
        let new_content = content.unwrap_or_else(|| current.current.content.clone());
        if new_title != current.current.title || new_content != current.current.content {
            current = Prompt::add_version(conn, &current.prompt, &new_title, &new_content)?;
        }
        if let Some(enabled) = enabled.filter(|e| *e != current.prompt.enabled) {
            current.prompt = Prompt::set_enabled(conn, &current.prompt, enabled)?;
        }
        if let Some(position) = position {
            Prompt::move_to(conn, &current.prompt, position)?;
            current.prompt = Prompt::find_owned(conn, user, id)?;
        }
        Ok(current)
    })
    .await
}

/// Moves the prompt one place up (`-1`) or down (`+1`).
pub async fn step(pool: &PgPool, user: &CurrentUser, id: Uuid, delta: i64) -> AppResult<Prompt> {
    let user = user.id;
    db::transaction(pool, move |conn| {
        let prompt = Prompt::find_owned(conn, user, id)?;
        // Two quick clicks must move it two places: read the index under the list's lock.
        Prompt::lock_list(conn, &prompt)?;
        let index = Prompt::index_of(conn, &prompt)? as i64;
        Prompt::move_to(conn, &prompt, (index + delta).max(0) as usize)?;
        Ok(prompt)
    })
    .await
}

pub async fn delete(pool: &PgPool, user: &CurrentUser, id: Uuid) -> AppResult<Prompt> {
    let user = user.id;
    db::transaction(pool, move |conn| {
        let prompt = Prompt::find_owned(conn, user, id)?;
        Prompt::delete(conn, &prompt)?;
        Ok(prompt)
    })
    .await
}

pub async fn versions(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
) -> AppResult<(PromptWithText, Vec<PromptVersion>)> {
    let user = user.id;
    db::run(pool, move |conn| {
        let prompt = Prompt::find_owned(conn, user, id)?;
        let versions = PromptVersion::list(conn, prompt.id)?;
        Ok((Prompt::current_text(conn, prompt)?, versions))
    })
    .await
}

pub async fn restore(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
    version: i32,
) -> AppResult<PromptWithText> {
    let user = user.id;
    db::transaction(pool, move |conn| {
        let prompt = Prompt::find_owned_for_update(conn, user, id)?;
        Ok(Prompt::restore(conn, &prompt, version)?)
    })
    .await
}
