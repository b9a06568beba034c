//! Chat rules: what is stored before any LLM call, what context goes upstream, titles, retry.

use uuid::Uuid;

use crate::agents::model::Agent;
use crate::chat::cards;
use crate::chat::stream::Source;
use crate::conversations::model::{
    Conversation, Extras, Message, NewConversation, Role, Status, StoredTurn, TurnRows,
};
use crate::db;
use crate::db::PgPool;
use crate::error::{AppError, AppResult};
use crate::files::model::{Passage, StoredFile};
use crate::files::service::Attached;
use crate::generation::Generations;
use crate::generation::allowance::Slot;
use crate::generation::registry::{Piece, Subscription};
use crate::generation::{Job, Origin};
use crate::llm::{ChatRequest, FileSearch, Turn};
use crate::prompts::service::SystemMessage;
use crate::session::CurrentUser;
use crate::settings::ChatSettings;

/// A message that was stored, with the answer that has started generating.
pub struct Sent {
    pub conversation: Conversation,
    /// The project of the agent that answers.
    pub project_id: Uuid,
    pub user_message: Message,
    pub answer: Message,
    pub reader: Subscription,
    /// True when this message started the conversation.
    pub new_conversation: bool,
}

/// Newest turns first until the budget is spent; the newest (the message just sent) always goes.
pub fn trim_history(turns: Vec<Turn>, budget_chars: usize) -> Vec<Turn> {
    let newest = turns.len();
    let mut used = 0;
    let mut kept = Vec::new();
    for (index, turn) in turns.into_iter().enumerate().rev() {
        let size = turn.text.chars().count();
        if index + 1 != newest && used + size > budget_chars {
            break;
        }
        used += size;
        kept.push(turn);
    }
    kept.reverse();
    // Providers expect the context to open with a user turn.
    while kept.len() > 1 && kept[0].role == crate::llm::Role::Assistant {
        kept.remove(0);
    }
    kept
}

/// A turn said by `role`, as the provider reads it.
fn turn_for(role: Role, text: String) -> Turn {
    match role {
        Role::Assistant => Turn::assistant(text),
        Role::User => Turn::user(text),
    }
}

/// A stored message as the provider reads it.
fn turn_of(message: &Message) -> Turn {
    turn_for(message.role, message.upstream_text())
}

pub(crate) fn versions_json(system: &SystemMessage) -> serde_json::Value {
    serde_json::Value::Array(
        system.parts.iter().map(|p| serde_json::json!({"prompt_id": p.prompt.id, "version": p.prompt.current_version})).collect(),
    )
}

fn ensure_accepting(generations: &Generations) -> AppResult<()> {
    if generations.is_shutting_down() {
        return Err(AppError::NotAvailable(
            "confab is restarting; send your message again in a moment.".into(),
        ));
    }
    Ok(())
}

/// A message refused because its conversation has no room for it (and its answer).
fn conversation_full(max_messages: u32) -> AppError {
    AppError::invalid(
        "message",
        format!("This conversation has reached {max_messages} messages; start a new one to go on."),
    )
}

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
pub enum To {
    /// An agent: a new conversation, or the given one (which must be that agent's).
    Agent {
        agent_id: Uuid,
        conversation_id: Option<Uuid>,
    },
    /// An existing conversation, with whichever agent it has.
    Conversation(Uuid),
    /// A new conversation with the agent a new chat goes to by default (see [`choices`]); a
    /// person without any agent gets a first project with its default agent, so a first
    /// message right after sign-up is answered.
    Default,
}

/// The name of the project made for a person's first message when they have none.
pub const FIRST_PROJECT_NAME: &str = "My chats";

/// The agent a new chat goes to: the one of the most recently active conversation, else the
/// first project's default agent; `None` when the person has no agent at all.
fn default_agent_for(
    conn: &mut diesel::PgConnection,
    owner: Uuid,
    agents: &[(Agent, String)],
) -> AppResult<Option<Agent>> {
    let last = Conversation::last_agent(conn, owner)?;
    Ok(last
        .and_then(|id| agents.iter().find(|(a, _)| a.id == id))
        .or_else(|| agents.first())
        .map(|(agent, _)| agent.clone()))
}

/// The agent of a person who has none yet: their first project's, made now. A first message
/// sent twice at once waits here for the other to commit, then takes the agent it made.
fn first_agent(conn: &mut diesel::PgConnection, owner: Uuid) -> AppResult<Agent> {
    crate::projects::model::Project::lock_first_project(conn, owner)?;
    if let Some((agent, _)) = Agent::list_for_owner(conn, owner)?.into_iter().next() {
        return Ok(agent);
    }
    let project = crate::projects::service::create_in(
        conn,
        owner,
        FIRST_PROJECT_NAME,
        "Made for your first chat.",
    )?;
    Agent::find_default(conn, project.id)?.ok_or(AppError::NotFound)
}

