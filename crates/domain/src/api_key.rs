//! The API key format, rate-limit specs and CIDR allowlists.
//!
//! A key reads `pcl_live_` (or `pcl_test_`), then 32 base62 characters of randomness (190 bits),
//! then a 6-character base62 CRC32 of everything before it:
//!
//! ```text
//! pcl_live_4fZk0pQ2vX9mB7tYc1nD8sLw3hRj6eGa0Jx9Kq
//! └ env ──┘└──────── 32 random ──────────┘└ crc ┘
//! ```
//!
//! The checksum lets us refuse a truncated or mistyped key before any database lookup, and lets
//! secret scanners recognise a real key with few false positives (the same reason GitHub's token
//! format carries one). Only a SHA-256 of the key is stored; `pcl_live_AbCd` (the first four
//! random characters) is kept for display.
//!
//! Base62 and the checksum are written here because they are a dozen lines: `crc32fast` does the
//! CRC, and no base62 crate is worth a dependency for fixed-width encoding of one `u32`.

use crate::Invalid;
use crate::secret::TokenHash;
pub use ipnet::IpNet;
use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use time::Duration;

const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
const DISPLAY_LEN: usize = 4;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Which deployment a key belongs to: a test key is refused by a live server and vice versa, so a
/// key copied from staging cannot work in production.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEnvironment {
    Live,
    Test,
}

impl KeyEnvironment {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Live => "pcl_live_",
            Self::Test => "pcl_test_",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }
}

impl FromStr for KeyEnvironment {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s {
            "live" => Ok(Self::Live),
            "test" => Ok(Self::Test),
            _ => Err(Invalid(format!("key environment must be live or test, not {s:?}"))),
        }
    }
}

/// Why a presented string is not a well-formed API key. Checked without any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    #[error("not a Portcullis API key")]
    NotAKey,
    #[error("the API key is incomplete or mistyped (checksum mismatch)")]
    Checksum,
}

/// A well-formed API key secret. Never printed.
pub struct ApiKeySecret {
    secret: SecretString,
    env: KeyEnvironment,
}

impl ApiKeySecret {
    /// A fresh key for `env`.
    pub fn generate(env: KeyEnvironment) -> Self {
        let random: String =
            rand::rng().sample_iter(rand::distr::Alphanumeric).take(RANDOM_LEN).map(char::from).collect();
        let body = format!("{}{random}", env.prefix());
        let secret = format!("{body}{}", checksum(&body));
        Self { secret: SecretString::from(secret), env }
    }

    /// Checks the shape and checksum of a presented key.
    pub fn parse(s: &str) -> Result<Self, MalformedKey> {
        let env = [KeyEnvironment::Live, KeyEnvironment::Test]
            .into_iter()
            .find(|e| s.starts_with(e.prefix()))
            .ok_or(MalformedKey::NotAKey)?;
        let rest = &s[env.prefix().len()..];
        if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedKey::Checksum);
        }
        let (body, sum) = s.split_at(s.len() - CHECKSUM_LEN);
        if checksum(body) != sum {
            return Err(MalformedKey::Checksum);
        }
        Ok(Self { secret: SecretString::from(s.to_owned()), env })
    }

    /// Whether `s` looks like one of our keys (prefix only), to tell keys from JWTs cheaply.
    pub fn looks_like(s: &str) -> bool {
        s.starts_with(KeyEnvironment::Live.prefix()) || s.starts_with(KeyEnvironment::Test.prefix())
    }

    pub fn environment(&self) -> KeyEnvironment {
        self.env
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.secret.expose_secret())
    }

    /// The non-secret display prefix, e.g. `pcl_live_AbCd`.
    pub fn display_prefix(&self) -> String {
        self.secret.expose_secret()[..self.env.prefix().len() + DISPLAY_LEN].to_owned()
    }

    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.display_prefix())
    }
}

/// CRC32 of `body`, base62, fixed width (62^6 > 2^32).
fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
}

/// A request budget such as `600/min`: at most `limit` requests in each `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

