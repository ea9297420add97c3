//! The client-authenticated endpoints: token (RFC 6749 §3.2), revocation (RFC 7009),
//! introspection (RFC 7662) and device authorization (RFC 8628 §3.1). Bodies are parsed here,
//! once, into core types; every failure, including a malformed request, is an RFC 6749 §5.2 JSON
//! error with `Cache-Control: no-store`.

use crate::paths;
use crate::responses::{no_store_json, oauth_error};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis_core::Cx;
use portcullis_core::oauth::{device, introspection, revocation, token};
use portcullis_guard::client_ip::client_ip;
use portcullis_proto::{ClientAuth, ErrorCode, OAuthError, Params, TokenRequest};
use portcullis_store::Store;
use std::net::SocketAddr;

const BODY_LIMIT: usize = 64 * 1024;

/// A form body and the client credentials it (and the Authorization header) carried; every
/// endpoint but token exchange requires them.
async fn client_form(headers: &HeaderMap, body: Body) -> Result<(Params, ClientAuth), OAuthError> {
    let (params, auth) = form_and_credentials(headers, body).await?;
    let auth = auth.ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
    Ok((params, auth))
}

/// A form body and the client credentials, if any were sent.
async fn form_and_credentials(
    headers: &HeaderMap,
    body: Body,
) -> Result<(Params, Option<ClientAuth>), OAuthError> {
    let form_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_ct {
        return Err(OAuthError::invalid_request("the request must be application/x-www-form-urlencoded"));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| OAuthError::invalid_request("the request body is too large"))?;
    let params = Params::parse(&bytes);
    params.reject_repeated()?;
    let basic = basic_credentials(headers)?;
    if basic.is_none() && params.get("client_id").is_none() && params.get("client_secret").is_none() {
        return Ok((params, None));
    }
    let auth = ClientAuth::from_parts(basic, params.get("client_id"), params.get("client_secret"))?;
    Ok((params, Some(auth)))
}

fn json_ok(v: &impl serde::Serialize) -> Response {
    no_store_json(StatusCode::OK, serde_json::to_string(v).expect("response serialises"))
}

fn refused(endpoint: &'static str, e: OAuthError) -> Response {
    tracing::info!(endpoint, error = %e.code, "request refused");
    oauth_error(&e)
}

/// `POST /oauth2/token`
pub async fn token<S: Store>(
    State(cx): State<Cx<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = async {
        let (params, auth) = form_and_credentials(&headers, body).await?;
        let req = TokenRequest::from_params(&params)?;
        let ip = client_ip(&cx.settings.trusted_proxies, peer.ip(), &headers);
        let url = paths::url(&cx.settings.issuer, paths::TOKEN);
        let dpop = dpop_header(&headers)?.map(|proof| token::DpopProof { proof, url: &url });
        token::exchange(&cx, auth, req, Some(ip), dpop).await
    }
    .await;
    let mut resp = match r {
        Ok(t) => json_ok(&t),
        Err(e) => refused("token", e),
    };
    with_dpop_nonce(&cx, &mut resp);
    resp
}

/// The `DPoP` request header (RFC 9449 §4.1): at most one.
pub fn dpop_header(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut all = headers.get_all("dpop").iter();
    let Some(first) = all.next() else { return Ok(None) };
    if all.next().is_some() {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "send exactly one DPoP header"));
    }
    first
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP header is not a JWT"))
}

/// When nonces are required, every response hands out a fresh one (RFC 9449 §8.2).
pub fn with_dpop_nonce<S: Store>(cx: &Cx<S>, resp: &mut Response) {
    if cx.settings.dpop.require_nonce
        && let Ok(v) = axum::http::HeaderValue::from_str(&portcullis_core::oauth::dpop::nonce(cx))
    {
        resp.headers_mut().insert("dpop-nonce", v);
    }
}

/// `POST /oauth2/revoke`: 200 with an empty body for any token, known or not (RFC 7009 §2.2).
pub async fn revoke<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let (params, auth) = client_form(&headers, body).await?;
        let token = params.require("token")?;
        revocation::revoke(&cx, &auth, token, params.get("token_type_hint")).await
    }
    .await;
    match r {
        Ok(()) => no_store_json(StatusCode::OK, String::new()),
        Err(e) => refused("revoke", e),
    }
}

/// `POST /oauth2/introspect`
pub async fn introspect<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let (params, auth) = client_form(&headers, body).await?;
        let token = params.require("token")?;
        introspection::introspect(&cx, &auth, token).await
    }
    .await;
    match r {
        Ok(i) => json_ok(&i),
        Err(e) => refused("introspect", e),
    }
}

/// `POST /oauth2/par` (RFC 9126 §2): the authorization request, pushed by the authenticated
/// client; answered with a single-use `request_uri` for the authorization endpoint. A DPoP proof
/// sent along binds the code to its key (RFC 9449 §10.1).
pub async fn par<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap, body: Body) -> Response {
    use portcullis_core::oauth::dpop;
    let r = async {
        let (params, auth) = client_form(&headers, body).await?;
        let client = portcullis_core::oauth::client_auth::authenticate(&cx, &auth).await?;
        let proof_jkt = match dpop_header(&headers)? {
            Some(proof) => {
                let url = paths::url(&cx.settings.issuer, paths::PAR);
                let target = dpop::Target { method: "POST", url: &url, access_token: None };
                Some(dpop::verify(&cx, proof, &target).await.map_err(|e| e.oauth())?.jkt)
            }
            None => None,
        };
        portcullis_core::oauth::authorize::push(&cx, &client, &params, proof_jkt).await
    }
    .await;
    let mut resp = match r {
        Ok((request_uri, expires_in)) => no_store_json(
            StatusCode::CREATED,
            serde_json::json!({ "request_uri": request_uri, "expires_in": expires_in }).to_string(),
        ),
        Err(e) => refused("par", e),
    };
    with_dpop_nonce(&cx, &mut resp);
    resp
}

/// `POST /oauth2/device_authorization`
pub async fn device_authorization<S: Store>(
    State(cx): State<Cx<S>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = async {
        let (params, auth) = client_form(&headers, body).await?;
        let verification_uri = paths::url(&cx.settings.issuer, paths::DEVICE);
        let resources = params.all("resource");
        device::start(&cx, &auth, params.get("scope"), &resources, verification_uri).await
    }
    .await;
    match r {
        Ok(d) => json_ok(&d),
        Err(e) => refused("device_authorization", e),
    }
}

/// RFC 6749 §2.3.1: Basic credentials are the form-urlencoded client id and secret.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let bad = || OAuthError::invalid_client("the Authorization header is malformed");
    let v = v.to_str().map_err(|_| bad())?;
    let Some((scheme, rest)) = v.split_once(' ') else { return Err(bad()) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("use HTTP Basic authentication at this endpoint"));
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

/// Any method other than POST on these endpoints.
pub async fn wrong_method() -> Response {
    oauth_error(&OAuthError::invalid_request("this endpoint accepts only POST"))
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
