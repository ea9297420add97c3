//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP 2025-11-25):
//! a `client_id` that is an https URL names a JSON document of RFC 7591 metadata, served by the
//! client's own site. We fetch it when the client first appears and again when our copy expires
//! (per the response's `Cache-Control`, within bounds), and keep it as a client row with origin
//! `metadata_document`, so everything downstream (consent, grants, tokens, revocation) treats it
//! like any other public client.
//!
//! Fetching a URL a stranger chose is a server-side request forgery risk, so: https only, no
//! credentials or fragments, names resolving to private/loopback/link-local addresses refused
//! (checked on the resolved addresses, so DNS cannot smuggle them in) unless configured for
//! tests, redirects only within the same host, a size and a time limit. The document's
//! `client_id` must be exactly its URL, and only its `redirect_uris` are accepted.

use super::registration;
use crate::context::{Cx, internal};
use portcullis_domain::{ClientId, RedirectUri, ScopeSet};
use portcullis_proto::{ErrorCode, OAuthError};
use portcullis_store::{Client, ClientOrigin, Registration, Store};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use time::Duration;

/// How https `client_id`s are resolved.
#[derive(Clone, Debug)]
pub struct ClientMetadataSettings {
    /// Resolve https `client_id`s at all.
    pub enabled: bool,
    /// Fetch documents from private, loopback and link-local addresses (tests, private networks).
    pub allow_private_addresses: bool,
    /// Extra trusted root certificate (PEM) for fetching documents (tests, private CAs).
    pub ca_file: Option<std::path::PathBuf>,
    /// The largest document accepted.
    pub max_bytes: usize,
    /// How long a fetch may take.
    pub timeout: Duration,
    /// How long a document is used when its response says nothing about caching (and the bounds
    /// put on what it says).
    pub default_ttl: Duration,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for ClientMetadataSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_private_addresses: false,
            ca_file: None,
            max_bytes: 5 * 1024,
            timeout: Duration::seconds(5),
            default_ttl: Duration::hours(1),
            min_ttl: Duration::minutes(1),
            max_ttl: Duration::days(1),
        }
    }
}

/// Whether `client_id` names a metadata document (an https URL).
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

fn bad(why: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, format!("client metadata document: {}", why.into()))
}

/// The client `client_id` names: a stored client, or (https `client_id`) the one described by
/// its metadata document, fetched now if our copy is missing or stale. `Ok(None)`: no such client.
pub async fn load<S: Store>(cx: &Cx<S>, client_id: &str) -> Result<Option<Arc<Client>>, OAuthError> {
    if !is_document_url(client_id) || !cx.settings.client_metadata.enabled {
        // Ordinary clients come from the credential cache (the row rarely changes).
        return super::client_auth::cached_client(cx, client_id).await;
    }
    Ok(load_document_client(cx, client_id).await?.map(Arc::new))
}

