//! Builds the application: shared state, routes and middleware, on a given TcpListener (port 0
//! in tests).

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::auth::password::make_dummy_hash;
use crate::auth::rate_limit::LoginLimiter;
use crate::auth::token::TokenKeys;
use crate::db::PgPool;
use crate::error::AppError;
use crate::generation::{Generations, router_from_settings};
use crate::settings::{Secret, Settings};
use crate::{accounts, agents, auth, chat, projects, prompts, site};

/// Everything handlers share. Built once at start-up.
pub struct AppState {
    pub pool: PgPool,
    pub settings: Settings,
    pub tokens: TokenKeys,
    pub login_limiter: LoginLimiter,
    /// Checked against when an email is unknown, so sign-in takes equally long either way.
    pub dummy_password_hash: String,
    /// Answers being generated, and the provider router they use.
    pub generations: Generations,
}

impl AppState {
    pub fn new(settings: Settings, pool: PgPool, jwt_secret: &Secret) -> AppState {
        // Metrics recorded before the recorder exists are lost, so install it first.
        crate::metrics::handle();
        AppState {
            tokens: TokenKeys::new(jwt_secret, settings.auth.token_ttl_hours),
            login_limiter: LoginLimiter::per_minute(settings.auth.login_attempts_per_minute),
            dummy_password_hash: make_dummy_hash(settings.auth.bcrypt_cost),
            generations: Generations::new(
                router_from_settings(&settings),
                pool.clone(),
                Duration::from_millis(settings.chat.flush_interval_ms),
                Duration::from_secs(settings.llm.stall_timeout_secs),
            ),
            pool,
            settings,
        }
    }
}

/// Unknown URLs: the JSON envelope under /api, an HTML page elsewhere.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    let _ = req;
    Err(AppError::NotFound)
}

#[rustfmt::skip]
fn api_routes(cfg: &mut web::ServiceConfig) {
    use actix_web::web::{delete, get, patch, post, put};
    cfg.app_data(web::JsonConfig::default().limit(1 << 20).error_handler(accounts::api::json_error))
        .app_data(web::PathConfig::default().error_handler(|_, _| AppError::NotFound.into()))
        .route("/auth/register", post().to(accounts::api::register))
        .route("/auth/login", post().to(accounts::api::login))
        .route("/auth/logout-everywhere", post().to(accounts::api::logout_everywhere))
        .route("/auth/password", post().to(accounts::api::change_password))
        .route("/users/me", get().to(accounts::api::me))
        .route("/projects", get().to(projects::api::list_projects))
        .route("/projects", post().to(projects::api::create_project))
        .route("/projects/{id}", get().to(projects::api::get_project))
        .route("/projects/{id}", patch().to(projects::api::update_project))
        .route("/projects/{id}", delete().to(projects::api::delete_project))
        .route("/projects/{id}/agents", get().to(agents::api::list_agents))
        .route("/projects/{id}/agents", post().to(agents::api::create_agent))
        .route("/projects/{id}/prompts", get().to(prompts::api::list_project_prompts))
        .route("/projects/{id}/prompts", post().to(prompts::api::create_project_prompt))
        .route("/agents/{id}", get().to(agents::api::get_agent))
        .route("/agents/{id}", patch().to(agents::api::update_agent))
        .route("/agents/{id}", delete().to(agents::api::delete_agent))
        .route("/agents/{id}/prompts", get().to(prompts::api::list_agent_prompts))
        .route("/agents/{id}/prompts", post().to(prompts::api::create_agent_prompt))
        .route("/prompts/{id}", get().to(prompts::api::get_prompt))
        .route("/prompts/{id}", put().to(prompts::api::update_prompt))
        .route("/prompts/{id}", patch().to(prompts::api::update_prompt))
        .route("/prompts/{id}", delete().to(prompts::api::delete_prompt))
        .route("/prompts/{id}/versions", get().to(prompts::api::list_prompt_versions))
        .route("/prompts/{id}/versions/{version}/restore", post().to(prompts::api::restore_prompt_version))
        .route("/chat", post().to(chat::api::chat))
        .route("/chat/agents/{id}", post().to(chat::api::stream_chat))
        .route("/agents/{id}/conversations", get().to(chat::api::list_conversations))
        .route("/conversations/{id}", get().to(chat::api::get_conversation))
        .route("/conversations/{id}", patch().to(chat::api::update_conversation))
        .route("/conversations/{id}", delete().to(chat::api::delete_conversation))
        .route("/messages/{id}/stream", get().to(chat::api::resume_stream))
        .route("/messages/{id}/stop", post().to(chat::api::stop_message))
        .default_service(web::to(not_found));
}

