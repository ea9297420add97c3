//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).
//!
//! Anyone may register (or, by policy, anyone holding an initial access token), so everything a
//! registration brings is checked and bounded: redirect URIs are https or loopback http with no
//! fragment and are matched as exact strings later; grant and response types must agree; scopes
//! are limited to what self-registered clients may ask for; names are shown as unverified. An
//! identical public registration from the same address within the dedup window returns the
//! existing client (MCP clients re-register on every start), and clients never used are
//! reclaimed after a while. Rate limiting per address is the HTTP layer's (it owns the shared
//! limiter); [`find_duplicate`] runs before it so retries are never refused.

use crate::context::{Cx, internal};
use portcullis_domain::redirect_uri::RedirectKind;
use portcullis_domain::secret::prefix;
use portcullis_domain::{ClientId, RateLimit, RedirectUri, ScopeSet, TokenHash, random_token};
use portcullis_proto::token::{GRANT_AUTHORIZATION_CODE, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN};
use portcullis_proto::{ErrorCode, OAuthError};
use portcullis_store::{Client, ClientOrigin, Registration, Store};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::Duration;

/// Who may register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationMode {
    /// Anyone (what MCP clients expect), rate-limited per address.
    Open,
    /// Only callers presenting an initial access token: an API key or service token of any
    /// workspace holding `apps:manage` (RFC 7591 §3).
    InitialAccessToken,
    /// No registration endpoint.
    Disabled,
}

impl RegistrationMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Self::Open),
            "token" => Ok(Self::InitialAccessToken),
            "off" => Ok(Self::Disabled),
            _ => Err(format!("registration mode {s:?}: expected open, token or off")),
        }
    }
}

/// Registration policy.
#[derive(Clone, Debug)]
pub struct RegistrationSettings {
    pub mode: RegistrationMode,
    /// Registrations per source address.
    pub rate_limit: RateLimit,
    /// An identical public registration from the same address this recently returns the
    /// existing client.
    pub dedup_window: Duration,
    /// Self-registered clients never used this long after registering are deleted.
    pub reclaim_after: Option<Duration>,
    /// What self-registered clients may ask for; `None`: every scope grantable through OAuth.
    pub allowed_scopes: Option<ScopeSet>,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        Self {
            mode: RegistrationMode::Open,
            rate_limit: RateLimit::parse("20/hour").expect("valid"),
            dedup_window: Duration::minutes(10),
            reclaim_after: Some(Duration::days(30)),
            allowed_scopes: None,
        }
    }
}

/// The scope `apps:manage` an initial access token must hold.
pub const INITIAL_ACCESS_SCOPE: &str = "apps:manage";

const AUTH_METHODS: [&str; 3] = ["none", "client_secret_basic", "client_secret_post"];
const GRANTS: [&str; 3] = [GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_DEVICE_CODE];
const MAX_NAME: usize = 100;

/// RFC 7591 §2 client metadata as sent. Unknown members are ignored (§2: "The authorization
/// server MUST ignore any client metadata sent by the client that it does not understand").
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Incoming {
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    scope: Option<String>,
    contacts: Option<Vec<String>>,
    tos_uri: Option<String>,
    policy_uri: Option<String>,
    software_id: Option<String>,
    software_version: Option<String>,
    application_type: Option<String>,
    require_pushed_authorization_requests: Option<bool>,
    dpop_bound_access_tokens: Option<bool>,
    // RFC 7592 §2.2 update requests.
    client_id: Option<String>,
    client_secret: Option<String>,
    registration_access_token: Option<Value>,
    registration_client_uri: Option<Value>,
    client_secret_expires_at: Option<Value>,
    client_id_issued_at: Option<Value>,
}

/// Checked, normalised metadata: what is stored and echoed. Field order is fixed, so its JSON
/// is canonical (the dedup fingerprint hashes it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub scope: String,
    pub application_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub contacts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// RFC 9126 §6.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_pushed_authorization_requests: bool,
    /// RFC 9449 §5.2.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
}

