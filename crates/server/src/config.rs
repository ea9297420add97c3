//! Configuration: command-line flags > environment variables > TOML file > defaults.
//!
//! clap resolves flags over their `PORTCULLIS_*` variables; [`resolve`] then fills what is still
//! unset from the file, then from the defaults.

use clap::Args;
use secrecy::SecretString;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use time::Duration;

/// Settings shared by every command (the admin CLI works on the same database as `serve`).
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://FILE (default sqlite://portcullis.db) or postgres://…
    #[arg(long, global = true, env = "PORTCULLIS_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// A scope catalogue file replacing the built-in one.
    #[arg(long, global = true, env = "PORTCULLIS_SCOPE_CATALOGUE", value_name = "FILE")]
    pub scope_catalogue: Option<PathBuf>,
    /// Print one JSON object on stdout instead of human-readable text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Which API keys this deployment issues and accepts: live (pcl_live_…, default) or test
    /// (pcl_test_…).
    #[arg(long, global = true, env = "PORTCULLIS_KEY_ENVIRONMENT", value_name = "ENV")]
    pub key_environment: Option<String>,
}

/// Settings of `portcullis serve`.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PORTCULLIS_BIND", value_name = "ADDR")]
    pub bind: Option<String>,
    /// Issuer URL (default http://<bind>). Use the public https URL in production.
    #[arg(long, env = "PORTCULLIS_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,
    /// `aud` of access tokens (default <issuer>/api).
    #[arg(long, env = "PORTCULLIS_AUDIENCE", value_name = "URI")]
    pub audience: Option<String>,
    /// Log format: json or text.
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Access-token lifetime, e.g. 15m.
    #[arg(long, env = "PORTCULLIS_ACCESS_TOKEN_TTL", value_name = "DURATION")]
    pub access_token_ttl: Option<String>,
    /// Refresh-token idle lifetime, e.g. 30d.
    #[arg(long, env = "PORTCULLIS_REFRESH_TOKEN_IDLE_TTL", value_name = "DURATION")]
    pub refresh_token_idle_ttl: Option<String>,
    /// Refresh-token absolute lifetime, e.g. 90d.
    #[arg(long, env = "PORTCULLIS_REFRESH_TOKEN_ABSOLUTE_TTL", value_name = "DURATION")]
    pub refresh_token_absolute_ttl: Option<String>,
    /// Browser session lifetime, e.g. 12h.
    #[arg(long, env = "PORTCULLIS_SESSION_TTL", value_name = "DURATION")]
    pub session_ttl: Option<String>,
    /// A proxy (CIDR) whose X-Forwarded-For is believed (repeatable; env: comma-separated).
    #[arg(
        long = "trusted-proxy",
        env = "PORTCULLIS_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// Redis for rate-limit counters shared by every replica (default: counted in-process).
    #[arg(long, env = "PORTCULLIS_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Budget of every workspace on protected routes, e.g. 6000/min (default: none).
    #[arg(long, env = "PORTCULLIS_WORKSPACE_RATE_LIMIT", value_name = "N/UNIT")]
    pub workspace_rate_limit: Option<String>,
    /// Budget of each OAuth grant, client and service-token minter, e.g. 600/min (default: none;
    /// API keys carry their own).
    #[arg(long, env = "PORTCULLIS_TOKEN_RATE_LIMIT", value_name = "N/UNIT")]
    pub token_rate_limit: Option<String>,
    /// How long the guard reuses credential state it loaded, e.g. 5s; 0 disables.
    #[arg(long, env = "PORTCULLIS_CREDENTIAL_CACHE_TTL", value_name = "DURATION")]
    pub credential_cache_ttl: Option<String>,
    /// Record every guarded call in the audit log: true (default) or false (events are always
    /// recorded).
    #[arg(long, env = "PORTCULLIS_AUDIT_REQUESTS", value_name = "BOOL")]
    pub audit_requests: Option<bool>,
    /// async (default: answer at once, commit with the next batch) or sync (answer once the
    /// call's audit entry is committed).
    #[arg(long, env = "PORTCULLIS_AUDIT_DURABILITY", value_name = "MODE")]
    pub audit_durability: Option<String>,
    /// How often each audit log with new entries gets a signed checkpoint, e.g. 60s.
    #[arg(long, env = "PORTCULLIS_AUDIT_CHECKPOINT_INTERVAL", value_name = "DURATION")]
    pub audit_checkpoint_interval: Option<String>,
    /// The searchable window of the audit log, e.g. 90d; older entries are pruned.
    #[arg(long, env = "PORTCULLIS_AUDIT_RETENTION", value_name = "DURATION")]
    pub audit_retention: Option<String>,
    /// Dynamic client registration (RFC 7591): open (default), token (an initial access token,
    /// an API key or service token with apps:manage, is required) or off.
    #[arg(long, env = "PORTCULLIS_REGISTRATION", value_name = "MODE")]
    pub registration: Option<String>,
    /// Accept only pushed authorization requests (RFC 9126), from every client.
    #[arg(long, env = "PORTCULLIS_REQUIRE_PAR", value_name = "BOOL")]
    pub require_par: Option<bool>,
    /// Require a server nonce in every DPoP proof (RFC 9449 §8, §9).
    #[arg(long, env = "PORTCULLIS_DPOP_NONCE", value_name = "BOOL")]
    pub dpop_nonce: Option<bool>,
    /// Resolve https client_ids by fetching their Client ID Metadata Document (default true).
    #[arg(long, env = "PORTCULLIS_CLIENT_METADATA", value_name = "BOOL")]
    pub client_metadata: Option<bool>,
    /// Let client metadata documents be fetched from private, loopback and link-local addresses
    /// (tests and private networks only).
    #[arg(long, env = "PORTCULLIS_CLIENT_METADATA_ALLOW_PRIVATE", value_name = "BOOL")]
    pub client_metadata_allow_private: Option<bool>,
    /// An extra trusted root certificate (PEM) for fetching client metadata documents.
    #[arg(long, env = "PORTCULLIS_CLIENT_METADATA_CA_FILE", value_name = "PATH")]
    pub client_metadata_ca_file: Option<PathBuf>,
    /// Rotate the signing key when the newest is this old, e.g. 90d (default); off disables.
    /// Done by one replica (the maintenance lease holder).
    #[arg(long, env = "PORTCULLIS_SIGNING_KEY_ROTATION", value_name = "DURATION")]
    pub signing_key_rotation: Option<String>,
    /// How long a rotated-in key is published before it signs, e.g. 10m (default).
    #[arg(long, env = "PORTCULLIS_SIGNING_KEY_ACTIVATION_DELAY", value_name = "DURATION")]
    pub signing_key_activation_delay: Option<String>,
    /// How often replicas compete for the maintenance lease and its holder works, e.g. 30s
    /// (default, 1s to 5m); a dead holder's lease lapses after three intervals.
    #[arg(long, env = "PORTCULLIS_MAINTENANCE_INTERVAL", value_name = "DURATION")]
    pub maintenance_interval: Option<String>,
}