impl RateLimit {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bad =
            || Invalid(format!("rate limit {s:?} must look like 600/min (units: s, sec, min, hour, day)"));
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        let window = match unit.trim() {
            "s" | "sec" | "second" => Duration::SECOND,
            "m" | "min" | "minute" => Duration::MINUTE,
            "h" | "hour" => Duration::HOUR,
            "d" | "day" => Duration::DAY,
            _ => return Err(bad()),
        };
        if limit == 0 {
            return Err(Invalid("a rate limit must allow at least one request".into()));
        }
        Ok(Self { limit, window })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.window.whole_seconds() {
            1 => "s",
            60 => "min",
            3600 => "hour",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.limit)
    }
}

/// Parses a CIDR block (`10.0.0.0/8`, `2001:db8::/32`); a bare address means just that address.
/// Host bits are cleared, so `10.1.2.3/8` is stored as `10.0.0.0/8`.
pub fn parse_cidr(s: &str) -> Result<IpNet, Invalid> {
    let s = s.trim();
    let net = match IpNet::from_str(s) {
        Ok(n) => n,
        Err(_) => IpAddr::from_str(s)
            .map(IpNet::from)
            .map_err(|_| Invalid(format!("{s:?} is not a CIDR block such as 203.0.113.0/24")))?,
    };
    Ok(net.trunc())
}

/// Whether `ip` is allowed by `allow` (an empty list allows every address). IPv4-mapped IPv6
/// addresses are compared as IPv4.
pub fn ip_allowed(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    allow.is_empty() || allow.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_carry_enough_randomness() {
        let k = ApiKeySecret::generate(KeyEnvironment::Live);
        assert!(k.expose().starts_with("pcl_live_"));
        assert_eq!(k.expose().len(), 9 + 32 + 6);
        // 32 characters of base62 carry 32 * log2(62) ≈ 190 bits.
        assert!(32.0 * 62f64.log2() >= 160.0);
        let p = ApiKeySecret::parse(k.expose()).unwrap();
        assert_eq!(p.hash(), k.hash());
        assert_eq!(p.environment(), KeyEnvironment::Live);
        assert_eq!(k.display_prefix().len(), 13);
        assert!(!format!("{k:?}").contains(&k.expose()[13..]));
        let t = ApiKeySecret::generate(KeyEnvironment::Test);
        assert_eq!(ApiKeySecret::parse(t.expose()).unwrap().environment(), KeyEnvironment::Test);
    }

    #[test]
    fn any_single_typo_or_truncation_fails_the_checksum() {
        let k = ApiKeySecret::generate(KeyEnvironment::Live);
        let s = k.expose();
        for i in 9..s.len() {
            let mut b = s.as_bytes().to_vec();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            assert_eq!(
                ApiKeySecret::parse(std::str::from_utf8(&b).unwrap()).unwrap_err(),
                MalformedKey::Checksum
            );
        }
        assert_eq!(ApiKeySecret::parse(&s[..s.len() - 1]).unwrap_err(), MalformedKey::Checksum);
        assert_eq!(ApiKeySecret::parse("pcl_rt_abc").unwrap_err(), MalformedKey::NotAKey);
        assert_eq!(ApiKeySecret::parse("").unwrap_err(), MalformedKey::NotAKey);
    }

    #[test]
    fn rate_limits() {
        assert_eq!(RateLimit::parse("600/min").unwrap(), RateLimit { limit: 600, window: Duration::MINUTE });
        assert_eq!(RateLimit::parse("10/s").unwrap().to_string(), "10/s");
        assert_eq!(RateLimit::parse("5000/hour").unwrap().to_string(), "5000/hour");
        for bad in ["", "600", "0/min", "-1/min", "10/week", "x/min", "600/"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let v4 = parse_cidr("10.1.2.3/8").unwrap();
        assert_eq!(v4.to_string(), "10.0.0.0/8");
        let v6 = parse_cidr("2001:db8::/32").unwrap();
        let one = parse_cidr("203.0.113.7").unwrap();
        assert_eq!(one.to_string(), "203.0.113.7/32");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
        let allow = [v4, v6];
        assert!(ip_allowed(&allow, "10.9.9.9".parse().unwrap()));
        assert!(ip_allowed(&allow, "::ffff:10.0.0.1".parse().unwrap()));
        assert!(ip_allowed(&allow, "2001:db8::1".parse().unwrap()));
        assert!(!ip_allowed(&allow, "192.0.2.1".parse().unwrap()));
        assert!(ip_allowed(&[], "192.0.2.1".parse().unwrap()));
    }
}
