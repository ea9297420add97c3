//! Administrative operations (the CLI today, the admin API later): workspaces, users, members,
//! clients. Every input is validated before anything is written, so bad input changes nothing.

use crate::cache::CredentialCache;
use crate::keys::{Keyring, Sealer};
use crate::passwords;
use crate::scopes::Catalogue;
use crate::settings::MAX_REFRESH_OVERLAP;
use portcullis_domain::secret::prefix;
use portcullis_domain::{
    ClientId, Clock, Email, GrantId, KeyEnvironment, RedirectUri, ScopeSet, Slug, TokenHash, UserId,
    WorkspaceId, random_token,
};
use portcullis_proto::token::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
};
use portcullis_store::{
    Client, Grant, GrantFilter, Membership, MembershipWrite, SigningKey, Store, StoreError, User, Workspace,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::sync::Arc;
use time::Duration;

/// Why an administrative operation was refused. The text is meant for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input is malformed or breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// Something the input names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The input collides with existing data.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this (for example, hand out scopes it does not hold).
    #[error("{0}")]
    Forbidden(String),
    #[error("storage error: {0}")]
    Internal(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// Grant types a client may be registered with (those the token endpoint implements).
pub const SUPPORTED_GRANT_TYPES: &[&str] = &[
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
    GRANT_TOKEN_EXCHANGE,
];

/// The longest grace period of a rotated client secret.
pub const MAX_SECRET_GRACE: Duration = Duration::days(30);

/// What `client create` takes.
#[derive(Clone, Debug, Default)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scope: String,
    /// Empty means the default: authorization_code and refresh_token.
    pub grant_types: Vec<String>,
    pub public: bool,
    pub workspace: Option<String>,
    /// Overlap window for concurrent refreshes (0–60 s).
    pub refresh_overlap: Option<Duration>,
    /// A scope bundle of `workspace` whose scopes are added to `scope`.
    pub bundle: Option<String>,
    /// Its authorization requests must be pushed first (RFC 9126).
    pub require_pushed_requests: bool,
    /// Its tokens must be DPoP-bound (RFC 9449 §5.2).
    pub dpop_bound: bool,
}

/// A created client; the secret (confidential clients only) exists only in this value.
pub struct CreatedClient {
    pub client: Client,
    pub secret: Option<SecretString>,
}

#[derive(Clone)]
pub struct Admin<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub catalogue: Arc<Catalogue>,
    /// Seals new signing keys (with the key-encryption key when one is configured).
    pub sealer: Arc<Sealer>,
    /// The environment of the API keys this deployment issues.
    pub key_environment: KeyEnvironment,
    /// Told about every change to credential state, so the guard's cache forgets it.
    pub cache: Arc<CredentialCache>,
    /// The server's audit appender; without one, events are written straight to the store.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
}