#[rustfmt::skip]
fn page_routes(cfg: &mut web::ServiceConfig) {
    use actix_web::web::{get, post};
    cfg.app_data(web::FormConfig::default().limit(256 * 1024))
        .app_data(web::PathConfig::default().error_handler(|_, _| AppError::NotFound.into()))
        .route("/", get().to(projects::web::index))
        .route("/login", get().to(accounts::web::login_page))
        .route("/login", post().to(accounts::web::login))
        .route("/register", get().to(accounts::web::register_page))
        .route("/register", post().to(accounts::web::register))
        .route("/logout", post().to(accounts::web::logout))
        .route("/account", get().to(accounts::web::account_page))
        .route("/account/password", post().to(accounts::web::change_password))
        .route("/account/logout-everywhere", post().to(accounts::web::logout_everywhere))
        .route("/projects", get().to(projects::web::list_projects))
        .route("/projects", post().to(projects::web::create_project))
        .route("/projects/{id}", get().to(projects::web::show_project))
        .route("/projects/{id}", post().to(projects::web::update_project))
        .route("/projects/{id}/delete", get().to(projects::web::confirm_delete_project))
        .route("/projects/{id}/delete", post().to(projects::web::delete_project))
        .route("/projects/{id}/agents", post().to(agents::web::create_agent))
        .route("/projects/{id}/prompts", post().to(prompts::web::create_project_prompt))
        .route("/agents/{id}", get().to(agents::web::show_agent))
        .route("/agents/{id}", post().to(agents::web::update_agent))
        .route("/agents/{id}/delete", get().to(agents::web::confirm_delete_agent))
        .route("/agents/{id}/delete", post().to(agents::web::delete_agent))
        .route("/agents/{id}/prompts", post().to(prompts::web::create_agent_prompt))
        .route("/prompts/{id}", get().to(prompts::web::show_prompt))
        .route("/prompts/{id}", post().to(prompts::web::update_prompt))
        .route("/prompts/{id}/toggle", post().to(prompts::web::toggle_prompt))
        .route("/prompts/{id}/move", post().to(prompts::web::move_prompt))
        .route("/prompts/{id}/delete", get().to(prompts::web::confirm_delete_prompt))
        .route("/prompts/{id}/delete", post().to(prompts::web::delete_prompt))
        .route("/prompts/{id}/versions/{version}/restore", post().to(prompts::web::restore_prompt_version))
        .route("/agents/{id}/chat", get().to(chat::web::new_chat))
        .route("/agents/{id}/chat", post().to(chat::web::send_first_message))
        .route("/conversations/{id}", get().to(chat::web::show_conversation))
        .route("/conversations/{id}", post().to(chat::web::rename_conversation))
        .route("/conversations/{id}/messages", post().to(chat::web::send_message))
        .route("/conversations/{id}/delete", get().to(chat::web::confirm_delete_conversation))
        .route("/conversations/{id}/delete", post().to(chat::web::delete_conversation))
        .route("/messages/{id}/stream", get().to(chat::web::stream_message))
        .route("/messages/{id}/stop", post().to(chat::web::stop_message))
        .route("/messages/{id}/retry", post().to(chat::web::retry_message))
        .default_service(web::to(not_found));
}

/// Starts serving on `listener`; the returned server runs until stopped or signalled.
pub fn run(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let workers = state.settings.server.workers;
    // Blocking work is database calls (bounded by the pool) and bcrypt: threads beyond that only
    // wait for a pool connection, each holding a stack.
    let blocking_threads = state.settings.database.pool_size as usize + 4;
    let grace = state.settings.server.shutdown_grace_secs;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(auth::extract::renew_session))
            .wrap(from_fn(auth::csrf::protect))
            .wrap(from_fn(site::errors::html_errors))
            .wrap(site::security::headers())
            .wrap(TracingLogger::default())
            .wrap(from_fn(crate::metrics::count_requests))
            .route("/health", web::get().to(site::health::health))
            .route("/metrics", web::get().to(crate::metrics::render))
            .route("/static/{path:.*}", web::get().to(site::assets::serve))
            .service(web::scope("/api").configure(api_routes))
            .service(web::scope("").configure(page_routes))
    })
    // confab handles SIGINT/SIGTERM itself (cli.rs), so live answers can finish first.
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
