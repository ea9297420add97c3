//! The axum adapter of Portcullis: parses HTTP into core types once, at the edge, and renders
//! core outcomes as HTTP.
//!
//! # Layout
//! - [`paths`]: every path we serve; the router and the discovery documents both use it.
//! - [`routes`]: handlers — [`routes::browser`] (authorize, sign-in, consent, sign-out, device
//!   code entry, the account page), [`routes::token`] (the client-authenticated endpoints: token,
//!   revocation, introspection, device authorization), [`routes::meta`] (discovery, JWKS,
//!   userinfo, health).
//! - [`responses`]: OAuth JSON errors, RFC 6750 challenges, pages with security headers, 303s.
//! - [`cookies`]: the session and CSRF cookies.
//! - [`edge`]: the one layer every request passes: request id, request span, time limit,
//!   `nosniff`.
//! - [`reference`]: the built-in reference API (contacts, messages, broadcasts, flows), each
//!   route behind the guard ([`portcullis_guard`]) with its scope; RFC 9728 metadata.
//! - [`mcp`]: the MCP endpoint (`/mcp`): reference API operations as tools, per-tool scopes.
//! - [`gateway`]: gateway mode, a guarded reverse proxy to upstream APIs from a route table.
//! - [`api`]: the admin API (`/api/v1`), its problem details and generated OpenAPI document.
//!
//! # Decisions
//! - Handlers read raw bodies and parse them with [`portcullis_proto::Params`], so a malformed
//!   request is an OAuth `invalid_request`, never a framework 422.
//! - Logs carry method, path (never the query: it can hold codes and state) and a request id.

pub mod api;
pub mod cookies;
pub mod edge;
pub mod gateway;
pub mod mcp;
pub mod paths;
pub mod reference;
pub mod responses;
pub mod routes;

use axum::Router;
use axum::http::{HeaderName, header};
use axum::routing::{get, post};
use portcullis_core::Cx;
use portcullis_guard::{Budgets, Guard, Limiter, Resource};
use portcullis_store::Store;

/// How the protected routes are guarded (budgets and where they are counted).
#[derive(Default)]
pub struct Protection {
    pub limiter: Limiter,
    pub budgets: Budgets,
    /// Gateway routes to upstream APIs ([`gateway`]).
    pub gateway: Vec<gateway::GatewayRoute>,
}

/// The complete application router, with in-process rate limits.
pub fn router<S: Store>(cx: Cx<S>) -> Router {
    router_with(cx, Protection::default())
}

/// The guard of the reference API (the resource `{issuer}/api`).
/// Gateway routes share it: their scopes are added to the metadata's `scopes_supported`.
pub fn reference_guard<S: Store>(
    cx: &Cx<S>,
    limiter: Limiter,
    budgets: Budgets,
    gateway: &[gateway::GatewayRoute],
) -> Guard<S> {
    let mut scopes: Vec<String> = REFERENCE_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    for r in gateway {
        scopes.extend(r.scopes.iter().cloned());
    }
    scopes.sort();
    scopes.dedup();
    let issuer = &cx.settings.issuer;
    let resource = Resource {
        identifier: cx.settings.audience.clone(),
        metadata_url: paths::url(issuer, paths::PROTECTED_RESOURCE),
        audiences: vec![cx.settings.audience.clone()],
        scopes,
        name: "Portcullis protected API".into(),
    };
    Guard::new(cx.clone(), resource, limiter, budgets)
}

/// The scopes the reference API (and its MCP tools) understand.
pub const REFERENCE_SCOPES: &[&str] = &[
    "contacts:read",
    "contacts:write",
    "contacts:delete",
    "messages:read",
    "messages:write",
    "broadcasts:read",
    "broadcasts:write",
    "flows:read",
    "flows:write",
    "flows:execute",
];

