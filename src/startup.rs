//! The one start-up path, used by `main` and by the tests alike: `Application::build(settings)`
//! opens the database (the embedded PostgreSQL unless `database.url` is set), runs migrations,
//! loads the JWT secret, sweeps answers an earlier run left unfinished, and binds the listener;
//! `run_until_stopped()` serves until SIGINT/SIGTERM, lets live answers finish, and stops the
//! embedded PostgreSQL. The route table is here too: the only module that knows every handler.

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use diesel::Connection;
use tracing_actix_web::TracingLogger;

use crate::auth::token::load_or_create_secret;
use crate::db::PgPool;
use crate::db::embedded::{PgOptions, PgServer};
use crate::db::pool::{build_pool, run_migrations};
use crate::error::{AppError, MAX_REQUEST_BYTES};
use crate::settings::Settings;
use crate::state::AppState;
use crate::{
    accounts, agents, api_keys, chat, compat, files, openapi, projects, prompts, session, site,
};

/// Name of the database confab creates in its embedded PostgreSQL.
pub const EMBEDDED_DATABASE: &str = "confab";

/// confab, ready to serve: its database open, its port bound.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    /// The private PostgreSQL, when confab runs its own; stopped after the server.
    embedded: Option<Supervised>,
}

/// The embedded PostgreSQL under watch: if it dies (a crash, an OOM kill, `kill -9`), it is
/// started again — with crash recovery, with backoff, a log line per attempt — while requests
/// answer 503 and live answers keep their text in memory until it is back.
struct Supervised {
    server: Arc<Mutex<PgServer>>,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Supervised {
    /// `options`: how it was started, and is started again. `pool`'s connections are distrusted
    /// whenever the server is found dead, so none is used again unchecked.
    fn watch(server: PgServer, options: PgOptions, pool: PgPool) -> Supervised {
        let server = Arc::new(Mutex::new(server));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = std::thread::Builder::new()
            .name("pg-supervisor".into())
            .spawn({
                let (server, stop) = (server.clone(), stop.clone());
                move || supervise(&server, &options, &stop, &pool)
            })
            .ok();
        Supervised {
            server,
            stop,
            watcher,
        }
    }

    /// Stops watching, then stops the server.
    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        let server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        tracing::info!("stopping embedded PostgreSQL");
        if let Err(error) = server.stop() {
            tracing::warn!(%error, "embedded PostgreSQL did not stop cleanly");
        }
    }
}

