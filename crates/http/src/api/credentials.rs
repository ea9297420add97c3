//! Admin API: API keys, scope bundles, trust policies, service tokens and the event record.

use super::auth::Principal;
use super::problem::Problem;
use super::{JsonBody, no_content, ok};
use crate::paths::api as p;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_core::Cx;
use portcullis_core::api_keys::{Expiry, IssuedKeyView, KeyView, NewKey};
use portcullis_core::bundles::BundleView;
use portcullis_core::federation::{NewTrustPolicy, TrustPolicyView};
use portcullis_core::service_tokens::{self, Mint, Via};
use portcullis_core::views::EventView;
use portcullis_store::Store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

type ApiResult = Result<Response, Problem>;

fn scope_text(scope: Option<&str>, scopes: &[String]) -> Option<String> {
    let mut all: Vec<&str> =
        scope.map(|s| s.split(' ').filter(|w| !w.is_empty()).collect()).unwrap_or_default();
    all.extend(scopes.iter().map(String::as_str));
    (!all.is_empty()).then(|| all.join(" "))
}

fn duration(name: &str, v: &str) -> Result<time::Duration, Problem> {
    portcullis_core::parse_duration(v).map_err(|e| Problem::bad_request(format!("{name}: {e}")))
}

/// A body that may be absent (then `T::default()`), else strict JSON.
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    super::parse_json(headers, body)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// Explicit scopes (no wildcards).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A bundle whose scopes are copied into the key.
    pub bundle: Option<String>,
    /// CIDR blocks the key may be used from (IPv4 and IPv6); empty means anywhere.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// e.g. `30d`.
    pub expires_in: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// e.g. `600/min`.
    pub rate_limit: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the previous secret keeps working (default `0s`, at most `30d`).
    pub grace: Option<String>,
}

#[utoipa::path(get, path = p::KEYS, tag = "keys", responses(
    (status = 200, body = KeyList),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_keys<S: Store>(State(cx): State<Cx<S>>, who: Principal) -> ApiResult {
    who.require("keys:manage")?;
    let now = cx.now();
    let keys = cx.admin().list_keys(&who.workspace).await?;
    Ok(ok(StatusCode::OK, &KeyList { keys: keys.iter().map(|k| KeyView::of(k, now)).collect() }))
}

#[utoipa::path(post, path = p::KEYS, tag = "keys", request_body = CreateKey, responses(
    (status = 201, body = IssuedKeyView, description = "The key; `secret` is shown only in this response"),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn create_key<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    JsonBody(b): JsonBody<CreateKey>,
) -> ApiResult {
    who.require("keys:manage")?;
    let expires = match (&b.expires_in, &b.expires_at) {
        (Some(_), Some(_)) => return Err(Problem::bad_request("give expires_in or expires_at, not both")),
        (Some(d), None) => Some(Expiry::In(duration("expires_in", d)?)),
        (None, Some(t)) => Some(Expiry::At(
            OffsetDateTime::parse(t, &Rfc3339)
                .map_err(|_| Problem::bad_request("expires_at must be an RFC 3339 timestamp"))?,
        )),
        (None, None) => None,
    };
    let req = NewKey {
        name: b.name,
        description: b.description,
        metadata: b.metadata,
        scope: scope_text(None, &b.scopes),
        bundle: b.bundle,
        allow_cidrs: b.allowed_cidrs,
        expires,
        rate_limit: b.rate_limit,
    };
    let issued = cx.admin().create_key(&who.actor, &who.workspace, req, Some(&who.scopes)).await?;
    Ok(ok(StatusCode::CREATED, &issued.view(cx.now())))
}

