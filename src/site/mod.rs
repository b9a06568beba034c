//! Site-wide HTTP plumbing: page chrome, static assets, security headers, error pages, health.
pub mod assets;
pub mod errors;
pub mod health;
pub mod security;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use crate::error::FieldError;
use crate::session::CurrentUser;
use crate::session::csrf::CsrfToken;

/// What every page's layout needs: who is signed in, the CSRF token, asset URLs.
pub struct Chrome {
    pub user_email: Option<String>,
    pub csrf: String,
    pub assets: &'static assets::AssetUrls,
}

impl Chrome {
    pub fn new(user: Option<&CurrentUser>, csrf: &CsrfToken) -> Chrome {
        Chrome {
            user_email: user.map(|u| u.email.clone()),
            csrf: csrf.0.clone(),
            assets: assets::urls(),
        }
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

/// Validation messages keyed by field, for showing next to inputs.
#[derive(Default, Debug, Clone)]
pub struct FormErrors(pub Vec<FieldError>);

impl FormErrors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// A message not tied to any field (shown at the top of the form).
    pub fn general(&self) -> Option<&str> {
        self.get("form")
    }
}

impl From<Vec<FieldError>> for FormErrors {
    fn from(errors: Vec<FieldError>) -> FormErrors {
        FormErrors(errors)
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

/// What a form handler of one section answers: a response ready to send, or — without
/// JavaScript, on invalid input — the section holding the user's input and messages, for the
/// page that owns it to show in place of its fresh one (with 422).
pub enum FormReply<S> {
    Done(HttpResponse),
    Invalid(S),
}

/// Splits a service result into "show these messages in the form" and "fail the request".
pub fn validation_or<T>(
    result: crate::error::AppResult<T>,
) -> crate::error::AppResult<Result<T, FormErrors>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(crate::error::AppError::Validation(errors)) => Ok(Err(errors.into())),
        Err(other) => Err(other),
    }
}