impl Metadata {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == "none"
    }
}

fn bad_metadata(why: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, why)
}

fn bad_redirect(why: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRedirectUri, why)
}

/// The registration access token was missing, wrong, or its client is gone (RFC 7592 §2).
pub fn invalid_token() -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, "the registration access token is invalid")
}

/// An informational https (or loopback http) URL, as `client_uri`, `logo_uri`, `tos_uri`,
/// `policy_uri` must be.
fn info_url(name: &str, v: Option<String>) -> Result<Option<String>, OAuthError> {
    let Some(v) = v else { return Ok(None) };
    let ok = v.len() <= 2000
        && RedirectUri::parse(&v)
            .is_ok_and(|u| matches!(u.kind(), RedirectKind::Https | RedirectKind::Loopback));
    if !ok {
        return Err(bad_metadata(format!("{name} must be an https URL")));
    }
    Ok(Some(v))
}

fn short_text(name: &str, v: Option<String>, max: usize) -> Result<Option<String>, OAuthError> {
    match v {
        Some(t) if t.chars().count() > max || t.chars().any(char::is_control) => {
            Err(bad_metadata(format!("{name} must be at most {max} printable characters")))
        }
        Some(t) if t.trim().is_empty() => Ok(None),
        other => Ok(other.map(|t| t.trim().to_owned())),
    }
}

/// The scopes self-registered clients may ask for.
pub fn allowed_scopes<S: Store>(cx: &Cx<S>) -> ScopeSet {
    cx.settings
        .registration
        .allowed_scopes
        .clone()
        .unwrap_or_else(|| ScopeSet::parse(&cx.catalogue.oauth_scopes().join(" ")).unwrap_or_default())
}

/// Checks the metadata of a Client ID Metadata Document: RFC 7591 metadata whose `client_id` is
/// the document's own URL (checked by the caller), for a client without a secret.
pub fn check_document<S: Store>(cx: &Cx<S>, body: &Value) -> Result<Metadata, OAuthError> {
    let mut m: Incoming = serde_json::from_value(body.clone())
        .map_err(|e| bad_metadata(format!("malformed client metadata: {e}")))?;
    if m.client_secret.is_some() {
        return Err(bad_metadata("a client metadata document must not contain a client_secret"));
    }
    match m.token_endpoint_auth_method.as_deref() {
        None | Some("none") => m.token_endpoint_auth_method = Some("none".into()),
        Some(other) => {
            return Err(bad_metadata(format!(
                "token_endpoint_auth_method {other:?} is not supported for metadata documents (use none)"
            )));
        }
    }
    if m.grant_types.is_none() {
        m.grant_types = Some(vec![GRANT_AUTHORIZATION_CODE.into(), GRANT_REFRESH_TOKEN.into()]);
    }
    check_incoming(cx, m)
}

/// Checks RFC 7591 §2 metadata and normalises it (defaults filled in).
pub fn check<S: Store>(cx: &Cx<S>, body: &Value) -> Result<Metadata, OAuthError> {
    if !body.is_object() {
        return Err(bad_metadata("the request body must be a JSON object of client metadata"));
    }
    let m: Incoming = serde_json::from_value(body.clone())
        .map_err(|e| bad_metadata(format!("malformed client metadata: {e}")))?;
    check_incoming(cx, m)
}

