//! What requests cost the database, counted in statements (the pool counts every one it sends):
//! the round trips that sit between a person and their first token.

use serde_json::json;

use crate::support::app::{PASSWORD, TestApp};
use crate::support::fake_llm::{FakeLlm, Script};
use crate::support::sse::{Events, joined};

/// The statements the pool sent while `work` ran.
async fn statements_of<T>(app: &TestApp, work: impl Future<Output = T>) -> (u64, T) {
    let before = app.pool.statements();
    let out = work.await;
    (app.pool.statements() - before, out)
}

#[tokio::test]
async fn a_session_is_looked_up_once_not_on_every_request() {
    let app = TestApp::spawn().await;
    let token = app.user_token("cached@example.com").await;
    let (first, (status, _)) = statements_of(&app, app.get_json(&token, "/api/users/me")).await;
    assert_eq!(status, 200);
    let (second, (status, _)) = statements_of(&app, app.get_json(&token, "/api/users/me")).await;
    assert_eq!(status, 200);
    assert!(
        second < first,
        "the second request asked who is signed in again: {first} then {second} statements"
    );
}

#[tokio::test]
async fn a_remembered_session_ends_at_once_however_it_is_ended() {
    let app = TestApp::spawn().await;
    app.user_token("ends@example.com").await;
    let app = &app;
    let answers = |token: String| async move { app.get_json(&token, "/api/users/me").await.0 };
    // A session that was just used (so it is remembered), and a second one to end it from.
    let two_sessions = || async {
        let (token, other) = (
            app.login("ends@example.com", PASSWORD).await,
            app.login("ends@example.com", PASSWORD).await,
        );
        assert_eq!(answers(token.clone()).await, 200);
        (token, other)
    };

    // Signing out: the remembered session is refused on the next request.
    let (token, _) = two_sessions().await;
    let (status, _) = app.post_json(&token, "/api/auth/logout", json!({})).await;
    assert!(status < 300, "logout: {status}");
    assert_eq!(answers(token).await, 401);

    // Ended from another session.
    let (token, other) = two_sessions().await;
    let (_, sessions) = app.get_json(&token, "/api/auth/sessions").await;
    let mine = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = app
        .delete(&other, &format!("/api/auth/sessions/{mine}"))
        .await;
    assert!(status < 300, "end session: {status}");
    assert_eq!(answers(token).await, 401);

    // Signing out everywhere, and changing the password, end every remembered session.
    let (token, other) = two_sessions().await;
    let (status, _) = app
        .post_json(&other, "/api/auth/logout-everywhere", json!({}))
        .await;
    assert!(status < 300, "logout everywhere: {status}");
    assert_eq!(answers(token).await, 401);

    let (token, other) = two_sessions().await;
    let change = json!({"current_password": PASSWORD, "new_password": "another long password 2"});
    let (status, _) = app.post_json(&other, "/api/auth/password", change).await;
    assert!(status < 300, "password change: {status}");
    assert_eq!(answers(token).await, 401);
}

