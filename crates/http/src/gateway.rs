//! Gateway mode: a configured route table makes the server a reverse proxy in front of any
//! upstream HTTP API. Each route (method, path pattern, scopes, upstream base URL) is guarded
//! like the reference API; the request then goes upstream without its `Authorization` header and
//! with `x-portcullis-*` identity headers, bodies streamed both ways, status and headers passed
//! through. This is how an existing product adopts Portcullis without code changes.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded in either direction; `Host` is the
//! upstream's; `X-Forwarded-For`/`-Proto`/`-Host` tell the upstream about the original request.

use crate::api::problem::Problem;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, any, on};
use portcullis_core::Cx;
use portcullis_core::scopes::Catalogue;
use portcullis_guard::{Guard, Principal, Resource};
use portcullis_store::Store;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One route as written in the configuration file (`[[gateway.routes]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// An HTTP method, or `*` for any.
    pub method: String,
    /// An axum path pattern: `/orders`, `/orders/{id}`, `/files/{*path}`.
    pub path: String,
    /// Scopes the credential must hold (all of them).
    pub scopes: Vec<String>,
    /// The upstream base URL; the request's path and query are appended to it.
    pub upstream: String,
    /// The route returns personal data: its audit entries carry `pii_access`.
    #[serde(default)]
    pub pii: bool,
    /// Its own protected resource (RFC 8707/9728), as a path under the issuer: `/orders` makes
    /// the route accept only tokens for `<issuer>/orders`, with its metadata at
    /// `/.well-known/oauth-protected-resource/orders`. Unset: the built-in API's (`<issuer>/api`).
    #[serde(default)]
    pub resource: Option<String>,
}

/// The identifier of a route's own resource.
pub fn resource_identifier(issuer: &str, path: &str) -> String {
    format!("{issuer}{path}")
}

/// The resources the routes declare, as identifiers (for the settings' RFC 8707 list).
pub fn resources(issuer: &str, routes: &[RouteConfig]) -> Vec<String> {
    let mut v: Vec<String> =
        routes.iter().filter_map(|r| r.resource.as_deref()).map(|p| resource_identifier(issuer, p)).collect();
    v.sort();
    v.dedup();
    v
}

/// A validated route.
#[derive(Clone, Debug)]
pub struct GatewayRoute {
    /// `None`: any method.
    pub method: Option<Method>,
    pub path: String,
    pub scopes: Vec<String>,
    pub upstream: url::Url,
    pub pii: bool,
    /// The path of its own resource under the issuer.
    pub resource: Option<String>,
}

/// Paths of our own that a gateway route may not shadow.
const RESERVED: &[&str] = &[
    "/oauth2",
    "/api/",
    "/.well-known",
    "/login",
    "/logout",
    "/consent",
    "/device",
    "/account",
    "/healthz",
    "/mcp",
];

impl GatewayRoute {
    /// Checks a configured route: a known method, a path outside ours, catalogue scopes, an
    /// http(s) upstream without query or fragment.
    pub fn parse(c: &RouteConfig, catalogue: &Catalogue) -> Result<Self, String> {
        let at = format!("gateway route {} {}", c.method, c.path);
        let method = match c.method.trim() {
            "*" => None,
            m => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("{at}: {m:?} is not an HTTP method"))?,
            ),
        };
        if !c.path.starts_with('/') || c.path.contains("//") || c.path.contains(['?', '#']) {
            return Err(format!("{at}: the path must be an absolute path pattern like /orders/{{id}}"));
        }
        if RESERVED.iter().any(|r| c.path == r.trim_end_matches('/') || c.path.starts_with(r)) {
            return Err(format!("{at}: {} is one of Portcullis's own paths", c.path));
        }
        for s in &c.scopes {
            if catalogue.get(s).is_none() {
                return Err(format!("{at}: scope {s:?} is not in the scope catalogue"));
            }
        }
        let upstream = url::Url::parse(&c.upstream).map_err(|e| format!("{at}: upstream: {e}"))?;
        if !matches!(upstream.scheme(), "http" | "https")
            || upstream.host().is_none()
            || upstream.query().is_some()
            || upstream.fragment().is_some()
        {
            return Err(format!("{at}: the upstream must be an http(s) base URL without query or fragment"));
        }
        if let Some(r) = &c.resource {
            let plain = r.starts_with('/')
                && r.len() > 1
                && !r.ends_with('/')
                && !r.contains("//")
                && r.chars().all(|ch| ch.is_ascii_alphanumeric() || "/-._~".contains(ch));
            if !plain || r.split('/').any(|seg| seg == "." || seg == "..") {
                return Err(format!("{at}: resource must be a plain path under the issuer, like /orders"));
            }
            if r == "/api" || r == "/mcp" {
                return Err(format!("{at}: resource {r} is one of Portcullis's own resources"));
            }
        }
        Ok(Self {
            method,
            path: c.path.clone(),
            scopes: c.scopes.clone(),
            upstream,
            pii: c.pii,
            resource: c.resource.clone(),
        })
    }
}

/// Checks a route table: every route valid, no method given twice for one path.
pub fn parse_routes(routes: &[RouteConfig], catalogue: &Catalogue) -> Result<Vec<GatewayRoute>, String> {
    let parsed: Vec<GatewayRoute> =
        routes.iter().map(|r| GatewayRoute::parse(r, catalogue)).collect::<Result<_, _>>()?;
    let mut seen: BTreeMap<&str, Vec<Option<&Method>>> = BTreeMap::new();
    for r in &parsed {
        let methods = seen.entry(&r.path).or_default();
        let clash = methods.iter().any(|m| m.is_none() || r.method.is_none() || *m == r.method.as_ref());
        if clash {
            return Err(format!("gateway: two routes for {} overlap in method", r.path));
        }
        methods.push(r.method.as_ref());
    }
    Ok(parsed)
}

/// The HTTP client for upstreams: no redirects followed (they go back to the caller), bounded
/// connect time.
pub fn upstream_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("the upstream HTTP client builds")
}

/// The guard of each route's own resource (`resource` path → guard), sharing `guard`'s budgets.
pub fn resource_guards<S: Store>(guard: &Guard<S>, routes: &[GatewayRoute]) -> BTreeMap<String, Guard<S>> {
    let issuer = &guard.cx().settings.issuer;
    let mut scopes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in routes {
        if let Some(p) = &r.resource {
            scopes.entry(p).or_default().extend(r.scopes.iter().cloned());
        }
    }
    scopes
        .into_iter()
        .map(|(p, mut scopes)| {
            scopes.sort();
            scopes.dedup();
            let identifier = resource_identifier(issuer, p);
            let resource = Resource {
                metadata_url: crate::paths::url(issuer, &format!("{}{p}", crate::paths::PROTECTED_RESOURCE)),
                audiences: vec![identifier.clone()],
                identifier,
                scopes,
                name: format!("Gateway resource {p}"),
            };
            (p.to_owned(), guard.for_resource(resource))
        })
        .collect()
}

/// The routes of the table, each behind the guard of its resource with its scopes.
pub fn router<S: Store>(
    guard: &Guard<S>,
    own: &BTreeMap<String, Guard<S>>,
    routes: &[GatewayRoute],
    client: reqwest::Client,
) -> Router<Cx<S>> {
    let mut by_path: BTreeMap<String, MethodRouter<Cx<S>>> = BTreeMap::new();
    let proto = if guard.cx().settings.issuer.starts_with("https://") { "https" } else { "http" };
    for r in routes {
        let guard = r.resource.as_ref().and_then(|p| own.get(p)).unwrap_or(guard);
        let (client, upstream) = (client.clone(), r.upstream.clone());
        let handler = move |req: Request| proxy(client, upstream, proto, req);
        let scopes: Vec<&str> = r.scopes.iter().map(String::as_str).collect();
        let mr = match &r.method {
            None => any(handler),
            Some(m) => on(MethodFilter::try_from(m.clone()).unwrap_or(MethodFilter::GET), handler),
        }
        .layer(if r.pii { guard.require(&scopes).pii() } else { guard.require(&scopes) });
        let entry = by_path.remove(&r.path);
        by_path.insert(
            r.path.clone(),
            match entry {
                Some(prev) => prev.merge(mr),
                None => mr,
            },
        );
    }
    by_path.into_iter().fold(Router::new(), |router, (path, mr)| router.route(&path, mr))
}

fn is_hop_by_hop(name: &HeaderName, connection: &HeaderMap) -> bool {
    const HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    HOP.contains(&name.as_str())
        || connection
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(name.as_str()))
}

async fn proxy(client: reqwest::Client, upstream: url::Url, proto: &'static str, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(principal) = parts.extensions.get::<Principal>() else {
        return Problem::internal().into_response();
    };
    let mut url = upstream.clone();
    let base = upstream.path().trim_end_matches('/');
    url.set_path(&format!("{base}{}", parts.uri.path()));
    url.set_query(parts.uri.query());

    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if is_hop_by_hop(name, &parts.headers) || name == header::HOST || name == header::AUTHORIZATION {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    principal.write_headers(&mut headers);
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let forwarded_for = match (parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()), peer) {
        (Some(prev), Some(p)) => format!("{prev}, {p}"),
        (None, Some(p)) => p.to_string(),
        (Some(prev), None) => prev.to_owned(),
        (None, None) => String::new(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    if let Some(host) = parts.headers.get(header::HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));

    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    let sent = client.request(parts.method.clone(), url).headers(headers).body(body).send().await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, upstream = %upstream, "gateway upstream failed");
            let (status, why) = if e.is_timeout() {
                (StatusCode::GATEWAY_TIMEOUT, "the upstream did not answer in time")
            } else {
                (StatusCode::BAD_GATEWAY, "the upstream could not be reached")
            };
            return Problem::new(status, "upstream_unavailable", why).into_response();
        }
    };
    let status = resp.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if !is_hop_by_hop(name, resp.headers()) {
            out_headers.append(name.clone(), value.clone());
        }
    }
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = out_headers;
    out
}
