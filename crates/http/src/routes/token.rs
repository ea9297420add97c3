//! `POST /oauth2/token`. The body is parsed here, once, into [`TokenRequest`] and [`ClientAuth`];
//! every failure, including a malformed request, is an RFC 6749 §5.2 JSON error with
//! `Cache-Control: no-store`.

use crate::responses::{no_store_json, oauth_error};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis_core::Cx;
use portcullis_core::oauth::token;
use portcullis_proto::{ClientAuth, OAuthError, Params, TokenRequest};
use portcullis_store::Store;

const BODY_LIMIT: usize = 64 * 1024;

pub async fn token<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap, body: Body) -> Response {
    match handle(&cx, &headers, body).await {
        Ok(r) => no_store_json(StatusCode::OK, serde_json::to_string(&r).expect("response serialises")),
        Err(e) => {
            tracing::info!(error = %e.code, "token request refused");
            oauth_error(&e)
        }
    }
}

async fn handle<S: Store>(
    cx: &Cx<S>,
    headers: &HeaderMap,
    body: Body,
) -> Result<portcullis_proto::TokenResponse, OAuthError> {
    let form_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_ct {
        return Err(OAuthError::invalid_request(
            "the token request must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| OAuthError::invalid_request("the request body is too large"))?;
    let params = Params::parse(&bytes);
    params.reject_repeated()?;
    let auth = ClientAuth::from_parts(
        basic_credentials(headers)?,
        params.get("client_id"),
        params.get("client_secret"),
    )?;
    let req = TokenRequest::from_params(&params)?;
    token::exchange(cx, auth, req).await
}

/// RFC 6749 §2.3.1: Basic credentials are the form-urlencoded client id and secret.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let bad = || OAuthError::invalid_client("the Authorization header is malformed");
    let v = v.to_str().map_err(|_| bad())?;
    let Some((scheme, rest)) = v.split_once(' ') else { return Err(bad()) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("use HTTP Basic authentication at the token endpoint"));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (unescape(id), unescape(secret));
    if id.is_empty() {
        return Err(bad());
    }
    Ok(Some((id, secret)))
}

/// Any other method on the token endpoint.
pub async fn wrong_method() -> Response {
    oauth_error(&OAuthError::invalid_request("the token endpoint accepts only POST"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        let raw = STANDARD.encode("my%3Aclient:s%2Bcr+t");
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {raw}")).unwrap());
        assert_eq!(basic_credentials(&h).unwrap(), Some(("my:client".into(), "s+cr t".into())));
    }

    #[test]
    fn malformed_basic_is_invalid_client() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&h).unwrap_err().code, portcullis_proto::ErrorCode::InvalidClient);
    }
}
