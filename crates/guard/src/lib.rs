//! The guard: enforces Portcullis credentials on a protected API. A tower [`Layer`] that any
//! axum/tower service can put in front of its routes, declaring each route's scopes next to it:
//!
//! ```ignore
//! Router::new()
//!     .route("/contacts", get(list).layer(guard.require(&["contacts:read"])))
//!     .route("/contacts", post(create).layer(guard.require(&["contacts:write"])))
//! ```
//!
//! # Layout
//! - this file: [`Guard`] (authentication, scopes, budgets), [`Require`] (the layer) and the
//!   RFC 9728 protected-resource metadata.
//! - [`principal`]: the verified caller, handed to handlers as a request extension and to
//!   upstreams as `x-portcullis-*` headers.
//! - [`rejection`]: RFC 6750 challenges (with RFC 9728 `resource_metadata`), 429s and the
//!   `RateLimit` headers.
//! - [`ratelimit`]: GCRA budgets per credential and per workspace, in-process or in Redis.
//! - [`client_ip`]: the caller's address behind trusted proxies.
//! - [`replay`]: DPoP proof `jti`s remembered in Redis (shared by replicas) when configured.
//! - [`audit`]: the audit entry of every call, allowed or refused ([`audit::AuditNote`] lets
//!   handlers add the MCP tool or the personal-data flag).
//!
//! # Decisions
//! - One `Authorization: Bearer` header carries any of the three credentials; they are told apart
//!   by format: API keys by their `pcl_live_`/`pcl_test_` prefix (and checksum, so a mistyped
//!   key costs no lookup), JWTs (access and service tokens) by their three segments.
//! - DPoP-bound access tokens (`cnf.jkt`, RFC 9449) come with `Authorization: DPoP` and a fresh
//!   proof of the bound key for this method and URL (`ath` = the token's hash); sent as Bearer,
//!   without a proof or with another key's, they are refused with a `DPoP` challenge.
//! - The order of checks is fixed: credential → CIDR allowlist → scopes → budgets. An address
//!   outside an API key's allowlist or a missing scope never spends quota.
//! - Credential state (API key rows, grant/member status of tokens) comes through the core's
//!   [`portcullis_core::cache`], so a hot route costs no query; a revocation in this process is
//!   seen at once, in another replica within `credential_cache_ttl` (5 s by default).

pub mod audit;
pub mod client_ip;
pub mod principal;
pub mod ratelimit;
pub mod rejection;
pub mod replay;

pub use principal::{CredentialKind, Principal};
pub use ratelimit::{Budget, Decision, Limiter};
pub use rejection::Rejection;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::OriginalUri;
use axum::http::{Extensions, HeaderMap, HeaderValue, Request, Uri, header};
use axum::response::Response;
use portcullis_core::Cx;
use portcullis_core::api_keys::{KeyRejection, authenticate_key_with};
use portcullis_core::oauth::dpop;
use portcullis_core::oauth::tokens::{live_access, verify_access_jwt_cached};
use portcullis_domain::{ApiKeySecret, RateLimit, WorkspaceId};
use portcullis_proto::ErrorCode;
use portcullis_store::Store;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Clock skew tolerated on the `exp` of access tokens, in seconds.
pub const DEFAULT_LEEWAY_SECS: i64 = 5;

/// What one protected resource is (RFC 9728 §2): its identifier, where its metadata lives,
/// which token audiences it accepts and which scopes it knows.
#[derive(Clone, Debug)]
pub struct Resource {
    /// The resource identifier (an https or loopback http URL).
    pub identifier: String,
    /// The absolute URL of its RFC 9728 metadata, named in every 401.
    pub metadata_url: String,
    /// `aud` values accepted in access tokens.
    pub audiences: Vec<String>,
    /// Scopes this resource understands (its metadata's `scopes_supported`).
    pub scopes: Vec<String>,
    /// A human-readable name (`resource_name`).
    pub name: String,
}

/// Budgets beyond each API key's own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Budgets {
    /// Every workspace's budget, all its credentials together.
    pub workspace: Option<RateLimit>,
    /// The budget of each OAuth grant (user tokens), client (client-credentials tokens) and
    /// service-token minter.
    pub token: Option<RateLimit>,
}

