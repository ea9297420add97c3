//! JSON views of stored records, shared by the CLI's `--json` output and the admin API (and
//! described in its OpenAPI document). Times are RFC 3339; secrets never appear.

use crate::rfc3339;
use portcullis_store::{AuditEntry, Client, Grant, Membership, User, Workspace};
use serde::Serialize;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceView {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: String,
}

impl From<&Workspace> for WorkspaceView {
    fn from(w: &Workspace) -> Self {
        Self {
            id: w.id.to_string(),
            slug: w.slug.to_string(),
            name: w.name.clone(),
            created_at: rfc3339(w.created_at),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub token_endpoint_auth_method: String,
    pub redirect_uris: Vec<String>,
    /// Space-separated scopes the client may ever be granted.
    pub scope: String,
    pub grant_types: Vec<String>,
    pub workspace_id: Option<String>,
    pub refresh_overlap_seconds: i64,
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// How the client came to exist: `admin`, `dynamic` (RFC 7591) or `metadata_document`.
    pub origin: String,
    /// Its authorization requests must be pushed first (RFC 9126).
    pub require_pushed_authorization_requests: bool,
    /// Its access tokens must be DPoP-bound (RFC 9449).
    pub dpop_bound_access_tokens: bool,
    /// The last time a token was issued to it, to the hour.
    pub last_used_at: Option<String>,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        Self {
            client_id: c.id.to_string(),
            name: c.name.clone(),
            public: c.is_public(),
            token_endpoint_auth_method: if c.is_public() { "none" } else { "client_secret_basic" }.into(),
            redirect_uris: c.redirect_uris.iter().map(|u| u.as_str().to_owned()).collect(),
            scope: c.scopes.to_string(),
            grant_types: c.grant_types.clone(),
            workspace_id: c.workspace_id.as_ref().map(|w| w.to_string()),
            refresh_overlap_seconds: c.refresh_overlap.whole_seconds(),
            previous_secret_expires_at: c.previous_secret_expires_at.map(rfc3339),
            created_at: rfc3339(c.created_at),
            revoked_at: c.revoked_at.map(rfc3339),
            origin: c.origin.as_str().to_owned(),
            require_pushed_authorization_requests: c.require_pushed_requests,
            dpop_bound_access_tokens: c.dpop_bound,
            last_used_at: c.last_used_at.map(rfc3339),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GrantView {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub workspace_id: String,
    pub scope: String,
    pub created_at: String,
    pub updated_at: String,
    pub revoked_at: Option<String>,
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> Self {
        Self {
            id: g.id.to_string(),
            user_id: g.user_id.to_string(),
            client_id: g.client_id.to_string(),
            workspace_id: g.workspace_id.to_string(),
            scope: g.scopes.to_string(),
            created_at: rfc3339(g.created_at),
            updated_at: rfc3339(g.updated_at),
            revoked_at: g.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub permissions: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<(&User, &Membership)> for MemberView {
    fn from((u, m): (&User, &Membership)) -> Self {
        Self {
            user_id: u.id.to_string(),
            email: u.email.to_string(),
            name: u.name.clone(),
            permissions: m.permissions.iter().map(|s| s.to_string()).collect(),
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    pub kind: String,
    pub actor: String,
    pub subject: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub ip: Option<String>,
    pub at: String,
}

impl From<&AuditEntry> for EventView {
    fn from(e: &AuditEntry) -> Self {
        let r = &e.record;
        Self {
            id: r.id.to_string(),
            kind: r.event.clone(),
            actor: r.actor.clone().unwrap_or_default(),
            subject: r.subject.clone(),
            detail: serde_json::from_str(&r.params).unwrap_or(serde_json::Value::Null),
            ip: r.ip.map(|ip| ip.to_string()),
            at: rfc3339(r.at),
        }
    }
}