/// `[dpop]` in the file.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct DpopFile {
    /// Require a server nonce in every proof.
    pub require_nonce: Option<bool>,
    /// How old a proof may be, e.g. 60s.
    pub max_age: Option<String>,
    /// How long a nonce is good for (it is accepted in its window and the next), e.g. 5m.
    pub nonce_lifetime: Option<String>,
}

/// `[client_metadata]` in the file.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ClientMetadataFile {
    pub enabled: Option<bool>,
    pub allow_private_addresses: Option<bool>,
    pub ca_file: Option<PathBuf>,
    /// Largest document accepted, in bytes.
    pub max_bytes: Option<usize>,
    /// How long a fetch may take, e.g. 5s.
    pub timeout: Option<String>,
    /// How long a document is kept when its response sets no caching, e.g. 1h.
    pub default_ttl: Option<String>,
}

/// `[registration]` in the file.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RegistrationFile {
    /// open, token or off.
    pub mode: Option<String>,
    /// Registrations per source address, e.g. 20/hour.
    pub rate_limit: Option<String>,
    /// An identical public registration from the same address within this returns the existing
    /// client, e.g. 10m.
    pub dedup_window: Option<String>,
    /// Self-registered clients never used this long after registering are deleted, e.g. 30d;
    /// "off" keeps them.
    pub reclaim_after: Option<String>,
    /// Scopes self-registered clients may request (default: every OAuth scope).
    pub allowed_scopes: Option<String>,
}