struct Shared<S> {
    cx: Cx<S>,
    limiter: Limiter,
    budgets: Budgets,
    leeway_secs: i64,
}

/// Authenticates requests for one [`Resource`]. Cheap to clone.
pub struct Guard<S> {
    shared: Arc<Shared<S>>,
    resource: Arc<Resource>,
    /// The audit event of calls through this guard (`api.request`, `mcp.request`, …).
    event: Arc<str>,
}

impl<S> Clone for Guard<S> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), resource: self.resource.clone(), event: self.event.clone() }
    }
}

/// An admitted request: who, and how much budget is left (for the response headers).
#[derive(Clone, Debug)]
pub struct Admitted {
    pub principal: Principal,
    pub budget: Option<Decision>,
}

/// The `Authorization: Bearer` credential (RFC 6750 §2.1; the scheme is case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    credential(headers).filter(|(s, _)| *s == Scheme::Bearer).map(|(_, t)| t)
}

/// How a credential was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    /// RFC 9449 §7.1: a DPoP-bound access token, with a proof in the `DPoP` header.
    Dpop,
}

/// The `Authorization` credential and its scheme (`Bearer` or `DPoP`, case-insensitive).
pub fn credential(headers: &HeaderMap) -> Option<(Scheme, &str)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return None;
    };
    Some((scheme, token.trim())).filter(|(_, t)| !t.is_empty())
}

/// What the guard reads of a request: the method and path (for DPoP proofs) and the headers.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub method: &'a str,
    /// The path as the client sent it (before any router nesting stripped a prefix).
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

impl<'a> Call<'a> {
    /// The call of request parts, using axum's `OriginalUri` when a nested router stripped the
    /// path.
    pub fn of(
        method: &'a axum::http::Method,
        uri: &'a Uri,
        ext: &'a Extensions,
        headers: &'a HeaderMap,
    ) -> Self {
        let path = ext.get::<OriginalUri>().map_or(uri.path(), |o| o.0.path());
        Self { method: method.as_str(), path, headers }
    }

    /// The scheme the client used (Bearer when it sent none).
    pub fn scheme(&self) -> Scheme {
        credential(self.headers).map_or(Scheme::Bearer, |(s, _)| s)
    }
}

impl<S: Store> Guard<S> {
    pub fn new(cx: Cx<S>, resource: Resource, limiter: Limiter, budgets: Budgets) -> Self {
        Self {
            shared: Arc::new(Shared { cx, limiter, budgets, leeway_secs: DEFAULT_LEEWAY_SECS }),
            resource: Arc::new(resource),
            event: Arc::from("api.request"),
        }
    }

    /// The same guard (budgets, caches) for another resource, such as the MCP endpoint.
    pub fn for_resource(&self, resource: Resource) -> Self {
        Self { shared: self.shared.clone(), resource: Arc::new(resource), event: self.event.clone() }
    }

    /// The same guard, recording its calls as `event` (`mcp.request`, `gateway.request`).
    pub fn audited_as(&self, event: &str) -> Self {
        Self { event: Arc::from(event), ..self.clone() }
    }

    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    pub fn cx(&self) -> &Cx<S> {
        &self.shared.cx
    }

