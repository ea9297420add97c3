//! Proof Key for Code Exchange (RFC 7636), S256 only: OAuth 2.1 §4.1.1 requires PKCE and RFC 9700
//! §2.1.1 says `plain` should not be used, so we do not accept it at all.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// An S256 challenge is the base64url encoding (no padding) of 32 bytes: exactly 43 characters.
pub fn valid_challenge(c: &str) -> bool {
    c.len() == 43 && URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32)
}

/// RFC 7636 §4.1: `code-verifier = 43*128unreserved`, unreserved = ALPHA / DIGIT / "-" / "." /
/// "_" / "~".
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`, RFC 7636 §4.2.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.6, compared in constant time.
pub fn verify(verifier: &str, challenge: &str) -> bool {
    valid_verifier(verifier) && s256(verifier).as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 7636 Appendix B.
    #[test]
    fn rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256(verifier), challenge);
        assert!(verify(verifier, challenge));
        assert!(valid_challenge(challenge));
        assert!(!verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK", challenge));
    }

    #[test]
    fn format_rules() {
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
        assert!(valid_verifier(&"a~._-".repeat(9)));
        assert!(!valid_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"));
        assert!(!valid_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="));
    }
}