/// Sends a message to the agent in a new conversation; the response once its headers are in.
async fn ask(app: &TestApp, token: &str, agent: &str, message: &str) -> reqwest::Response {
    let response = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(token)
        .json(&json!({ "message": message }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

#[tokio::test]
async fn a_new_conversation_is_stored_in_one_statement_before_its_answer_starts() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("One statement is enough."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("one@example.com").await;
    // The first turn reads the agent (and its prompts); the ones after remember it.
    Events::of(ask(&app, &token, &agent, "warm up").await)
        .collect_json()
        .await;

    let (statements, response) =
        statements_of(&app, ask(&app, &token, &agent, "Count the round trips")).await;
    // One INSERT of the conversation and both messages; a `SELECT 1` too if the pooled
    // connection it got had been idle for a second. It was 8 round trips in a transaction.
    assert!(
        statements <= 2,
        "{statements} statements before the answer's stream began"
    );
    let (chunks, done) = Events::of(response).collect_json().await;
    assert_eq!(joined(&chunks), "One statement is enough.");
    assert_eq!(done["status"], "complete");
    let (status, stored) = app
        .get_json(
            &token,
            &format!(
                "/api/conversations/{}",
                done["conversation_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(status, 200);
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(stored["title"], "Count the round trips");
    assert_eq!(
        (messages.len(), messages[0]["content"].as_str()),
        (2, Some("Count the round trips"))
    );
    assert_eq!(messages[1]["content"], "One statement is enough.");
}

#[tokio::test]
async fn an_agent_changed_by_another_instance_answers_with_its_new_settings() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Fresh."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("fresh@example.com").await;
    Events::of(ask(&app, &token, &agent, "warm up").await)
        .collect_json()
        .await;
    // Another confab sharing the database changes the agent: this process is not told.
    app.execute_sql(format!(
        "UPDATE agents SET model = 'a-newer-model' WHERE id = '{agent}'"
    ))
    .await;

    let (_, done) = Events::of(ask(&app, &token, &agent, "Which model?").await)
        .collect_json()
        .await;
    assert_eq!(done["status"], "complete");
    let last = fake.requests().pop().unwrap();
    assert_eq!(
        last.body["model"], "a-newer-model",
        "the answer was asked of the agent as it is now"
    );
}

#[tokio::test]
async fn a_message_to_a_conversation_is_stored_with_its_history_read_in_one_statement() {
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Noted."));
    let app = TestApp::with_llm(&fake.base_url(), |_| {}).await;
    let (token, _, agent) = app.chat_setup("again@example.com").await;
    let (_, done) = Events::of(ask(&app, &token, &agent, "My name is Ada.").await)
        .collect_json()
        .await;
    let conversation = done["conversation_id"].as_str().unwrap().to_string();

    let send = app
        .api
        .post(app.url(&format!("/api/chat/agents/{agent}")))
        .bearer_auth(&token)
        .json(&json!({"message": "What is my name?", "conversation_id": conversation}))
        .send();
    let (statements, response) = statements_of(&app, send).await;
    assert!(
        statements <= 2,
        "{statements} statements before the answer's stream began (it was 10)"
    );
    let (_, done) = Events::of(response.unwrap()).collect_json().await;
    assert_eq!(done["status"], "complete");
    assert_eq!(done["conversation_id"], conversation.as_str());
    // The provider read the whole conversation, in order, the new message last.
    let input = fake.requests().pop().unwrap().body["input"].to_string();
    let (ada, noted, name) = (
        input.find("My name is Ada.").unwrap(),
        input.find("Noted.").unwrap(),
        input.find("What is my name?").unwrap(),
    );
    assert!(ada < noted && noted < name, "{input}");
    let (_, stored) = app
        .get_json(&token, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(stored["messages"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn conversations_started_at_once_are_stored_together_each_with_its_own_messages() {
    const PEOPLE_AT_ONCE: usize = 24;
    let fake = FakeLlm::start().await;
    fake.set_default(Script::answer("Stored with the others."));
    // One person stands for many here: their allowance of answers at once is lifted.
    let app = TestApp::with_llm(&fake.base_url(), |settings| {
        settings.chat.max_live_answers_per_user = 100;
        settings.chat.answers_per_minute_per_user = 100;
    })
    .await;
    let (token, _, agent) = app.chat_setup("together@example.com").await;
    let (stranger, _, _) = app.chat_setup("not-together@example.com").await;
    Events::of(ask(&app, &token, &agent, "warm up").await)
        .collect_json()
        .await;
    let asked_before = fake.request_count();

    // The conversations table is held while the burst arrives, so it queues as a real one does
    // behind a busy database; and a stranger's send to the same agent is in it.
    let held = app.hold_table("conversations").await;
    let send = |token: &str, message: String| {
        let request = app
            .api
            .post(app.url(&format!("/api/chat/agents/{agent}")))
            .bearer_auth(token)
            .json(&json!({ "message": message }));
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let done = match status {
                200 => Events::of(response).collect_json().await.1,
                _ => serde_json::Value::Null,
            };
            (status, done)
        })
    };
    let sends: Vec<_> = (0..PEOPLE_AT_ONCE)
        .map(|n| send(&token, format!("Message number {n}")))
        .collect();
    let refused = send(&stranger, "Not my agent".to_string());
    // Each has asked the provider (just before its statement is queued), and the first
    // statements wait on the table.
    fake.wait_for_requests(asked_before + PEOPLE_AT_ONCE).await;
    app.until_waiting_on_locks("the first statements wait on the table")
        .await;
    held.release().await;

    let mut conversations = Vec::new();
    for (n, send) in sends.into_iter().enumerate() {
        let (status, done) = send.await.unwrap();
        assert_eq!(status, 200, "message {n}");
        assert_eq!(done["status"], "complete", "message {n}");
        conversations.push((n, done["conversation_id"].as_str().unwrap().to_string()));
    }
    assert_eq!(
        refused.await.unwrap().0,
        404,
        "a stranger's send to the agent"
    );
    for (n, id) in &conversations {
        let (status, stored) = app
            .get_json(&token, &format!("/api/conversations/{id}"))
            .await;
        assert_eq!(status, 200);
        let messages = stored["messages"].as_array().unwrap();
        let said = format!("Message number {n}");
        assert_eq!(stored["title"], said.as_str());
        assert_eq!(
            (messages.len(), messages[0]["content"].as_str()),
            (2, Some(said.as_str())),
            "conversation {n} holds its own message"
        );
        assert_eq!(messages[1]["content"], "Stored with the others.");
    }
    // One transaction per conversation before.
    let ids: Vec<String> = conversations.into_iter().map(|(_, id)| id).collect();
    let transactions = app.transactions_that_wrote("conversations", &ids).await;
    assert!(
        transactions <= 8,
        "{PEOPLE_AT_ONCE} conversations started at once took {transactions} transactions"
    );
}

#[tokio::test]
async fn a_group_stores_only_the_conversations_whose_agent_is_their_owners_as_it_was_read() {
    use confab::conversations::model::{Conversation, NewConversation, Status, TurnRows};
    use uuid::Uuid;

    let app = TestApp::spawn().await;
    let (alice, _, agent) = app.chat_setup("group-owner@example.com").await;
    let (bob, _, _) = app.chat_setup("group-stranger@example.com").await;
    let id_of = |token: String| {
        let app = &app;
        async move {
            let (_, me) = app.get_json(&token, "/api/users/me").await;
            Uuid::parse_str(me["id"].as_str().unwrap()).unwrap()
        }
    };
    let (alice, bob) = (id_of(alice).await, id_of(bob).await);
    let agent = Uuid::parse_str(&agent).unwrap();
    let revision = app
        .count_sql(format!(
            "SELECT revision AS count FROM agents WHERE id = '{agent}'"
        ))
        .await;
    let new = |owner: Uuid, revision: i64, said: &str| NewConversation {
        owner,
        agent: (agent, revision),
        id: Uuid::now_v7(),
        title: said.to_string(),
        turn: TurnRows::new(&[], said, json!([])),
    };
    // One statement: the owner's turns, a stranger's with the owner's agent, and one composed
    // from the agent as it was before its latest change.
    let group = vec![
        new(alice, revision, "first"),
        new(bob, revision, "not my agent"),
        new(alice, revision - 1, "from an older agent"),
        new(alice, revision, "last"),
    ];
    let ids: Vec<Uuid> = group.iter().map(|new| new.id).collect();
    let pool = app.pool.clone();
    let stored = tokio::task::spawn_blocking(move || {
        Conversation::begin_all(&mut pool.get().unwrap().conn, &group)
    })
    .await
    .unwrap()
    .unwrap();

    let said: Vec<Option<(Uuid, String, Status)>> = stored
        .into_iter()
        .map(|stored| {
            stored.map(|(conversation, turn)| {
                assert_eq!(turn.answer.conversation_id, conversation.id);
                assert_eq!(turn.user.conversation_id, conversation.id);
                (conversation.id, turn.user.content, turn.answer.status)
            })
        })
        .collect();
    assert_eq!(
        said,
        vec![
            Some((ids[0], "first".to_string(), Status::Streaming)),
            None,
            None,
            Some((ids[3], "last".to_string(), Status::Streaming)),
        ]
    );
    let kept = app
        .count_sql(format!(
            "SELECT count(*) AS count FROM messages WHERE conversation_id IN ('{}', '{}')",
            ids[1], ids[2]
        ))
        .await;
    assert_eq!(kept, 0, "the refused conversations left messages behind");
}

/// What the group's work below did, by item.
static DONE: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// Reads the conversations table (waiting while it is held).
fn read(conn: &mut diesel::PgConnection, items: &[&'static str]) -> diesel::QueryResult<Vec<()>> {
    use diesel::RunQueryDsl;
    diesel::sql_query("SELECT id FROM conversations LIMIT 1").execute(conn)?;
    Ok(vec![(); items.len()])
}

/// [`read`], then notes its items as done.
fn read_then_note(
    conn: &mut diesel::PgConnection,
    items: &[&'static str],
) -> diesel::QueryResult<Vec<()>> {
    let done = read(conn, items)?;
    DONE.lock().unwrap().extend_from_slice(items);
    Ok(done)
}

#[tokio::test]
async fn work_withdrawn_before_a_writer_took_it_is_never_done() {
    let app = TestApp::spawn().await;
    let group = confab::db::Group::new(
        app.pool.clone(),
        tokio::runtime::Handle::current(),
        read_then_note,
        confab::db::group::Writers::One,
    );
    // The one writer takes the first piece, which waits on the held table; the second waits in
    // the queue behind it.
    let held = app.hold_table("conversations").await;
    let (first_ticket, first) = group.submit("taken");
    app.until_waiting_on_locks("the first piece waits on the table")
        .await;
    let (second_ticket, second) = group.submit("withdrawn");
    assert!(
        group.withdraw(second_ticket),
        "queued work could not be taken back"
    );
    assert!(
        !group.withdraw(first_ticket),
        "work already being done was taken back"
    );
    held.release().await;

    assert!(matches!(first.await, Ok(Ok(()))));
    assert!(second.await.is_err(), "withdrawn work got an answer");
    // The writer is done with everything queued once a third piece has been done after it.
    let (_, third) = group.submit("after");
    assert!(matches!(third.await, Ok(Ok(()))));
    assert_eq!(*DONE.lock().unwrap(), vec!["taken", "after"]);
}

/// A group with one writer whose statement is held up (waiting on a lock) starts another for work
/// that has waited past 100 ms: one stuck save must not hold up everyone's.
#[tokio::test]
async fn a_held_up_writer_is_joined_by_another() {
    let app = TestApp::spawn_with(|settings| settings.database.pool_size = 16).await;
    let group = confab::db::Group::new(
        app.pool.clone(),
        tokio::runtime::Handle::current(),
        read,
        confab::db::group::Writers::One,
    );
    let held = app.hold_table("conversations").await;
    let (_, first) = group.submit("first");
    app.until_waiting_on_locks("the writer waits on the table")
        .await;
    let (_, second) = group.submit("second");
    // Not a wait for something to happen: the condition under test is the second's age, past
    // the 100 ms after which a held-up writer is joined, when the third comes.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let (_, third) = group.submit("third");
    let two_waiting = "SELECT (count(*) >= 2)::int::int8 AS count FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock'";
    app.until_counted(two_waiting, "a second writer waits on the table too")
        .await;
    held.release().await;
    for pending in [first, second, third] {
        assert!(matches!(pending.await, Ok(Ok(()))));
    }
}

/// A confab that stops (its generation runtime shut down) with work queued: the writer it would
/// start is dropped unrun, and starting another from there recursed until the stack overflowed,
/// aborting the process.
#[tokio::test]
async fn work_queued_when_its_runtime_has_stopped_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let stopped = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let handle = stopped.handle().clone();
    stopped.shutdown_background();
    let group = confab::db::Group::new(
        app.pool.clone(),
        handle,
        read_then_note,
        confab::db::group::Writers::One,
    );
    let (_, pending) = group.submit("never written");
    assert!(
        matches!(pending.await, Ok(Err(confab::error::AppError::Unavailable))),
        "queued work with nobody to write it was not refused"
    );
    assert!(!DONE.lock().unwrap().contains(&"never written"));
}

/// Answers that end while a save is being written wait and are saved by the next statement,
/// however many connections the pool has: in a burst, answers end a few at a time, and with a
/// writer per quarter of the pool most were saved alone.
#[tokio::test]
async fn answers_that_end_together_are_saved_together() {
    const ANSWERS: usize = 24;
    let fake = FakeLlm::start().await;
    let app = TestApp::with_llm(&fake.base_url(), |settings| {
        settings.chat.max_live_answers_per_user = 100;
        settings.chat.answers_per_minute_per_user = 100;
        // The default: room for four writers, were there more than one.
        settings.database.pool_size = 16;
    })
    .await;
    let (token, _, agent) = app.chat_setup("ended-together@example.com").await;
    fake.set_default(Script::answer("Warm."));
    Events::of(ask(&app, &token, &agent, "warm up").await)
        .collect_json()
        .await;
    // The answers think for a while first: long enough to hold the messages table after
    // every conversation is stored and before any answer ends.
    fake.set_default(
        Script::answer("Saved with the others.")
            .first_token_delay(std::time::Duration::from_secs(2)),
    );
    let mut streams = Vec::new();
    for n in 0..ANSWERS {
        streams.push(Events::of(
            ask(&app, &token, &agent, &format!("Answer {n}")).await,
        ));
    }
    // Every conversation is stored (its response began); the answers' saves will queue behind
    // the held table as behind a busy database.
    let held = app.hold_table("messages").await;
    // Each answer's whole text reaches its reader, so its task has gone on to save it ...
    for events in &mut streams {
        let mut text = String::new();
        while text != "Saved with the others." {
            let event = events.next().await.unwrap();
            let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            text.push_str(data["text"].as_str().unwrap());
        }
    }
    // ... and the first group's save waits on the table (an answer that ended is not flushed,
    // so a flush waiting there too is not a sign of it).
    let saving = "SELECT count(*) AS count FROM pg_stat_activity \
                  WHERE datname = current_database() AND wait_event_type = 'Lock' \
                  AND query LIKE '%finished_at = f.finished_at%'";
    app.until_counted(saving, "a save waits on the held table")
        .await;
    held.release().await;
    let mut answers = Vec::new();
    for events in &mut streams {
        let (_, done) = events.collect_json().await;
        assert_eq!(done["status"], "complete");
        answers.push(done["message_id"].as_str().unwrap().to_string());
    }
    // The first save, alone, held up by the table; the others in the group after it (and any
    // whose task reached its save only after that group began, in one more).
    let transactions = app.transactions_that_wrote("messages", &answers).await;
    assert!(
        transactions <= 4,
        "{ANSWERS} answers that ended together took {transactions} transactions to save"
    );
    // Each row holds its own whole outcome, as a reader of the conversation would see it.
    let whole = app
        .count_sql(format!(
            "SELECT count(*) AS count FROM messages WHERE id IN ({}) \
             AND content = 'Saved with the others.' AND status = 'complete' \
             AND html LIKE '%Saved with the others.%' AND html_renderer IS NOT NULL \
             AND provider = 'openai' AND model IS NOT NULL AND output_tokens IS NOT NULL \
             AND ttft_ms IS NOT NULL AND duration_ms >= ttft_ms AND finished_at IS NOT NULL",
            answers
                .iter()
                .map(|id| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await;
    assert_eq!(whole, ANSWERS as i64);
}

/// An app whose answers stream until the test ends (their first token is 30 s away), with
/// connections for the rows a test holds and no flush of its own meanwhile.
async fn app_whose_answers_keep_streaming() -> (FakeLlm, TestApp) {
    let fake = FakeLlm::start().await;
    let app = TestApp::with_llm(&fake.base_url(), |settings| {
        settings.database.pool_size = 8;
        settings.chat.flush_interval_ms = 60_000;
    })
    .await;
    fake.set_default(
        Script::answer("Not yet.").first_token_delay(std::time::Duration::from_secs(30)),
    );
    (fake, app)
}

/// The flusher's statement and the grouped final saves each write many answers' rows. Two such
/// statements that lock their rows in orders of their own can deadlock, and did in a burst
/// whose answers ended while a flush ran (PostgreSQL broke each cycle after a second, and the
/// group's answers were then saved one by one). Both lock their rows in id order: while one
/// waits for the higher row, the lower one is already its, whatever order it was given and
/// whatever order the table holds them in.
#[tokio::test]
async fn statements_that_write_many_answers_lock_their_rows_in_id_order() {
    use confab::conversations::model::{Finished, Message, Outcome, Status};
    use diesel::RunQueryDsl;

    let (_fake, app) = app_whose_answers_keep_streaming().await;
    let (token, _, agent) = app.chat_setup("lock-order@example.com").await;
    let _first = ask(&app, &token, &agent, "First").await;
    let _second = ask(&app, &token, &agent, "Second").await;
    let ids = app
        .ids_sql("SELECT id FROM messages WHERE status = 'streaming' ORDER BY id")
        .await;
    let [low, high] = ids[..] else {
        panic!("two answers streaming, not {}", ids.len());
    };
    let finished = |id| Finished {
        id,
        outcome: Outcome {
            content: "Ended.".into(),
            status: Status::Complete,
            error: None,
            error_detail: None,
            provider: None,
            model: None,
            input_tokens: None,
            output_tokens: None,
            ttft_ms: None,
            duration_ms: None,
            finished_at: Some(chrono::Utc::now()),
        },
        rendered: None,
    };
    for statement in ["flush", "finish"] {
        // The lower id's row moves after the higher one's in the table: neither the order the
        // ids are given in nor the table's is the ids' order.
        app.execute_sql(format!(
            "UPDATE messages SET content = 'moved' WHERE id = '{low}'"
        ))
        .await;
        let held = app
            .hold(format!(
                "SELECT id FROM messages WHERE id = '{high}' FOR UPDATE"
            ))
            .await;
        let pool = app.pool.clone();
        let given = [high, low];
        let writer = tokio::task::spawn_blocking(move || {
            use diesel::Connection;
            pool.get().unwrap().conn.transaction(|conn| {
                // Plans that meet the rows in an order other than their ids', as a big
                // table's (a loop over the ids given, each found by its key) does; on a table
                // this small the planner would walk an index in id order by chance.
                for off in ["hashjoin", "mergejoin", "indexscan", "bitmapscan"] {
                    diesel::sql_query(format!("SET LOCAL enable_{off} = off")).execute(conn)?;
                }
                match statement {
                    "flush" => Message::flush_contents(conn, &given, &["b".into(), "a".into()])
                        .map(|written| written.len()),
                    _ => Message::finish_all(conn, &given.map(finished))
                        .map(|saved| saved.iter().flatten().count()),
                }
            })
        });
        app.until_waiting_on_locks("the statement waits for the higher row")
            .await;
        assert!(
            app.is_row_locked("messages", low).await,
            "the {statement} waits for the higher row without holding the lower one"
        );
        held.release().await;
        assert_eq!(writer.await.unwrap().unwrap(), 2, "{statement}");
    }
}

/// Deleting an agent or a project deletes its conversations' answers by cascade, which meets
/// them conversation by conversation, in whatever order the plan finds the conversations. The
/// statements that write many answers lock theirs in id order, so a delete that met a higher
/// answer first could deadlock with a flush or a group's save (and PostgreSQL would fail one
/// of them after a second). The delete locks its answers still streaming in id order first:
/// while it waits for the higher one, the lower one is already its.
#[tokio::test]
async fn deleting_an_agent_or_a_project_locks_its_streaming_answers_in_id_order_first() {
    let (_fake, app) = app_whose_answers_keep_streaming().await;
    for scope in ["agents", "projects"] {
        let (token, project, agent) = app.chat_setup(&format!("delete-{scope}@example.com")).await;
        let _first = ask(&app, &token, &agent, "First").await;
        let _second = ask(&app, &token, &agent, "Second").await;
        let streaming = format!(
            "SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.agent_id = '{agent}' AND m.status = 'streaming' ORDER BY m.id"
        );
        let ids = app.ids_sql(&streaming).await;
        let [low, high] = ids[..] else {
            panic!("two answers streaming, not {}", ids.len());
        };
        // The table holds the conversations newest first, as the agent's index lists them:
        // the cascade meets the higher answer first, whichever of the two it reads.
        app.execute_sql("CLUSTER conversations USING conversations_agent_user_idx")
            .await;
        let in_table_order = app
            .ids_sql(format!(
                "SELECT m.id FROM conversations c JOIN LATERAL (SELECT id FROM messages \
                 WHERE conversation_id = c.id AND status = 'streaming') m ON true \
                 WHERE c.agent_id = '{agent}' ORDER BY c.ctid"
            ))
            .await;
        assert_eq!(
            in_table_order,
            [high, low],
            "the higher answer's conversation comes first"
        );
        let held = app
            .hold(format!(
                "SELECT id FROM messages WHERE id = '{high}' FOR UPDATE"
            ))
            .await;
        let path = match scope {
            "agents" => format!("/api/agents/{agent}"),
            _ => format!("/api/projects/{project}"),
        };
        let delete = app.api.delete(app.url(&path)).bearer_auth(&token).send();
        let delete = tokio::spawn(delete);
        app.until_waiting_on_locks("the delete waits for the higher answer")
            .await;
        assert!(
            app.is_row_locked("messages", low).await,
            "deleting {scope} waits for the higher answer without holding the lower one"
        );
        held.release().await;
        assert_eq!(delete.await.unwrap().unwrap().status(), 204, "{scope}");
        assert!(app.ids_sql(&streaming).await.is_empty(), "{scope}");
    }
}