/// Checks twice a second that the embedded PostgreSQL runs; restarts it when it does not.
fn supervise(server: &Mutex<PgServer>, options: &PgOptions, stop: &AtomicBool, pool: &PgPool) {
    const CHECK_EVERY: Duration = Duration::from_millis(500);
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0u32;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(CHECK_EVERY);
        let (running, data_dir) = {
            let server = server.lock().unwrap_or_else(PoisonError::into_inner);
            (server.is_running(), server.data_dir().to_path_buf())
        };
        if running || stop.load(Ordering::Relaxed) {
            continue;
        }
        pool.distrust_connections();
        attempt += 1;
        tracing::error!(
            attempt,
            "embedded PostgreSQL is not running; starting it again"
        );
        match PgServer::start(&data_dir, options) {
            Ok(restarted) => {
                pool.distrust_connections();
                tracing::info!(attempt, "embedded PostgreSQL is back");
                *server.lock().unwrap_or_else(PoisonError::into_inner) = restarted;
                backoff = Duration::from_secs(1);
                attempt = 0;
            }
            Err(error) => {
                // Its message carries a tail of the server's log; the log file has the rest.
                let error = crate::error::bounded(&error.to_string());
                tracing::error!(attempt, %error, retry_in_secs = backoff.as_secs(), "embedded PostgreSQL did not start");
                let until = std::time::Instant::now() + backoff;
                while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(CHECK_EVERY);
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, String> {
        raise_open_files_limit();
        // Before anything is started: a wrong `llm.ca_file` stops here, naming it.
        let clients = crate::generation::clients_from_settings(&settings.llm)?;
        let (url, embedded) = open_database(&settings)?;
        let restart_with = embedded_options(&settings);
        match Self::build_on(settings, &url, clients).await {
            Ok((port, server, state)) => Ok(Application {
                port,
                server,
                embedded: embedded
                    .map(|pg| Supervised::watch(pg, restart_with, state.pool.clone())),
                state,
            }),
            Err(error) => {
                if let Some(server) = embedded {
                    let _ = server.stop();
                }
                Err(error)
            }
        }
    }

    async fn build_on(
        settings: Settings,
        url: &str,
        clients: crate::llm::Clients,
    ) -> Result<(u16, Server, web::Data<AppState>), String> {
        if settings.database.migrate {
            let ran = apply_migrations(url)?;
            if ran > 0 {
                tracing::info!(count = ran, "applied database migrations");
            }
        }
        let secret = load_or_create_secret(settings.auth.jwt_secret.as_ref(), &settings.data_dir)
            .map_err(|e| {
            format!(
                "cannot read or create the JWT secret in {}: {e}",
                settings.data_dir.display()
            )
        })?;
        let pool = build_pool(
            url,
            settings.database.pool_size,
            Duration::from_secs(settings.database.connect_timeout_secs),
            Duration::from_secs(settings.database.query_timeout_secs),
            settings.database.warm_connections,
            Duration::from_secs(settings.database.idle_timeout_secs),
            Duration::from_millis(settings.database.wait_before_opening_ms),
        );
        // Warm connections ready before the start-up's own queries, which would each open
        // another while none is.
        pool.open_warm().await;
        tokio::spawn(pool.clone().keep_warm());
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = bind_listener(&address)?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let state = web::Data::new(AppState::new(settings, pool, &secret, clients));
        match accounts::service::rekey_stored_emails(&state.pool).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "gave stored email addresses their comparison keys"),
            Err(error) => tracing::warn!(%error, "could not check stored email addresses"),
        }
        match crate::generation::mark_interrupted(&state.pool).await {
            Ok(0) => {}
            Ok(count) => tracing::warn!(
                count,
                "marked answers left streaming by an earlier run as interrupted"
            ),
            Err(error) => tracing::warn!(%error, "could not check for interrupted answers"),
        }
        // Files left being indexed at a provider by an earlier run are picked up again.
        state.generations.spawn(files::knowledge::poll_forever(
            state.pool.clone(),
            state.generations.shared_router(),
            Arc::clone(&state.indexing),
        ));
        // And files left waiting for a provider that did not answer are tried again.
        files::knowledge::resume(&state).await;
        let server = serve(listener, state.clone()).map_err(|e| e.to_string())?;
        tracing::info!(
            "confab listening on http://{}:{port}",
            state.settings.server.host
        );
        Ok((port, server, state))
    }

    /// The bound port (the real one when the settings asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What handlers share; tests look at it to check what the app did.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGINT or SIGTERM (what `docker stop` and systemd send).
    pub async fn run_until_stopped(self) -> Result<(), String> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` resolves (with the reason to log), then shuts down in order: live
    /// answers get the grace period (pages keep streaming meanwhile), whatever is left is saved
    /// with its partial text, the server stops, then the embedded PostgreSQL.
    pub async fn run_until(self, stop: impl Future<Output = &'static str>) -> Result<(), String> {
        let Application {
            server,
            state,
            embedded,
            ..
        } = self;
        let grace = Duration::from_secs(state.settings.server.shutdown_grace_secs);
        let handle = server.handle();
        let mut serving = tokio::spawn(server);
        let result = tokio::select! {
            result = &mut serving => Some(result),
            reason = stop => {
                tracing::info!(reason, "shutting down; live answers get {} s to finish", grace.as_secs());
                None
            }
        };
        let result = match result {
            Some(result) => result,
            None => {
                state.generations.shutdown(grace).await;
                handle.stop(true).await;
                serving.await
            }
        };
        // The pool and the answer generator go before the database they talk to.
        drop(state);
        if let Some(supervised) = embedded {
            supervised.stop();
        }
        result
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Live streams confab is built and measured to hold at once (issue 12's aim). An open-files
/// limit with less room than that is worth a warning at start-up.
const LIVE_STREAMS_TO_HOLD: u64 = 5_000;
/// A live stream holds two open files: the client's connection and the provider's.
const FILES_PER_LIVE_STREAM: u64 = 2;
/// Open files that are not streams: the pool's connections, the listener, the log, uploads,
/// a PDF reader's pipes, the runtime's own.
const FILES_BESIDE_STREAMS: u64 = 256;

/// Every connection and every live stream is an open file: the usual soft limit of 1,024 is
/// reached by a few hundred streams, after which even `/health` cannot be accepted. Raise the
/// soft limit as far as the hard limit (and the kernel's `fs.nr_open`) allows, say so once, and
/// warn when even that leaves too little room.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let wanted = open_files_to_ask_for(soft, hard, kernel_open_files_max());
    let limit = if wanted > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => wanted,
            Err(error) => {
                tracing::warn!(soft, hard, %error, "could not raise the open files limit");
                soft
            }
        }
    } else {
        soft
    };
    let room = live_streams_room(limit);
    tracing::info!(
        before = soft,
        after = limit,
        hard,
        room_for_live_streams = room,
        "open files limit"
    );
    if room < LIVE_STREAMS_TO_HOLD {
        tracing::warn!(
            limit,
            hard,
            "the open files limit leaves room for about {room} live streams (two files each); \
             raise the hard limit (`ulimit -Hn`, systemd's LimitNOFILE=, docker's --ulimit \
             nofile=) for {LIVE_STREAMS_TO_HOLD}"
        );
    }
}

/// The soft limit to ask for: the hard limit, but no more than the kernel lets one process open
/// (an unlimited hard limit is not a number `setrlimit` takes for open files), and never lower
/// than what it is already.
fn open_files_to_ask_for(soft: u64, hard: u64, kernel_max: Option<u64>) -> u64 {
    let ceiling = kernel_max.map_or(hard, |max| hard.min(max));
    soft.max(ceiling)
}

/// Linux's `fs.nr_open`: the most open files any process may have.
fn kernel_open_files_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// About how many live streams fit in `limit` open files.
fn live_streams_room(limit: u64) -> u64 {
    limit.saturating_sub(FILES_BESIDE_STREAMS) / FILES_PER_LIVE_STREAM
}

/// The listener on `address`, with an accept queue deep enough for a burst of new connections.
/// std listens with a backlog of 128; a connection that finds the queue full waits a second for
/// its SYN to be sent again. Listening again on the bound socket deepens the queue to
/// `SOMAXCONN` (4,096 on Linux; the kernel caps it at `net.core.somaxconn`). actix's own
/// `HttpServer::backlog` applies only to addresses it binds itself; confab binds first, so a
/// busy port is reported before anything else starts and port 0 gives its real port.
fn bind_listener(address: &str) -> Result<TcpListener, String> {
    use nix::sys::socket::{Backlog, listen};
    let cannot = |e: &dyn std::fmt::Display| format!("cannot listen on {address}: {e}");
    let listener = TcpListener::bind(address).map_err(|e| cannot(&e))?;
    listen(&listener, Backlog::MAXCONN).map_err(|e| cannot(&e))?;
    Ok(listener)
}

/// Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

/// The database URL `serve` would use, without starting anything (`confab db-url`).
pub fn database_url(settings: &Settings) -> String {
    match &settings.database.url {
        Some(url) => url.expose().to_string(),
        None => PgServer::url_for(&settings.data_dir, EMBEDDED_DATABASE),
    }
}

/// Connections the embedded PostgreSQL takes beyond the pool's: migrations at start,
/// `confab backup`'s `pg_dump`, a psql to look around, a pool connection being replaced.
const EMBEDDED_SPARE_CONNECTIONS: u32 = 10;

/// The embedded PostgreSQL sized for this confab: its pool and a few spare connections.
fn embedded_options(settings: &Settings) -> PgOptions {
    PgOptions {
        fast_unsafe: false,
        max_connections: Some(settings.database.pool_size + EMBEDDED_SPARE_CONNECTIONS),
    }
}

/// The configured database, or the embedded one, started (and its database created) if needed.
pub fn open_database(settings: &Settings) -> Result<(String, Option<PgServer>), String> {
    if let Some(url) = &settings.database.url {
        return Ok((url.expose().to_string(), None));
    }
    let started = std::time::Instant::now();
    let server = PgServer::start(&settings.data_dir, &embedded_options(settings))
        .map_err(|e| e.to_string())?;
    server
        .ensure_database(EMBEDDED_DATABASE)
        .map_err(|e| e.to_string())?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, data_dir = %settings.data_dir.display(), "embedded PostgreSQL is up");
    Ok((server.url(EMBEDDED_DATABASE), Some(server)))
}

/// Runs pending migrations; returns how many ran.
pub fn apply_migrations(url: &str) -> Result<usize, String> {
    let mut conn = diesel::PgConnection::establish(url)
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    run_migrations(&mut conn).map_err(|e| format!("migrations failed: {e}"))
}

/// Unknown URLs: the JSON envelope under /api, an HTML page elsewhere.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    let _ = req;
    Err(AppError::NotFound)
}

// One resource per path, with a route per method: every pattern with a `{}` is a regular
// expression compiled in each HTTP worker (about 13 KB each; a resource per route compiled 25 more
// per worker), and a path asked with a method it does not take answers 405 with `Allow`.
#[rustfmt::skip]
fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(MAX_REQUEST_BYTES).error_handler(AppError::from_json_payload))
        .app_data(web::PathConfig::default().error_handler(|_, _| AppError::NotFound.into()))
        .service(web::resource("/openapi.json").get(openapi::openapi_json))
        .service(web::resource("/docs").get(openapi::docs_page))
        .service(web::resource("/auth/register").post(accounts::api::register))
        .service(web::resource("/auth/login").post(accounts::api::login))
        // The paths other clients of this API know (openapi::ALIASES documents them).
        .service(web::resource("/users/register").post(accounts::api::register))
        .service(web::resource("/users/login").post(accounts::api::login))
        .service(web::resource("/auth/logout").post(accounts::api::logout))
        .service(web::resource("/auth/logout-everywhere").post(accounts::api::logout_everywhere))
        .service(web::resource("/auth/sessions").get(accounts::api::list_sessions))
        .service(web::resource("/auth/sessions/{id}").delete(accounts::api::end_session))
        .service(web::resource("/auth/password").post(accounts::api::change_password))
        .service(web::resource("/users/me").get(accounts::api::me))
        .service(web::resource("/keys")
            .get(api_keys::api::list_keys)
            .post(api_keys::api::create_key))
        .service(web::resource("/keys/{id}").delete(api_keys::api::revoke_key))
        .service(web::resource("/projects")
            .get(projects::api::list_projects)
            .post(projects::api::create_project))
        .service(web::resource("/projects/{id}")
            .get(projects::api::get_project)
            .patch(projects::api::update_project)
            .delete(projects::api::delete_project))
        .service(web::resource("/projects/{id}/agents")
            .get(agents::api::list_agents)
            .post(agents::api::create_agent))
        .service(web::resource("/projects/{id}/prompts")
            .get(prompts::api::list_project_prompts)
            .post(prompts::api::create_project_prompt))
        .service(web::resource("/agents/{id}")
            .get(agents::api::get_agent)
            .patch(agents::api::update_agent)
            .delete(agents::api::delete_agent))
        .service(web::resource("/agents/{id}/prompts")
            .get(prompts::api::list_agent_prompts)
            .post(prompts::api::create_agent_prompt))
        .service(web::resource("/prompts/{id}")
            .get(prompts::api::get_prompt)
            .put(prompts::api::update_prompt)
            .patch(prompts::api::update_prompt)
            .delete(prompts::api::delete_prompt))
        .service(web::resource("/prompts/{id}/versions").get(prompts::api::list_prompt_versions))
        .service(web::resource("/prompts/{id}/versions/{version}/restore")
            .post(prompts::api::restore_prompt_version))
        .service(web::resource("/chat").post(chat::api::chat))
        .service(web::resource("/chat/agents/{id}").post(chat::api::stream_chat))
        .service(web::resource("/agents/{id}/conversations").get(chat::api::list_conversations))
        .service(web::resource("/conversations").get(chat::api::recent_conversations))
        .service(web::resource("/projects/{id}/files")
            .post(files::api::upload)
            .get(files::api::list))
        .service(web::resource("/projects/{id}/knowledge").put(projects::api::set_knowledge))
        .service(web::resource("/files/upload").post(files::api::upload_with_project_field))
        .service(web::resource("/files/{id}").get(files::api::get).delete(files::api::delete))
        .service(web::resource("/files/{id}/content").get(files::api::download))
        .service(web::resource("/conversations/{id}")
            .get(chat::api::get_conversation)
            .patch(chat::api::update_conversation)
            .delete(chat::api::delete_conversation))
        .service(web::resource("/messages/{id}/stream").get(chat::api::resume_stream))
        .service(web::resource("/messages/{id}/stop").post(chat::api::stop_message))
        .default_service(web::to(not_found));
}

/// The OpenAI-compatible API (under `/v1`): OpenAI's paths, bodies and error shapes.
#[rustfmt::skip]
fn openai_routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(MAX_REQUEST_BYTES).error_handler(compat::error::from_json_payload))
        .service(web::resource("/models").get(compat::api::list_models))
        // A readable model id holds a `/` (`project/agent`).
        .service(web::resource("/models/{id:.+}").get(compat::api::get_model))
        .service(web::resource("/chat/completions").post(compat::chat_completions::create))
        .service(web::resource("/responses").post(compat::responses::create))
        .default_service(web::to(compat::api::not_found));
}

#[rustfmt::skip]
fn page_routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::FormConfig::default().limit(MAX_REQUEST_BYTES).error_handler(AppError::from_form_payload))
        .app_data(web::PathConfig::default().error_handler(|_, _| AppError::NotFound.into()))
        .service(web::resource("/").get(projects::web::index))
        .service(web::resource("/login").get(accounts::web::login_page).post(accounts::web::login))
        .service(web::resource("/register")
            .get(accounts::web::register_page)
            .post(accounts::web::register))
        .service(web::resource("/logout").post(accounts::web::logout))
        .service(web::resource("/account").get(accounts::web::account_page))
        .service(web::resource("/account/password").post(accounts::web::change_password))
        .service(web::resource("/account/logout-everywhere").post(accounts::web::logout_everywhere))
        .service(web::resource("/account/sessions/{id}/end").post(accounts::web::end_session))
        .service(web::resource("/account/keys").post(accounts::web::create_key))
        .service(web::resource("/account/keys/{id}/revoke").post(accounts::web::revoke_key))
        .service(web::resource("/projects")
            .get(projects::web::list_projects)
            .post(projects::web::create_project))
        .service(web::resource("/projects/{id}")
            .get(projects::web::show_project)
            .post(projects::web::update_project))
        .service(web::resource("/projects/{id}/delete")
            .get(projects::web::confirm_delete_project)
            .post(projects::web::delete_project))
        .service(web::resource("/projects/{id}/agents").post(projects::web::create_agent))
        .service(web::resource("/projects/{id}/prompts").post(projects::web::create_project_prompt))
        .service(web::resource("/agents/{id}")
            .get(agents::web::show_agent)
            .post(agents::web::update_agent))
        .service(web::resource("/agents/{id}/delete")
            .get(agents::web::confirm_delete_agent)
            .post(agents::web::delete_agent))
        .service(web::resource("/agents/{id}/prompts").post(agents::web::create_agent_prompt))
        .service(web::resource("/prompts/{id}")
            .get(prompts::web::show_prompt)
            .post(prompts::web::update_prompt))
        .service(web::resource("/prompts/{id}/toggle").post(prompts::web::toggle_prompt))
        .service(web::resource("/prompts/{id}/move").post(prompts::web::move_prompt))
        .service(web::resource("/prompts/{id}/delete")
            .get(prompts::web::confirm_delete_prompt)
            .post(prompts::web::delete_prompt))
        .service(web::resource("/prompts/{id}/versions/{version}/restore")
            .post(prompts::web::restore_prompt_version))
        .service(web::resource("/chat").get(chat::web::home).post(chat::web::send_from_home))
        .service(web::resource("/chat/conversations").get(chat::web::search_conversations))
        .service(web::resource("/projects/{id}/files").post(projects::web::upload_files))
        .service(web::resource("/projects/{id}/knowledge").post(projects::web::set_knowledge))
        .service(web::resource("/files/{id}/download").get(files::api::download))
        .service(web::resource("/files/{id}/delete")
            .get(files::web::confirm_delete)
            .post(files::web::delete))
        .service(web::resource("/agents/{id}/chat")
            .get(chat::web::new_chat)
            .post(chat::web::send_first_message))
        .service(web::resource("/conversations/{id}")
            .get(chat::web::show_conversation)
            .post(chat::web::rename_conversation))
        .service(web::resource("/conversations/{id}/messages").post(chat::web::send_message))
        .service(web::resource("/conversations/{id}/delete")
            .get(chat::web::confirm_delete_conversation)
            .post(chat::web::delete_conversation))
        .service(web::resource("/messages/{id}/stream").get(chat::web::stream_message))
        .service(web::resource("/messages/{id}/stop").post(chat::web::stop_message))
        .service(web::resource("/messages/{id}/retry").post(chat::web::retry_message))
        .default_service(web::to(not_found));
}

/// The HTTP server on `listener`, with every route and middleware.
fn serve(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let workers = state.settings.server.workers;
    // Blocking work is database calls (bounded by the pool) and bcrypt: threads beyond that only
    // wait for a pool connection, each holding a stack.
    let blocking_threads = state.settings.database.pool_size as usize + 4;
    let grace = state.settings.server.shutdown_grace_secs;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            // Raw bodies (sign-in's JSON-or-form, the CSRF check's look at a form) share the limit.
            .app_data(web::PayloadConfig::new(MAX_REQUEST_BYTES))
            .wrap(from_fn(site::security::head_as_get))
            .wrap(from_fn(site::errors::html_errors))
            .wrap(site::security::headers())
            .wrap(TracingLogger::<session::client::RequestSpan>::new())
            .wrap(from_fn(crate::metrics::count_requests))
            .wrap(from_fn(site::security::refuse_odd_requests))
            // Resources answer 405 to other methods; no session or CSRF check applies to them.
            .service(web::resource("/health").get(site::health::health))
            .service(web::resource("/metrics").get(site::health::metrics))
            .service(web::resource("/static/{path:.*}").get(site::assets::serve))
            .service(
                web::scope("/api")
                    .wrap(from_fn(session::extract::renew_session))
                    .wrap(from_fn(session::csrf::protect))
                    // A request over its limit costs nothing more (`/v1` is limited the same way).
                    .wrap(from_fn(session::limit::limit_requests))
                    // Outermost: a preflight is answered before anything asks who is calling.
                    .wrap(site::cors::for_api(&state.settings.server.cors_origins))
                    .configure(api_routes),
            )
            // Bearer tokens only (no cookie, so no CSRF check), errors in OpenAI's shape.
            .service(
                web::scope("/v1")
                    .wrap(from_fn(session::limit::limit_requests))
                    .wrap(from_fn(compat::error::openai_errors))
                    .wrap(site::cors::for_api(&state.settings.server.cors_origins))
                    .configure(openai_routes),
            )
            .service(
                web::scope("")
                    .wrap(from_fn(session::extract::renew_session))
                    .wrap(from_fn(session::csrf::protect))
                    .configure(page_routes),
            )
    })
    // confab handles SIGINT/SIGTERM itself (`run_until_stopped`), so live answers can finish first.
    .disable_signals()
    // Streamed events are small writes; without TCP_NODELAY the first one after the headers can
    // wait ~40 ms for the client's delayed ACK (Nagle).
    .on_connect(|connection, _| {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .worker_max_blocking_threads(blocking_threads)
    .shutdown_timeout(grace)
    .client_request_timeout(Duration::from_secs(30))
    .listen(listener)?;
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    Ok(server.run())
}

#[cfg(test)]
mod tests {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};

    use super::{LIVE_STREAMS_TO_HOLD, live_streams_room, open_files_to_ask_for};

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, 1024.min(hard), hard).unwrap();
        super::raise_open_files_limit();
        let expected = open_files_to_ask_for(1024.min(hard), hard, super::kernel_open_files_max());
        assert_eq!(
            getrlimit(Resource::RLIMIT_NOFILE).unwrap(),
            (expected, hard)
        );
    }

    #[test]
    fn the_limit_asked_for_is_the_hard_one_within_what_the_kernel_allows() {
        // The usual case: a systemd or docker hard limit far above the soft 1,024.
        assert_eq!(
            open_files_to_ask_for(1024, 524_288, Some(1_048_576)),
            524_288
        );
        // An unlimited hard limit: as far as the kernel goes (setrlimit refuses more).
        assert_eq!(
            open_files_to_ask_for(1024, u64::MAX, Some(1_048_576)),
            1_048_576
        );
        // Not Linux: the hard limit.
        assert_eq!(open_files_to_ask_for(256, 10_240, None), 10_240);
        // Never lowered.
        assert_eq!(
            open_files_to_ask_for(65_536, 65_536, Some(1_048_576)),
            65_536
        );
    }

    #[test]
    fn a_hard_limit_too_low_for_the_streams_confab_holds_is_told_apart() {
        // The warning's test: the common defaults fall on either side of it.
        assert!(live_streams_room(1024) < LIVE_STREAMS_TO_HOLD);
        assert!(live_streams_room(4096) < LIVE_STREAMS_TO_HOLD);
        assert!(live_streams_room(524_288) >= LIVE_STREAMS_TO_HOLD);
        assert_eq!(live_streams_room(20_000), 9_872);
        assert_eq!(live_streams_room(100), 0);
    }
}
