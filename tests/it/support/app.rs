//! `TestApp`: confab on port 0 against its own database, cloned from a migrated template in a
//! private PostgreSQL cluster that all test processes share (started with confab's own
//! embedded-database code).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use actix_web::web;
use confab::db::PgPool;
use confab::db::embedded::{PgOptions, PgServer};
use confab::db::pool::run_migrations;
use confab::settings::{Overrides, Secret, Settings};
use confab::startup::Application;
use confab::state::AppState;
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const PASSWORD: &str = "correct horse 1";
pub const JWT_SECRET: &str = "test-secret-not-for-production";

struct Cluster {
    server: PgServer,
    template: String,
}

fn cluster_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("confab-test-pg")
}

/// Name of the template database: a hash of `migrations/`, so a changed migration builds a new one.
fn template_name() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<PathBuf> = walk(&dir);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(
            file.strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update(std::fs::read(&file).unwrap());
    }
    format!("tmpl_{}", &hex::encode(hasher.finalize())[..16])
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let server = PgServer::start(
            &cluster_dir(),
            &PgOptions {
                fast_unsafe: true,
                ..PgOptions::default()
            },
        )
        .expect("start the test PostgreSQL");
        let template = template_name();
        let mut admin =
            PgConnection::establish(&server.url("postgres")).expect("connect to the test cluster");
        // One process builds the template; the others wait for it.
        diesel::sql_query("SELECT pg_advisory_lock(4242)")
            .execute(&mut admin)
            .unwrap();
        let exists: i64 = diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            &format!("(SELECT count(*) FROM pg_database WHERE datname = '{template}')"),
        ))
        .get_result(&mut admin)
        .unwrap();
        if exists == 0 {
            diesel::sql_query(format!("CREATE DATABASE {template}_building"))
                .execute(&mut admin)
                .unwrap();
            {
                let mut conn =
                    PgConnection::establish(&server.url(&format!("{template}_building"))).unwrap();
                run_migrations(&mut conn).expect("migrations run on the template");
            }
            diesel::sql_query(format!(
                "ALTER DATABASE {template}_building RENAME TO {template}"
            ))
            .execute(&mut admin)
            .unwrap();
        }
        diesel::sql_query("SELECT pg_advisory_unlock(4242)")
            .execute(&mut admin)
            .unwrap();
        Cluster { server, template }
    })
}

/// A fresh database cloned from the migrated template (~0.1 s); dropped with the `TestDb`.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn create() -> TestDb {
        let cluster = cluster();
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&cluster.server.url("postgres")).unwrap();
        diesel::sql_query(format!(
            "CREATE DATABASE {name} TEMPLATE {}",
            cluster.template
        ))
        .execute(&mut admin)
        .unwrap();
        TestDb {
            url: cluster.server.url(&name),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&cluster().server.url("postgres")) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

pub fn test_settings(data_dir: &Path) -> Settings {
    let mut settings = Settings::load_from(
        &Overrides {
            data_dir: Some(data_dir.to_path_buf()),
            host: Some("127.0.0.1".into()),
            port: Some(0),
            ..Default::default()
        },
        Default::default(),
    )
    .unwrap();
    settings.auth.bcrypt_cost = 4;
    settings.auth.jwt_secret = Some(Secret::new(JWT_SECRET));
    settings.database.connect_timeout_secs = 1;
    settings.database.pool_size = 4;
    settings.server.workers = Some(1);
    settings.server.shutdown_grace_secs = 1;
    // The tests run in their own binary, not confab's: PDFs are read by the real one.
    settings.files.pdf_reader = Some(env!("CARGO_BIN_EXE_confab").into());
    settings
}

