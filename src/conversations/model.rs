//! The `conversations` and `messages` tables.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::io::Write as _;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use serde::Serialize;
use uuid::Uuid;

use diesel::query_builder::{AstPass, QueryFragment};

use crate::db::schema::{agents, conversations, messages};
use crate::db::statement::{cached_statement, walk_numbered};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = conversations)]
pub struct Conversation {
    pub id: Uuid,
    pub agent_id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where an assistant answer stands. Stored as text (checked by the table); a value this code
/// does not know is an error when read, never silently mapped to another state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, AsExpression, FromSqlRow, utoipa::ToSchema,
)]
#[diesel(sql_type = Text)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Streaming,
    Complete,
    Stopped,
    Failed,
}

impl Status {
    const ALL: [Status; 4] = [
        Status::Streaming,
        Status::Complete,
        Status::Stopped,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Streaming => "streaming",
            Status::Complete => "complete",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
        }
    }

    pub fn is_stopped(self) -> bool {
        self == Status::Stopped
    }

    pub fn is_failed(self) -> bool {
        self == Status::Failed
    }
}

/// Who wrote a message, as stored. (`llm::Role` is the same idea on the wire; the LLM client
/// knows nothing of the database, so each layer has its own.)
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, AsExpression, FromSqlRow, utoipa::ToSchema,
)]
#[diesel(sql_type = Text)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    const ALL: [Role; 2] = [Role::User, Role::Assistant];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// Text columns with a fixed set of values map to and from these enums.
macro_rules! text_enum_sql {
    ($type:ty, $what:literal) => {
        impl ToSql<Text, Pg> for $type {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                out.write_all(self.as_str().as_bytes())?;
                Ok(IsNull::No)
            }
        }

        impl FromSql<Text, Pg> for $type {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = std::str::from_utf8(bytes.as_bytes())?;
                <$type>::ALL
                    .into_iter()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| format!("unknown {} {text:?}", $what).into())
            }
        }
    };
}

text_enum_sql!(Status, "message status");
text_enum_sql!(Role, "message role");

#[derive(
    Debug, Clone, Queryable, QueryableByName, Selectable, Identifiable, Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = messages)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub role: Role,
    pub content: String,
    pub status: Status,
    pub error: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub prompt_versions: serde_json::Value,
    pub input_tokens: Option<i32>,
    pub output_tokens: Option<i32>,
    pub ttft_ms: Option<i32>,
    pub duration_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the provider or the connection said when an answer failed; `error` says it plainly.
    pub error_detail: Option<String>,
    /// Files attached to a user's message: `[{"file_id", "filename"}]`.
    pub attachments: serde_json::Value,
    /// The attached files' text as it went upstream after the message (not shown, not in the
    /// API: the files themselves are).
    #[serde(skip)]
    pub context: String,
    /// An answer's sources from project knowledge: `[{"n", "file_id", "filename", "excerpt"}]`.
    pub citations: serde_json::Value,
    /// A finished answer's text as sanitized HTML, rendered once when it ended (pages show it;
    /// the API sends `content`). NULL for answers from before it was kept.
    #[serde(skip)]
    pub html: Option<String>,
    /// Which renderer made `html`: HTML of another one is rendered again.
    #[serde(skip)]
    pub html_renderer: Option<String>,
}

/// A finished answer's text as pages show it: sanitized HTML, and the renderer that made it.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = messages)]
pub struct Rendered {
    pub html: String,
    pub html_renderer: String,
}

impl Message {
    pub fn is_assistant(&self) -> bool {
        self.role == Role::Assistant
    }

    /// The stored HTML, if `renderer` made it.
    pub fn html_by(&self, renderer: &str) -> Option<&str> {
        match (&self.html, &self.html_renderer) {
            (Some(html), Some(made_by)) if made_by == renderer => Some(html),
            _ => None,
        }
    }

    /// What this message says upstream: its text, then its attached files' text.
    pub fn upstream_text(&self) -> String {
        if self.context.is_empty() {
            self.content.clone()
        } else {
            format!("{}\n\n{}", self.content, self.context)
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = messages)]
struct NewMessage<'a> {
    id: Uuid,
    conversation_id: Uuid,
    role: Role,
    content: &'a str,
    status: Status,
    prompt_versions: serde_json::Value,
    attachments: serde_json::Value,
    context: &'a str,
    citations: serde_json::Value,
}

impl NewMessage<'_> {
    /// The empty row an answer streams into.
    fn streaming_answer(
        conversation_id: Uuid,
        prompt_versions: serde_json::Value,
        citations: serde_json::Value,
    ) -> NewMessage<'static> {
        NewMessage {
            id: Uuid::now_v7(),
            conversation_id,
            role: Role::Assistant,
            content: "",
            status: Status::Streaming,
            prompt_versions,
            attachments: serde_json::Value::Array(vec![]),
            context: "",
            citations,
        }
    }
}

/// What a turn carries besides the message's text: the files attached to the message and their
/// text, and the sources the answer is given.
pub struct Extras<'a> {
    pub attachments: serde_json::Value,
    pub context: &'a str,
    pub citations: serde_json::Value,
    /// Turns stored before the message, oldest first, as complete messages: the history a client
    /// that keeps its own conversation (the OpenAI-compatible API) starts a new one with.
    pub earlier: &'a [(Role, String)],
}