    /// A layer admitting only requests whose credential holds every one of `scopes`.
    pub fn require(&self, scopes: &[&str]) -> Require<S> {
        Require { guard: self.clone(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect(), pii: false }
    }

    /// The RFC 9728 §2 metadata document of this resource.
    pub fn metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "resource": self.resource.identifier,
            "authorization_servers": [self.shared.cx.settings.issuer],
            "scopes_supported": self.resource.scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": self.resource.name,
            // RFC 9728 §2: DPoP proofs are verified for DPoP-bound tokens; Bearer tokens still work.
            "dpop_signing_alg_values_supported": dpop::ALGS,
            "dpop_bound_access_tokens_required": false,
        })
    }

    /// Renders a rejection for this resource (with a `Bearer` challenge).
    pub fn reject(&self, r: Rejection) -> Response {
        r.into_response_for(&self.resource.metadata_url, Scheme::Bearer)
    }

    /// Renders a rejection of a call that used `scheme`, challenging with it (RFC 9449 §7.1).
    pub fn reject_as(&self, r: Rejection, scheme: Scheme) -> Response {
        let mut resp = r.into_response_for(&self.resource.metadata_url, scheme);
        if self.shared.cx.settings.dpop.require_nonce
            && scheme == Scheme::Dpop
            && let Ok(v) = HeaderValue::from_str(&dpop::nonce(&self.shared.cx))
        {
            resp.headers_mut().insert("dpop-nonce", v);
        }
        resp
    }

    /// Authenticates the request's credential from `peer` (the TCP peer; trusted proxies'
    /// `X-Forwarded-For` is applied), checks `required` scopes and charges the budgets.
    pub async fn check(
        &self,
        call: &Call<'_>,
        peer: IpAddr,
        required: &[impl AsRef<str>],
    ) -> Result<Admitted, Rejection> {
        let principal = self.authenticate(call, peer).await?;
        self.admit(principal, required).await
    }

    /// Who is calling: the first half of [`Guard::check`] (no scope check, no budget spent).
    pub async fn authenticate(&self, call: &Call<'_>, peer: IpAddr) -> Result<Principal, Rejection> {
        let cx = &self.shared.cx;
        let headers = call.headers;
        let ip = client_ip::client_ip(&cx.settings.trusted_proxies, peer, headers);
        let (scheme, token) = credential(headers).ok_or(Rejection::Missing)?;
        if scheme == Scheme::Dpop && ApiKeySecret::looks_like(token) {
            return Err(Rejection::InvalidToken("API keys are sent with the Bearer scheme".into()));
        }
        if ApiKeySecret::looks_like(token) {
            let key = authenticate_key_with(cx, token, ip, true).await.map_err(|e| match e {
                KeyRejection::Internal => Rejection::Internal,
                KeyRejection::AddressNotAllowed => Rejection::IpNotAllowed(ip),
                other => Rejection::InvalidToken(other.to_string()),
            })?;
            return Ok(Principal {
                workspace_id: key.workspace_id.clone(),
                kind: CredentialKind::ApiKey,
                credential_id: key.id.to_string(),
                scopes: key.scopes.clone(),
                user_id: None,
                client_id: None,
                grant_id: None,
                minted_by: None,
                ip,
                rate_limit: key.rate_limit,
            });
        }
        if token.split('.').count() != 3 {
            return Err(Rejection::InvalidToken("the credential is not one this server issued".into()));
        }
        let token_err = |e: portcullis_proto::OAuthError| {
            if e.code == ErrorCode::ServerError {
                Rejection::Internal
            } else {
                Rejection::InvalidToken(
                    e.description.map_or_else(|| "the access token is invalid".into(), |d| d.into_owned()),
                )
            }
        };
        let claims = verify_access_jwt_cached(cx, token, self.shared.leeway_secs).await.map_err(token_err)?;
        if !self.resource.audiences.contains(&claims.aud) {
            return Err(Rejection::InvalidToken("the access token is meant for another resource".into()));
        }
        self.check_binding(call, scheme, token, claims.jkt()).await?;
        let live = live_access(cx, claims, true).await.map_err(token_err)?;
        let c = live.claims;
        let kind = if c.token_use.as_deref() == Some(portcullis_core::service_tokens::TOKEN_USE) {
            CredentialKind::ServiceToken
        } else {
            CredentialKind::AccessToken
        };
        Ok(Principal {
            workspace_id: WorkspaceId::from_string(c.workspace_id.as_str()),
            kind,
            credential_id: c.jti,
            scopes: live.scopes,
            user_id: live.user_id,
            client_id: (kind == CredentialKind::AccessToken).then_some(c.client_id),
            grant_id: c.grant_id,
            minted_by: c.minted_by,
            ip,
            rate_limit: None,
        })
    }

    /// RFC 9449 §7: a bound token needs the DPoP scheme and a proof of its key for this request;
    /// an unbound one must not claim to be DPoP.
    async fn check_binding(
        &self,
        call: &Call<'_>,
        scheme: Scheme,
        token: &str,
        jkt: Option<&str>,
    ) -> Result<(), Rejection> {
        let cx = &self.shared.cx;
        let Some(jkt) = jkt else {
            return match scheme {
                Scheme::Bearer => Ok(()),
                Scheme::Dpop => Err(Rejection::InvalidToken("the access token is not DPoP-bound".into())),
            };
        };
        if scheme == Scheme::Bearer {
            return Err(Rejection::InvalidToken(
                "the access token is DPoP-bound: send it with the DPoP scheme and a proof".into(),
            ));
        }
        let mut proofs = call.headers.get_all("dpop").iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(Rejection::InvalidDpopProof("send exactly one DPoP proof header".into()));
        };
        let proof =
            proof.to_str().map_err(|_| Rejection::InvalidDpopProof("the DPoP proof is not a JWT".into()))?;
        let issuer = &cx.settings.issuer;
        let origin = &issuer[..issuer.len() - cx.settings.path().len()];
        let url = format!("{origin}{}", call.path);
        let target = dpop::Target { method: call.method, url: &url, access_token: Some(token) };
        let verified = dpop::verify(cx, proof.trim(), &target).await.map_err(|e| match e {
            dpop::DpopError::UseNonce => Rejection::UseDpopNonce,
            e => Rejection::InvalidDpopProof(e.description()),
        })?;
        if verified.jkt != jkt {
            return Err(Rejection::InvalidDpopProof(
                "the DPoP proof is signed by another key than the token's".into(),
            ));
        }
        Ok(())
    }

    /// The second half of [`Guard::check`]: scopes, then budgets.
    pub async fn admit(
        &self,
        principal: Principal,
        required: &[impl AsRef<str>],
    ) -> Result<Admitted, Rejection> {
        let missing: Vec<String> =
            required.iter().map(AsRef::as_ref).filter(|s| !principal.has(s)).map(str::to_owned).collect();
        if !missing.is_empty() {
            return Err(Rejection::InsufficientScope(missing));
        }
        let budget = self.charge(&principal).await?;
        Ok(Admitted { principal, budget })
    }

    /// Charges one request to `budget` in this guard's limiter (shared in Redis when
    /// configured), for budgets outside the guard's own: registrations per address, say.
    pub async fn charge_budget(&self, budget: Budget) -> Option<Decision> {
        let now_ms = (self.shared.cx.now().unix_timestamp_nanos() / 1_000_000) as i64;
        self.shared.limiter.charge(&[budget], now_ms).await
    }

    async fn charge(&self, p: &Principal) -> Result<Option<Decision>, Rejection> {
        let cx = &self.shared.cx;
        let b = self.shared.budgets;
        let mut budgets = Vec::with_capacity(2);
        let own = match p.kind {
            CredentialKind::ApiKey => p.rate_limit.map(|limit| (format!("key:{}", p.credential_id), limit)),
            CredentialKind::AccessToken => b.token.map(|limit| {
                let bucket = match &p.grant_id {
                    Some(g) => format!("grant:{g}"),
                    None => format!("client:{}:{}", p.workspace_id, p.client_id.as_deref().unwrap_or("-")),
                };
                (bucket, limit)
            }),
            CredentialKind::ServiceToken => b.token.map(|limit| {
                (format!("minter:{}:{}", p.workspace_id, p.minted_by.as_deref().unwrap_or("-")), limit)
            }),
        };
        if let Some((bucket, limit)) = own {
            budgets.push(Budget { bucket, limit, policy: "credential" });
        }
        if let Some(limit) = b.workspace {
            budgets.push(Budget { bucket: format!("ws:{}", p.workspace_id), limit, policy: "workspace" });
        }
        let now_ms = (cx.now().unix_timestamp_nanos() / 1_000_000) as i64;
        match self.shared.limiter.charge(&budgets, now_ms).await {
            Some(d) if !d.allowed => Err(Rejection::RateLimited(d)),
            d => Ok(d),
        }
    }
}

