//! Scope tokens and sets (RFC 6749 §3.3). Wildcards do not exist: `*` is not a valid character.

use crate::Invalid;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;

/// One scope token, e.g. `contacts:read`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    /// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, minus `*`, which would read
    /// as a wildcard and is refused so that every credential names its scopes explicitly.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() || raw.len() > 128 {
            return Err(Invalid(format!("{raw:?} is not a valid scope")));
        }
        if raw.contains('*') {
            return Err(Invalid(format!(
                "{raw:?}: wildcard scopes are not supported; list each scope explicitly"
            )));
        }
        let ok = raw.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !ok {
            return Err(Invalid(format!("{raw:?} is not a valid scope")));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Administrative scopes (`keys:manage`, `members:manage`, …) are for API keys only and can
    /// never be granted through OAuth.
    pub fn is_manage(&self) -> bool {
        self.0.ends_with(":manage")
    }
}

impl TryFrom<String> for Scope {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s)
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of scopes, ordered for stable output; serialised as the space-delimited string of
/// RFC 6749 §3.3.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a space-delimited list. Repeated tokens collapse; any invalid token fails the whole
    /// list.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        raw.split(' ')
            .filter(|t| !t.is_empty())
            .map(Scope::parse)
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, s: &str) -> bool {
        self.0.iter().any(|x| x.as_str() == s)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn insert(&mut self, s: Scope) {
        self.0.insert(s);
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.difference(&other.0).cloned().collect())
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn filter(&self, keep: impl Fn(&Scope) -> bool) -> ScopeSet {
        Self(self.0.iter().filter(|s| keep(s)).cloned().collect())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ScopeSet::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_space_delimited() {
        let s = ScopeSet::parse("b a  b").unwrap();
        assert_eq!(s.to_string(), "a b");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn rejects_wildcards_and_bad_characters() {
        assert!(Scope::parse("contacts:*").is_err());
        assert!(Scope::parse("*").is_err());
        assert!(Scope::parse("a\"b").is_err());
        assert!(Scope::parse("a\\b").is_err());
        assert!(ScopeSet::parse("ok bad\u{7f}").is_err());
    }

    #[test]
    fn set_algebra() {
        let a = ScopeSet::parse("x y z").unwrap();
        let b = ScopeSet::parse("y z w").unwrap();
        assert_eq!(a.intersection(&b).to_string(), "y z");
        assert!(ScopeSet::parse("y").unwrap().is_subset(&a));
        assert_eq!(a.difference(&b).to_string(), "x");
    }

    #[test]
    fn manage_scopes_are_recognised() {
        assert!(Scope::parse("keys:manage").unwrap().is_manage());
        assert!(!Scope::parse("contacts:read").unwrap().is_manage());
    }
}
