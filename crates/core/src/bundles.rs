//! Scope bundles: named, reusable scope lists of a workspace ("Support Read-only").
//!
//! A bundle is expanded when a credential is created from it: the key, client or service token
//! gets a copy of the scopes, so editing the bundle later never silently widens (or narrows)
//! credentials that already exist.

use crate::admin::{Admin, AdminError, check_name};
use crate::events::{self, Actor};
use portcullis_domain::{BundleId, ScopeSet};
use portcullis_store::{ScopeBundle, Store, StoreError, Workspace};
use serde::Serialize;
use serde_json::json;

/// A bundle as shown to operators.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct BundleView {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub description: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&ScopeBundle> for BundleView {
    fn from(b: &ScopeBundle) -> Self {
        Self {
            id: b.id.to_string(),
            workspace_id: b.workspace_id.to_string(),
            name: b.name.clone(),
            description: b.description.clone(),
            scopes: b.scopes.iter().map(|s| s.to_string()).collect(),
            created_at: crate::rfc3339(b.created_at),
            updated_at: crate::rfc3339(b.updated_at),
        }
    }
}

impl<S: Store> Admin<S> {
    /// Validates a bundle's scopes: known, explicit, at least one, no identity scopes, and (for a
    /// credential defining it) within the caller's own scopes.
    fn bundle_scopes(&self, scope: &str, ceiling: Option<&ScopeSet>) -> Result<ScopeSet, AdminError> {
        let scopes = self.catalogue.parse_known(scope).map_err(AdminError::Invalid)?;
        self.check_credential_scopes(&scopes, ceiling)?;
        Ok(scopes)
    }

    pub async fn create_bundle(
        &self,
        actor: &Actor,
        ws: &Workspace,
        name: &str,
        scope: &str,
        description: Option<&str>,
        ceiling: Option<&ScopeSet>,
    ) -> Result<ScopeBundle, AdminError> {
        let name = name.trim();
        check_name(name)?;
        let scopes = self.bundle_scopes(scope, ceiling)?;
        let now = self.clock.now();
        let b = ScopeBundle {
            id: BundleId::generate(),
            workspace_id: ws.id.clone(),
            name: name.to_owned(),
            description: description.map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned),
            scopes,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_bundle(&b).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                return Err(AdminError::Conflict(format!(
                    "workspace {} already has a bundle {name:?}",
                    ws.slug
                )));
            }
            Err(e) => return Err(e.into()),
        }
        events::record(
            self.events(),
            now,
            &ws.id,
            actor,
            "bundle.created",
            Some(name),
            json!({ "scopes": b.scopes }),
        )
        .await?;
        Ok(b)
    }

    pub async fn list_bundles(&self, ws: &Workspace) -> Result<Vec<ScopeBundle>, AdminError> {
        Ok(self.store.list_bundles(&ws.id).await?)
    }

    pub async fn bundle(&self, ws: &Workspace, name: &str) -> Result<ScopeBundle, AdminError> {
        self.store
            .bundle_by_name(&ws.id, name)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("workspace {} has no bundle {name:?}", ws.slug)))
    }

    /// Replaces a bundle's scopes (and description, when given). Credentials created from it
    /// earlier keep the scopes they were created with.
    pub async fn update_bundle(
        &self,
        actor: &Actor,
        ws: &Workspace,
        name: &str,
        scope: &str,
        description: Option<&str>,
        ceiling: Option<&ScopeSet>,
    ) -> Result<ScopeBundle, AdminError> {
        let scopes = self.bundle_scopes(scope, ceiling)?;
        let current = self.bundle(ws, name).await?;
        let now = self.clock.now();
        let b = ScopeBundle {
            scopes,
            description: match description {
                Some(d) => Some(d.trim().to_owned()).filter(|d| !d.is_empty()),
                None => current.description.clone(),
            },
            updated_at: now,
            ..current
        };
        if !self.store.update_bundle(&b).await? {
            return Err(AdminError::NotFound(format!("workspace {} has no bundle {name:?}", ws.slug)));
        }
        events::record(
            self.events(),
            now,
            &ws.id,
            actor,
            "bundle.updated",
            Some(name),
            json!({ "scopes": b.scopes }),
        )
        .await?;
        Ok(b)
    }

    pub async fn delete_bundle(&self, actor: &Actor, ws: &Workspace, name: &str) -> Result<(), AdminError> {
        if !self.store.delete_bundle(&ws.id, name).await? {
            return Err(AdminError::NotFound(format!("workspace {} has no bundle {name:?}", ws.slug)));
        }
        events::record(
            self.events(),
            self.clock.now(),
            &ws.id,
            actor,
            "bundle.deleted",
            Some(name),
            json!({}),
        )
        .await?;
        Ok(())
    }

    /// The scopes of a new credential: `scope` (space-separated), the scopes of `bundle`, or the
    /// union of both. Returns them with the bundle's name, which the credential records.
    pub async fn expand_scopes(
        &self,
        ws: &Workspace,
        scope: Option<&str>,
        bundle: Option<&str>,
    ) -> Result<(ScopeSet, Option<String>), AdminError> {
        let mut scopes = match scope {
            Some(s) => self.catalogue.parse_known(s).map_err(AdminError::Invalid)?,
            None => ScopeSet::default(),
        };
        let bundle = match bundle {
            Some(name) => {
                let b = self.bundle(ws, name).await?;
                scopes = scopes.union(&b.scopes);
                Some(b.name)
            }
            None => None,
        };
        Ok((scopes, bundle))
    }
}
