//! Protocol settings the core needs (the server crate builds them from flags, env and file).

use portcullis_domain::KeyEnvironment;
use portcullis_domain::api_key::IpNet;
use time::Duration;

#[derive(Clone, Debug)]
pub struct Settings {
    /// The issuer identifier (RFC 8414 §2): an https (or loopback http) URL without a trailing
    /// slash, query or fragment. Every endpoint URL is derived from it.
    pub issuer: String,
    /// The `aud` of access tokens when the request names no resource.
    pub audience: String,
    /// The protected resources tokens may be issued for (RFC 8707 `resource`): the built-in API
    /// (`audience`), the MCP endpoint and any configured gateway resources. A token request
    /// naming anything else is `invalid_target`.
    pub resources: Vec<String>,
    pub access_token_ttl: Duration,
    pub refresh_token_idle_ttl: Duration,
    pub refresh_token_absolute_ttl: Duration,
    /// How long a browser session lasts after sign-in.
    pub session_ttl: Duration,
    /// How long a user has to sign in and consent once an app sent them to us.
    pub authorization_request_ttl: Duration,
    /// How long a device code (RFC 8628) stays valid.
    pub device_code_ttl: Duration,
    /// The minimum polling interval a device is told (RFC 8628 §3.2 `interval`).
    pub device_poll_interval: Duration,
    /// How long a rotated-in signing key is published before it starts signing.
    pub signing_key_activation_delay: Duration,
    /// The replica holding the maintenance lease rotates the signing key when the newest key is
    /// this old (`None`: rotation only by hand).
    pub signing_key_rotation: Option<Duration>,
    /// How often replicas compete for the maintenance lease and its holder works; the lease
    /// lasts three intervals, so a dead holder is replaced within that.
    pub maintenance_interval: Duration,
    /// Which API keys this deployment issues and accepts (`pcl_live_…` or `pcl_test_…`).
    pub key_environment: KeyEnvironment,
    /// Proxies whose `X-Forwarded-For` is believed when finding a caller's address (for API key
    /// CIDR allowlists and usage records). Empty: the TCP peer is the caller.
    pub trusted_proxies: Vec<IpNet>,
    /// How long the guard trusts credential state it loaded (API keys, grant status, member
    /// permissions): the longest another replica's revocation can go unnoticed. Zero disables
    /// the cache.
    pub credential_cache_ttl: Duration,
    /// The audit log: what is recorded, how durably, checkpoints, retention, redaction.
    pub audit: crate::audit::AuditSettings,
    /// Every authorization request must be pushed first (RFC 9126 §5).
    pub require_pushed_requests: bool,
    /// Dynamic client registration (RFC 7591): who may register, limits, dedup, reclamation.
    pub registration: crate::oauth::registration::RegistrationSettings,
    /// DPoP proof checks (RFC 9449): nonce requirement and time window.
    pub dpop: crate::oauth::dpop::DpopSettings,
    /// Client ID Metadata Documents: fetching https `client_id`s.
    pub client_metadata: crate::oauth::client_metadata::ClientMetadataSettings,
}

/// The longest overlap window a client may have for concurrent refreshes.
pub const MAX_REFRESH_OVERLAP: Duration = Duration::seconds(60);

/// A consumed refresh token presented again this soon, while its successor is still unused, is a
/// concurrent duplicate (two tabs, two workers) rather than a replay: it is refused without
/// revoking the family. Later, or once the successor was used, it is a replay.
pub const REFRESH_RACE_TOLERANCE: Duration = Duration::seconds(2);

/// Authorization codes live 60 seconds (RFC 6749 §4.1.2 recommends at most 10 minutes; shorter is
/// safer and clients redeem immediately).
pub const CODE_TTL: Duration = Duration::seconds(60);

impl Settings {
    /// Defaults for `issuer`: 15 min access tokens, refresh 30 days idle / 90 days absolute,
    /// 12 h sessions, 10 min to complete an authorization.
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into().trim_end_matches('/').to_owned();
        Self {
            audience: format!("{issuer}/api"),
            // The MCP endpoint is always served at `/mcp` under the issuer.
            resources: vec![format!("{issuer}/api"), format!("{issuer}/mcp")],
            issuer,
            access_token_ttl: Duration::minutes(15),
            refresh_token_idle_ttl: Duration::days(30),
            refresh_token_absolute_ttl: Duration::days(90),
            session_ttl: Duration::hours(12),
            authorization_request_ttl: Duration::minutes(10),
            device_code_ttl: Duration::minutes(10),
            device_poll_interval: Duration::seconds(5),
            signing_key_activation_delay: Duration::minutes(10),
            signing_key_rotation: Some(Duration::days(90)),
            maintenance_interval: Duration::seconds(30),
            key_environment: KeyEnvironment::Live,
            trusted_proxies: Vec::new(),
            credential_cache_ttl: Duration::seconds(5),
            audit: crate::audit::AuditSettings::default(),
            registration: Default::default(),
            require_pushed_requests: false,
            dpop: Default::default(),
            client_metadata: Default::default(),
        }
    }

    /// The longest lifetime of anything we sign: a retiring key stays published this long after
    /// it stops signing. Service tokens (up to 60 minutes) are signed with the same keys.
    pub fn longest_token_ttl(&self) -> Duration {
        self.access_token_ttl.max(Duration::hours(1))
    }

    /// The issuer's path (`""`, or `/tenant` for `https://host/tenant`): every route is served
    /// under it, and the RFC 8414 metadata also at `/.well-known/…{path}`.
    pub fn path(&self) -> &str {
        let rest = self.issuer.split_once("://").map_or("", |(_, r)| r);
        rest.find('/').map_or("", |i| &rest[i..])
    }

    /// Whether `resource` is one of ours (RFC 8707).
    pub fn is_resource(&self, resource: &str) -> bool {
        self.resources.iter().any(|r| r == resource)
    }

    /// Cookies get `Secure` when the issuer is https.
    pub fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

/// Checks an issuer URL: absolute http(s), no query or fragment (RFC 8414 §2); plain http only
/// for loopback hosts unless `allow_insecure` (development behind a TLS-terminating proxy is the
/// usual reason, and then the proxy's https URL should be the issuer anyway).
pub fn validate_issuer(issuer: &str) -> Result<(), String> {
    let url = url::Url::parse(issuer).map_err(|_| format!("issuer {issuer:?} is not a URL"))?;
    if url.query().is_some() || url.fragment().is_some() || issuer.contains('?') {
        return Err(format!("issuer {issuer:?} must not have a query or fragment (RFC 8414 §2)"));
    }
    match url.scheme() {
        "https" | "http" => Ok(()),
        _ => Err(format!("issuer {issuer:?} must be an http(s) URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_path() {
        assert_eq!(Settings::new("https://a.example").path(), "");
        assert_eq!(Settings::new("https://a.example/").path(), "");
        assert_eq!(Settings::new("https://a.example/t/one").path(), "/t/one");
        assert_eq!(Settings::new("http://127.0.0.1:8080/x/").path(), "/x");
    }
}
