//! The scope catalogue: which scopes exist and what each means to a person reading a consent
//! screen. Built in for a messaging CRM, replaceable by a file so any SaaS can describe its own.

use portcullis_domain::{Scope, ScopeSet};
use serde::Deserialize;
use std::collections::BTreeMap;

const DEFAULT: &str = include_str!("default_scopes.toml");

/// One catalogue entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeInfo {
    pub scope: Scope,
    pub description: String,
    /// About the user themself (OpenID Connect scopes): not a workspace permission.
    pub identity: bool,
}

#[derive(Clone, Debug)]
pub struct Catalogue {
    entries: BTreeMap<String, ScopeInfo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    scope: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    description: String,
    #[serde(default)]
    identity: bool,
}

impl Catalogue {
    /// The built-in messaging-CRM catalogue.
    pub fn builtin() -> Self {
        Self::from_toml(DEFAULT).expect("the built-in catalogue is valid")
    }

    /// Parses a catalogue file; every entry needs a valid name and a description, names are
    /// unique.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| format!("scope catalogue: {e}"))?;
        let mut entries = BTreeMap::new();
        for e in file.scope {
            let scope = Scope::parse(&e.name).map_err(|e| format!("scope catalogue: {e}"))?;
            if e.description.trim().is_empty() {
                return Err(format!("scope catalogue: {} has no description", e.name));
            }
            if e.identity && scope.is_manage() {
                return Err(format!("scope catalogue: {} cannot be an identity scope", e.name));
            }
            let info = ScopeInfo { scope, description: e.description, identity: e.identity };
            if entries.insert(e.name.clone(), info).is_some() {
                return Err(format!("scope catalogue: {} is listed twice", e.name));
            }
        }
        if entries.is_empty() {
            return Err("scope catalogue: no scopes".into());
        }
        Ok(Self { entries })
    }

    pub fn get(&self, name: &str) -> Option<&ScopeInfo> {
        self.entries.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ScopeInfo> {
        self.entries.values()
    }

    /// Parses `raw` and checks every scope is in the catalogue. The error names the unknown ones.
    pub fn parse_known(&self, raw: &str) -> Result<ScopeSet, String> {
        let set = ScopeSet::parse(raw).map_err(|e| e.0)?;
        let unknown: Vec<&str> =
            set.iter().map(Scope::as_str).filter(|s| !self.entries.contains_key(*s)).collect();
        if unknown.is_empty() { Ok(set) } else { Err(format!("unknown scope: {}", unknown.join(", "))) }
    }

    /// Scopes that may be granted through OAuth (everything except `:manage`), for discovery.
    pub fn oauth_scopes(&self) -> Vec<String> {
        self.iter().filter(|i| !i.scope.is_manage()).map(|i| i.scope.to_string()).collect()
    }

    /// The identity scopes in `set` (not subject to workspace permissions).
    pub fn identity_part(&self, set: &ScopeSet) -> ScopeSet {
        set.filter(|s| self.get(s.as_str()).is_some_and(|i| i.identity))
    }

    /// What a user may delegate in a workspace: their permissions there plus every identity
    /// scope. Intersected with a request, this gives the grantable scopes.
    pub fn delegable(&self, requested: &ScopeSet, permissions: &ScopeSet) -> ScopeSet {
        requested.intersection(permissions).union(&self.identity_part(requested))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_about_thirty_scopes_with_descriptions() {
        let c = Catalogue::builtin();
        let n = c.iter().count();
        assert!((28..=40).contains(&n), "{n}");
        for s in ["contacts:read", "flows:execute", "keys:manage", "openid", "offline_access"] {
            assert!(c.get(s).is_some(), "{s}");
        }
        assert!(c.iter().all(|i| !i.description.is_empty()));
        assert!(!c.oauth_scopes().iter().any(|s| s.ends_with(":manage")));
    }

    #[test]
    fn unknown_scopes_are_named() {
        let c = Catalogue::builtin();
        let e = c.parse_known("contacts:read nope:x").unwrap_err();
        assert!(e.contains("nope:x"), "{e}");
        assert!(c.parse_known("contacts:*").is_err());
    }

    #[test]
    fn custom_catalogue_is_validated() {
        assert!(Catalogue::from_toml("[[scope]]\nname = \"a:b\"\ndescription = \"x\"").is_ok());
        assert!(Catalogue::from_toml("[[scope]]\nname = \"a:*\"\ndescription = \"x\"").is_err());
        assert!(Catalogue::from_toml("[[scope]]\nname = \"a\"\ndescription = \"\"").is_err());
        let dup =
            "[[scope]]\nname = \"a\"\ndescription = \"x\"\n[[scope]]\nname = \"a\"\ndescription = \"y\"";
        assert!(Catalogue::from_toml(dup).is_err());
    }

    #[test]
    fn delegable_adds_identity_scopes_only() {
        let c = Catalogue::builtin();
        let req = ScopeSet::parse("openid contacts:read contacts:write").unwrap();
        let perms = ScopeSet::parse("contacts:read messages:read").unwrap();
        assert_eq!(c.delegable(&req, &perms).to_string(), "contacts:read openid");
    }
}