/// What a new chat offers: every agent of the person with its project's name, and the one
/// chosen (`wanted` when it is theirs, else the default; `None` when they have no agent yet).
pub struct Choices {
    pub agents: Vec<(Agent, String)>,
    pub chosen: Option<Agent>,
}

pub async fn choices(
    pool: &PgPool,
    user: &CurrentUser,
    wanted: Option<Uuid>,
) -> AppResult<Choices> {
    let owner = user.id;
    db::run(pool, move |conn| {
        let agents = Agent::list_for_owner(conn, owner)?;
        let chosen = match wanted.and_then(|id| agents.iter().find(|(a, _)| a.id == id)) {
            Some((agent, _)) => Some(agent.clone()),
            None => default_agent_for(conn, owner, &agents)?,
        };
        Ok(Choices { agents, chosen })
    })
    .await
}

/// How many conversations the chat's sidebar lists; searching finds older ones.
pub const RECENT_CONVERSATIONS: i64 = 50;

/// The person's most recently active conversations (with their agents' names), only those
/// whose title contains `search` when it is not blank.
pub async fn recent(
    pool: &PgPool,
    user: &CurrentUser,
    search: Option<String>,
) -> AppResult<Vec<(Conversation, String)>> {
    let owner = user.id;
    // PostgreSQL text cannot hold NUL, and no title has one: it is dropped from the search.
    let search = search
        .map(|s| {
            s.replace('\0', "")
                .trim()
                .chars()
                .take(200)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty());
    db::run(pool, move |conn| {
        Ok(Conversation::recent(
            conn,
            owner,
            search.as_deref(),
            RECENT_CONVERSATIONS,
        )?)
    })
    .await
}

/// The attached files as they are stored with the message: which ones, and their text as it goes
/// upstream after it.
fn attaching(attached: &[Attached]) -> (serde_json::Value, String) {
    let list = attached
        .iter()
        .map(|a| serde_json::json!({"file_id": a.file_id, "filename": a.filename}))
        .collect();
    let context = attached
        .iter()
        .map(|a| {
            format!(
                "<file name=\"{}\">\n{}\n</file>",
                a.filename.replace('"', "'"),
                a.text
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    (serde_json::Value::Array(list), context)
}

/// How many passages of a project's files go with a message when the project answers from them.
pub const KNOWLEDGE_PASSAGES: i64 = 4;

/// The words a message is searched by: letters and digits only (so they are safe in a
/// `to_tsquery` joined by `|`), lower case, each once, at most 32.
pub fn search_words(text: &str) -> Vec<String> {
    // Words every question has would fill the 32 places and match nothing anyway.
    const COMMON: &[&str] = &[
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from",
        "has", "have", "how", "in", "is", "it", "its", "me", "my", "of", "on", "or", "so", "that",
        "the", "their", "there", "this", "to", "was", "we", "what", "when", "where", "which",
        "who", "why", "will", "with", "you", "your",
    ];
    let mut words: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let word = word.to_lowercase();
        if word.chars().count() >= 2 && !COMMON.contains(&word.as_str()) && !words.contains(&word) {
            words.push(word);
        }
        if words.len() == 32 {
            break;
        }
    }
    words
}

/// The passages as the request's instructions add them, and as the answer cites them.
fn knowledge(passages: &[Passage]) -> (String, serde_json::Value) {
    if passages.is_empty() {
        return (String::new(), serde_json::Value::Array(vec![]));
    }
    let mut block = String::from(
        "Passages from this project's files follow. Answer from them where they help and cite \
         them by number, like [1]; if they do not hold the answer, say so.",
    );
    let mut citations = Vec::new();
    for (index, passage) in passages.iter().enumerate() {
        let n = index + 1;
        block.push_str(&format!(
            "\n\n[{n}] {}:\n{}",
            passage.filename, passage.text
        ));
        let excerpt: String = passage.text.chars().take(200).collect();
        citations.push(serde_json::json!({
            "n": n, "file_id": passage.file_id, "filename": passage.filename, "excerpt": excerpt,
        }));
    }
    (block, serde_json::Value::Array(citations))
}

/// What grounds an answer in the project's files: the request's instructions (the system
/// message, then the passages of the project's files for the message when the project answers
/// from them), the citations the answer keeps, and the project's vector store when its provider
/// searches the files itself (that provider gets the system message alone).
struct Grounding {
    instructions: String,
    citations: serde_json::Value,
    file_search: Option<FileSearch>,
}

fn grounding(
    conn: &mut diesel::PgConnection,
    agent: &Agent,
    system: &SystemMessage,
    text: &str,
) -> AppResult<Grounding> {
    // One query when knowledge is off (most projects), a second for the passages when it is on.
    let Some(searched_store) = StoredFile::knowledge_for_answers(conn, agent.project_id)? else {
        return Ok(Grounding {
            instructions: system.text.clone(),
            citations: serde_json::Value::Array(vec![]),
            file_search: None,
        });
    };
    let passages = Passage::search(
        conn,
        agent.project_id,
        &search_words(text),
        KNOWLEDGE_PASSAGES,
    )?;
    let (knowledge, citations) = knowledge(&passages);
    let instructions = [system.text.as_str(), knowledge.as_str()]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("\n\n");
    let file_search = searched_store.map(|(provider, vector_store_id)| FileSearch {
        provider,
        vector_store_id,
        instructions: (!system.text.is_empty()).then(|| system.text.clone()),
    });
    Ok(Grounding {
        instructions,
        citations,
        file_search,
    })
}

/// What a client that keeps its own conversation (the OpenAI-compatible API) sends with a
/// message besides its text. Nothing of it is needed by confab's own pages.
#[derive(Debug, Default)]
pub struct ClientTurn {
    /// Turns before the message, oldest first, stored before it as complete messages (the
    /// caller passes them only for a new conversation: a continued one has its own history).
    pub earlier: Vec<(Role, String)>,
    /// Added after the agent's system message, for this answer only (not stored).
    pub instructions: Option<String>,
    /// Instead of the agent's temperature, for this answer only.
    pub temperature: Option<f32>,
    /// Instead of the agent's max output tokens, for this answer only.
    pub max_output_tokens: Option<u32>,
}

/// Stores the user's message (with the files attached to it, which must be in the agent's
/// project) and an empty answer in one transaction, then starts generating.
pub async fn send(
    pool: &PgPool,
    generations: &Generations,
    settings: &ChatSettings,
    user: &CurrentUser,
    to: To,
    raw: &str,
    attached: Vec<Attached>,
) -> AppResult<Sent> {
    let outgoing = Outgoing {
        text: raw,
        attached,
        client: ClientTurn::default(),
    };
    send_with(pool, generations, settings, user, to, outgoing).await
}

/// A message as it is sent: its text, the files attached to it, and what a client that keeps
/// its own conversation adds.
pub struct Outgoing<'a> {
    pub text: &'a str,
    pub attached: Vec<Attached>,
    pub client: ClientTurn,
}

/// [`send`], with what an OpenAI-compatible client adds to the message.
pub async fn send_with(
    pool: &PgPool,
    generations: &Generations,
    settings: &ChatSettings,
    user: &CurrentUser,
    to: To,
    outgoing: Outgoing<'_>,
) -> AppResult<Sent> {
    let Outgoing {
        text: raw,
        attached,
        mut client,
    } = outgoing;
    let text = crate::domain::message(raw)?;
    ensure_accepting(generations)?;
    // A message without files, to an agent whose project does not answer from its files, is
    // stored in one statement; in a new conversation while the provider is already being asked.
    // An existing conversation goes this way only when this person's message was stored in it
    // before (so it is theirs): its answer is claimed before the statement checks the owner, and
    // a stranger's claim would make the owner's next message a 409.
    let agent = match to {
        To::Agent {
            agent_id,
            conversation_id: None,
        } => Some((agent_id, None)),
        To::Agent {
            agent_id,
            conversation_id: Some(id),
        } => (cards::agent_of(user.id, id) == Some(agent_id)).then_some((agent_id, Some(id))),
        To::Conversation(id) => cards::agent_of(user.id, id).map(|agent_id| (agent_id, Some(id))),
        To::Default => None,
    };
    if let Some((agent_id, conversation_id)) = agent
        && attached.is_empty()
    {
        let card = cards::card(pool, user.id, agent_id, &settings.default_system_prompt).await?;
        if !card.knowledge {
            let one = match conversation_id {
                None => {
                    begin_conversation(pool, generations, settings, user, &card, &text, client)
                        .await?
                }
                Some(id) => {
                    continue_conversation(
                        pool,
                        generations,
                        settings,
                        user,
                        &card,
                        id,
                        &text,
                        client,
                    )
                    .await?
                }
            };
            match one {
                Begun::Sent(sent) => {
                    cards::remember_conversation(user.id, sent.conversation.id, agent_id);
                    return Ok(*sent);
                }
                // Nothing was stored: the agent changed since its card was read (or is gone),
                // the conversation is not theirs, full, or busy. The way below reads everything
                // afresh and says which.
                Begun::NotStored(back) => {
                    cards::forget(user.id, agent_id);
                    client = back;
                }
            }
        }
    }
    let ClientTurn {
        earlier,
        instructions: client_instructions,
        temperature,
        max_output_tokens,
    } = client;
    let attachments = (!attached.is_empty()).then(|| crate::llm::Attachments {
        message: text.clone(),
        remote: attached.iter().map(|a| a.remote.clone()).collect(),
    });
    let allowance = generations.allowance();
    let owner = user.id;
    // A conversation that arrives with its history is titled by its first message.
    let first = earlier
        .iter()
        .find(|(role, _)| *role == Role::User)
        .map_or(text.as_str(), |(_, first)| first.as_str());
    let title = crate::domain::title_from(first, settings.title_chars);
    let stored_before = earlier.len() as i64;
    let (budget, max_messages) = (
        settings.history_budget_chars,
        settings.max_messages_per_conversation,
    );
    let default_system_prompt = settings.default_system_prompt.clone();
    let (agent, conversation, new_conversation, user_message, answer, history, grounding, slot) =
        db::transaction(pool, move |conn| {
            let (agent, conversation, new_conversation) = match to {
                To::Conversation(id) => {
                    let conversation = Conversation::find_owned(conn, owner, id)?;
                    let agent = Agent::find_owned(conn, owner, conversation.agent_id)?;
                    (agent, conversation, false)
                }
                To::Agent {
                    agent_id,
                    conversation_id: Some(id),
                } => {
                    let conversation = Conversation::find_owned(conn, owner, id)?;
                    if conversation.agent_id != agent_id {
                        return Err(AppError::NotFound);
                    }
                    let agent = Agent::find_owned(conn, owner, agent_id)?;
                    (agent, conversation, false)
                }
                To::Agent {
                    agent_id,
                    conversation_id: None,
                } => {
                    let agent = Agent::find_owned(conn, owner, agent_id)?;
                    let conversation = Conversation::create(conn, owner, agent.id, &title)?;
                    (agent, conversation, true)
                }
                To::Default => {
                    let agents = Agent::list_for_owner(conn, owner)?;
                    let agent = match default_agent_for(conn, owner, &agents)? {
                        Some(agent) => agent,
                        None => first_agent(conn, owner)?,
                    };
                    let conversation = Conversation::create(conn, owner, agent.id, &title)?;
                    (agent, conversation, true)
                }
            };
            // One answer at a time per conversation, claimed once the owner is known (so a 409
            // tells nobody about another person's conversation); then a place within the
            // person's allowance. Refused, the transaction stores nothing.
            let claim = allowance.claim(conversation.id)?;
            let slot = allowance.take(owner)?.holding(claim);
            // Bounded, so no conversation grows until reading it is a burden.
            let stored = if new_conversation {
                0
            } else {
                Message::count(conn, conversation.id)?
            };
            if stored + stored_before + 2 > i64::from(max_messages) {
                return Err(conversation_full(max_messages));
            }
            if !new_conversation {
                Conversation::touch(conn, conversation.id)?;
            }
            if let Some(stranger) = attached.iter().find(|a| a.project_id != agent.project_id) {
                return Err(AppError::invalid(
                    "file_ids",
                    format!(
                        "\u{201c}{}\u{201d} belongs to another project; attach files of this agent's project.",
                        stranger.filename
                    ),
                ));
            }
            let system = SystemMessage::of_agent(conn, agent.project_id, agent.id, &default_system_prompt)?;
            let (attachments, context) = attaching(&attached);
            // Project knowledge: the best passages of its files for this message, if it is on.
            let grounding = grounding(conn, &agent, &system, &text)?;
            let StoredTurn {
                earlier,
                user: user_message,
                answer,
            } = Message::insert_turn(
                conn,
                conversation.id,
                &text,
                Extras {
                    attachments,
                    context: &context,
                    citations: grounding.citations.clone(),
                    earlier: &earlier,
                },
                versions_json(&system),
            )?;
            // A new conversation's history is what was just stored: no need to read it back.
            let history = if new_conversation {
                let mut history = earlier;
                history.push(user_message.clone());
                history
            } else {
                Message::history(conn, conversation.id, answer.id, budget)?
            };
            Ok((
                agent,
                conversation,
                new_conversation,
                user_message,
                answer,
                history,
                grounding,
                slot,
            ))
        })
        .await?;
    let reader = start(
        generations,
        slot,
        settings,
        &agent,
        &answer,
        &history,
        Ask {
            attachments,
            temperature,
            max_output_tokens,
            ..Ask::grounded(grounding, client_instructions)
        },
    );
    cards::remember_conversation(owner, conversation.id, agent.id);
    Ok(Sent {
        project_id: agent.project_id,
        conversation,
        user_message,
        answer,
        reader,
        new_conversation,
    })
}

enum Begun {
    Sent(Box<Sent>),
    /// Nothing was stored; the client's turn, to send the slow way.
    NotStored(ClientTurn),
}

/// A new conversation with `card`'s agent: the provider is asked at once, while one statement
/// stores the conversation, the message and the empty answer (and checks that the agent is the
/// person's and the card current); the answer is shown only once they are committed.
async fn begin_conversation(
    pool: &PgPool,
    generations: &Generations,
    settings: &ChatSettings,
    user: &CurrentUser,
    card: &cards::AgentCard,
    text: &str,
    client: ClientTurn,
) -> AppResult<Begun> {
    let owner = user.id;
    let max_messages = settings.max_messages_per_conversation;
    if client.earlier.len() + 2 > max_messages as usize {
        return Err(conversation_full(max_messages));
    }
    let first = client
        .earlier
        .iter()
        .find(|(role, _)| *role == Role::User)
        .map_or(text, |(_, first)| first.as_str());
    let title = crate::domain::title_from(first, settings.title_chars);
    let conversation_id = Uuid::now_v7();
    let allowance = generations.allowance();
    let claim = allowance.claim(conversation_id)?;
    let slot = allowance.take(owner)?.holding(claim);
    let turn = TurnRows::new(&client.earlier, text, card.versions.clone());
    let answer_id = turn.answer_id();
    let history = client
        .earlier
        .iter()
        .map(|(role, said)| turn_for(*role, said.clone()))
        .chain(std::iter::once(Turn::user(text)))
        .collect();
    let ask = ask_of(card, &client);
    let request = request_for(settings, &card.agent, history, ask);
    let (reader, stored) =
        generations.start_while_storing(job_for(&card.agent, conversation_id, answer_id, request));
    let new = NewConversation {
        owner,
        agent: (card.agent.id, card.revision),
        id: conversation_id,
        title,
        turn,
    };
    let group = generations.new_conversations();
    let (ticket, storing) = group.submit(new);
    let begun = store_turn(pool, generations, answer_id, storing, || {
        group.withdraw(ticket)
    })
    .await?;
    // Dropping `stored` (and the slot) on the way out of a refusal ends the provider's request.
    let Some((
        conversation,
        StoredTurn {
            user: user_message,
            answer,
            ..
        },
    )) = begun
    else {
        return Ok(Begun::NotStored(client));
    };
    // The task only ends by itself after this: the send cannot fail while it waits.
    let _ = stored.send(slot);
    Ok(Begun::Sent(Box::new(Sent {
        project_id: card.agent.project_id,
        conversation,
        user_message,
        answer,
        reader,
        new_conversation: true,
    })))
}

/// A message to an existing conversation with `card`'s agent, stored in one statement that
/// also checks the conversation is the person's, that agent's and not full, touches it, and
/// reads its history; then the provider is asked.
#[allow(clippy::too_many_arguments)]
async fn continue_conversation(
    pool: &PgPool,
    generations: &Generations,
    settings: &ChatSettings,
    user: &CurrentUser,
    card: &cards::AgentCard,
    conversation_id: Uuid,
    text: &str,
    client: ClientTurn,
) -> AppResult<Begun> {
    let owner = user.id;
    let allowance = generations.allowance();
    // Busy: the way that checks ownership first says so (409).
    let Ok(claim) = allowance.claim(conversation_id) else {
        return Ok(Begun::NotStored(client));
    };
    let slot = allowance.take(owner)?.holding(claim);
    let turn = TurnRows::new(&client.earlier, text, card.versions.clone());
    let agent = (card.agent.id, card.revision);
    let (max_messages, budget) = (
        i64::from(settings.max_messages_per_conversation),
        settings.history_budget_chars,
    );
    let answer_id = turn.answer_id();
    let (adding, stored) = db::detached(pool, move |conn| {
        Ok(Message::add_turn(
            conn,
            owner,
            agent,
            conversation_id,
            max_messages,
            budget,
            &turn,
        )?)
    });
    let added = store_turn(pool, generations, answer_id, stored, || adding.withdraw()).await?;
    let Some((
        conversation,
        history,
        StoredTurn {
            user: user_message,
            answer,
            ..
        },
    )) = added
    else {
        return Ok(Begun::NotStored(client));
    };
    let ask = ask_of(card, &client);
    let reader = start(
        generations,
        slot,
        settings,
        &card.agent,
        &answer,
        &history,
        ask,
    );
    Ok(Begun::Sent(Box::new(Sent {
        project_id: card.agent.project_id,
        conversation,
        user_message,
        answer,
        reader,
        new_conversation: false,
    })))
}

/// Waits for a turn's one statement (`stored`: `Some` when it stored the turn) for as long as
/// the pool's deadline. A request that gives up (past the deadline: a frozen or overloaded
/// database; or dropped, its client gone) leaves its turn to [`GaveUp`].
async fn store_turn<T: Send + 'static, W: FnOnce() -> bool>(
    pool: &PgPool,
    generations: &Generations,
    answer_id: Uuid,
    stored: db::group::Pending<Option<T>>,
    withdraw: W,
) -> AppResult<Option<T>> {
    let mut waiting = GaveUp {
        generations,
        pool,
        answer_id,
        stored,
        withdraw: Some(withdraw),
    };
    match tokio::time::timeout(pool.deadline(), &mut waiting.stored).await {
        Ok(done) => {
            waiting.withdraw = None;
            done.unwrap_or_else(|_| Err(db::pool::ended_without_answer()))
        }
        Err(_) => Err(AppError::Unavailable),
    }
}

/// A turn whose request stopped waiting for its statement: it is withdrawn if the statement has
/// not started (a message refused with 503 is never stored); a statement already sent (to a
/// frozen database) may still commit later, with an answer nobody generates, so once it has,
/// that answer is marked failed ([`fail_if_stored_late`]) instead of being left `streaming`
/// until the next restart.
struct GaveUp<'a, T: Send + 'static, W: FnOnce() -> bool> {
    generations: &'a Generations,
    pool: &'a PgPool,
    answer_id: Uuid,
    /// The statement's answer to come.
    stored: db::group::Pending<Option<T>>,
    /// How to withdraw the statement; `None` once its answer came.
    withdraw: Option<W>,
}

impl<T: Send + 'static, W: FnOnce() -> bool> Drop for GaveUp<'_, T, W> {
    fn drop(&mut self) {
        let Some(withdraw) = self.withdraw.take() else {
            return;
        };
        if !withdraw() {
            // The answer is still to come: it goes to the task that waits for it.
            let (_, closed) = tokio::sync::oneshot::channel();
            let stored = std::mem::replace(&mut self.stored, closed);
            fail_if_stored_late(self.generations, self.pool, self.answer_id, stored);
        }
    }
}

/// Marks the answer of a turn whose request gave up failed, once its statement has committed
/// (`stored` says whether it stored the turn).
fn fail_if_stored_late<T: Send + 'static>(
    generations: &Generations,
    pool: &PgPool,
    answer_id: Uuid,
    stored: db::group::Pending<Option<T>>,
) {
    let pool = pool.clone();
    generations.spawn(async move {
        if !matches!(stored.await, Ok(Ok(Some(_)))) {
            return;
        }
        let mut wait = std::time::Duration::from_secs(1);
        for _ in 0..10 {
            let failed = db::run(&pool, move |conn| {
                Ok(Message::fail_unanswered(
                    conn,
                    answer_id,
                    "The database answered too late; send your message again.",
                )?)
            })
            .await;
            if failed.is_ok() {
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(30));
        }
    });
}