/// A metadata document client: stored, or fetched (again) when new or stale.
async fn load_document_client<S: Store>(cx: &Cx<S>, client_id: &str) -> Result<Option<Client>, OAuthError> {
    let id = ClientId::from_string(client_id);
    let stored = cx.store.client_by_id(&id).await.map_err(internal)?;
    let now = cx.now();
    if let Some(c) = &stored {
        if c.is_revoked() {
            return Ok(None);
        }
        let fresh = c.registration.as_ref().and_then(|r| r.refresh_after).is_some_and(|t| now < t);
        if c.origin != ClientOrigin::MetadataDocument || fresh {
            return Ok(stored);
        }
    }
    let fetched = fetch(&cx.settings.client_metadata, client_id).await?;
    let meta = registration::check_document(cx, &fetched.document)
        .map_err(|e| bad(e.description.map_or_else(|| e.code.to_string(), |d| d.into_owned())))?;
    let client = Client {
        id: id.clone(),
        name: meta.client_name.clone(),
        secret_hash: None,
        redirect_uris: meta
            .redirect_uris
            .iter()
            .map(|u| RedirectUri::parse(u).map_err(|e| bad(e.0)))
            .collect::<Result<_, _>>()?,
        scopes: ScopeSet::parse(&meta.scope).map_err(|e| bad(e.0))?,
        grant_types: meta.grant_types.clone(),
        workspace_id: None,
        created_at: stored.as_ref().map_or(now, |c| c.created_at),
        refresh_overlap: Duration::ZERO,
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        revoked_at: None,
        require_pushed_requests: meta.require_pushed_authorization_requests,
        dpop_bound: meta.dpop_bound_access_tokens,
        origin: ClientOrigin::MetadataDocument,
        registration: Some(Registration {
            metadata: serde_json::to_string(&meta).expect("serialises"),
            token_hash: None,
            registered_from: None,
            fingerprint: None,
            refresh_after: Some(now + fetched.ttl),
        }),
        last_used_at: stored.as_ref().and_then(|c| c.last_used_at),
    };
    cx.cache.invalidate();
    if stored.is_some() {
        cx.store.update_registered_client(&client).await.map_err(internal)?;
    } else if let Err(e) = cx.store.insert_client(&client).await {
        // Two first requests raced; the other one's row is as good as ours.
        tracing::debug!(error = %e, client_id, "metadata document client inserted concurrently");
        return cx.store.client_by_id(&id).await.map_err(internal);
    } else {
        tracing::info!(
            event = "client_metadata_document",
            client_id,
            "client resolved from its metadata document"
        );
    }
    Ok(Some(client))
}

/// A fetched document and how long it may be used.
pub struct Fetched {
    pub document: Value,
    pub ttl: Duration,
}

/// Checks the URL's shape (draft §3: https, a path, no fragment, no credentials, no dot segments).
pub fn check_url(client_id: &str) -> Result<url::Url, OAuthError> {
    let u = url::Url::parse(client_id).map_err(|_| bad("the client_id is not a URL"))?;
    let raw_path = client_id.splitn(4, '/').nth(3).unwrap_or_default();
    if u.scheme() != "https"
        || u.fragment().is_some()
        || !u.username().is_empty()
        || u.password().is_some()
        || raw_path.is_empty()
        || raw_path.split(['/', '?']).any(|seg| seg == "." || seg == "..")
    {
        return Err(bad(
            "the client_id must be an https URL with a path, without fragment, credentials or dot segments",
        ));
    }
    // The parser normalises; a client_id it would change is not the URL it claims to be.
    if u.as_str() != client_id {
        return Err(bad("the client_id is not in normalised form"));
    }
    Ok(u)
}

/// Fetches and parses the document at `client_id` under the limits of `s`.
pub async fn fetch(s: &ClientMetadataSettings, client_id: &str) -> Result<Fetched, OAuthError> {
    let url = check_url(client_id)?;
    match url.host() {
        Some(url::Host::Ipv4(ip)) if !s.allow_private_addresses && !is_public(IpAddr::V4(ip)) => {
            return Err(bad("the client_id's host is not a public address"));
        }
        Some(url::Host::Ipv6(ip)) if !s.allow_private_addresses && !is_public(IpAddr::V6(ip)) => {
            return Err(bad("the client_id's host is not a public address"));
        }
        _ => {}
    }
    let http = client(s)?;
    let resp = http.get(url.clone()).header("accept", "application/json").send().await.map_err(|e| {
        tracing::info!(error = %e, client_id, "fetching a client metadata document failed");
        if e.is_timeout() {
            return bad("fetching it timed out");
        }
        // The innermost causes say what went wrong (a refused address, a redirect elsewhere).
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        bad(format!("it could not be fetched ({why})"))
    })?;
    if !resp.status().is_success() {
        return Err(bad(format!("fetching it answered {}", resp.status())));
    }
    let json_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            let t = t.trim().to_ascii_lowercase();
            t == "application/json" || t.ends_with("+json")
        });
    if !json_type {
        return Err(bad("it is not served as application/json"));
    }
    if resp.content_length().is_some_and(|n| n > s.max_bytes as u64) {
        return Err(bad(format!("it is larger than {} bytes", s.max_bytes)));
    }
    let ttl = ttl_of(s, resp.headers().get("cache-control").and_then(|v| v.to_str().ok()));
    let mut body = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp.chunk().await.map_err(|e| bad(format!("reading it failed ({e})")))? {
        body.extend_from_slice(&chunk);
        if body.len() > s.max_bytes {
            return Err(bad(format!("it is larger than {} bytes", s.max_bytes)));
        }
    }
    let document: Value = serde_json::from_slice(&body).map_err(|_| bad("it is not JSON"))?;
    if !document.is_object() {
        return Err(bad("it is not a JSON object"));
    }
    // Draft §4.1: the document's client_id must be exactly the URL it was fetched from.
    if document.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(bad("its client_id does not equal its URL"));
    }
    Ok(Fetched { document, ttl })
}

