//! Administrative operations (the CLI today, the admin API later): workspaces, users, members,
//! clients. Every input is validated before anything is written, so bad input changes nothing.

use crate::passwords;
use crate::scopes::Catalogue;
use portcullis_domain::secret::prefix;
use portcullis_domain::{
    ClientId, Clock, Email, RedirectUri, ScopeSet, Slug, TokenHash, UserId, WorkspaceId, random_token,
};
use portcullis_proto::token::{GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN};
use portcullis_store::{Client, Membership, MembershipWrite, Store, StoreError, User, Workspace};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

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
    #[error("storage error: {0}")]
    Internal(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// Grant types a client may be registered with (those the token endpoint implements).
pub const SUPPORTED_GRANT_TYPES: &[&str] = &[GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN];

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
}

impl<S: Store> Admin<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, catalogue: Arc<Catalogue>) -> Self {
        Self { store, clock, catalogue }
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
        let stored = self.store.membership(&ws.id, &user.id).await?.unwrap_or(m);
        Ok((ws, user, stored, write))
    }

    pub async fn remove_member(&self, workspace: &str, email: &str) -> Result<(), AdminError> {
        let ws = self.workspace(workspace).await?;
        let user = self.user(email).await?;
        if self.store.remove_membership(&ws.id, &user.id).await? {
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
        if has(GRANT_REFRESH_TOKEN) && !has(GRANT_AUTHORIZATION_CODE) {
            return Err(AdminError::Invalid(
                "refresh_token needs a grant that issues refresh tokens (authorization_code)".into(),
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

        let scopes = self.catalogue.parse_known(&req.scope).map_err(AdminError::Invalid)?;
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
        };
        self.store.insert_client(&client).await?;
        Ok(CreatedClient { client, secret })
    }

    pub async fn list_clients(&self) -> Result<Vec<Client>, AdminError> {
        Ok(self.store.list_clients().await?)
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

fn check_name(name: &str) -> Result<(), AdminError> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AdminError::Invalid("a name must be 1-200 printable characters".into()));
    }
    Ok(())
}