/// What the provider is asked besides the history, from a card and a client's own settings.
fn ask_of(card: &cards::AgentCard, client: &ClientTurn) -> Ask {
    let grounding = Grounding {
        instructions: card.instructions.clone(),
        citations: serde_json::Value::Array(vec![]),
        file_search: None,
    };
    Ask {
        temperature: client.temperature,
        max_output_tokens: client.max_output_tokens,
        ..Ask::grounded(grounding, client.instructions.clone())
    }
}

/// Follows an answer to its end (its task always ends it) and returns it as stored.
pub async fn finished(reader: &mut Subscription) -> AppResult<std::sync::Arc<Message>> {
    loop {
        match reader.next().await {
            Some(Piece::Done(message)) => return Ok(message),
            Some(Piece::Text { .. }) => {}
            // The generator is gone without a word (it always finishes; this is a safety net).
            None => return Err(AppError::Upstream("the answer was lost".into())),
        }
    }
}

/// A failed answer as the error of an API that answers whole (or before its first word): 503
/// when no provider is configured, else 502 with the plain words and the provider's own.
pub fn failure(generations: &Generations, answer: &Message) -> Option<AppError> {
    if answer.status != Status::Failed {
        return None;
    }
    if generations.router().providers.is_empty() {
        return Some(AppError::NotAvailable(
            answer.error.clone().unwrap_or_default(),
        ));
    }
    let plain = answer
        .error
        .clone()
        .unwrap_or_else(|| "The model failed to answer.".into());
    Some(AppError::Upstream(match &answer.error_detail {
        Some(detail) => format!("{plain} ({detail})"),
        None => plain,
    }))
}

