//! What a chat turn needs to know about an agent before it asks the provider (its settings, its
//! composed system message, whether its project answers from its files), remembered per person
//! and agent, so a new conversation can be stored and asked for in the same instant.
//!
//! A card is never trusted on its own: it carries the agent's revision, which the database
//! changes with anything a turn takes from the agent (the agent, its project, their prompts and
//! prompt versions; see the `agent_revisions` migration), and the turn's single INSERT stores
//! nothing unless the revision is still current. A stale card, in this process or in another
//! sharing the database, costs one retry the slow way, never an answer with old instructions.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use uuid::Uuid;

use crate::agents::model::Agent;
use crate::db::{self, PgPool};
use crate::error::AppResult;
use crate::files::model::StoredFile;
use crate::prompts::service::SystemMessage;

/// More cards than this and the memory starts over (a bound, not a policy).
const MAX_CARDS: usize = 50_000;

pub struct AgentCard {
    pub agent: Agent,
    /// The agent's revision when the card was read.
    pub revision: i64,
    /// The system message (or the default one), as the request's instructions.
    pub instructions: String,
    /// The prompt versions it is made of, as the answer records them.
    pub versions: serde_json::Value,
    /// The project answers from its files: each turn reads passages, so it goes the slow way.
    pub knowledge: bool,
    /// [`db::agent_changes`] before it was read: a change made here since makes it stale.
    changes: u64,
}

/// Cards of this process, by (person, agent): a card is only ever read for the person it was
/// read for, so it carries their ownership of the agent too.
static CARDS: LazyLock<Mutex<Cards>> = LazyLock::new(Default::default);

type Cards = HashMap<(Uuid, Uuid), Arc<AgentCard>>;

fn cards() -> std::sync::MutexGuard<'static, Cards> {
    CARDS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The card of `owner`'s agent: remembered, or read (three statements; NotFound when the agent
/// is not theirs).
pub async fn card(
    pool: &PgPool,
    owner: Uuid,
    agent_id: Uuid,
    default_system_prompt: &str,
) -> AppResult<Arc<AgentCard>> {
    let changes = db::agent_changes();
    if let Some(card) = cards().get(&(owner, agent_id))
        && card.changes == changes
    {
        return Ok(card.clone());
    }
    let default_system_prompt = default_system_prompt.to_string();
    let card = db::run(pool, move |conn| {
        // The revision first: whatever is read after it is at least as new, so a change that
        // lands in between makes the card look stale (a retry), never current.
        let (agent, revision) = Agent::find_owned_revised(conn, owner, agent_id)?;
        let system =
            SystemMessage::of_agent(conn, agent.project_id, agent.id, &default_system_prompt)?;
        let knowledge = StoredFile::knowledge_for_answers(conn, agent.project_id)?.is_some();
        Ok(AgentCard {
            revision,
            instructions: system.text.clone(),
            versions: super::service::versions_json(&system),
            knowledge,
            agent,
            changes,
        })
    })
    .await?;
    let card = Arc::new(card);
    let mut cards = cards();
    if cards.len() >= MAX_CARDS {
        cards.clear();
    }
    cards.insert((owner, agent_id), card.clone());
    Ok(card)
}

/// The card turned out stale (or the agent gone): the next turn reads it again.
pub fn forget(owner: Uuid, agent_id: Uuid) {
    cards().remove(&(owner, agent_id));
}

/// Which agent each recent conversation is with, by (person, conversation): a conversation
/// never changes agent, so a message to it can use the agent's card. Only ever filled after a
/// message of that person's was stored there; the turn's statement checks ownership anyway.
static CONVERSATION_AGENTS: LazyLock<Mutex<HashMap<(Uuid, Uuid), Uuid>>> =
    LazyLock::new(Default::default);

pub fn remember_conversation(owner: Uuid, conversation_id: Uuid, agent_id: Uuid) {
    let mut agents = CONVERSATION_AGENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if agents.len() >= MAX_CARDS * 4 {
        agents.clear();
    }
    agents.insert((owner, conversation_id), agent_id);
}

/// The agent of `owner`'s conversation, if a message to it was stored recently.
pub fn agent_of(owner: Uuid, conversation_id: Uuid) -> Option<Uuid> {
    CONVERSATION_AGENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&(owner, conversation_id))
        .copied()
}