/// CORS for the endpoints browser-based clients call directly (discovery documents, JWKS, token,
/// revocation, registration): any origin, no credentials mode (the token endpoint authenticates clients in the
/// request, never with cookies), preflights answered. Never on the authorize, sign-in and
/// consent pages, which must only be navigated to.
pub fn public_cors() -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("dpop"),
        ])
        .expose_headers([
            header::WWW_AUTHENTICATE,
            header::CACHE_CONTROL,
            HeaderName::from_static("dpop-nonce"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// RFC 7591/7592 registration, unless registration is off.
fn registration_routes<S: Store>(cx: &Cx<S>, guard: &Guard<S>) -> Router<Cx<S>> {
    use portcullis_core::oauth::registration::RegistrationMode;
    use routes::register;
    if cx.settings.registration.mode == RegistrationMode::Disabled {
        return Router::new();
    }
    Router::new()
        .route(paths::REGISTER, post(register::register::<S>).fallback(routes::token::wrong_method))
        .route(
            paths::REGISTERED_CLIENT,
            get(register::read::<S>).put(register::update::<S>).delete(register::delete::<S>),
        )
        .layer(axum::Extension(guard.clone()))
        .layer(public_cors())
}

/// A public RFC 9728 document route (GET, with CORS).
fn document<S: Store>(doc: serde_json::Value) -> axum::routing::MethodRouter<Cx<S>> {
    get(move || async move { routes::meta::public_document(&doc) }).layer(public_cors())
}

/// The complete application router.
pub fn router_with<S: Store>(cx: Cx<S>, protection: Protection) -> Router {
    use routes::{browser, meta, token};
    let Protection { limiter, budgets, gateway: gateway_routes } = protection;
    let guard = reference_guard(&cx, limiter, budgets, &gateway_routes);
    let mcp_guard = mcp::guard(&guard);
    let prm = guard.metadata();
    let mcp_prm = mcp_guard.metadata();
    let gateway_guard = guard.audited_as("gateway.request");
    let gateway_resources = gateway::resource_guards(&gateway_guard, &gateway_routes);
    let app: Router = Router::new()
        .route(paths::PROTECTED_RESOURCE, document(prm.clone()))
        .route(paths::API_PROTECTED_RESOURCE, document(prm.clone()))
        .merge(mcp::router(mcp_guard))
        .merge(reference::router(&guard))
        .merge(gateway::router(
            &gateway_guard,
            &gateway_resources,
            &gateway_routes,
            gateway::upstream_client(),
        ))
        .merge(gateway_resources.iter().fold(Router::new(), |r, (p, g)| {
            r.route(&format!("{}{p}", paths::PROTECTED_RESOURCE), document(g.metadata()))
        }))
        .route(paths::HEALTHZ, get(meta::healthz::<S>))
        .route(paths::AS_METADATA, get(meta::metadata::<S>).layer(public_cors()))
        .route(paths::OIDC_METADATA, get(meta::metadata::<S>).layer(public_cors()))
        .route(paths::JWKS, get(meta::jwks::<S>).layer(public_cors()))
        .route(paths::AUTHORIZE, get(browser::authorize::<S>).post(browser::authorize::<S>))
        .route(paths::LOGIN, get(browser::login_page::<S>).post(browser::login_submit::<S>))
        .route(paths::CONSENT, get(browser::consent_page::<S>).post(browser::consent_submit::<S>))
        .route(paths::LOGOUT, post(browser::logout::<S>))
        .route(paths::TOKEN, post(token::token::<S>).fallback(token::wrong_method).layer(public_cors()))
        .route(paths::REVOKE, post(token::revoke::<S>).fallback(token::wrong_method).layer(public_cors()))
        .route(paths::PAR, post(token::par::<S>).fallback(token::wrong_method).layer(public_cors()))
        .route(paths::INTROSPECT, post(token::introspect::<S>).fallback(token::wrong_method))
        .route(
            paths::DEVICE_AUTHORIZATION,
            post(token::device_authorization::<S>).fallback(token::wrong_method),
        )
        .route(paths::DEVICE, get(browser::device_page::<S>).post(browser::device_submit::<S>))
        .route(paths::DEVICE_DONE, get(browser::device_done))
        .route(paths::ACCOUNT, get(browser::account_page::<S>))
        .route(paths::ACCOUNT_REVOKE, post(browser::account_revoke::<S>))
        .route(paths::USERINFO, get(meta::userinfo::<S>).post(meta::userinfo::<S>))
        .merge(registration_routes(&cx, &guard))
        .merge(
            api::router::<S>()
                .layer(axum::middleware::from_fn_with_state(cx.clone(), api::audit::record_calls::<S>))
                .layer(axum::Extension(guard.clone())),
        )
        .with_state(cx.clone());
    // An issuer with a path (`https://host/tenant`) is served under that path, and its metadata
    // also where RFC 8414 §3.1, OpenID Discovery and RFC 9728 §3.1 clients look for it: the
    // well-known prefix followed by the path. `issuer` in each is the configured issuer.
    let base = cx.settings.path().to_owned();
    let app: Router = if base.is_empty() {
        app
    } else {
        Router::<Cx<S>>::new()
            .route(&format!("{}{base}", paths::AS_METADATA), get(meta::metadata::<S>).layer(public_cors()))
            .route(&format!("{}{base}", paths::OIDC_METADATA), get(meta::metadata::<S>).layer(public_cors()))
            .route(&format!("{}{base}{}", paths::PROTECTED_RESOURCE, paths::reference::BASE), document(prm))
            .route(&format!("{}{base}{}", paths::PROTECTED_RESOURCE, paths::MCP), document(mcp_prm))
            .merge(gateway_resources.iter().fold(Router::new(), |r, (p, g)| {
                r.route(&format!("{}{base}{p}", paths::PROTECTED_RESOURCE), document(g.metadata()))
            }))
            .with_state(cx)
            .nest(&base, app)
    };
    app.layer(edge::EdgeLayer)
}