/// What a request asks besides the conversation: its instructions, the new message's files,
/// and the vector store its provider may search.
struct Ask {
    instructions: String,
    attachments: Option<crate::llm::Attachments>,
    file_search: Option<FileSearch>,
    /// A client's own settings for this answer, over the agent's.
    temperature: Option<f32>,
    max_output_tokens: Option<u32>,
}

impl Ask {
    /// The grounded instructions, with a client's own after the agent's (the agent's system
    /// message comes first, so a client adds to an agent and cannot silently replace it).
    fn grounded(grounding: Grounding, client_instructions: Option<String>) -> Ask {
        let Grounding {
            mut instructions,
            mut file_search,
            ..
        } = grounding;
        if let Some(extra) = client_instructions.filter(|text| !text.trim().is_empty()) {
            for text in std::iter::once(&mut instructions).chain(
                file_search
                    .as_mut()
                    .map(|search| search.instructions.get_or_insert_with(String::new)),
            ) {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(&extra);
            }
        }
        Ask {
            instructions,
            attachments: None,
            file_search,
            temperature: None,
            max_output_tokens: None,
        }
    }
}

/// What the provider is asked: the agent's model and settings (a client's own over them), the
/// instructions, and the history within the budget.
fn request_for(
    settings: &ChatSettings,
    agent: &Agent,
    history: Vec<Turn>,
    ask: Ask,
) -> ChatRequest {
    ChatRequest {
        model: agent.model.clone(),
        instructions: (!ask.instructions.is_empty()).then_some(ask.instructions),
        history: trim_history(history, settings.history_budget_chars),
        temperature: ask.temperature.or(agent.temperature),
        max_output_tokens: ask
            .max_output_tokens
            .or(agent.max_output_tokens.map(|n| n as u32)),
        attachments: ask.attachments,
        input_files: Vec::new(),
        file_search: ask.file_search,
        vector_store_ids: Vec::new(),
    }
}

