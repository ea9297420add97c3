//! The verified caller, as handlers (request extension) and upstreams (headers) see it.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_domain::{RateLimit, ScopeSet, UserId, WorkspaceId};
use serde::Serialize;
use std::net::IpAddr;

/// Which of our credentials authenticated the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    ApiKey,
    /// An OAuth access token (RFC 9068 JWT) of a user's grant or of a client acting as itself.
    AccessToken,
    /// A 5–60 minute service token (`token_use: service`).
    ServiceToken,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::AccessToken => "access_token",
            Self::ServiceToken => "service_token",
        }
    }
}

/// A request's verified identity. Inserted into the request extensions by the guard; read it in
/// an axum handler with `Extension<Principal>`.
#[derive(Clone, Debug, Serialize)]
pub struct Principal {
    /// The workspace the credential acts in; everything the request touches must belong to it.
    pub workspace_id: WorkspaceId,
    pub kind: CredentialKind,
    /// The API key id (`key_…`), or the token's `jti`.
    pub credential_id: String,
    /// The effective scopes: the credential's, and for user tokens only those the user still
    /// holds.
    pub scopes: ScopeSet,
    /// The user a token acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The OAuth client of an access token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The grant of a user's access token (revocable on its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// What minted a service token: `cli`, an API key id or a trust policy id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minted_by: Option<String>,
    /// The caller's address (see [`crate::client_ip`]).
    pub ip: IpAddr,
    /// The credential's own budget (API keys carry one; tokens use the guard's).
    #[serde(skip)]
    pub rate_limit: Option<RateLimit>,
}

/// Identity headers a gateway adds for its upstream (any incoming header of these names is
/// removed first, so a caller cannot forge them).
pub mod headers {
    pub const WORKSPACE: &str = "x-portcullis-workspace";
    pub const CREDENTIAL_KIND: &str = "x-portcullis-credential-kind";
    pub const CREDENTIAL_ID: &str = "x-portcullis-credential-id";
    pub const SCOPES: &str = "x-portcullis-scopes";
    pub const USER: &str = "x-portcullis-user";
    pub const CLIENT: &str = "x-portcullis-client";
    pub const CLIENT_IP: &str = "x-portcullis-client-ip";
    pub const ALL: &[&str] = &[WORKSPACE, CREDENTIAL_KIND, CREDENTIAL_ID, SCOPES, USER, CLIENT, CLIENT_IP];
}

impl Principal {
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// Replaces any `x-portcullis-*` identity headers in `h` with this principal's.
    pub fn write_headers(&self, h: &mut HeaderMap) {
        for name in headers::ALL {
            h.remove(*name);
        }
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put(headers::WORKSPACE, self.workspace_id.as_str());
        put(headers::CREDENTIAL_KIND, self.kind.as_str());
        put(headers::CREDENTIAL_ID, &self.credential_id);
        put(headers::SCOPES, &self.scopes.to_string());
        if let Some(u) = &self.user_id {
            put(headers::USER, u.as_str());
        }
        if let Some(c) = &self.client_id {
            put(headers::CLIENT, c);
        }
        put(headers::CLIENT_IP, &self.ip.to_string());
    }
}