#[utoipa::path(get, path = p::KEY, tag = "keys", params(("id" = String, Path, description = "Key id (key_…)")),
    responses((status = 200, body = KeyView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn show_key<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    who.require("keys:manage")?;
    let k = cx.admin().key(&id, Some(&who.workspace)).await?;
    Ok(ok(StatusCode::OK, &KeyView::of(&k, cx.now())))
}

#[utoipa::path(delete, path = p::KEY, tag = "keys", params(("id" = String, Path, description = "Key id (key_…)")),
    responses((status = 200, body = KeyView, description = "The revoked key"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_key<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    who.require("keys:manage")?;
    let k = cx.admin().revoke_key(&who.actor, &id, Some(&who.workspace)).await?;
    Ok(ok(StatusCode::OK, &KeyView::of(&k, cx.now())))
}

#[utoipa::path(post, path = p::KEY_ROTATE, tag = "keys", params(("id" = String, Path, description = "Key id (key_…)")),
    request_body(content = Option<RotateKey>),
    responses((status = 200, body = IssuedKeyView, description = "Same id, new secret (shown once)"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn rotate_key<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    who.require("keys:manage")?;
    let b: RotateKey = optional_body(&headers, &body)?;
    let grace = duration("grace", b.grace.as_deref().unwrap_or("0s"))?;
    let issued = cx.admin().rotate_key(&who.actor, &id, Some(&who.workspace), grace).await?;
    Ok(ok(StatusCode::OK, &issued.view(cx.now())))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BundleList {
    pub bundles: Vec<BundleView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBundle {
    pub name: String,
    pub scopes: Vec<String>,
    pub description: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBundle {
    pub scopes: Vec<String>,
    pub description: Option<String>,
}

#[utoipa::path(get, path = p::BUNDLES, tag = "bundles", responses((status = 200, body = BundleList)))]
pub async fn list_bundles<S: Store>(State(cx): State<Cx<S>>, who: Principal) -> ApiResult {
    who.require("keys:manage")?;
    let bs = cx.admin().list_bundles(&who.workspace).await?;
    Ok(ok(StatusCode::OK, &BundleList { bundles: bs.iter().map(BundleView::from).collect() }))
}

#[utoipa::path(post, path = p::BUNDLES, tag = "bundles", request_body = CreateBundle, responses(
    (status = 201, body = BundleView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn create_bundle<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    JsonBody(b): JsonBody<CreateBundle>,
) -> ApiResult {
    who.require("keys:manage")?;
    let scope = scope_text(None, &b.scopes).unwrap_or_default();
    let created = cx
        .admin()
        .create_bundle(
            &who.actor,
            &who.workspace,
            &b.name,
            &scope,
            b.description.as_deref(),
            Some(&who.scopes),
        )
        .await?;
    Ok(ok(StatusCode::CREATED, &BundleView::from(&created)))
}

#[utoipa::path(get, path = p::BUNDLE, tag = "bundles", params(("name" = String, Path, description = "Bundle name")),
    responses((status = 200, body = BundleView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn show_bundle<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult {
    who.require("keys:manage")?;
    let b = cx.admin().bundle(&who.workspace, &name).await?;
    Ok(ok(StatusCode::OK, &BundleView::from(&b)))
}

#[utoipa::path(put, path = p::BUNDLE, tag = "bundles", params(("name" = String, Path, description = "Bundle name")),
    request_body = UpdateBundle,
    responses((status = 200, body = BundleView, description = "Credentials created earlier keep their scopes"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn update_bundle<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<UpdateBundle>,
) -> ApiResult {
    who.require("keys:manage")?;
    let scope = scope_text(None, &b.scopes).unwrap_or_default();
    let updated = cx
        .admin()
        .update_bundle(&who.actor, &who.workspace, &name, &scope, b.description.as_deref(), Some(&who.scopes))
        .await?;
    Ok(ok(StatusCode::OK, &BundleView::from(&updated)))
}

#[utoipa::path(delete, path = p::BUNDLE, tag = "bundles", params(("name" = String, Path, description = "Bundle name")),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_bundle<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult {
    who.require("keys:manage")?;
    cx.admin().delete_bundle(&who.actor, &who.workspace, &name).await?;
    Ok(no_content())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TrustPolicyList {
    pub trust_policies: Vec<TrustPolicyView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrustPolicy {
    pub name: String,
    /// The external issuer (`iss`), https.
    pub issuer: String,
    /// A value the token's `aud` must contain.
    pub audience: String,
    /// Pattern for `sub`; `*` matches any run of characters.
    pub subject: String,
    /// Further claims and their patterns, e.g. `{"ref": "refs/heads/main"}`.
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub bundle: Option<String>,
    /// Lifetime of the service tokens issued (5m–60m).
    pub max_ttl: String,
}

#[utoipa::path(get, path = p::TRUST_POLICIES, tag = "federation", responses((status = 200, body = TrustPolicyList)))]
pub async fn list_trust_policies<S: Store>(State(cx): State<Cx<S>>, who: Principal) -> ApiResult {
    who.require("keys:manage")?;
    let ps = cx.admin().list_trust_policies(&who.workspace).await?;
    Ok(ok(
        StatusCode::OK,
        &TrustPolicyList { trust_policies: ps.iter().map(TrustPolicyView::from).collect() },
    ))
}

#[utoipa::path(post, path = p::TRUST_POLICIES, tag = "federation", request_body = CreateTrustPolicy, responses(
    (status = 201, body = TrustPolicyView),
    (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_trust_policy<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    JsonBody(b): JsonBody<CreateTrustPolicy>,
) -> ApiResult {
    who.require("keys:manage")?;
    let req = NewTrustPolicy {
        name: b.name,
        issuer: b.issuer,
        audience: b.audience,
        subject: b.subject,
        claims: b.claims.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        scope: scope_text(None, &b.scopes),
        bundle: b.bundle,
        max_ttl: duration("max_ttl", &b.max_ttl)?,
    };
    let created = cx.admin().create_trust_policy(&who.actor, &who.workspace, req, Some(&who.scopes)).await?;
    Ok(ok(StatusCode::CREATED, &TrustPolicyView::from(&created)))
}

#[utoipa::path(get, path = p::TRUST_POLICY, tag = "federation", params(("id" = String, Path, description = "Policy id (tp_…)")),
    responses((status = 200, body = TrustPolicyView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn show_trust_policy<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    who.require("keys:manage")?;
    let tp = cx.admin().trust_policy(&id, Some(&who.workspace)).await?;
    Ok(ok(StatusCode::OK, &TrustPolicyView::from(&tp)))
}

#[utoipa::path(delete, path = p::TRUST_POLICY, tag = "federation", params(("id" = String, Path, description = "Policy id (tp_…)")),
    responses((status = 200, body = TrustPolicyView, description = "The deleted policy; its service tokens stop working"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_trust_policy<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    who.require("keys:manage")?;
    let tp = cx.admin().delete_trust_policy(&who.actor, &id, Some(&who.workspace)).await?;
    Ok(ok(StatusCode::OK, &TrustPolicyView::from(&tp)))
}

/// A lifetime as seconds or as text (`15m`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Ttl {
    Seconds(i64),
    Text(String),
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintServiceToken {
    /// Space-separated scopes (OAuth style) …
    pub scope: Option<String>,
    /// … and/or a list of scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    pub bundle: Option<String>,
    /// 5–60 minutes; default 15 minutes.
    pub ttl: Option<Ttl>,
    /// The protected resource the token is for (RFC 8707; its `aud`), e.g. `<issuer>/mcp`.
    /// Default: the API audience.
    pub resource: Option<String>,
}

/// RFC 6749 §5.1-shaped token response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServiceToken {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub scope: String,
}

#[utoipa::path(post, path = p::SERVICE_TOKENS, tag = "service-tokens", request_body = MintServiceToken, responses(
    (status = 201, body = ServiceToken),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json", description = "Not an API key, no tokens:mint, or scopes beyond the key's")))]
pub async fn mint_service_token<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    JsonBody(b): JsonBody<MintServiceToken>,
) -> ApiResult {
    let Some(key_id) = &who.api_key else {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "service tokens are minted with an API key",
        ));
    };
    who.require("tokens:mint")?;
    let ttl = match b.ttl {
        None => time::Duration::minutes(15),
        Some(Ttl::Seconds(s)) => time::Duration::seconds(s),
        Some(Ttl::Text(t)) => duration("ttl", &t)?,
    };
    service_tokens::check_ttl(ttl).map_err(Problem::bad_request)?;
    let admin = cx.admin();
    let (scopes, _) = admin
        .expand_scopes(
            &who.workspace,
            scope_text(b.scope.as_deref(), &b.scopes).as_deref(),
            b.bundle.as_deref(),
        )
        .await?;
    admin.check_credential_scopes(&scopes, Some(&who.scopes))?;
    let t = service_tokens::mint(
        &cx,
        Mint {
            workspace: &who.workspace.id,
            scopes: &scopes,
            ttl,
            actor: &who.actor,
            via: Via::ApiKey,
            subject: key_id.as_str(),
            detail: serde_json::json!({}),
            resource: b.resource.as_deref(),
        },
    )
    .await
    .map_err(|e| match e.code {
        portcullis_proto::ErrorCode::ServerError => Problem::internal(),
        _ => {
            Problem::bad_request(e.description.map(|d| d.into_owned()).unwrap_or_else(|| e.code.to_string()))
        }
    })?;
    Ok(ok(
        StatusCode::CREATED,
        &ServiceToken {
            access_token: t.access_token,
            token_type: t.token_type.to_owned(),
            expires_in: t.expires_in,
            scope: t.scope.unwrap_or_default(),
        },
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
}

#[utoipa::path(get, path = p::EVENTS, tag = "keys",
    params(("limit" = Option<i64>, Query, description = "How many (1–1000, default 100), newest first")),
    responses((status = 200, body = EventList)))]
pub async fn list_events<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult {
    who.require("keys:manage")?;
    let mut limit = 100;
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        if k == "limit" {
            limit = v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| Problem::bad_request("limit must be between 1 and 1000"))?;
        }
    }
    let q = portcullis_store::AuditQuery {
        log: who.workspace.id.to_string(),
        events_only: true,
        limit,
        ..Default::default()
    };
    let events = cx.store.search_audit(&q).await.map_err(|e| {
        tracing::error!(error = %e, "listing events failed");
        Problem::internal()
    })?;
    Ok(ok(StatusCode::OK, &EventList { events: events.iter().map(EventView::from).collect() }))
}