fn job_for(agent: &Agent, conversation_id: Uuid, answer_id: Uuid, request: ChatRequest) -> Job {
    Job {
        message_id: answer_id,
        origin: Origin {
            conversation_id,
            agent_id: agent.id,
            project_id: agent.project_id,
        },
        provider: agent.provider.clone(),
        request: std::sync::Arc::new(request),
    }
}

fn start(
    generations: &Generations,
    slot: Slot,
    settings: &ChatSettings,
    agent: &Agent,
    answer: &Message,
    history: &[Message],
    ask: Ask,
) -> Subscription {
    let request = request_for(settings, agent, history.iter().map(turn_of).collect(), ask);
    generations.start(
        job_for(agent, answer.conversation_id, answer.id, request),
        slot,
    )
}

/// Generates a failed answer again: the failed one is replaced by a new one.
pub async fn retry(
    pool: &PgPool,
    generations: &Generations,
    settings: &ChatSettings,
    user: &CurrentUser,
    message_id: Uuid,
) -> AppResult<(Conversation, Message, Subscription)> {
    ensure_accepting(generations)?;
    let allowance = generations.allowance();
    let owner = user.id;
    let budget = settings.history_budget_chars;
    let default_system_prompt = settings.default_system_prompt.clone();
    let (agent, conversation, answer, history, grounding, slot) =
        db::transaction(pool, move |conn| {
            let (previous, conversation) = Message::find_owned(conn, owner, message_id)?;
            let claim = allowance.claim(conversation.id)?;
            let slot = allowance.take(owner)?.holding(claim);
            // A stopped answer too: Stop pressed too early, or on the wrong track, is asked again.
            if !previous.is_assistant()
                || !matches!(previous.status, Status::Failed | Status::Stopped)
            {
                return Err(AppError::Conflict(
                    "Only a failed or stopped answer can be retried.".into(),
                ));
            }
            if Message::last_id(conn, conversation.id)? != Some(previous.id) {
                return Err(AppError::Conflict(
                    "Only the last answer of a conversation can be retried.".into(),
                ));
            }
            let agent = Agent::find_owned(conn, owner, conversation.agent_id)?;
            let system =
                SystemMessage::of_agent(conn, agent.project_id, agent.id, &default_system_prompt)?;
            // The turns before the answer retried are the ones before the new one.
            let history = Message::history(conn, conversation.id, previous.id, budget)?;
            // The same passages the first attempt had, found again for the message it answers.
            let question = history
                .iter()
                .rev()
                .find(|m| !m.is_assistant())
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let grounding = grounding(conn, &agent, &system, &question)?;
            // Two retries racing: the second finds the row gone and must not add a second answer.
            if Message::delete(conn, previous.id)? != 1 {
                return Err(AppError::Conflict(
                    "This answer is already being retried.".into(),
                ));
            }
            let answer = Message::insert_streaming(
                conn,
                conversation.id,
                versions_json(&system),
                grounding.citations.clone(),
            )?;
            Conversation::touch(conn, conversation.id)?;
            Ok((agent, conversation, answer, history, grounding, slot))
        })
        .await?;
    let reader = start(
        generations,
        slot,
        settings,
        &agent,
        &answer,
        &history,
        Ask::grounded(grounding, None),
    );
    Ok((conversation, answer, reader))
}

