//! Site-wide HTTP plumbing: page chrome, static assets, security headers, error pages, health.
pub mod assets;
pub mod cors;
pub mod errors;
pub mod form;
pub mod health;
pub mod security;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;

pub use errors::flash_into;
pub use form::{FormErrors, PageForm, Refusal, refused, reply};

/// What every page's layout needs: who is signed in, the CSRF token, asset URLs.
pub struct Chrome {
    pub user_email: Option<String>,
    pub csrf: String,
    pub assets: &'static assets::AssetUrls,
    /// A confirmation shown at the top of the page ("Project created."); made by the server,
    /// never taken from the request.
    pub notice: Option<String>,
}

impl Chrome {
    pub fn new(user: Option<&CurrentUser>, csrf: &CsrfToken) -> Chrome {
        Chrome {
            user_email: user.map(|u| u.email.clone()),
            csrf: csrf.0.clone(),
            assets: assets::urls(),
            notice: None,
        }
    }

    pub fn with_notice(self, notice: Option<String>) -> Chrome {
        Chrome { notice, ..self }
    }
}

/// htmx sets `HX-Request` on its requests; those get a fragment instead of a page.
pub fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("hx-request")
}

/// After a successful form post: a 303 for plain forms, `HX-Redirect` for htmx.
pub fn see_other(req: &HttpRequest, location: &str) -> HttpResponse {
    if is_htmx(req) {
        HttpResponse::Ok()
            .insert_header(("HX-Redirect", location))
            .finish()
    } else {
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .finish()
    }
}

/// The no-JavaScript confirmation step before a delete (htmx asks with `hx-confirm` instead).
#[derive(askama::Template)]
#[template(path = "pages/confirm_delete.html")]
pub struct ConfirmDeletePage {
    pub chrome: Chrome,
    pub name: String,
    pub warning: &'static str,
    pub action: String,
    pub back: String,
}

/// An HTML response with the given status (422 for a form with errors, 200 otherwise).
pub fn html(
    status: actix_web::http::StatusCode,
    page: &impl askama::Template,
) -> crate::error::AppResult<HttpResponse> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}
