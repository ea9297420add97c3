//! Turning core outcomes into HTTP responses: OAuth JSON errors (RFC 6749 §5.2), bearer
//! challenges (RFC 6750 §3), pages with their security headers, 303 redirects.

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_proto::{ErrorCode, OAuthError};

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1) on a JSON body.
pub fn no_store_json(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(axum::body::Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    // Room for these three, the request id, `nosniff` and CORS `Vary` without regrowing.
    h.reserve(8);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// An RFC 6749 §5.2 error from the token endpoint. `invalid_client` is 401 with a Basic
/// challenge (§5.2: "MUST include the WWW-Authenticate response header field").
pub fn oauth_error(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = no_store_json(status, e.to_json());
    if e.code == ErrorCode::InvalidClient {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Basic realm="portcullis""#));
    }
    r
}

/// An RFC 6750 §3 bearer challenge. `None` means no credentials were sent: the challenge then
/// carries no error code (§3.1).
pub fn bearer_error(e: Option<&OAuthError>) -> Response {
    let mut challenge = String::from(r#"Bearer realm="portcullis""#);
    let (status, body) = match e {
        None => (StatusCode::UNAUTHORIZED, String::new()),
        Some(e) => {
            challenge.push_str(&format!(r#", error="{}""#, e.code));
            if let Some(d) = &e.description {
                challenge.push_str(&format!(r#", error_description="{}""#, quote_safe(d)));
            }
            (StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED), e.to_json())
        }
    };
    let mut r = no_store_json(status, body);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// RFC 6750 §3: error_description uses %x20-21 / %x23-5B / %x5D-7E only.
pub(crate) fn quote_safe(s: &str) -> String {
    s.chars().filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)).collect()
}

/// 303 See Other: the answer to every form post and every redirect we issue.
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Headers every HTML page carries: no framing (clickjacking), no scripts, no caching, no
/// referrer leaking the query string.
pub fn page_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// Renders a page template with the page headers.
pub fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (status, html).into_response();
            page_headers(r.headers_mut());
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub code: Option<&'a str>,
}

/// Our error page, for errors that must not be redirected.
pub fn error_page(status: StatusCode, title: &str, message: &str, code: Option<&str>) -> Response {
    page(status, &ErrorPage { title, message, code })
}

/// An authorization error that cannot be redirected, as a page.
pub fn oauth_error_page(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let msg = e.description.as_deref().unwrap_or("The request is invalid.");
    error_page(status, "This sign-in request cannot be completed", msg, Some(e.code.as_str()))
}
