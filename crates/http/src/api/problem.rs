//! RFC 9457 problem details: every admin API error is `application/problem+json` with `type`,
//! `title`, `status` and `detail`, plus a stable machine-readable `code`. Authentication failures
//! also carry an RFC 6750 `WWW-Authenticate: Bearer` challenge.

use crate::responses::quote_safe;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::admin::AdminError;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status and `code` say what happened (RFC 9457 §4.2.1).
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// `invalid_request`, `invalid_token`, `insufficient_scope`, `forbidden`, `not_found`,
    /// `conflict`, `rate_limited` or `server_error`.
    pub code: &'static str,
    #[serde(skip)]
    challenge: Option<Box<str>>,
    #[serde(skip)]
    retry_after: Option<u32>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            type_: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            challenge: None,
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 401 with an RFC 6750 §3 challenge; `error` is absent when no credentials were sent.
    pub fn unauthorized(detail: impl Into<String>, error: Option<&str>) -> Self {
        let detail = detail.into();
        let mut challenge = String::from(r#"Bearer realm="portcullis""#);
        if let Some(e) = error {
            challenge.push_str(&format!(r#", error="{e}", error_description="{}""#, quote_safe(&detail)));
        }
        Self {
            challenge: Some(challenge.into()),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", detail)
        }
    }

    /// 403 `insufficient_scope` (RFC 6750 §3.1) naming the scope needed.
    pub fn insufficient_scope(scope: &str) -> Self {
        let detail = format!("this operation needs the {scope} scope");
        let challenge = format!(r#"Bearer realm="portcullis", error="insufficient_scope", scope="{scope}""#);
        Self {
            challenge: Some(challenge.into()),
            ..Self::new(StatusCode::FORBIDDEN, "insufficient_scope", detail)
        }
    }

    /// 401 for an API key used outside its CIDR allowlist (as the guard answers).
    pub fn ip_not_allowed(ip: std::net::IpAddr) -> Self {
        let detail = format!("this API key may not be used from {ip}");
        let challenge = r#"Bearer realm="portcullis", error="invalid_token", error_description="the credential may not be used from this address""#;
        Self {
            challenge: Some(challenge.into()),
            ..Self::new(StatusCode::UNAUTHORIZED, "ip_not_allowed", detail)
        }
    }

    pub fn rate_limited(retry_after: i64) -> Self {
        Self {
            retry_after: Some(retry_after.clamp(1, u32::MAX as i64) as u32),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "the credential's rate limit is exhausted",
            )
        }
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "an internal error occurred")
    }
}

impl From<AdminError> for Problem {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(d) => Self::bad_request(d),
            AdminError::NotFound(d) => Self::not_found(d),
            AdminError::Conflict(d) => Self::new(StatusCode::CONFLICT, "conflict", d),
            AdminError::Forbidden(d) => Self::new(StatusCode::FORBIDDEN, "forbidden", d),
            AdminError::Internal(d) => {
                tracing::error!(error = %d, "admin API internal error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).expect("problem serialises");
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}
