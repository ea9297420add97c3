//! Random opaque secrets and their stored form.
//!
//! Every secret we issue (client secrets, authorization codes, refresh tokens, sessions) is 256
//! random bits with a prefix that says what it is (`pcl_ac_…`), so a leaked value is recognisable
//! by secret scanners and by people. Only the SHA-256 of a secret is stored; a lookup hashes the
//! presented value and searches by hash. A plain hash is right here because the inputs have full
//! entropy: there is nothing for a slow password hash to protect against.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefixes of the secrets we issue.
pub mod prefix {
    pub const CLIENT_SECRET: &str = "pcl_cs_";
    pub const AUTH_CODE: &str = "pcl_ac_";
    pub const REFRESH_TOKEN: &str = "pcl_rt_";
    pub const SESSION: &str = "pcl_ss_";
    pub const DEVICE_CODE: &str = "pcl_dc_";
    /// RFC 7592 registration access tokens.
    pub const REGISTRATION_TOKEN: &str = "pcl_rat_";
}

/// 256 random bits, base64url without padding, behind `prefix`.
pub fn random_token(prefix: &str) -> SecretString {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    SecretString::from(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Random bytes for identifiers that are not secrets but must not be guessable (request ids).
pub fn random_id(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::fill(bytes.as_mut_slice());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a secret: the only form in which secrets are stored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time comparison, for checks that are not database lookups.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// Shows only a short fingerprint: enough to correlate in logs, useless to an attacker.
impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn tokens_are_prefixed_and_unique() {
        let a = random_token(prefix::AUTH_CODE);
        let b = random_token(prefix::AUTH_CODE);
        assert!(a.expose_secret().starts_with("pcl_ac_"));
        assert_eq!(a.expose_secret().len(), 7 + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn hash_is_stable_and_compares_in_constant_time() {
        let h1 = TokenHash::of("x");
        assert!(h1.ct_eq(&TokenHash::of("x")));
        assert!(!h1.ct_eq(&TokenHash::of("y")));
        assert!(!format!("{h1:?}").contains(&format!("{:?}", h1.as_bytes())));
    }
}