fn check_incoming<S: Store>(cx: &Cx<S>, m: Incoming) -> Result<Metadata, OAuthError> {
    let auth = m.token_endpoint_auth_method.unwrap_or_else(|| "client_secret_basic".into());
    if !AUTH_METHODS.contains(&auth.as_str()) {
        return Err(bad_metadata(format!(
            "token_endpoint_auth_method must be one of {}",
            AUTH_METHODS.join(", ")
        )));
    }
    let mut grant_types = m.grant_types.unwrap_or_else(|| vec![GRANT_AUTHORIZATION_CODE.into()]);
    grant_types.dedup();
    if let Some(g) = grant_types.iter().find(|g| !GRANTS.contains(&g.as_str())) {
        return Err(bad_metadata(format!(
            "grant type {g:?} cannot be registered (allowed: {})",
            GRANTS.join(", ")
        )));
    }
    let has = |g: &str| grant_types.iter().any(|x| x == g);
    if grant_types.is_empty()
        || (has(GRANT_REFRESH_TOKEN) && !has(GRANT_AUTHORIZATION_CODE) && !has(GRANT_DEVICE_CODE))
    {
        return Err(bad_metadata("refresh_token needs authorization_code or the device code grant"));
    }
    let response_types = m
        .response_types
        .unwrap_or_else(|| if has(GRANT_AUTHORIZATION_CODE) { vec!["code".into()] } else { vec![] });
    // §2.1: grant types and response types must agree.
    let wants_code = response_types.iter().any(|r| r == "code");
    if response_types.iter().any(|r| r != "code") {
        return Err(bad_metadata("only the code response type is supported"));
    }
    if wants_code != has(GRANT_AUTHORIZATION_CODE) {
        return Err(bad_metadata(
            "response_types [\"code\"] and grant type authorization_code go together (RFC 7591 §2.1)",
        ));
    }

    // Redirect URIs: https, or http on a loopback address; no fragments; stored as sent.
    let raw_uris = m.redirect_uris.unwrap_or_default();
    if has(GRANT_AUTHORIZATION_CODE) && raw_uris.is_empty() {
        return Err(bad_redirect("redirect_uris is required for the authorization_code grant"));
    }
    if !has(GRANT_AUTHORIZATION_CODE) && !raw_uris.is_empty() {
        return Err(bad_redirect("redirect_uris only apply to the authorization_code grant"));
    }
    if raw_uris.len() > 10 {
        return Err(bad_redirect("at most 10 redirect URIs"));
    }
    let mut kinds = Vec::new();
    let mut redirect_uris: Vec<String> = Vec::new();
    for raw in raw_uris {
        let uri = RedirectUri::parse(&raw).map_err(|e| bad_redirect(e.0))?;
        match uri.kind() {
            RedirectKind::Https | RedirectKind::Loopback => kinds.push(uri.kind()),
            RedirectKind::PrivateUse => {
                return Err(bad_redirect(format!(
                    "{raw}: only https and loopback http redirect URIs can be registered"
                )));
            }
        }
        if !redirect_uris.contains(&raw) {
            redirect_uris.push(raw);
        }
    }
    // OpenID Connect Registration §2: web clients use https (no localhost); native apps may use
    // loopback. Unstated, a client whose redirect URIs include a loopback one is native.
    let application_type = match m.application_type.as_deref() {
        Some("web") => {
            if kinds.contains(&RedirectKind::Loopback) {
                return Err(bad_redirect(
                    "web clients must use https redirect URIs (loopback is for native apps)",
                ));
            }
            "web"
        }
        Some("native") => "native",
        Some(other) => {
            return Err(bad_metadata(format!("application_type {other:?}: expected web or native")));
        }
        None if kinds.contains(&RedirectKind::Loopback) => "native",
        None => "web",
    };

    let allowed = allowed_scopes(cx);
    let scope = match m.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => allowed.clone(),
        Some(raw) => {
            let set = cx.catalogue.parse_known(raw).map_err(bad_metadata)?;
            if !set.is_subset(&allowed) {
                return Err(bad_metadata(format!(
                    "self-registered clients may not request: {}",
                    set.difference(&allowed)
                )));
            }
            set
        }
    };
    if scope.is_empty() {
        return Err(bad_metadata("no scope left to register"));
    }
    let contacts = m.contacts.unwrap_or_default();
    if contacts.len() > 10 || contacts.iter().any(|c| c.len() > 200 || c.chars().any(char::is_control)) {
        return Err(bad_metadata("contacts: at most 10 addresses of 200 characters"));
    }
    Ok(Metadata {
        client_name: short_text("client_name", m.client_name, MAX_NAME)?
            .unwrap_or_else(|| "Unnamed app".into()),
        redirect_uris,
        token_endpoint_auth_method: auth,
        grant_types,
        response_types,
        scope: scope.to_string(),
        application_type: application_type.into(),
        client_uri: info_url("client_uri", m.client_uri)?,
        logo_uri: info_url("logo_uri", m.logo_uri)?,
        tos_uri: info_url("tos_uri", m.tos_uri)?,
        policy_uri: info_url("policy_uri", m.policy_uri)?,
        contacts,
        software_id: short_text("software_id", m.software_id, 200)?,
        software_version: short_text("software_version", m.software_version, 100)?,
        require_pushed_authorization_requests: m.require_pushed_authorization_requests.unwrap_or(false),
        dpop_bound_access_tokens: m.dpop_bound_access_tokens.unwrap_or(false),
    })
}

