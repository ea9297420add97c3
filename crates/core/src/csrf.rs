//! CSRF tokens for our HTML forms: an HMAC of a per-browser random value (kept in an HttpOnly,
//! SameSite cookie) under a server key. A forged cross-site post has neither the cookie's value in
//! its form nor a way to compute the MAC (OWASP "signed double-submit cookie").

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The form token for the browser whose CSRF cookie holds `binding`.
pub fn token(key: &[u8; 32], binding: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(b"portcullis-csrf:");
    mac.update(binding.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Constant-time check of a submitted token.
pub fn verify(key: &[u8; 32], binding: &str, submitted: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(submitted) else { return false };
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(b"portcullis-csrf:");
    mac.update(binding.as_bytes());
    mac.verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_binding_and_key() {
        let k = [1u8; 32];
        let t = token(&k, "cookie-a");
        assert!(verify(&k, "cookie-a", &t));
        assert!(!verify(&k, "cookie-b", &t));
        assert!(!verify(&[2u8; 32], "cookie-a", &t));
        assert!(!verify(&k, "cookie-a", "not base64!"));
        assert!(!verify(&k, "cookie-a", ""));
    }
}