/// How long a document may be used, from `Cache-Control` (RFC 9111 §5.2.2): `no-store`,
/// `no-cache` and `max-age=0` mean as little as we allow; `max-age` within our bounds.
fn ttl_of(s: &ClientMetadataSettings, cache_control: Option<&str>) -> Duration {
    let Some(cc) = cache_control else { return s.default_ttl };
    let mut ttl = None;
    for d in cc.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if d == "no-store" || d == "no-cache" {
            return s.min_ttl;
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            ttl = v.trim_matches('"').parse::<i64>().ok().map(Duration::seconds);
        }
    }
    ttl.unwrap_or(s.default_ttl).clamp(s.min_ttl, s.max_ttl)
}

fn client(s: &ClientMetadataSettings) -> Result<reqwest::Client, OAuthError> {
    let timeout = std::time::Duration::from_millis(s.timeout.whole_milliseconds().max(1) as u64);
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_host = attempt.previous().first().is_some_and(|first| {
                first.host_str() == attempt.url().host_str() && first.port() == attempt.url().port()
            });
            if attempt.previous().len() > 3 {
                attempt.error("too many redirects")
            } else if attempt.url().scheme() != "https" || !same_host {
                attempt.error("a metadata document may only redirect within its own https host")
            } else {
                attempt.follow()
            }
        }))
        .dns_resolver(Arc::new(Resolver { allow_private: s.allow_private_addresses }));
    if let Some(path) = &s.ca_file {
        let pem = std::fs::read(path).map_err(internal)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(internal)?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(internal)
}

/// Resolves names and keeps only the addresses we may connect to: the check happens on what the
/// connection will actually use, so a DNS answer cannot point us at an internal service.
struct Resolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{} resolves to no public address", name.as_str()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is a globally routable unicast address. By hand because `IpAddr::is_global` is
/// not stable; covers RFC 6890's special-purpose ranges that matter for SSRF.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9)) // NAT64 (embeds IPv4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_fetched() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn client_id_urls_are_checked() {
        assert!(check_url("https://app.example/oauth/client.json").is_ok());
        for bad in [
            "http://app.example/client.json",
            "https://app.example",
            "https://app.example/",
            "https://app.example/a#frag",
            "https://user:pw@app.example/c",
            "https://app.example/a/../c",
            "https://App.example/c",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_control_sets_the_lifetime_within_bounds() {
        let s = ClientMetadataSettings::default();
        assert_eq!(ttl_of(&s, None), Duration::hours(1));
        assert_eq!(ttl_of(&s, Some("public, max-age=600")), Duration::minutes(10));
        assert_eq!(ttl_of(&s, Some("max-age=5")), Duration::minutes(1));
        assert_eq!(ttl_of(&s, Some("max-age=99999999")), Duration::days(1));
        assert_eq!(ttl_of(&s, Some("no-store")), Duration::minutes(1));
    }
}