/// The layer [`Guard::require`] returns.
pub struct Require<S> {
    guard: Guard<S>,
    scopes: Arc<[String]>,
    /// The route returns personal data (recorded as `pii_access`).
    pii: bool,
}

impl<S> Clone for Require<S> {
    fn clone(&self) -> Self {
        Self { guard: self.guard.clone(), scopes: self.scopes.clone(), pii: self.pii }
    }
}

impl<S> Require<S> {
    /// Marks the route as returning personal data: its audit entries carry `pii_access`.
    pub fn pii(mut self) -> Self {
        self.pii = true;
        self
    }
}

impl<S, Svc> Layer<Svc> for Require<S> {
    type Service = RequireService<S, Svc>;

    fn layer(&self, inner: Svc) -> Self::Service {
        RequireService { layer: self.clone(), inner }
    }
}

/// The service of [`Require`]: admits or answers with the rejection, and adds the `RateLimit`
/// headers to admitted responses. Needs the peer address as `ConnectInfo<SocketAddr>` (serve
/// with `into_make_service_with_connect_info::<SocketAddr>()`).
pub struct RequireService<S, Svc> {
    layer: Require<S>,
    inner: Svc,
}

impl<S, Svc: Clone> Clone for RequireService<S, Svc> {
    fn clone(&self) -> Self {
        Self { layer: self.layer.clone(), inner: self.inner.clone() }
    }
}