pub struct TestApp {
    pub address: String,
    /// The app's state, for tests that drive shutdown or start-up steps directly.
    #[allow(dead_code)]
    pub state: web::Data<AppState>,
    /// For tests that look at rows directly.
    #[allow(dead_code)]
    pub pool: PgPool,
    pub api: reqwest::Client,
    _db: Option<TestDb>,
    _data_dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts confab with its own database and settings adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let db = tokio::task::spawn_blocking(TestDb::create).await.unwrap();
        let url = db.url.clone();
        Self::spawn_on(&url, Some(db), tweak).await
    }

    /// Starts confab against any database URL (e.g. a cluster the test stops and starts).
    pub async fn spawn_on(
        url: &str,
        db: Option<TestDb>,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let data_dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(data_dir.path());
        settings.database.url = Some(Secret::new(url));
        tweak(&mut settings);
        // The same start-up as the binary's; only the stop signal differs (the test's end).
        let app = Application::build(settings).await.expect("confab starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        let pool = state.pool.clone();
        tokio::spawn(app.run_until(std::future::pending()));
        TestApp {
            address,
            state,
            pool,
            api: client(),
            _db: db,
            _data_dir: data_dir,
        }
    }

    /// confab with the fake upstream as its `openai` provider, and quick retries.
    #[allow(dead_code)]
    pub async fn with_llm(base_url: &str, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let base_url = base_url.to_string();
        Self::spawn_with(move |s| {
            s.llm.openai_api_key = Some(Secret::new("sk-test"));
            s.llm.openai_base_url = Some(base_url);
            s.llm.retry_base_delay_ms = 10;
            s.llm.retry_max_delay_ms = 50;
            s.chat.flush_interval_ms = 50;
            tweak(s);
        })
        .await
    }

    /// A user, a project and its default agent: (token, project id, agent id).
    #[allow(dead_code)]
    pub async fn chat_setup(&self, email: &str) -> (String, String, String) {
        let token = self.user_token(email).await;
        let project = self.project(&token, "Chat").await;
        let (_, agents) = self
            .get_json(&token, &format!("/api/projects/{project}/agents"))
            .await;
        let agent = agents[0]["id"].as_str().unwrap().to_string();
        (token, project, agent)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Registers through the API and returns a bearer token.
    pub async fn user_token(&self, email: &str) -> String {
        let response = self
            .api
            .post(self.url("/api/auth/register"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            201,
            "register {email}: {}",
            response.text().await.unwrap()
        );
        self.login(email, PASSWORD).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .api
            .post(self.url("/api/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login {email}");
        response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn get_json(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self
            .api
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

    /// A page as the holder of `token` sees it (pages take the bearer token too).
    #[allow(dead_code)]
    pub async fn get_page(&self, token: &str, path: &str) -> String {
        let r = self
            .api
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().await.unwrap()
    }

    pub async fn send_json(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let response = self
            .api
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

    /// Runs SQL on the app's database, as another process would (to set up what no request
    /// makes, or change a row behind confab's back); how many rows it touched.
    #[allow(dead_code)]
    pub async fn execute_sql(&self, sql: impl Into<String>) -> usize {
        let (pool, sql) = (self.pool.clone(), sql.into());
        tokio::task::spawn_blocking(move || {
            diesel::sql_query(sql)
                .execute(&mut pool.get().unwrap().conn)
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// A number from the app's database: `sql` selects one `bigint` named `count`.
    #[allow(dead_code)]
    pub async fn count_sql(&self, sql: impl Into<String>) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            count: i64,
        }
        let (pool, sql) = (self.pool.clone(), sql.into());
        tokio::task::spawn_blocking(move || {
            diesel::sql_query(sql)
                .get_result::<Count>(&mut pool.get().unwrap().conn)
                .unwrap()
                .count
        })
        .await
        .unwrap()
    }

    /// The `id` column of `sql`'s rows.
    #[allow(dead_code)]
    pub async fn ids_sql(&self, sql: impl Into<String>) -> Vec<uuid::Uuid> {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: uuid::Uuid,
        }
        let (pool, sql) = (self.pool.clone(), sql.into());
        tokio::task::spawn_blocking(move || {
            diesel::sql_query(sql)
                .load::<Id>(&mut pool.get().unwrap().conn)
                .unwrap()
                .into_iter()
                .map(|row| row.id)
                .collect()
        })
        .await
        .unwrap()
    }

    /// Whether another transaction holds a lock on the row of `table` with this id (a
    /// `FOR UPDATE NOWAIT` that finds it locked; any other error fails the test).
    #[allow(dead_code)]
    pub async fn is_row_locked(&self, table: &str, id: uuid::Uuid) -> bool {
        let (pool, sql) = (
            self.pool.clone(),
            format!("SELECT id FROM {table} WHERE id = '{id}' FOR UPDATE NOWAIT"),
        );
        tokio::task::spawn_blocking(move || {
            match diesel::sql_query(sql).execute(&mut pool.get().unwrap().conn) {
                Ok(_) => false,
                Err(diesel::result::Error::DatabaseError(_, info))
                    if info.message().starts_with("could not obtain lock on row") =>
                {
                    true
                }
                Err(other) => panic!("checking the lock on {id}: {other}"),
            }
        })
        .await
        .unwrap()
    }

    /// How many transactions wrote the rows of `table` with these ids (rows a transaction wrote
    /// share its id, `xmin`).
    #[allow(dead_code)]
    pub async fn transactions_that_wrote(&self, table: &str, ids: &[String]) -> i64 {
        let ids: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
        self.count_sql(format!(
            "SELECT count(DISTINCT xmin::text) AS count FROM {table} WHERE id IN ({})",
            ids.join(",")
        ))
        .await
    }

    /// How many of the app's statements wait on a lock right now.
    #[allow(dead_code)]
    pub async fn waiting_on_locks(&self) -> i64 {
        self.count_sql(WAITING_ON_LOCKS).await
    }

    /// Returns once some statement waits on a lock; fails the test, naming `what` was expected,
    /// after 30 s rather than hang.
    #[allow(dead_code)]
    pub async fn until_waiting_on_locks(&self, what: &str) {
        self.until_counted(WAITING_ON_LOCKS, what).await;
    }

    /// Returns once `sql` (a `count`) is at least 1; fails the test, naming `what` was expected,
    /// after 30 s rather than hang.
    #[allow(dead_code)]
    pub async fn until_counted(&self, sql: &str, what: &str) {
        let counted = async {
            while self.count_sql(sql).await < 1 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), counted)
            .await
            .unwrap_or_else(|_| panic!("waited 30 s for this in vain: {what}"));
    }

    /// Holds `table` (as a slow statement or a vacuum would) until the returned [`Held`] is
    /// released: every statement that touches it waits.
    #[allow(dead_code)]
    pub async fn hold_table(&self, table: &str) -> Held {
        self.hold(format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            .await
    }

    /// Runs `lock` (e.g. a `SELECT … FOR UPDATE`) in a transaction kept open until the returned
    /// [`Held`] is released.
    #[allow(dead_code)]
    pub async fn hold(&self, lock: String) -> Held {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
        let pool = self.pool.clone();
        let holder = tokio::task::spawn_blocking(move || {
            use diesel::Connection;
            pool.get()
                .unwrap()
                .conn
                .transaction::<_, diesel::result::Error, _>(|conn| {
                    diesel::sql_query(lock).execute(conn)?;
                    let _ = locked.send(());
                    let _ = released.recv();
                    Ok(())
                })
                .unwrap();
        });
        is_locked.await.unwrap();
        Held { release, holder }
    }

    /// `DELETE path` as the holder of `token`: the status and the body (null when empty).
    #[allow(dead_code)]
    pub async fn delete(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self
            .api
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

    pub async fn post_json(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.send_json(token, reqwest::Method::POST, path, body)
            .await
    }

    /// A project made through the API; returns its id.
    pub async fn project(&self, token: &str, name: &str) -> String {
        let (status, body) = self
            .post_json(token, "/api/projects", json!({"name": name}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// A browser-like session: cookie jar, signed in through the login form.
    pub async fn browser(&self, email: &str) -> Browser {
        let browser = Browser {
            client: browser_client(),
            base: self.address.clone(),
        };
        let page = browser.get("/register").await;
        let csrf = csrf_of(&page.1);
        let response = browser
            .client
            .post(self.url("/register"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("email", email),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "browser registration of {email}");
        browser
    }
}

/// An answer's status and JSON body (null when it has none).
async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn browser_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

/// The CSRF token a page put into its forms.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("page has a csrf_token field") + marker.len();
    html[start..start + 64].to_string()
}

/// The page a created project opens at, without its one-time `?created=1` confirmation.
pub fn created_project(response: &reqwest::Response) -> String {
    let location = response.headers()["location"].to_str().unwrap();
    location
        .strip_suffix("?created=1")
        .unwrap_or_else(|| panic!("a new project opens with its confirmation: {location}"))
        .to_string()
}

pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
}

impl Browser {
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Posts a form the way a browser without JavaScript does, with the page's CSRF token.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = csrf_of(&self.get("/account").await.1);
        let mut form: Vec<(&str, &str)> = vec![("csrf_token", csrf.as_str())];
        form.extend_from_slice(fields);
        self.client
            .post(format!("{}{}", self.base, path))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// A project made through the form (no JavaScript): its URL and its default agent's id.
    #[allow(dead_code)]
    pub async fn project_with_agent(&self, name: &str) -> (String, String) {
        let response = self.post_form("/projects", &[("name", name)]).await;
        assert_eq!(response.status(), 303);
        let project_url = created_project(&response);
        let (_, page) = self.get(&project_url).await;
        let agent_id = page
            .split("href=\"/agents/")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        (project_url, agent_id)
    }

    /// Follows the answer a conversation page shows under way (its `sse-connect`) to its end,
    /// through the page's own stream; nothing to do when the page has none.
    #[allow(dead_code)]
    pub async fn finish_answer(&self, page: &str) {
        let Some(message) = page
            .split("sse-connect=\"/messages/")
            .nth(1)
            .map(|s| s.split('/').next().unwrap().to_string())
        else {
            return;
        };
        let response = self
            .client
            .get(format!("{}/messages/{message}/stream", self.base))
            .send()
            .await
            .unwrap();
        let mut events = crate::support::sse::Events::of(response);
        while let Some(event) = events.next().await {
            if event.event == "done" {
                break;
            }
        }
    }

    /// Posts a form the way htmx does: `HX-Request` and the token in `X-CSRF-Token`.
    pub async fn htmx_post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = csrf_of(&self.get("/account").await.1);
        self.client
            .post(format!("{}{}", self.base, path))
            .header("HX-Request", "true")
            .header("X-CSRF-Token", csrf)
            .form(fields)
            .send()
            .await
            .unwrap()
    }
}

/// A named OpenAI-compatible provider (Chat Completions) at `base_url`.
#[allow(dead_code)]
pub fn compatible_provider(name: &str, base_url: &str) -> confab::llm::ProviderConfig {
    confab::llm::ProviderConfig {
        name: name.into(),
        base_url: base_url.into(),
        api_key: None,
        api: confab::llm::Api::ChatCompletions,
        extra_headers: Vec::new(),
        fallback_model: None,
        files_api: false,
    }
}

/// confab exactly as it ships (e.g. on its own embedded PostgreSQL, see [`embedded_settings`])
/// until the returned sender is used (or dropped); then it stops, its database too.
pub async fn start(settings: Settings) -> (String, tokio::sync::oneshot::Sender<()>, impl Future) {
    let app = Application::build(settings).await.expect("confab starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
        "the test is done with it"
    }));
    (base, stop, running)
}

/// Settings for confab on its own embedded PostgreSQL under `data_dir`, with a generated JWT
/// secret.
pub fn embedded_settings(data_dir: &Path) -> Settings {
    let mut settings = test_settings(data_dir);
    settings.database.url = None;
    settings.auth.jwt_secret = None;
    settings
}

/// A table held by [`TestApp::hold_table`].
pub struct Held {
    release: std::sync::mpsc::Sender<()>,
    holder: tokio::task::JoinHandle<()>,
}

impl Held {
    /// Lets go of the table; returns once the holding transaction has ended.
    #[allow(dead_code)]
    pub async fn release(self) {
        self.release.send(()).unwrap();
        self.holder.await.unwrap();
    }
}

/// The app's statements waiting on a lock.
const WAITING_ON_LOCKS: &str = "SELECT count(*) AS count FROM pg_stat_activity \
     WHERE datname = current_database() AND wait_event_type = 'Lock'";