pub async fn list(
    pool: &PgPool,
    user: &CurrentUser,
    agent_id: Uuid,
) -> AppResult<Vec<Conversation>> {
    let owner = user.id;
    db::run(pool, move |conn| {
        Agent::find_owned(conn, owner, agent_id)?;
        Ok(Conversation::list_for_agent(conn, owner, agent_id)?)
    })
    .await
}

/// How many messages a conversation shows or answers at once, unless asked otherwise.
pub const PAGE_MESSAGES: usize = 50;
/// The most one request may ask for.
pub const MAX_PAGE_MESSAGES: usize = 500;

/// Part of a conversation: its newest messages, or those before a given one.
pub struct History {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// There are earlier messages (ask again with `before` = the first of these).
    pub earlier: bool,
}

/// The conversation, if it is the user's.
pub async fn conversation(pool: &PgPool, user: &CurrentUser, id: Uuid) -> AppResult<Conversation> {
    let owner = user.id;
    db::run(pool, move |conn| {
        Ok(Conversation::find_owned(conn, owner, id)?)
    })
    .await
}

/// The conversation and `limit` (at most [`MAX_PAGE_MESSAGES`]) of its messages: the newest,
/// or those before `before`.
pub async fn get(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
    before: Option<Uuid>,
    limit: usize,
) -> AppResult<(Conversation, History)> {
    let owner = user.id;
    let limit = limit.clamp(1, MAX_PAGE_MESSAGES);
    db::run(pool, move |conn| {
        let conversation = Conversation::find_owned(conn, owner, id)?;
        let (messages, earlier) = Message::page(conn, conversation.id, before, limit)?;
        Ok((conversation, History { messages, earlier }))
    })
    .await
}

