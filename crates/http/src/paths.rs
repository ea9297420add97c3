//! Every path we serve, in one place: the router and the discovery documents both read these, so
//! they cannot drift apart.

pub const HEALTHZ: &str = "/healthz";
pub const AUTHORIZE: &str = "/oauth2/authorize";
pub const TOKEN: &str = "/oauth2/token";
pub const JWKS: &str = "/oauth2/jwks";
pub const USERINFO: &str = "/oauth2/userinfo";
/// RFC 7009.
pub const REVOKE: &str = "/oauth2/revoke";
/// RFC 7662.
pub const INTROSPECT: &str = "/oauth2/introspect";
/// RFC 8628 §3.1.
pub const DEVICE_AUTHORIZATION: &str = "/oauth2/device_authorization";
/// RFC 9126 §2: pushed authorization requests.
pub const PAR: &str = "/oauth2/par";
/// RFC 7591 §3: dynamic client registration.
pub const REGISTER: &str = "/oauth2/register";
/// RFC 7592 §2: a registered client's configuration endpoint.
pub const REGISTERED_CLIENT: &str = "/oauth2/register/{client_id}";
/// RFC 8628 §3.3: where the user enters the code.
pub const DEVICE: &str = "/device";
pub const DEVICE_DONE: &str = "/device/done";
/// The signed-in user's apps (grants), with consent withdrawal.
pub const ACCOUNT: &str = "/account";
pub const ACCOUNT_REVOKE: &str = "/account/revoke";
pub const LOGIN: &str = "/login";
pub const LOGOUT: &str = "/logout";
pub const CONSENT: &str = "/consent";
/// RFC 8414 §3.
pub const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
/// OpenID Connect Discovery 1.0 §4.
pub const OIDC_METADATA: &str = "/.well-known/openid-configuration";
/// RFC 9728 §3: metadata of the protected API (the reference API and gateway routes).
pub const PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource";
/// RFC 9728 §3.1: the reference API's metadata at its path-suffixed location (the resource is
/// `{issuer}/api`); also served at [`PROTECTED_RESOURCE`] for clients of earlier versions.
pub const API_PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource/api";
/// The MCP endpoint (streamable HTTP transport).
pub const MCP: &str = "/mcp";
/// RFC 9728 §3.1: the MCP endpoint's metadata (the well-known path suffixed with its path).
pub const MCP_PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource/mcp";

/// The absolute URL of `path` under the issuer.
pub fn url(issuer: &str, path: &str) -> String {
    format!("{}{path}", issuer.trim_end_matches('/'))
}

/// A path of ours as a browser must request it: under the issuer's path (see [`crate::router`]).
pub fn local(settings: &portcullis_core::Settings, path: &str) -> String {
    format!("{}{path}", settings.path())
}

/// Endpoint URLs for the metadata document.
pub fn endpoints(issuer: &str) -> portcullis_core::oauth::discovery::Endpoints {
    portcullis_core::oauth::discovery::Endpoints {
        authorization: url(issuer, AUTHORIZE),
        token: url(issuer, TOKEN),
        jwks: url(issuer, JWKS),
        userinfo: url(issuer, USERINFO),
        revocation: url(issuer, REVOKE),
        introspection: url(issuer, INTROSPECT),
        device_authorization: url(issuer, DEVICE_AUTHORIZATION),
        registration: url(issuer, REGISTER),
        par: url(issuer, PAR),
    }
}

/// The admin API (JSON, authenticated by API keys or service tokens). Its OpenAPI document is
/// generated from the handlers, which name these same constants.
pub mod api {
    pub const OPENAPI: &str = "/api/v1/openapi.json";
    pub const WORKSPACE: &str = "/api/v1/workspace";
    pub const KEYS: &str = "/api/v1/keys";
    pub const KEY: &str = "/api/v1/keys/{id}";
    pub const KEY_ROTATE: &str = "/api/v1/keys/{id}/rotate";
    pub const BUNDLES: &str = "/api/v1/bundles";
    pub const BUNDLE: &str = "/api/v1/bundles/{name}";
    pub const CLIENTS: &str = "/api/v1/clients";
    pub const CLIENT: &str = "/api/v1/clients/{id}";
    pub const CLIENT_ROTATE: &str = "/api/v1/clients/{id}/rotate-secret";
    pub const GRANTS: &str = "/api/v1/grants";
    pub const GRANT: &str = "/api/v1/grants/{id}";
    pub const MEMBERS: &str = "/api/v1/members";
    pub const MEMBER: &str = "/api/v1/members/{email}";
    pub const TRUST_POLICIES: &str = "/api/v1/trust-policies";
    pub const TRUST_POLICY: &str = "/api/v1/trust-policies/{id}";
    pub const SERVICE_TOKENS: &str = "/api/v1/service-tokens";
    pub const EVENTS: &str = "/api/v1/events";
    pub const AUDIT: &str = "/api/v1/audit";
    pub const AUDIT_VERIFY: &str = "/api/v1/audit/verify";
    pub const AUDIT_SINKS: &str = "/api/v1/audit/sinks";
    pub const AUDIT_SINK: &str = "/api/v1/audit/sinks/{id}";
}

/// The built-in reference API, protected by the guard.
pub mod reference {
    /// The resource identifier's path: access tokens carry `aud` = issuer + this.
    pub const BASE: &str = "/api";
    pub const CONTACTS: &str = "/api/v1/contacts";
    pub const CONTACT: &str = "/api/v1/contacts/{id}";
    pub const MESSAGES: &str = "/api/v1/messages";
    pub const BROADCASTS: &str = "/api/v1/broadcasts";
    pub const FLOWS: &str = "/api/v1/flows";
    pub const FLOW_EXECUTE: &str = "/api/v1/flows/{id}/execute";
}