/// The dedup key: the registering address and the canonical metadata.
pub fn fingerprint(meta: &Metadata, source: &str) -> String {
    let canonical = serde_json::to_string(meta).expect("metadata serialises");
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(format!("{source}\n{canonical}").as_bytes()))
}

/// A registration's response (RFC 7591 §3.2.1, RFC 7592 §3).
pub struct Registered {
    pub client: Client,
    pub metadata: Metadata,
    pub client_secret: Option<SecretString>,
    pub registration_access_token: SecretString,
    /// True when an identical earlier registration was returned.
    pub existing: bool,
}

impl Registered {
    /// The response body; `registration_client_uri` is where RFC 7592 requests go.
    pub fn to_json(&self, registration_client_uri: &str) -> Value {
        let mut v = serde_json::to_value(&self.metadata).expect("serialises");
        let o = v.as_object_mut().expect("an object");
        o.insert("client_id".into(), json!(self.client.id.as_str()));
        o.insert("client_id_issued_at".into(), json!(self.client.created_at.unix_timestamp()));
        if let Some(s) = &self.client_secret {
            o.insert("client_secret".into(), json!(s.expose_secret()));
            o.insert("client_secret_expires_at".into(), json!(0));
        }
        o.insert("registration_access_token".into(), json!(self.registration_access_token.expose_secret()));
        o.insert("registration_client_uri".into(), json!(registration_client_uri));
        v
    }
}

/// An unrevoked public client registered with the same metadata from `source` within the dedup
/// window, given a fresh registration access token (the previous one stops working).
/// Confidential registrations are never deduplicated: their secret exists only in the first
/// response.
pub async fn find_duplicate<S: Store>(
    cx: &Cx<S>,
    meta: &Metadata,
    source: &str,
) -> Result<Option<Registered>, OAuthError> {
    if !meta.is_public() {
        return Ok(None);
    }
    let since = cx.now() - cx.settings.registration.dedup_window;
    let Some(mut client) =
        cx.store.client_by_fingerprint(&fingerprint(meta, source), since).await.map_err(internal)?
    else {
        return Ok(None);
    };
    let token = random_token(prefix::REGISTRATION_TOKEN);
    if let Some(r) = client.registration.as_mut() {
        r.token_hash = Some(TokenHash::of(token.expose_secret()));
    }
    cx.cache.invalidate();
    if !cx.store.update_registered_client(&client).await.map_err(internal)? {
        return Ok(None);
    }
    Ok(Some(Registered {
        client,
        metadata: meta.clone(),
        client_secret: None,
        registration_access_token: token,
        existing: true,
    }))
}