/// `[audit]` in the file.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    pub requests: Option<bool>,
    pub durability: Option<String>,
    pub checkpoint_interval: Option<String>,
    pub retention: Option<String>,
    /// Largest JSON request body recorded (redacted), in bytes.
    pub body_limit: Option<usize>,
    pub redaction: Option<portcullis_core::audit::RedactionRules>,
}

/// The TOML file. Every key is optional; unknown keys are an error (a typo must not be ignored).
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub bind: Option<String>,
    pub database_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub scope_catalogue: Option<PathBuf>,
    pub key_encryption_key: Option<String>,
    pub log_format: Option<String>,
    pub access_token_ttl: Option<String>,
    pub refresh_token_idle_ttl: Option<String>,
    pub refresh_token_absolute_ttl: Option<String>,
    pub session_ttl: Option<String>,
    pub signing_key_activation_delay: Option<String>,
    pub signing_key_rotation: Option<String>,
    pub maintenance_interval: Option<String>,
    pub key_environment: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub redis_url: Option<String>,
    pub workspace_rate_limit: Option<String>,
    pub token_rate_limit: Option<String>,
    pub credential_cache_ttl: Option<String>,
    pub gateway: Option<GatewayFile>,
    pub audit: Option<AuditFile>,
    pub registration: Option<RegistrationFile>,
    /// Accept only pushed authorization requests (RFC 9126), from every client.
    pub require_par: Option<bool>,
    pub dpop: Option<DpopFile>,
    pub client_metadata: Option<ClientMetadataFile>,
}

/// `[gateway]`: the route table of gateway mode.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    #[serde(default)]
    pub routes: Vec<portcullis_http::gateway::RouteConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The resolved configuration.
