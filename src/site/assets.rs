//! Static files compiled into the binary. URLs carry a content hash (or the vendored version in
//! the file name), so responses can be cached for a year and still change on upgrade.

use std::sync::OnceLock;

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

#[derive(RustEmbed)]
#[folder = "static/"]
struct Static;

/// Versioned URLs of the files the layout links.
pub struct AssetUrls {
    pub htmx: String,
    pub htmx_sse: String,
    pub classless_css: String,
    pub app_css: String,
    pub app_js: String,
    pub code_js: String,
    pub favicon: String,
    /// The API docs page (`/api/docs`) only.
    pub swagger_ui_js: String,
    pub swagger_ui_css: String,
    pub api_docs_js: String,
}

/// The vendored file whose name starts with `prefix`; vendored names already carry the version.
fn vendored(prefix: &str) -> String {
    vendored_ending(prefix, "")
}

/// The vendored file whose name starts with `prefix` and ends with `suffix`.
fn vendored_ending(prefix: &str, suffix: &str) -> String {
    let name = Static::iter()
        .filter(|p| p.starts_with("vendor/") && p[7..].starts_with(prefix) && p.ends_with(suffix))
        .max()
        .unwrap_or_else(|| panic!("static/vendor/{prefix}* is missing; run scripts/vendor.sh"));
    format!("/static/{name}")
}

fn hashed(path: &str) -> String {
    let file = Static::get(path).unwrap_or_else(|| panic!("static/{path} is missing"));
    let digest = Sha256::digest(&file.data);
    format!("/static/{path}?v={}", &hex::encode(digest)[..12])
}

pub fn urls() -> &'static AssetUrls {
    static URLS: OnceLock<AssetUrls> = OnceLock::new();
    URLS.get_or_init(|| AssetUrls {
        htmx: vendored("htmx-2"),
        htmx_sse: vendored("htmx-ext-sse-"),
        classless_css: vendored("pico"),
        app_css: hashed("app.css"),
        app_js: hashed("app.js"),
        code_js: hashed("code.js"),
        favicon: hashed("favicon.svg"),
        swagger_ui_js: vendored_ending("swagger-ui-", ".js"),
        swagger_ui_css: vendored_ending("swagger-ui-", ".css"),
        api_docs_js: hashed("api-docs.js"),
    })
}

pub async fn serve(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    let Some(file) = Static::get(&path) else {
        return HttpResponse::NotFound().finish();
    };
    let versioned = path.starts_with("vendor/") || req.query_string().starts_with("v=");
    let cache = if versioned {
        CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(31_536_000),
            CacheDirective::Extension("immutable".into(), None),
        ])
    } else {
        CacheControl(vec![CacheDirective::NoCache])
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..8]));
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return HttpResponse::NotModified().insert_header(cache).finish();
    }
    HttpResponse::Ok()
        .content_type(
            mime_guess::from_path(&path)
                .first_or_octet_stream()
                .essence_str(),
        )
        .insert_header(cache)
        .insert_header((header::ETAG, etag))
        .body(file.data.into_owned())
}
