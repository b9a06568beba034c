//! The API's OpenAPI 3.1 document, generated from the handlers' own annotations and types
//! (`#[utoipa::path]` on each handler, `ToSchema` on what they read and answer), served at
//! `GET /api/openapi.json`, and the page that shows it at `/api/docs` (Swagger UI, vendored).
//!
//! What every operation shares is added here once rather than on each handler: the ways to
//! sign in, the error answers any of them can give, and the `{id}` path parameters.

use std::sync::OnceLock;

use actix_web::{HttpResponse, http::header};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use crate::session::csrf::CsrfToken;
use crate::site::assets;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "confab API",
        description = "Projects, agents, versioned prompts, streamed chat and files. Sign in with \
            `POST /api/auth/login` and send the token as `Authorization: Bearer <token>`. Errors \
            are `{\"error\": {\"code\", \"message\", \"fields\"?}}` with the status that fits.",
        license(name = "MIT")
    ),
    paths(
        crate::accounts::api::register,
        crate::accounts::api::login,
        crate::accounts::api::logout,
        crate::accounts::api::logout_everywhere,
        crate::accounts::api::list_sessions,
        crate::accounts::api::end_session,
        crate::accounts::api::change_password,
        crate::accounts::api::me,
        crate::api_keys::api::create_key,
        crate::api_keys::api::list_keys,
        crate::api_keys::api::revoke_key,
        crate::projects::api::list_projects,
        crate::projects::api::create_project,
        crate::projects::api::get_project,
        crate::projects::api::update_project,
        crate::projects::api::delete_project,
        crate::projects::api::set_knowledge,
        crate::agents::api::list_agents,
        crate::agents::api::create_agent,
        crate::agents::api::get_agent,
        crate::agents::api::update_agent,
        crate::agents::api::delete_agent,
        crate::prompts::api::list_project_prompts,
        crate::prompts::api::create_project_prompt,
        crate::prompts::api::list_agent_prompts,
        crate::prompts::api::create_agent_prompt,
        crate::prompts::api::get_prompt,
        crate::prompts::api::update_prompt,
        crate::prompts::api::delete_prompt,
        crate::prompts::api::list_prompt_versions,
        crate::prompts::api::restore_prompt_version,
        crate::chat::api::chat,
        crate::chat::api::stream_chat,
        crate::chat::api::resume_stream,
        crate::chat::api::stop_message,
        crate::chat::api::list_conversations,
        crate::chat::api::recent_conversations,
        crate::chat::api::get_conversation,
        crate::chat::api::update_conversation,
        crate::chat::api::delete_conversation,
        crate::files::api::upload,
        crate::files::api::upload_with_project_field,
        crate::files::api::list,
        crate::files::api::get,
        crate::files::api::download,
        crate::files::api::delete,
        crate::compat::api::list_models,
        crate::compat::api::get_model,
        crate::compat::chat_completions::create,
        crate::compat::responses::create,
        openapi_json,
        docs_page,
    ),
    components(schemas(
        crate::chat::stream::TextEvent,
        crate::chat::stream::DoneEvent,
        crate::compat::error::Envelope,
    )),
    modifiers(&Shared),
    tags(
        (name = "accounts", description = "Sign up, sign in, sessions, password"),
        (name = "keys", description = "API keys for scripts: full or read-only; managed with a signed-in session, never with a key"),
        (name = "projects", description = "Projects hold agents, prompts and files"),
        (name = "agents", description = "A model, its settings and its prompts"),
        (name = "prompts", description = "Versioned instructions of a project or an agent"),
        (name = "chat", description = "Ask an agent; answers stream as server-sent events"),
        (name = "conversations", description = "What was said, by agent"),
        (name = "files", description = "A project's files and the knowledge its agents answer from"),
        (name = "openai", description = "Each agent as a model of an OpenAI-compatible API, for any OpenAI SDK"),
        (name = "docs", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The document, made once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// What every operation shares (see the module's comment).
struct Shared;

/// Routes that answer as another does, under the path other clients of this API use:
/// (alias, the documented route).
pub const ALIASES: &[(&str, &str)] = &[
    ("/api/users/register", "/api/auth/register"),
    ("/api/users/login", "/api/auth/login"),
];

/// The error answers any operation can give, by status.
const COMMON_ERRORS: &[(&str, &str)] = &[
    ("429", "Too many requests: wait `Retry-After` seconds"),
    ("500", "Something failed in confab (it is logged)"),
    (
        "503",
        "The database is unreachable or the service is at capacity: try again",
    ),
];

impl Modify for Shared {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or API key")
                    .description(Some(
                        "The `access_token` of `POST /api/auth/login`, or an API key (`cfk_…`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::session::SESSION_COOKIE,
                "The browser's session (HttpOnly). Requests that change data also need the \
                 `X-CSRF-Token` header or `csrf_token` field of the page.",
            ))),
        );
        let signed_in: Vec<utoipa::openapi::security::SecurityRequirement> = vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("cookie", Vec::<String>::new()),
        ];
        for (alias, of) in ALIASES {
            let Some(mut item) = openapi.paths.paths.get(*of).cloned() else {
                continue;
            };
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                operation.operation_id = operation
                    .operation_id
                    .as_ref()
                    .map(|id| format!("{id}_alias"));
                operation.description = Some(format!(
                    "The same as `{of}`, at the path other clients use."
                ));
            }
            openapi.paths.paths.insert((*alias).to_string(), item);
        }
        unique_operation_ids(openapi);
        for (path, item) in &mut openapi.paths.paths {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            // `/v1` speaks OpenAI's API, errors included, and takes a Bearer token only.
            if path.starts_with("/v1/") {
                for operation in operations.into_iter().flatten() {
                    add_openai_errors(operation);
                }
                continue;
            }
            for operation in operations.into_iter().flatten() {
                add_path_ids(path, operation);
                // `security(())` on a handler marks it public; everything else needs a sign-in.
                let public = operation.security.is_some();
                if !public {
                    operation.security = Some(signed_in.clone());
                }
                add_errors(operation, path, public);
            }
        }
    }
}