impl<S, Svc> Service<Request<Body>> for RequireService<S, Svc>
where
    S: Store,
    Svc: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    Svc::Future: Send + 'static,
{
    type Response = Response;
    type Error = Svc::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Svc::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let layer = self.layer.clone();
        // The clone that was polled ready is the one to call (tower's Service contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let guard = &layer.guard;
            let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
                tracing::error!(
                    "the guard needs ConnectInfo<SocketAddr>: serve with into_make_service_with_connect_info"
                );
                return Ok(guard.reject(Rejection::Internal));
            };
            let cx = guard.cx();
            let method = req.method().clone();
            let scheme = credential(req.headers()).map_or(Scheme::Bearer, |(s, _)| s);
            // Only DPoP proofs need the path (their `htu`): Bearer calls skip the allocation.
            let path = match scheme {
                Scheme::Dpop => Call::of(&method, req.uri(), req.extensions(), req.headers()).path.to_owned(),
                Scheme::Bearer => String::new(),
            };
            if !cx.settings.audit.requests {
                let call_of = Call { method: method.as_str(), path: &path, headers: req.headers() };
                let checked = guard.check(&call_of, peer, &layer.scopes).await;
                return match checked {
                    Ok(admitted) => {
                        req.extensions_mut().insert(admitted.principal);
                        let mut resp = inner.call(req).await?;
                        if let Some(d) = &admitted.budget {
                            rejection::rate_limit_headers(d, resp.headers_mut());
                        }
                        Ok(resp)
                    }
                    Err(r) => Ok(guard.reject_as(r, scheme)),
                };
            }
            let ip = client_ip::client_ip(&cx.settings.trusted_proxies, peer, req.headers());
            let mut call = audit::CallRecorder::start(cx, &mut req, &guard.event, ip, layer.pii);
            let call_of = Call { method: method.as_str(), path: &path, headers: req.headers() };
            let principal = match guard.authenticate(&call_of, peer).await {
                Ok(p) => p,
                Err(r) => return Ok(refuse(guard, call, r, scheme).await),
            };
            call.principal(&principal);
            let admitted = match guard.admit(principal, &layer.scopes).await {
                Ok(a) => a,
                Err(r) => return Ok(refuse(guard, call, r, scheme).await),
            };
            let mut req = match call.body(cx, req).await {
                Ok(req) => req,
                Err(_) => {
                    let resp = bad_body();
                    call.finish(cx, resp.status().as_u16(), Some("invalid_request")).await;
                    return Ok(resp);
                }
            };
            req.extensions_mut().insert(admitted.principal);
            let mut resp = inner.call(req).await?;
            if let Some(d) = &admitted.budget {
                rejection::rate_limit_headers(d, resp.headers_mut());
            }
            call.finish(cx, resp.status().as_u16(), None).await;
            Ok(resp)
        })
    }
}

/// Answers a refused call and records it.
async fn refuse<S: Store>(
    guard: &Guard<S>,
    call: audit::CallRecorder,
    r: Rejection,
    scheme: Scheme,
) -> Response {
    let code = audit::rejection_code(&r);
    let resp = guard.reject_as(r, scheme);
    call.finish(guard.cx(), resp.status().as_u16(), Some(code)).await;
    resp
}

/// The client announced a body it did not send.
fn bad_body() -> Response {
    let mut resp = Response::new(Body::from(
        r#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"the request body could not be read"}"#,
    ));
    *resp.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/problem+json"));
    resp
}