#[derive(Debug)]
pub struct Config {
    pub bind: String,
    pub database_url: String,
    pub issuer: String,
    /// Whether the issuer was configured (otherwise it follows the bound address).
    pub issuer_configured: bool,
    pub audience: Option<String>,
    pub scope_catalogue: Option<PathBuf>,
    pub key_encryption_key: Option<SecretString>,
    pub log_format: LogFormat,
    pub access_token_ttl: Duration,
    pub refresh_token_idle_ttl: Duration,
    pub refresh_token_absolute_ttl: Duration,
    pub session_ttl: Duration,
    pub signing_key_activation_delay: Duration,
    /// Scheduled rotation of the signing key (`None`: only by hand).
    pub signing_key_rotation: Option<Duration>,
    pub maintenance_interval: Duration,
    pub key_environment: portcullis_domain::KeyEnvironment,
    pub trusted_proxies: Vec<portcullis_domain::api_key::IpNet>,
    pub redis_url: Option<SecretString>,
    pub budgets: portcullis_guard::Budgets,
    pub credential_cache_ttl: Duration,
    /// Gateway routes as configured (checked against the catalogue at startup).
    pub gateway_routes: Vec<portcullis_http::gateway::RouteConfig>,
    pub audit: portcullis_core::audit::AuditSettings,
    pub registration: portcullis_core::oauth::registration::RegistrationSettings,
    pub require_par: bool,
    pub dpop: portcullis_core::oauth::dpop::DpopSettings,
    pub client_metadata: portcullis_core::oauth::client_metadata::ClientMetadataSettings,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis.db";

pub fn load_file(path: Option<&Path>) -> Result<FileConfig, String> {
    let Some(path) = path else { return Ok(FileConfig::default()) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn duration(name: &str, v: Option<String>, default: Duration) -> Result<Duration, String> {
    let Some(v) = v else { return Ok(default) };
    let d = portcullis_core::parse_duration(&v).map_err(|e| format!("{name}: {e}"))?;
    if d <= Duration::ZERO {
        return Err(format!("{name} must be positive"));
    }
    Ok(d)
}

/// Like [`duration`], but zero is allowed (`0s`).
fn registration_settings(
    s: &ServeArgs,
    f: RegistrationFile,
) -> Result<portcullis_core::oauth::registration::RegistrationSettings, String> {
    use portcullis_core::oauth::registration::{RegistrationMode, RegistrationSettings};
    let mut r = RegistrationSettings::default();
    if let Some(m) = s.registration.clone().or(f.mode) {
        r.mode = RegistrationMode::parse(&m)?;
    }
    if let Some(l) = f.rate_limit {
        r.rate_limit =
            portcullis_domain::RateLimit::parse(&l).map_err(|e| format!("registration.rate_limit: {e}"))?;
    }
    r.dedup_window = non_negative("registration.dedup_window", f.dedup_window, r.dedup_window)?;
    r.reclaim_after = match f.reclaim_after.as_deref().map(str::trim) {
        Some("off") => None,
        other => Some(duration("registration.reclaim_after", other.map(str::to_owned), Duration::days(30))?),
    };
    if let Some(scopes) = f.allowed_scopes {
        r.allowed_scopes = Some(
            portcullis_domain::ScopeSet::parse(&scopes)
                .map_err(|e| format!("registration.allowed_scopes: {}", e.0))?,
        );
    }
    Ok(r)
}

pub fn non_negative(name: &str, v: Option<String>, default: Duration) -> Result<Duration, String> {
    match v.as_deref().map(str::trim) {
        Some("0") | Some("0s") => Ok(Duration::ZERO),
        _ => duration(name, v, default),
    }
}

/// Merges flags/env (already merged by clap), the file and the defaults.
/// `kek_env` is `PORTCULLIS_KEY_ENCRYPTION_KEY` (never a flag: flags show up in `ps`).
pub fn resolve(
    g: &GlobalArgs,
    s: &ServeArgs,
    file: FileConfig,
    kek_env: Option<String>,
) -> Result<Config, String> {
    let bind = s.bind.clone().or(file.bind).unwrap_or_else(|| DEFAULT_BIND.into());
    let configured = s.issuer.clone().or(file.issuer);
    let issuer_configured = configured.is_some();
    let issuer = configured.unwrap_or_else(|| format!("http://{bind}"));
    portcullis_core::settings::validate_issuer(&issuer)?;
    let log_format = match s.log_format.clone().or(file.log_format).as_deref() {
        None | Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => return Err(format!("log format {other:?} is not json or text")),
    };
    let access_token_ttl = duration(
        "access_token_ttl",
        s.access_token_ttl.clone().or(file.access_token_ttl),
        Duration::minutes(15),
    )?;
    let refresh_token_idle_ttl = duration(
        "refresh_token_idle_ttl",
        s.refresh_token_idle_ttl.clone().or(file.refresh_token_idle_ttl),
        Duration::days(30),
    )?;
    let refresh_token_absolute_ttl = duration(
        "refresh_token_absolute_ttl",
        s.refresh_token_absolute_ttl.clone().or(file.refresh_token_absolute_ttl),
        Duration::days(90),
    )?;
    if refresh_token_idle_ttl > refresh_token_absolute_ttl {
        return Err("refresh_token_idle_ttl cannot exceed refresh_token_absolute_ttl".into());
    }
    let session_ttl =
        duration("session_ttl", s.session_ttl.clone().or(file.session_ttl), Duration::hours(12))?;
    let signing_key_activation_delay = non_negative(
        "signing_key_activation_delay",
        s.signing_key_activation_delay.clone().or(file.signing_key_activation_delay),
        Duration::minutes(10),
    )?;
    let signing_key_rotation = match s.signing_key_rotation.clone().or(file.signing_key_rotation) {
        Some(v) if matches!(v.trim(), "off" | "0" | "0s") => None,
        v => Some(duration("signing_key_rotation", v, Duration::days(90))?),
    };
    if signing_key_rotation.is_some_and(|r| r <= signing_key_activation_delay) {
        return Err("signing_key_rotation must be longer than signing_key_activation_delay".into());
    }
    let maintenance_interval = duration(
        "maintenance_interval",
        s.maintenance_interval.clone().or(file.maintenance_interval),
        Duration::seconds(30),
    )?;
    if !(Duration::seconds(1)..=Duration::minutes(5)).contains(&maintenance_interval) {
        return Err("maintenance_interval must be between 1s and 5m".into());
    }
    let key_environment = g
        .key_environment
        .clone()
        .or(file.key_environment)
        .map(|e| {
            e.parse::<portcullis_domain::KeyEnvironment>().map_err(|e| format!("key_environment: {}", e.0))
        })
        .transpose()?
        .unwrap_or(portcullis_domain::KeyEnvironment::Live);
    let proxies = if s.trusted_proxies.is_empty() {
        file.trusted_proxies.unwrap_or_default()
    } else {
        s.trusted_proxies.clone()
    };
    let trusted_proxies = proxies
        .iter()
        .map(|c| portcullis_domain::api_key::parse_cidr(c).map_err(|e| format!("trusted_proxies: {}", e.0)))
        .collect::<Result<Vec<_>, _>>()?;
    let rate = |name: &str, v: Option<String>| {
        v.map(|v| portcullis_domain::RateLimit::parse(&v).map_err(|e| format!("{name}: {}", e.0))).transpose()
    };
    let budgets = portcullis_guard::Budgets {
        workspace: rate(
            "workspace_rate_limit",
            s.workspace_rate_limit.clone().or(file.workspace_rate_limit),
        )?,
        token: rate("token_rate_limit", s.token_rate_limit.clone().or(file.token_rate_limit))?,
    };
    let credential_cache_ttl = non_negative(
        "credential_cache_ttl",
        s.credential_cache_ttl.clone().or(file.credential_cache_ttl),
        Duration::seconds(5),
    )?;
    if credential_cache_ttl > Duration::minutes(1) {
        return Err(
            "credential_cache_ttl may be at most 1m: it is how long a revocation can go unseen".into()
        );
    }
    let audit_file = file.audit.clone().unwrap_or_default();
    let mut audit = portcullis_core::audit::AuditSettings::default();
    audit.requests = s.audit_requests.or(audit_file.requests).unwrap_or(true);
    audit.durability = match s.audit_durability.clone().or(audit_file.durability).as_deref() {
        None | Some("async") => portcullis_core::audit::Durability::Async,
        Some("sync") => portcullis_core::audit::Durability::Sync,
        Some(other) => return Err(format!("audit durability {other:?} is not async or sync")),
    };
    audit.checkpoint_interval = duration(
        "audit_checkpoint_interval",
        s.audit_checkpoint_interval.clone().or(audit_file.checkpoint_interval),
        audit.checkpoint_interval,
    )?;
    audit.retention =
        duration("audit_retention", s.audit_retention.clone().or(audit_file.retention), audit.retention)?;
    if audit.retention < Duration::days(1) {
        return Err("audit_retention must be at least 1d".into());
    }
    if let Some(limit) = audit_file.body_limit {
        audit.body_limit = limit;
    }
    audit.redaction = audit_file.redaction.unwrap_or_default();
    let registration = registration_settings(s, file.registration.clone().unwrap_or_default())?;
    let dpop_file = file.dpop.clone().unwrap_or_default();
    let mut dpop = portcullis_core::oauth::dpop::DpopSettings::default();
    dpop.require_nonce = s.dpop_nonce.or(dpop_file.require_nonce).unwrap_or(false);
    dpop.max_age = duration("dpop.max_age", dpop_file.max_age, dpop.max_age)?;
    dpop.nonce_lifetime = duration("dpop.nonce_lifetime", dpop_file.nonce_lifetime, dpop.nonce_lifetime)?;
    let cm_file = file.client_metadata.clone().unwrap_or_default();
    let mut client_metadata = portcullis_core::oauth::client_metadata::ClientMetadataSettings::default();
    client_metadata.enabled = s.client_metadata.or(cm_file.enabled).unwrap_or(true);
    client_metadata.allow_private_addresses =
        s.client_metadata_allow_private.or(cm_file.allow_private_addresses).unwrap_or(false);
    client_metadata.ca_file = s.client_metadata_ca_file.clone().or(cm_file.ca_file);
    if let Some(n) = cm_file.max_bytes {
        client_metadata.max_bytes = n.clamp(512, 64 * 1024);
    }
    client_metadata.timeout = duration("client_metadata.timeout", cm_file.timeout, client_metadata.timeout)?;
    client_metadata.default_ttl =
        duration("client_metadata.default_ttl", cm_file.default_ttl, client_metadata.default_ttl)?;
    Ok(Config {
        dpop,
        client_metadata,
        audit,
        registration,
        require_par: s.require_par.or(file.require_par).unwrap_or(false),
        redis_url: s.redis_url.clone().or(file.redis_url).map(SecretString::from),
        budgets,
        credential_cache_ttl,
        gateway_routes: file.gateway.map(|g| g.routes).unwrap_or_default(),
        key_environment,
        trusted_proxies,
        bind,
        database_url: g
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
        issuer: issuer.trim_end_matches('/').to_owned(),
        issuer_configured,
        audience: s.audience.clone().or(file.audience),
        scope_catalogue: g.scope_catalogue.clone().or(file.scope_catalogue),
        key_encryption_key: kek_env.or(file.key_encryption_key).map(SecretString::from),
        log_format,
        access_token_ttl,
        refresh_token_idle_ttl,
        refresh_token_absolute_ttl,
        session_ttl,
        signing_key_activation_delay,
        signing_key_rotation,
        maintenance_interval,
    })
}

impl Config {
    pub fn settings(&self) -> portcullis_core::Settings {
        let mut s = portcullis_core::Settings::new(self.issuer.clone());
        if let Some(a) = &self.audience {
            s.audience = a.clone();
            s.resources[0] = a.clone();
        }
        s.access_token_ttl = self.access_token_ttl;
        s.refresh_token_idle_ttl = self.refresh_token_idle_ttl;
        s.refresh_token_absolute_ttl = self.refresh_token_absolute_ttl;
        s.session_ttl = self.session_ttl;
        s.signing_key_activation_delay = self.signing_key_activation_delay;
        s.signing_key_rotation = self.signing_key_rotation;
        s.maintenance_interval = self.maintenance_interval;
        s.key_environment = self.key_environment;
        s.trusted_proxies = self.trusted_proxies.clone();
        s.credential_cache_ttl = self.credential_cache_ttl;
        s.audit = self.audit.clone();
        s.registration = self.registration.clone();
        s.require_pushed_requests = self.require_par;
        s.dpop = self.dpop.clone();
        s.client_metadata = self.client_metadata.clone();
        // Gateway routes with their own resource: tokens may be requested for them (RFC 8707).
        s.resources.extend(portcullis_http::gateway::resources(&self.issuer, &self.gateway_routes));
        s
    }

    pub fn catalogue(&self) -> Result<portcullis_core::scopes::Catalogue, String> {
        load_catalogue(self.scope_catalogue.as_deref())
    }
}

pub fn load_catalogue(path: Option<&Path>) -> Result<portcullis_core::scopes::Catalogue, String> {
    match path {
        None => Ok(portcullis_core::scopes::Catalogue::builtin()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            portcullis_core::scopes::Catalogue::from_toml(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = resolve(&GlobalArgs::default(), &ServeArgs::default(), FileConfig::default(), None).unwrap();
        assert_eq!(c.bind, "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://portcullis.db");
        assert_eq!(c.issuer, "http://127.0.0.1:8080");
        assert_eq!(c.access_token_ttl, Duration::minutes(15));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.key_encryption_key.is_none());
    }

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let file: FileConfig = toml::from_str(
            "bind = \"127.0.0.1:9000\"\nissuer = \"https://file.example\"\ndatabase_url = \"sqlite://f.db\"\naccess_token_ttl = \"5m\"",
        )
        .unwrap();
        let s = ServeArgs { issuer: Some("https://flag.example/".into()), ..Default::default() };
        let c = resolve(&GlobalArgs::default(), &s, file, None).unwrap();
        assert_eq!(c.issuer, "https://flag.example");
        assert_eq!(c.bind, "127.0.0.1:9000");
        assert_eq!(c.database_url, "sqlite://f.db");
        assert_eq!(c.access_token_ttl, Duration::minutes(5));
    }

    #[test]
    fn issuer_defaults_to_bind() {
        let s = ServeArgs { bind: Some("127.0.0.1:7000".into()), ..Default::default() };
        let c = resolve(&GlobalArgs::default(), &s, FileConfig::default(), None).unwrap();
        assert_eq!(c.issuer, "http://127.0.0.1:7000");
    }

    #[test]
    fn key_environment_and_trusted_proxies() {
        let file: FileConfig =
            toml::from_str("key_environment = \"test\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]")
                .unwrap();
        let c = resolve(&GlobalArgs::default(), &ServeArgs::default(), file, None).unwrap();
        assert_eq!(c.key_environment, portcullis_domain::KeyEnvironment::Test);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.settings().key_environment, portcullis_domain::KeyEnvironment::Test);
        let g = GlobalArgs { key_environment: Some("staging".into()), ..Default::default() };
        assert!(resolve(&g, &ServeArgs::default(), FileConfig::default(), None).is_err());
        let s = ServeArgs { trusted_proxies: vec!["proxy".into()], ..Default::default() };
        assert!(resolve(&GlobalArgs::default(), &s, FileConfig::default(), None).is_err());
    }

    #[test]
    fn scheduled_key_rotation_and_maintenance_interval() {
        let g = GlobalArgs::default();
        let c = resolve(&g, &ServeArgs::default(), FileConfig::default(), None).unwrap();
        assert_eq!(c.signing_key_rotation, Some(Duration::days(90)));
        assert_eq!(c.maintenance_interval, Duration::seconds(30));
        let file: FileConfig =
            toml::from_str("signing_key_rotation = \"off\"\nmaintenance_interval = \"5s\"").unwrap();
        let c = resolve(&g, &ServeArgs::default(), file, None).unwrap();
        assert_eq!((c.signing_key_rotation, c.maintenance_interval), (None, Duration::seconds(5)));
        let s = ServeArgs {
            signing_key_rotation: Some("30d".into()),
            signing_key_activation_delay: Some("1m".into()),
            ..Default::default()
        };
        let c = resolve(&g, &s, FileConfig::default(), None).unwrap();
        assert_eq!(c.settings().signing_key_rotation, Some(Duration::days(30)));
        assert_eq!(c.settings().signing_key_activation_delay, Duration::minutes(1));
        for bad in [
            ServeArgs { signing_key_rotation: Some("5m".into()), ..Default::default() },
            ServeArgs { maintenance_interval: Some("10m".into()), ..Default::default() },
            ServeArgs { maintenance_interval: Some("0s".into()), ..Default::default() },
        ] {
            assert!(resolve(&g, &bad, FileConfig::default(), None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_are_errors() {
        let s = ServeArgs { access_token_ttl: Some("soon".into()), ..Default::default() };
        assert!(resolve(&GlobalArgs::default(), &s, FileConfig::default(), None).is_err());
        let s = ServeArgs { issuer: Some("https://a.example/?x=1".into()), ..Default::default() };
        assert!(resolve(&GlobalArgs::default(), &s, FileConfig::default(), None).is_err());
        assert!(toml::from_str::<FileConfig>("bnd = \"x\"").is_err(), "unknown keys are refused");
    }
}
