//! The admin API: `/api/v1/…` JSON endpoints for a workspace's keys, bundles, trust policies,
//! service tokens, clients, grants and members.
//!
//! # Layout
//! - [`auth`]: the [`auth::Principal`] extractor (API key or live access token → workspace,
//!   scopes, actor), with per-key rate limits.
//! - [`problem`]: RFC 9457 problem details for every error.
//! - [`audit`]: audit log search, verification and webhook sinks; every admin call recorded.
//! - [`credentials`]: keys, bundles, trust policies, service tokens, events.
//! - [`workspace`]: the workspace itself, its clients, grants and members.
//!
//! # Decisions
//! - A credential acts only in its own workspace; a resource of another workspace is 404.
//! - Scopes: `keys:manage` (keys, bundles, trust policies, events), `apps:manage` (clients,
//!   grants), `members:manage` (members), `tokens:mint` (service tokens, API keys only). A
//!   credential never hands out scopes it does not hold.
//! - The OpenAPI document is generated from the handlers' annotations, which use the same path
//!   constants as the router ([`crate::paths::api`]); a test checks every documented operation is
//!   routed.
//! - Request bodies are parsed here, strictly (unknown fields are refused), so a typo is a 400
//!   problem, never a silently ignored option.

pub mod audit;
pub mod auth;
pub mod credentials;
pub mod problem;
pub mod workspace;

use crate::paths::api as p;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portcullis_core::Cx;
use portcullis_store::Store;
use problem::Problem;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The admin API routes.
pub fn router<S: Store>() -> Router<Cx<S>> {
    use credentials as c;
    use workspace as w;
    Router::new()
        .route(p::OPENAPI, get(openapi_json))
        .route(p::WORKSPACE, get(w::show::<S>))
        .route(p::KEYS, get(c::list_keys::<S>).post(c::create_key::<S>))
        .route(p::KEY, get(c::show_key::<S>).delete(c::revoke_key::<S>))
        .route(p::KEY_ROTATE, post(c::rotate_key::<S>))
        .route(p::BUNDLES, get(c::list_bundles::<S>).post(c::create_bundle::<S>))
        .route(p::BUNDLE, get(c::show_bundle::<S>).put(c::update_bundle::<S>).delete(c::delete_bundle::<S>))
        .route(p::TRUST_POLICIES, get(c::list_trust_policies::<S>).post(c::create_trust_policy::<S>))
        .route(p::TRUST_POLICY, get(c::show_trust_policy::<S>).delete(c::delete_trust_policy::<S>))
        .route(p::SERVICE_TOKENS, post(c::mint_service_token::<S>))
        .route(p::EVENTS, get(c::list_events::<S>))
        .route(p::AUDIT, get(audit::search::<S>))
        .route(p::AUDIT_VERIFY, get(audit::verify::<S>))
        .route(p::AUDIT_SINKS, get(audit::list_sinks::<S>).post(audit::create_sink::<S>))
        .route(p::AUDIT_SINK, axum::routing::delete(audit::remove_sink::<S>))
        .route(p::CLIENTS, get(w::list_clients::<S>).post(w::create_client::<S>))
        .route(p::CLIENT, get(w::show_client::<S>).delete(w::revoke_client::<S>))
        .route(p::CLIENT_ROTATE, post(w::rotate_client_secret::<S>))
        .route(p::GRANTS, get(w::list_grants::<S>))
        .route(p::GRANT, axum::routing::delete(w::revoke_grant::<S>))
        .route(p::MEMBERS, get(w::list_members::<S>))
        .route(p::MEMBER, axum::routing::put(w::put_member::<S>).delete(w::remove_member::<S>))
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> Problem {
    Problem::not_found("no such admin API endpoint")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "this endpoint does not accept that method",
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portcullis admin API",
        description = "Manage a workspace's API keys, scope bundles, trust policies, service tokens, OAuth clients, grants and members. Authenticate with an API key (or a service token) as a Bearer credential; the workspace is the credential's own. Errors are RFC 9457 problem details.",
        version = "1"
    ),
    paths(
        workspace::show,
        credentials::list_keys, credentials::create_key, credentials::show_key, credentials::revoke_key,
        credentials::rotate_key,
        credentials::list_bundles, credentials::create_bundle, credentials::show_bundle,
        credentials::update_bundle, credentials::delete_bundle,
        credentials::list_trust_policies, credentials::create_trust_policy, credentials::show_trust_policy,
        credentials::delete_trust_policy,
        credentials::mint_service_token, credentials::list_events,
        audit::search, audit::verify, audit::create_sink, audit::list_sinks, audit::remove_sink,
        workspace::list_clients, workspace::create_client, workspace::show_client, workspace::revoke_client,
        workspace::rotate_client_secret,
        workspace::list_grants, workspace::revoke_grant,
        workspace::list_members, workspace::put_member, workspace::remove_member,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "keys", description = "Scoped API keys (keys:manage)"),
        (name = "bundles", description = "Named scope lists (keys:manage)"),
        (name = "federation", description = "Workload identity trust policies (keys:manage)"),
        (name = "service-tokens", description = "Short-lived tokens (tokens:mint)"),
        (name = "apps", description = "OAuth clients and grants (apps:manage)"),
        (name = "members", description = "Members and their permissions (members:manage)"),
        (name = "workspace", description = "The calling credential's workspace"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (pcl_live_…) or a service token"))
                    .build(),
            ),
        );
    }
}

/// `GET /api/v1/openapi.json`
async fn openapi_json() -> Response {
    let body = ApiDoc::openapi().to_json().expect("the OpenAPI document serialises");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A strictly parsed JSON request body; anything wrong is a 400 problem.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &St) -> Result<Self, Problem> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| Problem::bad_request("the request body could not be read"))?;
        parse_json(&headers, &bytes).map(JsonBody)
    }
}

/// Parses a JSON body strictly: the content type must be `application/json`, and any parse
/// error (unknown field included) is a 400 problem.
pub(crate) fn parse_json<T: DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<T, Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "the request body must be application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

/// A 200 JSON response with `Cache-Control: no-store` (responses can carry secrets).
pub fn ok<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    crate::responses::no_store_json(status, serde_json::to_string(v).expect("response serialises"))
}

/// 204 No Content.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