/// Renders the finished answers among `messages` that have no HTML of the running renderer (an
/// answer from before HTML was kept, or after an upgrade changed the renderer) and keeps it, so
/// each is rendered once more at most, the first time a page shows it.
pub async fn render_missing(pool: &PgPool, messages: &mut [Message]) {
    let renderer = crate::render::markdown::renderer_version();
    let mut ids = Vec::new();
    let mut htmls = Vec::new();
    for message in messages.iter_mut().filter(|m| {
        m.is_assistant() && m.status != Status::Streaming && m.html_by(renderer).is_none()
    }) {
        let html = crate::render::markdown::to_safe_html(&message.content);
        ids.push(message.id);
        htmls.push(html.clone());
        message.html = Some(html);
        message.html_renderer = Some(renderer.to_owned());
    }
    if ids.is_empty() {
        return;
    }
    // Only saves later work: the page is shown whether or not it is kept.
    let kept = db::run(pool, move |conn| {
        Ok(Message::keep_rendered(conn, &ids, &htmls, renderer)?)
    })
    .await;
    if let Err(error) = kept {
        tracing::warn!(%error, "could not keep the HTML of rendered answers");
    }
}

pub async fn rename(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
    raw: &str,
) -> AppResult<Conversation> {
    let title = crate::domain::text("title", "Title", raw, 200, false)?;
    let owner = user.id;
    db::run(pool, move |conn| {
        Ok(Conversation::rename(conn, owner, id, &title)?)
    })
    .await
}