/// Operation ids are unique in a document: a handler that serves two methods (PUT and PATCH) or
/// a path and its alias gets the method after its id on the second.
fn unique_operation_ids(openapi: &mut Document) {
    let mut seen = std::collections::HashSet::new();
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let Some(id) = operation.operation_id.clone() else {
                continue;
            };
            if !seen.insert(id.clone()) {
                let unique = format!("{id}_{method}");
                seen.insert(unique.clone());
                operation.operation_id = Some(unique);
            }
        }
    }
}

/// An `{id}`-like segment the handler did not describe is a UUID.
fn add_path_ids(path: &str, operation: &mut Operation) {
    let named: Vec<&str> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect();
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    for name in named {
        if parameters
            .iter()
            .any(|p| p.name == name && p.parameter_in == ParameterIn::Path)
        {
            continue;
        }
        let id: Parameter = ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "The id (a UUID); another person's is not found (404).",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String).format(
                Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Uuid,
                )),
            )))
            .build();
        parameters.insert(0, id);
    }
}

/// An error answer of `schema`.
fn error_response(description: &str, schema: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(schema)))
                    .build(),
            )
            .build(),
    )
}

/// The error answers of the OpenAI-compatible routes, in OpenAI's shape and statuses.
fn add_openai_errors(operation: &mut Operation) {
    let errors = [
        (
            "400",
            "`invalid_request_error`, with the request field in `param`",
        ),
        (
            "401",
            "`invalid_api_key`: no valid `Authorization: Bearer` (cookies are not taken)",
        ),
        ("403", "A read-only API key asking for an answer"),
        ("404", "`model_not_found`: not one of your agents"),
        (
            "409",
            "An answer is still being written in that conversation",
        ),
        ("413", "The body is too large"),
        ("429", "Too many requests (`Retry-After`)"),
        (
            "502",
            "`api_error`: the provider failed, after retries and fallback",
        ),
        (
            "503",
            "`api_error`: no provider is configured, or the database is unreachable",
        ),
    ];
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description, "OpenAiError"));
    }
}

/// The error answers an operation can give besides its own.
fn add_errors(operation: &mut Operation, path: &str, public: bool) {
    let error = |description: &str| error_response(description, "Error");
    let mut errors: Vec<(&str, &str)> = COMMON_ERRORS.to_vec();
    if !public {
        errors.push(("401", "Not signed in, or the session or key has ended"));
        errors.push((
            "403",
            "A read-only API key, or a missing CSRF token with a cookie",
        ));
    }
    if path.contains('{') {
        errors.push(("404", "Not found, or another person's"));
    }
    if operation.request_body.is_some() || operation.parameters.iter().flatten().next().is_some() {
        errors.push(("400", "The request could not be read"));
        errors.push(("422", "Refused input: `fields` says which and why"));
    }
    if operation.request_body.is_some() {
        errors.push(("413", "The body is too large"));
    }
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error(description));
    }
}

/// `GET /api/openapi.json`: this API, described.
#[utoipa::path(get, path = "/api/openapi.json", tag = "docs", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        serde_json::to_string(document()).expect("the OpenAPI document serializes")
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json.as_str())
}

/// Swagger UI sets `style` attributes as it draws, so this page alone allows inline styles;
/// scripts stay `'self'` (its start-up is a file, not inline), and the rest of the site keeps
/// the strict policy of `site::security`.
const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; \
form-action 'self'; frame-ancestors 'none'";

/// `GET /api/docs`: the document, to read and try (Swagger UI).
#[utoipa::path(get, path = "/api/docs", tag = "docs", security(()),
    responses((status = 200, description = "The API's docs page", content_type = "text/html", body = String)))]
pub async fn docs_page(csrf: CsrfToken) -> HttpResponse {
    let urls = assets::urls();
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>confab API</title>\n<link rel=\"icon\" href=\"{favicon}\">\n\
         <link rel=\"stylesheet\" href=\"{css}\">\n</head>\n<body>\n\
         <div id=\"swagger-ui\" data-spec-url=\"/api/openapi.json\" data-csrf=\"{csrf}\"></div>\n\
         <script src=\"{js}\"></script>\n<script src=\"{start}\"></script>\n</body>\n</html>\n",
        favicon = urls.favicon,
        css = urls.swagger_ui_css,
        js = urls.swagger_ui_js,
        start = urls.api_docs_js,
        // Hex, so nothing in it needs escaping in an attribute.
        csrf = csrf.0,
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_CSP))
        .body(page)
}