/// The rows of a turn, as [`Conversation::begin_all`] and [`Message::add_turn`] store them: the
/// earlier turns a client came with (complete; a new conversation only), the user's message, and
/// the empty answer (streaming), with ids made here in that order.
pub struct TurnRows {
    ids: Vec<Uuid>,
    roles: Vec<&'static str>,
    contents: Vec<String>,
    statuses: Vec<&'static str>,
    prompt_versions: Vec<serde_json::Value>,
}

impl TurnRows {
    pub fn new(earlier: &[(Role, String)], text: &str, answer_versions: serde_json::Value) -> Self {
        let mut turn = TurnRows {
            ids: Vec::new(),
            roles: Vec::new(),
            contents: Vec::new(),
            statuses: Vec::new(),
            prompt_versions: Vec::new(),
        };
        let none = || serde_json::Value::Array(vec![]);
        for (role, content) in earlier {
            turn.push(*role, content, Status::Complete, none());
        }
        turn.push(Role::User, text, Status::Complete, none());
        turn.push(Role::Assistant, "", Status::Streaming, answer_versions);
        turn
    }

    fn push(&mut self, role: Role, content: &str, status: Status, versions: serde_json::Value) {
        // UUIDv7, made in order: they order the rows (history reads by id).
        self.ids.push(Uuid::now_v7());
        self.roles.push(role.as_str());
        self.contents.push(content.to_string());
        self.statuses.push(status.as_str());
        self.prompt_versions.push(versions);
    }

    /// Binds the `n`th of its five arrays (ids, roles, contents, statuses, prompt versions).
    fn bind<'b>(&'b self, n: usize, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Jsonb, Uuid as SqlUuid};
        match n {
            1 => out.push_bind_param::<Array<SqlUuid>, _>(&self.ids),
            2 => out.push_bind_param::<Array<Text>, _>(&self.roles),
            3 => out.push_bind_param::<Array<Text>, _>(&self.contents),
            4 => out.push_bind_param::<Array<Text>, _>(&self.statuses),
            5 => out.push_bind_param::<Array<Jsonb>, _>(&self.prompt_versions),
            _ => Err(diesel::result::Error::QueryBuilderError(
                format!("no array {n} in a turn").into(),
            )),
        }
    }

    /// The answer's id, known before anything is stored.
    pub fn answer_id(&self) -> Uuid {
        self.ids[self.ids.len() - 1]
    }
}

/// The rows one message stores: the earlier turns it came with (if any), the user's message and
/// the answer that streams into.
pub struct StoredTurn {
    pub earlier: Vec<Message>,
    pub user: Message,
    pub answer: Message,
}

/// A conversation to start with its first turn ([`Conversation::begin_all`]), for `owner`
/// with `agent` = (its id, the revision the turn was composed from).
pub struct NewConversation {
    pub owner: Uuid,
    pub agent: (Uuid, i64),
    pub id: Uuid,
    pub title: String,
    pub turn: TurnRows,
}

/// The conversations of one agent, or of every agent in one project.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Agent(Uuid),
    Project(Uuid),
}

/// An answer that ended, as [`Message::finish_all`] writes it: how it ended, and its text as
/// pages show it.
pub struct Finished {
    pub id: Uuid,
    pub outcome: Outcome,
    pub rendered: Option<Rendered>,
}