/// Deletes the conversation; an answer still generating in it is stopped first.
pub async fn delete(
    pool: &PgPool,
    generations: &Generations,
    user: &CurrentUser,
    id: Uuid,
) -> AppResult<Conversation> {
    let conversation = conversation(pool, user, id).await?;
    generations.stop_conversation(conversation.id);
    let owner = user.id;
    db::run(pool, move |conn| {
        Ok(Conversation::delete_owned(conn, owner, id)?)
    })
    .await?;
    Ok(conversation)
}

/// The message, if it is in one of the user's conversations.
pub async fn message(
    pool: &PgPool,
    user: &CurrentUser,
    id: Uuid,
) -> AppResult<(Message, Conversation)> {
    let owner = user.id;
    db::run(pool, move |conn| Ok(Message::find_owned(conn, owner, id)?)).await
}

/// What a reader of an answer gets: the live answer, or its stored row once it has ended. It
/// subscribes before reading the row, so an answer that ends in between is read in its final
/// state (the task saves before it leaves the registry); the row read is also the owner check.
pub async fn open_answer(
    pool: &PgPool,
    generations: &Generations,
    user: &CurrentUser,
    id: Uuid,
) -> AppResult<(Source, Conversation)> {
    let live = generations.subscribe(id);
    let (stored, conversation) = message(pool, user, id).await?;
    let source = match live {
        Some(reader) => Source::Live(reader),
        None => Source::stored(stored),
    };
    Ok((source, conversation))
}

pub async fn stop(
    pool: &PgPool,
    generations: &Generations,
    user: &CurrentUser,
    id: Uuid,
) -> AppResult<bool> {
    message(pool, user, id).await?;
    Ok(generations.stop(id))
}

/// The agent a project-level chat talks to.
pub async fn default_agent(
    pool: &PgPool,
    user: &CurrentUser,
    project_id: Uuid,
) -> AppResult<Agent> {
    let owner = user.id;
    db::run(pool, move |conn| {
        crate::projects::model::Project::find_owned(conn, owner, project_id)?;
        Agent::find_default(conn, project_id)?
            .ok_or_else(|| AppError::Conflict("This project has no agent to chat with.".into()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_are_letters_and_digits_only() {
        assert_eq!(
            search_words("What's the launch-code? (launch!) x ü'; DROP TABLE|&!"),
            vec!["launch", "code", "drop", "table"]
        );
        assert_eq!(search_words(&"word ".repeat(100)).len(), 1);
        assert!(search_words("a b c !!").is_empty());
    }

    #[test]
    fn titles_are_short_and_cut_at_words() {
        assert_eq!(
            crate::domain::title_from("  Hello\n there  ", 60),
            "Hello there"
        );
        assert_eq!(
            crate::domain::title_from(
                "Here is **code**:\n```js\nconst x = 1;\n```\nand <b>html</b>",
                60
            ),
            "Here is code: const x = 1; and html"
        );
        let long = "How do I configure a reverse proxy in front of confab with TLS and websockets?";
        let title = crate::domain::title_from(long, 60);
        assert!(title.chars().count() <= 61, "{title}");
        assert!(title.ends_with('…'));
        assert!(title.starts_with("How do I configure a reverse proxy"));
    }
}
