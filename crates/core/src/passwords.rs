//! Password hashing with Argon2id (the `argon2` crate's defaults: m=19 MiB, t=2, p=1, the OWASP
//! recommendation). Hashing is CPU-bound, so it runs on the blocking pool.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};
use std::sync::LazyLock;

/// Minimum length (NIST SP 800-63B §5.1.1.2 asks for at least 8 characters).
pub const MIN_LEN: usize = 8;

/// Checks length bounds; the message is for the person choosing the password.
pub fn check_policy(pw: &SecretString) -> Result<(), String> {
    let n = pw.expose_secret().chars().count();
    if n < MIN_LEN {
        return Err(format!("the password must have at least {MIN_LEN} characters"));
    }
    if n > 1024 {
        return Err("the password must have at most 1024 characters".into());
    }
    Ok(())
}

pub async fn hash(pw: SecretString) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(pw.expose_secret().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| format!("password hashing failed: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A hash of a random password, verified against when the email is unknown so that a wrong email
/// costs as much time as a wrong password (no user enumeration by timing).
static DUMMY: LazyLock<String> = LazyLock::new(|| {
    Argon2::default().hash_password(b"portcullis-dummy-password").expect("hash").to_string()
});

/// Verifies `pw` against `phc` (or against a dummy hash when `phc` is `None`).
pub async fn verify(pw: SecretString, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let stored = phc.unwrap_or_else(|| DUMMY.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else { return false };
        let ok = Argon2::default().verify_password(pw.expose_secret().as_bytes(), &parsed).is_ok();
        ok && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash(SecretString::from("correct horse")).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(SecretString::from("correct horse"), Some(h.clone())).await);
        assert!(!verify(SecretString::from("wrong horse"), Some(h)).await);
        assert!(!verify(SecretString::from("portcullis-dummy-password"), None).await);
    }

    #[test]
    fn policy() {
        assert!(check_policy(&SecretString::from("short")).is_err());
        assert!(check_policy(&SecretString::from("long enough")).is_ok());
    }
}