/// How an answer ended, as written when it ends.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = messages, treat_none_as_null = true)]
pub struct Outcome {
    pub content: String,
    pub status: Status,
    pub error: Option<String>,
    pub error_detail: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub input_tokens: Option<i32>,
    pub output_tokens: Option<i32>,
    pub ttft_ms: Option<i32>,
    pub duration_ms: Option<i32>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Conversation {
    /// The user's most recently active conversations across all their agents, each with its
    /// agent's name; only those whose title contains `search` (any case) when given.
    pub fn recent(
        conn: &mut PgConnection,
        user: Uuid,
        search: Option<&str>,
        limit: i64,
    ) -> QueryResult<Vec<(Conversation, String)>> {
        let mut query = conversations::table
            .inner_join(agents::table)
            .filter(conversations::user_id.eq(user))
            .order(conversations::updated_at.desc())
            .limit(limit)
            .select((Conversation::as_select(), agents::name))
            .into_boxed();
        if let Some(words) = search {
            // The words are matched literally: LIKE's wildcards in them are escaped.
            let escaped = words
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            query = query.filter(conversations::title.ilike(format!("%{escaped}%")));
        }
        query.load(conn)
    }

    /// The agent of the user's most recently active conversation.
    pub fn last_agent(conn: &mut PgConnection, user: Uuid) -> QueryResult<Option<Uuid>> {
        conversations::table
            .filter(conversations::user_id.eq(user))
            .order(conversations::updated_at.desc())
            .select(conversations::agent_id)
            .first(conn)
            .optional()
    }

    /// The user's conversations with an agent, most recently active first.
    pub fn list_for_agent(
        conn: &mut PgConnection,
        user: Uuid,
        agent_id: Uuid,
    ) -> QueryResult<Vec<Conversation>> {
        conversations::table
            .filter(conversations::agent_id.eq(agent_id))
            .filter(conversations::user_id.eq(user))
            .order(conversations::updated_at.desc())
            .select(Conversation::as_select())
            .load(conn)
    }

    pub fn find_owned(conn: &mut PgConnection, user: Uuid, id: Uuid) -> QueryResult<Conversation> {
        conversations::table
            .filter(conversations::id.eq(id))
            .filter(conversations::user_id.eq(user))
            .select(Conversation::as_select())
            .first(conn)
    }

    /// New conversations, each with its first turn, in one statement (a burst of people
    /// starting conversations is stored in one round trip and one commit: see `db::group`).
    /// Each is stored only if its agent is its owner's and still at the revision it names (see
    /// the `agent_revisions` migration); the answer is `None`, in `new`'s order, for each that
    /// was not.
    pub fn begin_all(
        conn: &mut PgConnection,
        new: &[NewConversation],
    ) -> QueryResult<Vec<Option<(Conversation, StoredTurn)>>> {
        use diesel::sql_types::Timestamptz;

        #[derive(QueryableByName)]
        struct Row {
            #[diesel(embed)]
            message: Message,
            #[diesel(sql_type = Timestamptz)]
            conversation_created_at: DateTime<Utc>,
        }
        let mut rows: Vec<Row> = BeginAll::of(new).load(conn)?;
        // RETURNING's order is not promised; the ids are in order (UUIDv7, made in order).
        rows.sort_by_key(|row| (row.message.conversation_id, row.message.id));
        let mut stored: HashMap<Uuid, (DateTime<Utc>, Vec<Message>)> = HashMap::new();
        for row in rows {
            stored
                .entry(row.message.conversation_id)
                .or_insert_with(|| (row.conversation_created_at, Vec::new()))
                .1
                .push(row.message);
        }
        new.iter()
            .map(|new| {
                let Some((created_at, mut messages)) = stored.remove(&new.id) else {
                    return Ok(None);
                };
                let (Some(answer), Some(user)) = (messages.pop(), messages.pop()) else {
                    return Err(diesel::result::Error::NotFound);
                };
                let conversation = Conversation {
                    id: new.id,
                    agent_id: new.agent.0,
                    user_id: new.owner,
                    title: new.title.clone(),
                    created_at,
                    updated_at: created_at,
                };
                let turn = StoredTurn {
                    earlier: messages,
                    user,
                    answer,
                };
                Ok(Some((conversation, turn)))
            })
            .collect()
    }

    pub fn create(
        conn: &mut PgConnection,
        user: Uuid,
        agent_id: Uuid,
        title: &str,
    ) -> QueryResult<Conversation> {
        diesel::insert_into(conversations::table)
            .values((
                conversations::id.eq(Uuid::now_v7()),
                conversations::agent_id.eq(agent_id),
                conversations::user_id.eq(user),
                conversations::title.eq(title),
            ))
            .returning(Conversation::as_returning())
            .get_result(conn)
    }

    pub fn rename(
        conn: &mut PgConnection,
        user: Uuid,
        id: Uuid,
        title: &str,
    ) -> QueryResult<Conversation> {
        diesel::update(
            conversations::table
                .filter(conversations::id.eq(id))
                .filter(conversations::user_id.eq(user)),
        )
        .set((
            conversations::title.eq(title),
            conversations::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Conversation::as_returning())
        .get_result(conn)
    }

    pub fn touch(conn: &mut PgConnection, id: Uuid) -> QueryResult<()> {
        diesel::update(conversations::table.find(id))
            .set(conversations::updated_at.eq(diesel::dsl::now))
            .execute(conn)?;
        Ok(())
    }

    pub fn delete_owned(conn: &mut PgConnection, user: Uuid, id: Uuid) -> QueryResult<()> {
        let deleted = diesel::delete(
            conversations::table
                .filter(conversations::id.eq(id))
                .filter(conversations::user_id.eq(user)),
        )
        .execute(conn)?;
        if deleted == 0 {
            Err(diesel::result::Error::NotFound)
        } else {
            Ok(())
        }
    }
}

impl Message {
    /// The newest `limit` messages before `before` (or the newest of all), oldest first, and
    /// whether there are earlier ones.
    pub fn page(
        conn: &mut PgConnection,
        conversation_id: Uuid,
        before: Option<Uuid>,
        limit: usize,
    ) -> QueryResult<(Vec<Message>, bool)> {
        let mut query = messages::table
            .filter(messages::conversation_id.eq(conversation_id))
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(messages::id.lt(before));
        }
        let mut newest_first: Vec<Message> = query
            .order(messages::id.desc())
            .limit(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
            .select(Message::as_select())
            .load(conn)?;
        let earlier = newest_first.len() > limit;
        newest_first.truncate(limit);
        newest_first.reverse();
        Ok((newest_first, earlier))
    }

    /// The newest message of the conversation.
    pub fn last_id(conn: &mut PgConnection, conversation_id: Uuid) -> QueryResult<Option<Uuid>> {
        messages::table
            .filter(messages::conversation_id.eq(conversation_id))
            .order(messages::id.desc())
            .select(messages::id)
            .first(conn)
            .optional()
    }

    pub fn count(conn: &mut PgConnection, conversation_id: Uuid) -> QueryResult<i64> {
        messages::table
            .filter(messages::conversation_id.eq(conversation_id))
            .count()
            .get_result(conn)
    }

    /// The message with its conversation, if the conversation is the user's.
    pub fn find_owned(
        conn: &mut PgConnection,
        user: Uuid,
        id: Uuid,
    ) -> QueryResult<(Message, Conversation)> {
        messages::table
            .inner_join(conversations::table)
            .filter(messages::id.eq(id))
            .filter(conversations::user_id.eq(user))
            .select((Message::as_select(), Conversation::as_select()))
            .first(conn)
    }

    /// The user's message and the empty answer that will stream in after it, in one statement.
    pub fn insert_turn(
        conn: &mut PgConnection,
        conversation_id: Uuid,
        text: &str,
        extras: Extras,
        prompt_versions: serde_json::Value,
    ) -> QueryResult<StoredTurn> {
        // Ids are UUIDv7, made here in order: they order the rows (history reads by id).
        let mut rows: Vec<NewMessage> = extras
            .earlier
            .iter()
            .map(|(role, content)| NewMessage {
                id: Uuid::now_v7(),
                conversation_id,
                role: *role,
                content,
                status: Status::Complete,
                prompt_versions: serde_json::Value::Array(vec![]),
                attachments: serde_json::Value::Array(vec![]),
                context: "",
                citations: serde_json::Value::Array(vec![]),
            })
            .collect();
        rows.push(NewMessage {
            id: Uuid::now_v7(),
            conversation_id,
            role: Role::User,
            content: text,
            status: Status::Complete,
            prompt_versions: serde_json::Value::Array(vec![]),
            attachments: extras.attachments,
            context: extras.context,
            citations: serde_json::Value::Array(vec![]),
        });
        rows.push(NewMessage::streaming_answer(
            conversation_id,
            prompt_versions,
            extras.citations,
        ));
        // One statement however many earlier turns there are.
        let mut inserted: Vec<Message> = diesel::insert_into(messages::table)
            .values(&rows[..])
            .returning(Message::as_returning())
            .get_results(conn)?;
        // RETURNING's order is not promised.
        inserted.sort_by_key(|m| m.id);
        let answer = inserted.pop().ok_or(diesel::result::Error::NotFound)?;
        let user = inserted.pop().ok_or(diesel::result::Error::NotFound)?;
        Ok(StoredTurn {
            earlier: inserted,
            user,
            answer,
        })
    }

    /// A turn of an existing conversation, in one statement: stored (and the conversation
    /// touched) only if the conversation is `owner`'s with the agent `agent` (still at its
    /// revision) and has room for it; returned with the history the provider reads (the stored
    /// messages before it, newest first within `budget_chars`, oldest first, the new message
    /// last). `None` when it was not stored.
    pub fn add_turn(
        conn: &mut PgConnection,
        owner: Uuid,
        agent: (Uuid, i64),
        conversation_id: Uuid,
        max_messages: i64,
        budget_chars: usize,
        turn: &TurnRows,
    ) -> QueryResult<Option<(Conversation, Vec<Message>, StoredTurn)>> {
        use diesel::sql_types::{Bool, Nullable, Timestamptz};

        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Bool)]
            stored: bool,
            #[diesel(embed)]
            message: Message,
            /// The conversation's, on the stored rows.
            #[diesel(sql_type = Nullable<Text>)]
            title: Option<String>,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            created: Option<DateTime<Utc>>,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            updated: Option<DateTime<Utc>>,
        }
        let (agent_id, revision) = agent;
        // The history is read from the statement's snapshot, before the new rows: the message
        // sent is added to it here, and its length taken off the budget (it always goes).
        let sent = turn.contents.last().map_or(0, |text| text.chars().count());
        let budget = i64::try_from(budget_chars).unwrap_or(i64::MAX) - sent as i64;
        let rows: Vec<Row> = AddTurn {
            agent_id,
            owner,
            revision,
            conversation_id,
            turn,
            max_messages,
            budget,
        }
        .load(conn)?;
        let (mut stored, mut history): (Vec<Row>, Vec<Row>) =
            rows.into_iter().partition(|row| row.stored);
        let Some(conversation) = stored.first().and_then(|row| {
            Some(Conversation {
                id: conversation_id,
                agent_id,
                user_id: owner,
                title: row.title.clone()?,
                created_at: row.created?,
                updated_at: row.updated?,
            })
        }) else {
            return Ok(None);
        };
        stored.sort_by_key(|row| row.message.id);
        history.sort_by_key(|row| row.message.id);
        let mut stored: Vec<Message> = stored.into_iter().map(|row| row.message).collect();
        let (Some(answer), Some(user)) = (stored.pop(), stored.pop()) else {
            return Err(diesel::result::Error::NotFound);
        };
        let mut history: Vec<Message> = history.into_iter().map(|row| row.message).collect();
        history.push(user.clone());
        let turn = StoredTurn {
            earlier: stored,
            user,
            answer,
        };
        Ok(Some((conversation, history, turn)))
    }

    /// The row an answer streams into.
    pub fn insert_streaming(
        conn: &mut PgConnection,
        conversation_id: Uuid,
        prompt_versions: serde_json::Value,
        citations: serde_json::Value,
    ) -> QueryResult<Message> {
        Self::insert(
            conn,
            NewMessage::streaming_answer(conversation_id, prompt_versions, citations),
        )
    }

    fn insert(conn: &mut PgConnection, new: NewMessage) -> QueryResult<Message> {
        diesel::insert_into(messages::table)
            .values(&new)
            .returning(Message::as_returning())
            .get_result(conn)
    }

    /// The turns before `before` that go back upstream: user messages and answers that were
    /// seen in full or in part (complete or stopped), oldest first.
    pub fn history(
        conn: &mut PgConnection,
        conversation_id: Uuid,
        before: Uuid,
        budget_chars: usize,
    ) -> QueryResult<Vec<Message>> {
        // Newest first, as many as fit the budget (the newest always does), counted in SQL so
        // a long conversation is never read whole into memory for one turn.
        diesel::sql_query(
            "SELECT * FROM ( \
               SELECT m.*, sum(char_length(m.content) + char_length(m.context)) OVER (ORDER BY m.id DESC) AS upto \
               FROM messages m \
               WHERE m.conversation_id = $1 AND m.id < $2 \
                 AND m.status IN ('complete', 'stopped') AND m.content <> '' \
             ) h \
             WHERE h.upto - char_length(h.content) - char_length(h.context) < $3 \
             ORDER BY h.id",
        )
        .bind::<diesel::sql_types::Uuid, _>(conversation_id)
        .bind::<diesel::sql_types::Uuid, _>(before)
        .bind::<diesel::sql_types::BigInt, _>(i64::try_from(budget_chars).unwrap_or(i64::MAX))
        .load(conn)
    }

    /// Writes the text streamed so far for many answers in one statement (rows that have
    /// finished meanwhile are left alone); returns the ids whose rows were still there. The rows
    /// are locked in id order first, as [`Message::finish_all`]'s are, so the two never deadlock.
    pub fn flush_contents(
        conn: &mut PgConnection,
        ids: &[Uuid],
        contents: &[String],
    ) -> QueryResult<Vec<Uuid>> {
        #[derive(QueryableByName)]
        struct Written {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
        }
        let written: Vec<Written> = diesel::sql_query(
            "WITH f AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS f(id, content)), \
                  locked AS (SELECT messages.id FROM messages JOIN f ON f.id = messages.id \
                             WHERE messages.status = 'streaming' \
                             ORDER BY messages.id FOR UPDATE OF messages) \
             UPDATE messages SET content = f.content FROM f JOIN locked ON locked.id = f.id \
             WHERE messages.id = f.id AND messages.status = 'streaming' RETURNING messages.id",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<diesel::sql_types::Array<Text>, _>(contents)
        .load(conn)?;
        Ok(written.into_iter().map(|w| w.id).collect())
    }

    /// Writes how the answer ended. `searched`: the provider searched the project's files
    /// itself, and these are the files it cited (its file id, the name it gave), which replace
    /// the passages confab had found.
    /// `rendered`: the outcome's text rendered for pages (none if rendering failed: a page
    /// renders it then).
    pub fn finish(
        conn: &mut PgConnection,
        id: Uuid,
        outcome: &Outcome,
        rendered: Option<&Rendered>,
        searched: Option<&[(String, String)]>,
    ) -> QueryResult<Message> {
        let Some(cited) = searched else {
            return diesel::update(messages::table.find(id))
                .set((outcome, rendered))
                .returning(Message::as_returning())
                .get_result(conn);
        };
        let citations = Message::searched_citations(conn, id, cited)?;
        diesel::update(messages::table.find(id))
            .set((outcome, rendered, messages::citations.eq(citations)))
            .returning(Message::as_returning())
            .get_result(conn)
    }

    /// Answers that ended, each written as [`Message::finish`] writes one without a provider's
    /// citations, in one statement: many answers that end together (a burst's streams do) cost
    /// one statement and one commit instead of one each. `None`, in `finished`'s order, for an
    /// answer whose row is gone (its conversation was deleted meanwhile).
    pub fn finish_all(
        conn: &mut PgConnection,
        finished: &[Finished],
    ) -> QueryResult<Vec<Option<Message>>> {
        let mut saved: HashMap<Uuid, Message> = FinishAll::of(finished)
            .load::<Message>(conn)?
            .into_iter()
            .map(|message| (message.id, message))
            .collect();
        Ok(finished
            .iter()
            .map(|answer| saved.remove(&answer.id))
            .collect())
    }

    /// Keeps the HTML a page rendered for finished answers that had none (or an older
    /// renderer's), so the next view does not render them again. Ids with their HTML, one
    /// statement; an answer still streaming is left alone.
    pub fn keep_rendered(
        conn: &mut PgConnection,
        ids: &[Uuid],
        htmls: &[String],
        renderer: &str,
    ) -> QueryResult<usize> {
        diesel::sql_query(
            "UPDATE messages SET html = r.html, html_renderer = $3 \
             FROM unnest($1::uuid[], $2::text[]) AS r(id, html) \
             WHERE messages.id = r.id AND messages.status <> 'streaming'",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<diesel::sql_types::Array<Text>, _>(htmls)
        .bind::<Text, _>(renderer)
        .execute(conn)
    }

    /// The citations of a provider's search as the answer keeps them: each cited file of the
    /// answer's project by its provider id, numbered, with confab's id and name when it has it.
    fn searched_citations(
        conn: &mut PgConnection,
        id: Uuid,
        cited: &[(String, String)],
    ) -> QueryResult<serde_json::Value> {
        #[derive(QueryableByName)]
        struct Known {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
            #[diesel(sql_type = Text)]
            provider_file_id: String,
            #[diesel(sql_type = Text)]
            filename: String,
        }
        let remote: Vec<&str> = cited.iter().map(|(file_id, _)| file_id.as_str()).collect();
        let known: Vec<Known> = diesel::sql_query(
            "SELECT f.id, f.provider_file_id, f.filename FROM files f \
             JOIN agents a ON a.project_id = f.project_id \
             JOIN conversations c ON c.agent_id = a.id \
             JOIN messages m ON m.conversation_id = c.id \
             WHERE m.id = $1 AND f.provider_file_id = ANY($2)",
        )
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::Array<Text>, _>(remote)
        .load(conn)?;
        let list = cited
            .iter()
            .enumerate()
            .map(|(index, (file_id, filename))| {
                let local = known.iter().find(|k| k.provider_file_id == *file_id);
                serde_json::json!({
                    "n": index + 1,
                    "file_id": local.map(|k| k.id),
                    "filename": local.map_or(filename.as_str(), |k| k.filename.as_str()),
                    "excerpt": "",
                })
            })
            .collect();
        Ok(serde_json::Value::Array(list))
    }

    /// At start-up: answers a crash left `streaming` can never finish; say so instead of
    /// showing a spinner forever.
    pub fn mark_interrupted(conn: &mut PgConnection) -> QueryResult<usize> {
        diesel::update(messages::table.filter(messages::status.eq(Status::Streaming)))
            .set((
                messages::status.eq(Status::Failed),
                messages::error.eq(
                    "confab restarted while this answer was being written; the text so far is kept.",
                ),
                messages::finished_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
    }

    /// An answer stored after its request had given up (nobody generates it): failed, with why.
    pub fn fail_unanswered(conn: &mut PgConnection, id: Uuid, why: &str) -> QueryResult<usize> {
        diesel::update(
            messages::table
                .find(id)
                .filter(messages::status.eq(Status::Streaming)),
        )
        .set((
            messages::status.eq(Status::Failed),
            messages::error.eq(why),
            messages::finished_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
    }

    /// Locks, in id order, the rows of the answers still streaming in an agent's or a project's
    /// conversations, until the transaction ends. A delete of the agent or project calls it
    /// before its cascade: the cascade meets the rows conversation by conversation, while the
    /// statements that write many answers at once ([`Message::flush_contents`],
    /// [`Message::finish_all`]) lock theirs in id order. Two statements locking the same rows
    /// in different orders can deadlock, and PostgreSQL would fail one of them after a second.
    pub fn lock_streaming_in(conn: &mut PgConnection, scope: Scope) -> QueryResult<()> {
        let (join, id) = match scope {
            Scope::Agent(id) => ("WHERE c.agent_id = $1", id),
            Scope::Project(id) => (
                "JOIN agents a ON a.id = c.agent_id WHERE a.project_id = $1",
                id,
            ),
        };
        diesel::sql_query(format!(
            "SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id {join} \
             AND m.status = 'streaming' ORDER BY m.id FOR UPDATE OF m"
        ))
        .bind::<diesel::sql_types::Uuid, _>(id)
        .execute(conn)?;
        Ok(())
    }

    /// Deletes the message; how many rows went (0 when another request deleted it first).
    pub fn delete(conn: &mut PgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::delete(messages::table.find(id)).execute(conn)
    }
}

/// [`Conversation::begin_all`]'s statement (see `db::statement`): its conversations and their
/// messages as parallel arrays, a message naming its conversation.
struct BeginAll<'a> {
    agents: Vec<Uuid>,
    owners: Vec<Uuid>,
    revisions: Vec<i64>,
    ids: Vec<Uuid>,
    titles: Vec<&'a str>,
    message_ids: Vec<Uuid>,
    conversations: Vec<Uuid>,
    roles: Vec<&'static str>,
    contents: Vec<&'a str>,
    statuses: Vec<&'static str>,
    prompt_versions: Vec<&'a serde_json::Value>,
}

impl<'a> BeginAll<'a> {
    fn of(new: &'a [NewConversation]) -> Self {
        let rows = new.iter().map(|new| new.turn.ids.len()).sum();
        let mut all = BeginAll {
            agents: Vec::with_capacity(new.len()),
            owners: Vec::with_capacity(new.len()),
            revisions: Vec::with_capacity(new.len()),
            ids: Vec::with_capacity(new.len()),
            titles: Vec::with_capacity(new.len()),
            message_ids: Vec::with_capacity(rows),
            conversations: Vec::with_capacity(rows),
            roles: Vec::with_capacity(rows),
            contents: Vec::with_capacity(rows),
            statuses: Vec::with_capacity(rows),
            prompt_versions: Vec::with_capacity(rows),
        };
        for new in new {
            all.agents.push(new.agent.0);
            all.owners.push(new.owner);
            all.revisions.push(new.agent.1);
            all.ids.push(new.id);
            all.titles.push(&new.title);
            let turn = &new.turn;
            all.message_ids.extend_from_slice(&turn.ids);
            all.conversations
                .extend(std::iter::repeat_n(new.id, turn.ids.len()));
            all.roles.extend_from_slice(&turn.roles);
            all.contents
                .extend(turn.contents.iter().map(String::as_str));
            all.statuses.extend_from_slice(&turn.statuses);
            all.prompt_versions.extend(turn.prompt_versions.iter());
        }
        all
    }
}

/// [`Message::finish_all`]'s one statement: each answer's outcome as a column array.
struct FinishAll<'a> {
    ids: Vec<Uuid>,
    contents: Vec<&'a str>,
    statuses: Vec<&'static str>,
    errors: Vec<Option<&'a str>>,
    error_details: Vec<Option<&'a str>>,
    providers: Vec<Option<&'a str>>,
    models: Vec<Option<&'a str>>,
    input_tokens: Vec<Option<i32>>,
    output_tokens: Vec<Option<i32>>,
    ttft_ms: Vec<Option<i32>>,
    duration_ms: Vec<Option<i32>>,
    finished_at: Vec<Option<DateTime<Utc>>>,
    htmls: Vec<Option<&'a str>>,
    html_renderers: Vec<Option<&'a str>>,
}

impl<'a> FinishAll<'a> {
    fn of(finished: &'a [Finished]) -> Self {
        let outcome = |answer: &'a Finished| &answer.outcome;
        let rendered = |answer: &'a Finished| answer.rendered.as_ref();
        FinishAll {
            ids: finished.iter().map(|answer| answer.id).collect(),
            contents: finished
                .iter()
                .map(|a| outcome(a).content.as_str())
                .collect(),
            statuses: finished
                .iter()
                .map(|a| outcome(a).status.as_str())
                .collect(),
            errors: finished
                .iter()
                .map(|a| outcome(a).error.as_deref())
                .collect(),
            error_details: finished
                .iter()
                .map(|a| outcome(a).error_detail.as_deref())
                .collect(),
            providers: finished
                .iter()
                .map(|a| outcome(a).provider.as_deref())
                .collect(),
            models: finished
                .iter()
                .map(|a| outcome(a).model.as_deref())
                .collect(),
            input_tokens: finished.iter().map(|a| outcome(a).input_tokens).collect(),
            output_tokens: finished.iter().map(|a| outcome(a).output_tokens).collect(),
            ttft_ms: finished.iter().map(|a| outcome(a).ttft_ms).collect(),
            duration_ms: finished.iter().map(|a| outcome(a).duration_ms).collect(),
            finished_at: finished.iter().map(|a| outcome(a).finished_at).collect(),
            htmls: finished
                .iter()
                .map(|a| rendered(a).map(|r| r.html.as_str()))
                .collect(),
            html_renderers: finished
                .iter()
                .map(|a| rendered(a).map(|r| r.html_renderer.as_str()))
                .collect(),
        }
    }
}

cached_statement!(FinishAll);

/// The rows are locked first, in id order, as the flusher's are (`Message::flush_contents`):
/// two statements that each lock many rows in their own order can deadlock, and did, in a burst
/// whose answers ended while a flush ran (PostgreSQL broke each cycle after a second).
/// No HTML (the renderer panicked) leaves the row's as it was, as `Message::finish` does.
const FINISH_ALL: &str = "\
    WITH f AS ( \
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                             $6::text[], $7::text[], $8::int4[], $9::int4[], $10::int4[], \
                             $11::int4[], $12::timestamptz[], $13::text[], $14::text[]) \
          AS f(id, content, status, error, error_detail, provider, model, input_tokens, \
               output_tokens, ttft_ms, duration_ms, finished_at, html, html_renderer) \
    ), locked AS ( \
        SELECT messages.id FROM messages JOIN f ON f.id = messages.id \
        ORDER BY messages.id FOR UPDATE OF messages \
    ) \
    UPDATE messages SET content = f.content, status = f.status, error = f.error, \
        error_detail = f.error_detail, provider = f.provider, model = f.model, \
        input_tokens = f.input_tokens, output_tokens = f.output_tokens, ttft_ms = f.ttft_ms, \
        duration_ms = f.duration_ms, finished_at = f.finished_at, \
        html = COALESCE(f.html, messages.html), \
        html_renderer = COALESCE(f.html_renderer, messages.html_renderer) \
    FROM f JOIN locked ON locked.id = f.id \
    WHERE messages.id = f.id \
    RETURNING messages.*";

impl QueryFragment<Pg> for FinishAll<'_> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Int4, Nullable, Timestamptz, Uuid as SqlUuid};
        walk_numbered(FINISH_ALL, out, |n, out| match n {
            1 => out.push_bind_param::<Array<SqlUuid>, _>(&self.ids),
            2 => out.push_bind_param::<Array<Text>, _>(&self.contents),
            3 => out.push_bind_param::<Array<Text>, _>(&self.statuses),
            4 => out.push_bind_param::<Array<Nullable<Text>>, _>(&self.errors),
            5 => out.push_bind_param::<Array<Nullable<Text>>, _>(&self.error_details),
            6 => out.push_bind_param::<Array<Nullable<Text>>, _>(&self.providers),
            7 => out.push_bind_param::<Array<Nullable<Text>>, _>(&self.models),
            8 => out.push_bind_param::<Array<Nullable<Int4>>, _>(&self.input_tokens),
            9 => out.push_bind_param::<Array<Nullable<Int4>>, _>(&self.output_tokens),
            10 => out.push_bind_param::<Array<Nullable<Int4>>, _>(&self.ttft_ms),
            11 => out.push_bind_param::<Array<Nullable<Int4>>, _>(&self.duration_ms),
            12 => out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(&self.finished_at),
            13 => out.push_bind_param::<Array<Nullable<Text>>, _>(&self.htmls),
            14 => out.push_bind_param::<Array<Nullable<Text>>, _>(&self.html_renderers),
            _ => Err(diesel::result::Error::QueryBuilderError(
                format!("no parameter ${n} in FINISH_ALL").into(),
            )),
        })
    }
}

const BEGIN_ALL: &str = "\
    WITH p AS ( \
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[]) \
          AS p(agent, owner, revision, id, title) \
    ), conversation AS ( \
        INSERT INTO conversations (id, agent_id, user_id, title) \
        SELECT p.id, agents.id, p.owner, p.title \
        FROM p JOIN agents ON agents.id = p.agent AND agents.revision = p.revision \
               JOIN projects ON projects.id = agents.project_id AND projects.owner_id = p.owner \
        RETURNING id, created_at \
    ), turn AS ( \
        INSERT INTO messages (id, conversation_id, role, content, status, prompt_versions, \
                              attachments, context, citations) \
        SELECT m.id, conversation.id, m.role, m.content, m.status, m.prompt_versions, '[]', '', '[]' \
        FROM unnest($6::uuid[], $7::uuid[], $8::text[], $9::text[], $10::text[], $11::jsonb[]) \
               AS m(id, conversation, role, content, status, prompt_versions) \
             JOIN conversation ON conversation.id = m.conversation \
        RETURNING * \
    ) \
    SELECT turn.*, conversation.created_at AS conversation_created_at \
    FROM turn JOIN conversation ON conversation.id = turn.conversation_id";

impl QueryFragment<Pg> for BeginAll<'_> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Jsonb, Uuid as SqlUuid};
        walk_numbered(BEGIN_ALL, out, |n, out| match n {
            1 => out.push_bind_param::<Array<SqlUuid>, _>(&self.agents),
            2 => out.push_bind_param::<Array<SqlUuid>, _>(&self.owners),
            3 => out.push_bind_param::<Array<BigInt>, _>(&self.revisions),
            4 => out.push_bind_param::<Array<SqlUuid>, _>(&self.ids),
            5 => out.push_bind_param::<Array<Text>, _>(&self.titles),
            6 => out.push_bind_param::<Array<SqlUuid>, _>(&self.message_ids),
            7 => out.push_bind_param::<Array<SqlUuid>, _>(&self.conversations),
            8 => out.push_bind_param::<Array<Text>, _>(&self.roles),
            9 => out.push_bind_param::<Array<Text>, _>(&self.contents),
            10 => out.push_bind_param::<Array<Text>, _>(&self.statuses),
            11 => out.push_bind_param::<Array<Jsonb>, _>(&self.prompt_versions),
            _ => Err(diesel::result::Error::QueryBuilderError(
                format!("no parameter ${n} in BEGIN_ALL").into(),
            )),
        })
    }
}

