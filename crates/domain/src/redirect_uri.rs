//! Redirect URIs: what may be registered, and how a presented URI is compared with a registered
//! one (RFC 9700 §2.1, RFC 6749 §3.1.2, RFC 8252 §7).

use crate::Invalid;
use serde::{Deserialize, Serialize};

/// A registered redirect URI, kept exactly as registered: comparison is by string equality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri(String);

/// What kind of redirect target a URI is; native-app rules depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectKind {
    /// `https://…`
    Https,
    /// `http://127.0.0.1…`, `http://[::1]…` or `http://localhost…` (RFC 8252 §7.3).
    Loopback,
    /// A private-use scheme of a native app such as `com.example.app:/cb` (RFC 8252 §7.1).
    PrivateUse,
}

const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "[::1]", "localhost"];
const FORBIDDEN_SCHEMES: [&str; 7] = ["javascript", "data", "file", "vbscript", "about", "blob", "ftp"];

impl RedirectUri {
    /// Accepts absolute URIs without fragment or user info: https anywhere, http only on loopback,
    /// and private-use schemes in reverse-domain form (`com.example.app:/cb`).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bad = |why: &str| Invalid(format!("redirect URI {raw:?} is not allowed: {why}"));
        if raw.len() > 2000 {
            return Err(bad("longer than 2000 characters"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace"));
        }
        let url = url::Url::parse(raw).map_err(|_| bad("not an absolute URI"))?;
        if url.fragment().is_some() || raw.contains('#') {
            return Err(bad("a fragment is not allowed (RFC 6749 §3.1.2)"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("user information is not allowed"));
        }
        let scheme = url.scheme();
        match scheme {
            "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(bad("no host"));
                }
            }
            "http" => {
                if Self::loopback_split(raw).is_none() {
                    return Err(bad("http is only allowed for loopback hosts (127.0.0.1, [::1], localhost)"));
                }
            }
            s if FORBIDDEN_SCHEMES.contains(&s) => return Err(bad("scheme not allowed")),
            s if s.contains('.') => {}
            _ => {
                return Err(bad(
                    "use https, http on a loopback host, or a reverse-domain private-use scheme",
                ));
            }
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> RedirectKind {
        if self.0.starts_with("https://") {
            RedirectKind::Https
        } else if self.0.starts_with("http://") {
            RedirectKind::Loopback
        } else {
            RedirectKind::PrivateUse
        }
    }

    /// Whether `presented` designates this registered URI.
    ///
    /// Exact string equality (RFC 9700 §2.1: "exact string matching"), with one exception: when
    /// `loopback_port_freedom` is set (public native clients only), a loopback URI matches on any
    /// port, as RFC 8252 §7.3 requires ("MUST allow any port to be specified at the time of the
    /// request for loopback IP redirect URIs"). Host, path and query must still be identical.
    pub fn matches(&self, presented: &str, loopback_port_freedom: bool) -> bool {
        if self.0 == presented {
            return true;
        }
        if !loopback_port_freedom || self.kind() != RedirectKind::Loopback {
            return false;
        }
        match (Self::loopback_split(&self.0), Self::loopback_split(presented)) {
            (Some((h1, _, r1)), Some((h2, _, r2))) => h1 == h2 && r1 == r2 && !r2.contains('#'),
            _ => false,
        }
    }

    /// Splits `http://HOST[:PORT]REST` into (host, port, rest) when HOST is a loopback host and
    /// PORT (if any) is a valid port number. Works on the raw string so no URL normalisation can
    /// make two different strings compare equal.
    fn loopback_split(raw: &str) -> Option<(&str, Option<u16>, &str)> {
        let after = raw.strip_prefix("http://")?;
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let (host, port) = if let Some(h) = authority.strip_prefix("[::1]") {
            match h {
                "" => ("[::1]", None),
                p => ("[::1]", Some(p.strip_prefix(':')?.parse::<u16>().ok()?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
                None => (authority, None),
            }
        };
        LOOPBACK_HOSTS.contains(&host).then_some((host, port, rest))
    }
}

impl TryFrom<String> for RedirectUri {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s)
    }
}

impl From<RedirectUri> for String {
    fn from(r: RedirectUri) -> String {
        r.0
    }
}

impl std::fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        assert!(RedirectUri::parse("https://app.example/cb").is_ok());
        assert!(RedirectUri::parse("http://127.0.0.1:8000/cb").is_ok());
        assert!(RedirectUri::parse("http://[::1]/cb").is_ok());
        assert!(RedirectUri::parse("http://localhost:3000/callback").is_ok());
        assert!(RedirectUri::parse("com.example.app:/oauth").is_ok());
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "/relative",
            "javascript:alert(1)",
            "data:text/html,hi",
            "myapp:/cb",
            "https://user:pw@app.example/cb",
            "https://app.example/c b",
            "not a uri",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_matching_has_no_leniency() {
        let r = RedirectUri::parse("https://app.example/cb").unwrap();
        assert!(r.matches("https://app.example/cb", false));
        assert!(r.matches("https://app.example/cb", true));
        for other in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://APP.example/cb",
            "https://app.example/cb/../cb",
            "https://app.example:443/cb",
            "https://app.example/c",
        ] {
            assert!(!r.matches(other, true), "{other}");
        }
    }

    #[test]
    fn loopback_port_freedom_only_when_allowed() {
        let r = RedirectUri::parse("http://127.0.0.1/cb").unwrap();
        assert!(r.matches("http://127.0.0.1:51234/cb", true));
        assert!(!r.matches("http://127.0.0.1:51234/cb", false));
        assert!(!r.matches("http://127.0.0.1:51234/cb/", true));
        assert!(!r.matches("http://127.0.0.1:51234/other", true));
        assert!(!r.matches("http://localhost:51234/cb", true));
        assert!(!r.matches("http://127.0.0.1:99999/cb", true));
        assert!(!r.matches("http://127.0.0.1:1@evil.example/cb", true));
        let v6 = RedirectUri::parse("http://[::1]:8080/cb?x=1").unwrap();
        assert!(v6.matches("http://[::1]:9/cb?x=1", true));
        assert!(!v6.matches("http://[::1]:9/cb?x=2", true));
    }
}