/// Creates the client (RFC 7591 §3.2.1).
pub async fn create<S: Store>(cx: &Cx<S>, meta: Metadata, source: &str) -> Result<Registered, OAuthError> {
    let secret = (!meta.is_public()).then(|| random_token(prefix::CLIENT_SECRET));
    let token = random_token(prefix::REGISTRATION_TOKEN);
    let client = Client {
        id: ClientId::generate(),
        name: meta.client_name.clone(),
        secret_hash: secret.as_ref().map(|s| TokenHash::of(s.expose_secret())),
        redirect_uris: parse_uris(&meta)?,
        scopes: ScopeSet::parse(&meta.scope).map_err(|e| bad_metadata(e.0))?,
        grant_types: meta.grant_types.clone(),
        workspace_id: None,
        created_at: cx.now(),
        refresh_overlap: Duration::ZERO,
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        revoked_at: None,
        origin: ClientOrigin::Dynamic,
        require_pushed_requests: meta.require_pushed_authorization_requests,
        dpop_bound: meta.dpop_bound_access_tokens,
        registration: Some(Registration {
            metadata: serde_json::to_string(&meta).expect("serialises"),
            token_hash: Some(TokenHash::of(token.expose_secret())),
            registered_from: Some(source.to_owned()),
            fingerprint: Some(fingerprint(&meta, source)),
            refresh_after: None,
        }),
        last_used_at: None,
    };
    // Written before the client is: an unrecorded registration must not exist.
    let detail =
        json!({ "client_name": meta.client_name, "redirect_uris": meta.redirect_uris, "scope": meta.scope });
    audit(cx, "client.registered", &client, Some(source), detail).await?;
    cx.store.insert_client(&client).await.map_err(internal)?;
    tracing::info!(event = "client_registered", client_id = %client.id, source, "client registered (RFC 7591)");
    Ok(Registered {
        client,
        metadata: meta,
        client_secret: secret,
        registration_access_token: token,
        existing: false,
    })
}

fn parse_uris(meta: &Metadata) -> Result<Vec<RedirectUri>, OAuthError> {
    meta.redirect_uris.iter().map(|u| RedirectUri::parse(u).map_err(|e| bad_redirect(e.0))).collect()
}

/// The self-registered client `client_id` if `token` is its registration access token.
pub async fn authenticate<S: Store>(
    cx: &Cx<S>,
    client_id: &str,
    token: &str,
) -> Result<(Client, Metadata), OAuthError> {
    let client = cx
        .store
        .client_by_id(&ClientId::from_string(client_id))
        .await
        .map_err(internal)?
        .ok_or_else(invalid_token)?;
    let reg = client
        .registration
        .as_ref()
        .filter(|_| client.origin == ClientOrigin::Dynamic && !client.is_revoked());
    let Some(reg) = reg else { return Err(invalid_token()) };
    if reg.token_hash.as_ref() != Some(&TokenHash::of(token)) {
        return Err(invalid_token());
    }
    let meta: Metadata = serde_json::from_str(&reg.metadata).map_err(internal)?;
    Ok((client, meta))
}

/// RFC 7592 §2.1: the current registration, with the presented token.
pub async fn read<S: Store>(cx: &Cx<S>, client_id: &str, token: &str) -> Result<Registered, OAuthError> {
    let (client, metadata) = authenticate(cx, client_id, token).await?;
    Ok(Registered {
        client,
        metadata,
        client_secret: None,
        registration_access_token: SecretString::from(token.to_owned()),
        existing: true,
    })
}