cached_statement!(BeginAll);

/// [`Message::add_turn`]'s statement (see `db::statement`).
struct AddTurn<'a> {
    agent_id: Uuid,
    owner: Uuid,
    revision: i64,
    conversation_id: Uuid,
    turn: &'a TurnRows,
    max_messages: i64,
    budget: i64,
}

const ADD_TURN: &str = "\
    WITH p AS ( \
        SELECT $1::uuid AS agent, $2::uuid AS owner, $3::bigint AS revision, \
               $4::uuid AS conversation \
    ), rows AS ( \
        SELECT * FROM unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::jsonb[]) \
          AS m(id, role, content, status, prompt_versions) \
    ), conversation AS ( \
        SELECT c.id FROM p, conversations c \
        JOIN agents a ON a.id = c.agent_id JOIN projects pr ON pr.id = a.project_id \
        WHERE c.id = p.conversation AND c.user_id = p.owner AND c.agent_id = p.agent \
          AND a.revision = p.revision AND pr.owner_id = p.owner \
          AND (SELECT count(*) FROM messages WHERE conversation_id = p.conversation) \
              + (SELECT count(*) FROM rows) <= $10 \
    ), touched AS ( \
        UPDATE conversations SET updated_at = now() \
        WHERE id IN (SELECT id FROM conversation) RETURNING title, created_at, updated_at \
    ), turn AS ( \
        INSERT INTO messages (id, conversation_id, role, content, status, prompt_versions, \
                              attachments, context, citations) \
        SELECT rows.id, conversation.id, rows.role, rows.content, rows.status, \
               rows.prompt_versions, '[]', '', '[]' \
        FROM conversation, rows \
        RETURNING * \
    ), history AS ( \
        SELECT m.* FROM messages m JOIN ( \
            SELECT id, sum(char_length(content) + char_length(context)) \
                     OVER (ORDER BY id DESC) - char_length(content) - char_length(context) \
                     AS newer \
            FROM messages \
            WHERE conversation_id IN (SELECT id FROM conversation) \
              AND status IN ('complete', 'stopped') AND content <> '' \
        ) w ON w.id = m.id \
        WHERE w.newer < $11 \
    ) \
    SELECT true AS stored, turn.*, touched.title, touched.created_at AS created, \
           touched.updated_at AS updated FROM turn, touched \
    UNION ALL SELECT false, history.*, NULL, NULL, NULL FROM history";

impl QueryFragment<Pg> for AddTurn<'_> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Uuid as SqlUuid};
        walk_numbered(ADD_TURN, out, |n, out| match n {
            1 => out.push_bind_param::<SqlUuid, _>(&self.agent_id),
            2 => out.push_bind_param::<SqlUuid, _>(&self.owner),
            3 => out.push_bind_param::<BigInt, _>(&self.revision),
            4 => out.push_bind_param::<SqlUuid, _>(&self.conversation_id),
            10 => out.push_bind_param::<BigInt, _>(&self.max_messages),
            11 => out.push_bind_param::<BigInt, _>(&self.budget),
            _ => self.turn.bind(n - 4, out),
        })
    }
}

cached_statement!(AddTurn);