impl<S: Store> Admin<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, catalogue: Arc<Catalogue>, sealer: Arc<Sealer>) -> Self {
        Self {
            store,
            clock,
            catalogue,
            sealer,
            key_environment: KeyEnvironment::Live,
            cache: Arc::default(),
            audit: None,
        }
    }

    /// Records a client event in the client's workspace (or the instance log for clients of
    /// every workspace).
    async fn client_event(
        &self,
        kind: &str,
        client: &Client,
        detail: serde_json::Value,
    ) -> Result<(), AdminError> {
        let mut r = crate::events::entry(kind, self.clock.now(), client.workspace_id.as_ref());
        r.subject = Some(client.id.to_string());
        r.client_id = Some(client.id.to_string());
        r.actor = Some("admin".into());
        r.params = detail.to_string();
        Ok(crate::events::write(self.events(), r).await?)
    }

    /// Writes events through the server's audit appender.
    pub fn with_audit(mut self, audit: Arc<crate::audit::AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Where this context's events go.
    pub fn events(&self) -> crate::events::Writer<'_, S> {
        crate::events::Writer { store: &self.store, audit: self.audit.as_deref() }
    }

    /// Reports changes to `cache` (the server's; the CLI's own process has none worth telling).
    pub fn with_cache(mut self, cache: Arc<CredentialCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Issues `env` API keys (`pcl_test_…` for a test deployment).
    pub fn with_key_environment(mut self, env: KeyEnvironment) -> Self {
        self.key_environment = env;
        self
    }

    pub async fn create_workspace(&self, slug: &str, name: Option<&str>) -> Result<Workspace, AdminError> {
        let slug = Slug::parse(slug).map_err(|e| AdminError::Invalid(e.0))?;
        let name = name.map(str::trim).unwrap_or(slug.as_str()).to_owned();
        check_name(&name)?;
        let w = Workspace { id: WorkspaceId::generate(), slug, name, created_at: self.clock.now() };
        match self.store.insert_workspace(&w).await {
            Ok(()) => Ok(w),
            Err(StoreError::Duplicate(_)) => Err(AdminError::Conflict(format!(
                "a workspace with slug {:?} already exists",
                w.slug.as_str()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>, AdminError> {
        Ok(self.store.list_workspaces().await?)
    }

    pub async fn workspace(&self, slug: &str) -> Result<Workspace, AdminError> {
        self.store
            .workspace_by_slug(slug)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("workspace {slug:?} does not exist")))
    }

    pub async fn create_user(
        &self,
        email: &str,
        name: Option<&str>,
        password: SecretString,
    ) -> Result<User, AdminError> {
        let email = Email::parse(email).map_err(|e| AdminError::Invalid(e.0))?;
        if let Some(n) = name {
            check_name(n)?;
        }
        passwords::check_policy(&password).map_err(AdminError::Invalid)?;
        if self.store.user_by_email(&email).await?.is_some() {
            return Err(AdminError::Conflict(format!("a user with email {email} already exists")));
        }
        let password_hash = passwords::hash(password).await.map_err(AdminError::Internal)?;
        let u = User {
            id: UserId::generate(),
            email,
            name: name.map(|n| n.trim().to_owned()),
            password_hash,
            created_at: self.clock.now(),
        };
        match self.store.insert_user(&u).await {
            Ok(()) => Ok(u),
            Err(StoreError::Duplicate(_)) => {
                Err(AdminError::Conflict(format!("a user with email {} already exists", u.email)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_users(&self) -> Result<Vec<User>, AdminError> {
        Ok(self.store.list_users().await?)
    }

    pub async fn user(&self, email: &str) -> Result<User, AdminError> {
        let e = Email::parse(email).map_err(|e| AdminError::Invalid(e.0))?;
        self.store
            .user_by_email(&e)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("user {e} does not exist")))
    }

    /// Sets a user's permissions in a workspace (creating the membership if needed).
    pub async fn add_member(
        &self,
        workspace: &str,
        email: &str,
        permissions: &str,
    ) -> Result<(Workspace, User, Membership, MembershipWrite), AdminError> {
        let perms = self.catalogue.parse_known(permissions).map_err(AdminError::Invalid)?;
        if let Some(id) = self.catalogue.identity_part(&perms).iter().next() {
            return Err(AdminError::Invalid(format!(
                "{id} is an identity scope, not a workspace permission; every user may delegate it"
            )));
        }
        let ws = self.workspace(workspace).await?;
        let user = self.user(email).await?;
        let now = self.clock.now();
        let m = Membership {
            workspace_id: ws.id.clone(),
            user_id: user.id.clone(),
            permissions: perms,
            created_at: now,
            updated_at: now,
        };
        let write = self.store.put_membership(&m).await?;
        self.cache.invalidate();
        let mut r = crate::events::entry("member.updated", now, Some(&ws.id));
        r.subject = Some(user.id.to_string());
        r.user_id = Some(user.id.to_string());
        r.actor = Some("admin".into());
        r.params = json!({ "permissions": m.permissions.to_string() }).to_string();
        crate::events::write(self.events(), r).await?;
        let stored = self.store.membership(&ws.id, &user.id).await?.unwrap_or(m);
        Ok((ws, user, stored, write))
    }

    pub async fn remove_member(&self, workspace: &str, email: &str) -> Result<(), AdminError> {
        let ws = self.workspace(workspace).await?;
        let user = self.user(email).await?;
        if self.store.remove_membership(&ws.id, &user.id).await? {
            self.cache.invalidate();
            let mut r = crate::events::entry("member.removed", self.clock.now(), Some(&ws.id));
            r.subject = Some(user.id.to_string());
            r.user_id = Some(user.id.to_string());
            r.actor = Some("admin".into());
            crate::events::write(self.events(), r).await?;
            Ok(())
        } else {
            Err(AdminError::NotFound(format!("{} is not a member of {}", user.email, ws.slug)))
        }
    }

    pub async fn list_members(
        &self,
        workspace: &str,
    ) -> Result<(Workspace, Vec<(User, Membership)>), AdminError> {
        let ws = self.workspace(workspace).await?;
        let members = self.store.members_of_workspace(&ws.id).await?;
        Ok((ws, members))
    }

    pub async fn create_client(&self, req: NewClient) -> Result<CreatedClient, AdminError> {
        let name = req.name.trim().to_owned();
        check_name(&name)?;

        let mut grant_types: Vec<String> = if req.grant_types.is_empty() {
            vec![GRANT_AUTHORIZATION_CODE.into(), GRANT_REFRESH_TOKEN.into()]
        } else {
            req.grant_types.clone()
        };
        grant_types.dedup();
        for g in &grant_types {
            if !SUPPORTED_GRANT_TYPES.contains(&g.as_str()) {
                return Err(AdminError::Invalid(format!(
                    "grant type {g:?} is not supported (supported: {})",
                    SUPPORTED_GRANT_TYPES.join(", ")
                )));
            }
        }
        let has = |g: &str| grant_types.iter().any(|x| x == g);
        if has(GRANT_REFRESH_TOKEN) && !has(GRANT_AUTHORIZATION_CODE) && !has(GRANT_DEVICE_CODE) {
            return Err(AdminError::Invalid(
                "refresh_token needs a grant that issues refresh tokens (authorization_code or device_code)"
                    .into(),
            ));
        }
        if has(GRANT_CLIENT_CREDENTIALS) {
            // RFC 6749 §4.4: confidential clients only; and its tokens need a workspace to act in.
            if req.public {
                return Err(AdminError::Invalid(
                    "client_credentials is for confidential clients only".into(),
                ));
            }
            if req.workspace.is_none() {
                return Err(AdminError::Invalid(
                    "client_credentials needs --workspace: the client's tokens act in that workspace".into(),
                ));
            }
        }
        if !has(GRANT_AUTHORIZATION_CODE) && !req.redirect_uris.is_empty() {
            return Err(AdminError::Invalid(
                "--redirect-uri only applies to the authorization_code grant".into(),
            ));
        }
        let refresh_overlap = req.refresh_overlap.unwrap_or(Duration::ZERO);
        if refresh_overlap < Duration::ZERO || refresh_overlap > MAX_REFRESH_OVERLAP {
            return Err(AdminError::Invalid(
                "the refresh overlap window must be between 0 and 60 seconds".into(),
            ));
        }

        let mut redirect_uris: Vec<RedirectUri> = Vec::new();
        for raw in &req.redirect_uris {
            let uri = RedirectUri::parse(raw).map_err(|e| AdminError::Invalid(e.0))?;
            if !redirect_uris.contains(&uri) {
                redirect_uris.push(uri);
            }
        }
        if has(GRANT_AUTHORIZATION_CODE) && redirect_uris.is_empty() {
            return Err(AdminError::Invalid(
                "the authorization_code grant needs at least one --redirect-uri".into(),
            ));
        }

        let mut scopes = self.catalogue.parse_known(&req.scope).map_err(AdminError::Invalid)?;
        if let Some(bundle) = &req.bundle {
            let Some(slug) = &req.workspace else {
                return Err(AdminError::Invalid(
                    "--bundle needs --workspace: bundles belong to a workspace".into(),
                ));
            };
            let ws = self.workspace(slug).await?;
            scopes = scopes.union(&self.bundle(&ws, bundle).await?.scopes);
        }
        if scopes.is_empty() {
            return Err(AdminError::Invalid("a client needs at least one scope (--scope)".into()));
        }
        check_no_manage(&scopes)?;

        let workspace_id = match &req.workspace {
            Some(slug) => Some(self.workspace(slug).await?.id),
            None => None,
        };

        let secret = (!req.public).then(|| random_token(prefix::CLIENT_SECRET));
        let client = Client {
            id: ClientId::generate(),
            name,
            secret_hash: secret.as_ref().map(|s| TokenHash::of(s.expose_secret())),
            redirect_uris,
            scopes,
            grant_types,
            workspace_id,
            created_at: self.clock.now(),
            refresh_overlap,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            revoked_at: None,
            origin: portcullis_store::ClientOrigin::Admin,
            registration: None,
            last_used_at: None,
            require_pushed_requests: req.require_pushed_requests,
            dpop_bound: req.dpop_bound,
        };
        self.store.insert_client(&client).await?;
        Ok(CreatedClient { client, secret })
    }

    pub async fn list_clients(&self) -> Result<Vec<Client>, AdminError> {
        Ok(self.store.list_clients().await?)
    }

    pub async fn client(&self, id: &str) -> Result<Client, AdminError> {
        self.store
            .client_by_id(&ClientId::from_string(id))
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("client {id:?} does not exist")))
    }

    /// Issues a new secret; the old one keeps working for `grace` (at most 30 days).
    pub async fn rotate_client_secret(&self, id: &str, grace: Duration) -> Result<CreatedClient, AdminError> {
        if grace < Duration::ZERO || grace > MAX_SECRET_GRACE {
            return Err(AdminError::Invalid("the grace period must be between 0 and 30 days".into()));
        }
        let client = self.client(id).await?;
        if client.is_public() {
            return Err(AdminError::Invalid(format!("client {id:?} is public and has no secret")));
        }
        if client.is_revoked() {
            return Err(AdminError::Invalid(format!("client {id:?} is revoked")));
        }
        let secret = random_token(prefix::CLIENT_SECRET);
        let until = self.clock.now() + grace;
        if !self.store.rotate_client_secret(&client.id, &TokenHash::of(secret.expose_secret()), until).await?
        {
            return Err(AdminError::Conflict(format!("client {id:?} changed meanwhile; try again")));
        }
        self.cache.invalidate();
        tracing::info!(event = "client_secret_rotated", client_id = %client.id, grace_seconds = grace.whole_seconds(), "client secret rotated");
        self.client_event(
            "client.secret_rotated",
            &client,
            json!({ "grace_seconds": grace.whole_seconds() }),
        )
        .await?;
        Ok(CreatedClient { client: self.client(id).await?, secret: Some(secret) })
    }

    /// Revokes a client: it can no longer authenticate and every token issued to it is inactive.
    pub async fn revoke_client(&self, id: &str) -> Result<Client, AdminError> {
        let client = self.client(id).await?;
        let revoked = self.store.revoke_client(&client.id, self.clock.now()).await?;
        self.cache.invalidate();
        if !revoked {
            return Err(AdminError::Conflict(format!("client {id:?} is already revoked")));
        }
        tracing::info!(event = "client_revoked", client_id = %client.id, "client revoked");
        self.client_event("client.revoked", &client, json!({})).await?;
        self.client(id).await
    }

    /// Grants, newest first, optionally for one workspace and/or one client.
    pub async fn list_grants(
        &self,
        workspace: Option<&str>,
        client: Option<&str>,
    ) -> Result<Vec<Grant>, AdminError> {
        let workspace_id = match workspace {
            Some(slug) => Some(self.workspace(slug).await?.id),
            None => None,
        };
        let client_id = match client {
            Some(id) => Some(self.client(id).await?.id),
            None => None,
        };
        Ok(self.store.list_grants(&GrantFilter { workspace_id, client_id, ..Default::default() }).await?)
    }

    /// Revokes one grant and every token issued under it; other grants of the same client (in
    /// other workspaces, or of other users) are untouched.
    pub async fn revoke_grant(&self, id: &str) -> Result<Grant, AdminError> {
        let gid = GrantId::from_string(id);
        let grant = self
            .store
            .grant_by_id(&gid)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("grant {id:?} does not exist")))?;
        let revoked = self.store.revoke_grant(&gid, self.clock.now()).await?;
        self.cache.invalidate();
        if !revoked {
            return Err(AdminError::Conflict(format!("grant {id:?} is already revoked")));
        }
        tracing::info!(event = "grant_revoked", grant_id = %grant.id, client_id = %grant.client_id, "grant revoked");
        let mut r = crate::events::entry("grant.revoked", self.clock.now(), Some(&grant.workspace_id));
        r.subject = Some(grant.id.to_string());
        r.client_id = Some(grant.client_id.to_string());
        r.user_id = Some(grant.user_id.to_string());
        r.actor = Some("admin".into());
        r.params = json!({ "by": "admin" }).to_string();
        crate::events::write(self.events(), r).await?;
        Ok(self.store.grant_by_id(&gid).await?.unwrap_or(grant))
    }

    pub async fn signing_keys(&self) -> Result<Vec<SigningKey>, AdminError> {
        Ok(self.store.signing_keys().await?)
    }

    /// Rotates the signing key (see [`crate::keys::rotate`]).
    pub async fn rotate_signing_key(
        &self,
        delay: Duration,
        longest_token_ttl: Duration,
    ) -> Result<SigningKey, AdminError> {
        if delay < Duration::ZERO {
            return Err(AdminError::Invalid("the activation delay cannot be negative".into()));
        }
        let ring = Keyring::new(self.sealer.clone());
        let k = crate::keys::rotate(&ring, &self.store, self.clock.now(), delay, longest_token_ttl)
            .await
            .map_err(AdminError::Internal)?
            .ok_or_else(|| {
                AdminError::Conflict(
                    "another process rotated the signing key at the same moment; list the keys and \
                     rotate again only if another key is still wanted"
                        .into(),
                )
            })?;
        tracing::info!(event = "signing_key_rotated", kid = %k.kid, "signing key rotated");
        Ok(k)
    }
}

/// `:manage` scopes belong to API keys; no OAuth client may ever ask for them.
fn check_no_manage(scopes: &ScopeSet) -> Result<(), AdminError> {
    let manage: Vec<String> = scopes.iter().filter(|s| s.is_manage()).map(|s| s.to_string()).collect();
    if manage.is_empty() {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "{} can never be granted through OAuth (:manage scopes are for API keys)",
            manage.join(", ")
        )))
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), AdminError> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AdminError::Invalid("a name must be 1-200 printable characters".into()));
    }
    Ok(())
}