/// RFC 7592 §2.2: replaces the client's metadata with `body` (omitted fields take their
/// defaults). The client id and authentication method cannot change.
pub async fn update<S: Store>(
    cx: &Cx<S>,
    client_id: &str,
    token: &str,
    body: &Value,
) -> Result<Registered, OAuthError> {
    let (client, current) = authenticate(cx, client_id, token).await?;
    if !body.is_object() {
        return Err(bad_metadata("the request body must be a JSON object of client metadata"));
    }
    let m: Incoming = serde_json::from_value(body.clone())
        .map_err(|e| bad_metadata(format!("malformed client metadata: {e}")))?;
    if m.client_id.as_deref() != Some(client_id) {
        return Err(OAuthError::invalid_request(
            "the body must carry this client's client_id (RFC 7592 §2.2)",
        ));
    }
    if m.registration_access_token.is_some()
        || m.registration_client_uri.is_some()
        || m.client_secret_expires_at.is_some()
        || m.client_id_issued_at.is_some()
    {
        return Err(bad_metadata(
            "registration_access_token, registration_client_uri, client_secret_expires_at and \
             client_id_issued_at cannot be sent in an update (RFC 7592 §2.2)",
        ));
    }
    if let Some(secret) = &m.client_secret
        && client.secret_hash.as_ref() != Some(&TokenHash::of(secret))
    {
        return Err(bad_metadata("client_secret does not match the client's secret"));
    }
    let meta = check_incoming(cx, Incoming { client_id: None, client_secret: None, ..m })?;
    if meta.token_endpoint_auth_method != current.token_endpoint_auth_method
        && (meta.is_public() || current.is_public())
    {
        return Err(bad_metadata("a client cannot switch between public and confidential"));
    }
    let mut updated = client.clone();
    updated.name = meta.client_name.clone();
    updated.redirect_uris = parse_uris(&meta)?;
    updated.scopes = ScopeSet::parse(&meta.scope).map_err(|e| bad_metadata(e.0))?;
    updated.grant_types = meta.grant_types.clone();
    updated.require_pushed_requests = meta.require_pushed_authorization_requests;
    updated.dpop_bound = meta.dpop_bound_access_tokens;
    if let Some(r) = updated.registration.as_mut() {
        r.metadata = serde_json::to_string(&meta).expect("serialises");
    }
    let detail =
        json!({ "client_name": meta.client_name, "redirect_uris": meta.redirect_uris, "scope": meta.scope });
    audit(cx, "client.updated", &updated, None, detail).await?;
    cx.cache.invalidate();
    if !cx.store.update_registered_client(&updated).await.map_err(internal)? {
        return Err(invalid_token());
    }
    Ok(Registered {
        client: updated,
        metadata: meta,
        client_secret: None,
        registration_access_token: SecretString::from(token.to_owned()),
        existing: true,
    })
}

/// RFC 7592 §2.3: deregisters (revokes) the client; its grants and tokens stop working.
pub async fn delete<S: Store>(cx: &Cx<S>, client_id: &str, token: &str) -> Result<(), OAuthError> {
    let (client, _) = authenticate(cx, client_id, token).await?;
    audit(cx, "client.deregistered", &client, None, json!({})).await?;
    cx.store.revoke_client(&client.id, cx.now()).await.map_err(internal)?;
    cx.cache.invalidate();
    tracing::info!(event = "client_deregistered", client_id = %client.id, "client deleted (RFC 7592)");
    Ok(())
}

/// Deletes self-registered clients never used within the reclaim period. Returns how many.
pub async fn reclaim<S: Store>(cx: &Cx<S>) -> Result<u64, OAuthError> {
    let Some(after) = cx.settings.registration.reclaim_after else { return Ok(0) };
    let n = cx.store.reclaim_unused_clients(cx.now() - after).await.map_err(internal)?;
    if n > 0 {
        tracing::info!(event = "clients_reclaimed", count = n, "unused self-registered clients deleted");
    }
    Ok(n)
}

/// Registrations are audit events of the instance log (a self-registered client belongs to no
/// workspace).
async fn audit<S: Store>(
    cx: &Cx<S>,
    kind: &str,
    client: &Client,
    source: Option<&str>,
    detail: Value,
) -> Result<(), OAuthError> {
    let mut r = crate::events::entry(kind, cx.now(), None);
    r.client_id = Some(client.id.to_string());
    r.subject = Some(client.id.to_string());
    r.ip = source.and_then(|s| s.parse().ok());
    r.params = detail.to_string();
    crate::events::write(cx.events(), r).await.map_err(internal)
}
