//! Form and query parameters with the RFC 6749 §3.1 rules applied once, at the edge.

use crate::OAuthError;
use std::collections::BTreeMap;

/// Parsed `application/x-www-form-urlencoded` parameters.
///
/// RFC 6749 §3.1 and §3.2: "Parameters sent without a value MUST be treated as if they were
/// omitted from the request" and "Request and response parameters MUST NOT be included more than
/// once". A repeated parameter is remembered so the caller can decide how to report it (the
/// authorization endpoint must not redirect for a repeated `client_id` or `redirect_uri`).
#[derive(Clone, Debug, Default)]
pub struct Params {
    values: BTreeMap<String, String>,
    repeated: Vec<String>,
    /// Every value of the parameters that may repeat ([`MULTI_VALUED`]), in order.
    multi: Vec<(String, String)>,
}

/// Parameters that extensions allow more than once: RFC 8707 `resource` and RFC 8693 `audience`.
pub const MULTI_VALUED: &[&str] = &["resource", "audience"];

impl Params {
    pub fn parse(input: &[u8]) -> Self {
        let mut values = BTreeMap::new();
        let mut repeated = Vec::new();
        let mut multi = Vec::new();
        for (k, v) in form_urlencoded::parse(input) {
            if v.is_empty() {
                continue;
            }
            if MULTI_VALUED.contains(&k.as_ref()) {
                multi.push((k.clone().into_owned(), v.clone().into_owned()));
            }
            match values.entry(k.into_owned()) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    if !repeated.contains(e.key()) {
                        repeated.push(e.key().clone());
                    }
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v.into_owned());
                }
            }
        }
        Self { values, repeated, multi }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Whether `name` was sent more than once.
    pub fn is_repeated(&self, name: &str) -> bool {
        self.repeated.iter().any(|r| r == name)
    }

    /// Sets (or replaces) a single-valued parameter.
    pub fn set(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_owned(), value.to_owned());
    }

    /// Every value of a parameter that may repeat ([`MULTI_VALUED`]).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.multi.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// Fails with `invalid_request` naming the first repeated parameter, if any (parameters that
    /// may repeat excepted).
    pub fn reject_repeated(&self) -> Result<(), OAuthError> {
        match self.repeated.iter().find(|r| !MULTI_VALUED.contains(&r.as_str())) {
            Some(name) => {
                Err(OAuthError::invalid_request(format!("the {name} parameter was sent more than once")))
            }
            None => Ok(()),
        }
    }

    /// A required parameter, or `invalid_request` naming it.
    pub fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| OAuthError::invalid_request(format!("the {name} parameter is missing")))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_absent() {
        let p = Params::parse(b"a=1&b=&c");
        assert_eq!(p.get("a"), Some("1"));
        assert!(!p.has("b"));
        assert!(!p.has("c"));
    }

    #[test]
    fn repeated_parameters_are_reported() {
        let p = Params::parse(b"scope=a&scope=b&x=1");
        assert!(p.is_repeated("scope"));
        assert!(!p.is_repeated("x"));
        let err = p.reject_repeated().unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::InvalidRequest);
    }

    #[test]
    fn resource_may_repeat() {
        let p = Params::parse(b"resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb&x=1");
        assert_eq!(p.all("resource"), vec!["https://a", "https://b"]);
        assert!(p.reject_repeated().is_ok());
        assert!(Params::parse(b"resource=a&x=1&x=2").reject_repeated().is_err());
    }

    #[test]
    fn percent_and_plus_decoding() {
        let p = Params::parse(b"redirect_uri=https%3A%2F%2Fa.example%2Fcb&scope=a+b");
        assert_eq!(p.get("redirect_uri"), Some("https://a.example/cb"));
        assert_eq!(p.get("scope"), Some("a b"));
    }
}
