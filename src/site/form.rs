//! How every HTML form answers, with htmx or without JavaScript, in one place:
//!
//! - [`PageForm`] reads the posted fields into the same input type the JSON API uses (the CSRF
//!   field is the middleware's, not the handler's);
//! - [`refused`] is the one adapter from a service's error to messages in the form;
//! - [`reply`] picks the response: a redirect after a plain form succeeds, the section htmx
//!   swaps in, or — when input was refused without JavaScript — the section inside its full
//!   page, with 422 (or the refusal's own status) either way.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Visitor};

use crate::error::{AppError, AppResult, FieldError, bounded};
use crate::session::csrf::CSRF_FIELD;
use crate::site::{html, is_htmx, see_other};

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

/// A form's fields as `T`, the same input type the JSON API reads: a urlencoded body read like
/// `web::Form`. Fields `T` does not know are left out — the CSRF token (the middleware's), and
/// whatever else a browser or an extension adds — so `T` can refuse unknown fields in JSON.
pub struct PageForm<T>(pub T);

/// The field names of a struct `T` deserializes from, as serde's derive declares them; `None`
/// for anything else (e.g. a struct with flattened fields, which reads a map).
fn field_names<'de, T: Deserialize<'de>>() -> Option<&'static [&'static str]> {
    struct Recorder(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Recorder {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("field names recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut recorder = Recorder(None);
    let _ = T::deserialize(&mut recorder);
    recorder.0
}

impl<T: DeserializeOwned + 'static> FromRequest for PageForm<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<PageForm<T>, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fields = web::Form::<Vec<(String, String)>>::from_request(req, payload);
        Box::pin(async move {
            let mut fields = fields.await?.into_inner();
            let known = field_names::<T>();
            fields.retain(|(name, _)| {
                name != CSRF_FIELD && known.is_none_or(|known| known.contains(&name.as_str()))
            });
            // Read again through serde_html_form, which knows optional and numeric fields, and
            // reads a repeated field (checkboxes of one name) into a `Vec`.
            let encoded = serde_html_form::to_string(&fields).map_err(AppError::internal)?;
            serde_html_form::from_str(&encoded)
                .map(PageForm)
                .map_err(|e| {
                    AppError::BadRequest(format!(
                        "unexpected form fields: {}",
                        bounded(&e.to_string())
                    ))
                    .into()
                })
        })
    }
}

/// What a form shows when its input was refused: the status to answer with and the messages.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub errors: FormErrors,
}

/// The one adapter from a service's error to messages in a form. A validation error's messages
/// go next to their fields; a refusal of the request itself (a wrong password, a taken email,
/// closed sign-up, too many attempts) goes on `general_field`; anything else is not about the
/// input and fails the request (an error page).
pub fn refused<T>(
    result: AppResult<T>,
    general_field: &'static str,
) -> AppResult<Result<T, Refusal>> {
    let error = match result {
        Ok(value) => return Ok(Ok(value)),
        Err(error) => error,
    };
    let status = error.status_code();
    let errors = match error {
        AppError::Validation(errors) => errors,
        AppError::Unauthorized(message)
        | AppError::Conflict(message)
        | AppError::Forbidden(message) => vec![FieldError {
            field: general_field,
            message,
        }],
        e @ AppError::RateLimited { .. } => vec![FieldError {
            field: "form",
            message: e.to_string(),
        }],
        other => return Err(other),
    };
    Ok(Err(Refusal {
        status,
        errors: errors.into(),
    }))
}

/// The one way a form of a page section answers:
/// - accepted without JavaScript: a 303 to `redirect(value)`, or the page when that is `None`;
/// - accepted with htmx: the section, 200;
/// - refused: the section with the person's input and messages — alone for htmx, inside its
///   full page without JavaScript — with the refusal's status (422 for invalid input).
///
/// `section` builds the section from the outcome; `page` puts a section into its full page.
pub async fn reply<T, S: askama::Template>(
    req: &HttpRequest,
    result: Result<T, Refusal>,
    redirect: impl FnOnce(&T) -> Option<String>,
    section: impl AsyncFnOnce(Result<T, FormErrors>) -> AppResult<S>,
    page: impl AsyncFnOnce(S, StatusCode) -> AppResult<HttpResponse>,
) -> AppResult<HttpResponse> {
    let (status, outcome) = match result {
        Ok(value) => {
            if !is_htmx(req)
                && let Some(location) = redirect(&value)
            {
                return Ok(see_other(req, &location));
            }
            (StatusCode::OK, Ok(value))
        }
        Err(refusal) => (refusal.status, Err(refusal.errors)),
    };
    let section = section(outcome).await?;
    if is_htmx(req) {
        html(status, &section)
    } else {
        page(section, status).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        name: Option<String>,
        count: Option<u32>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Flattened {
        #[serde(flatten)]
        strict: Strict,
    }

    #[test]
    fn knows_the_fields_a_struct_reads() {
        assert_eq!(field_names::<Strict>(), Some(&["name", "count"][..]));
        assert_eq!(field_names::<Flattened>(), None);
        assert_eq!(field_names::<Vec<String>>(), None);
    }
}
