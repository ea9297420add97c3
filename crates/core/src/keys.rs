//! Signing keys: generated on first start, kept in the database (sealed with the key-encryption
//! key when one is configured), published at the JWKS endpoint, used to sign and verify JWTs.
//!
//! Every replica reads keys from the database, so all of them sign with the same key and verify
//! each other's tokens. A token whose `kid` is unknown triggers a (throttled) reload, which is how
//! a replica picks up a key another replica created.

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portcullis_domain::KeyId;
use portcullis_proto::jwk::{Jwk, JwkSet};
use portcullis_store::{KeyStore, SigningKey, StoreError};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use time::{Duration, OffsetDateTime};

const SEALED: &str = "sealed:v1:";
const PLAIN: &str = "plain:v1:";

/// Seals secrets at rest with AES-256-GCM under the key-encryption key (KEK), when configured.
///
/// The additional data binds each ciphertext to what it protects (for example the key id), so a
/// sealed value copied onto another row does not open.
pub struct Sealer {
    key: Option<RandomizedNonceKey>,
}

impl Sealer {
    /// `kek` is 32 bytes in base64 (standard or URL-safe), e.g. from `openssl rand -base64 32`.
    pub fn new(kek: Option<&SecretString>) -> Result<Self, String> {
        let Some(kek) = kek else { return Ok(Self { key: None }) };
        let raw = kek.expose_secret().trim();
        let bytes = STANDARD
            .decode(raw)
            .or_else(|_| URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')))
            .map_err(|_| "the key-encryption key is not valid base64".to_string())?;
        if bytes.len() != 32 {
            return Err(format!(
                "the key-encryption key must be 32 bytes (got {}); create one with `openssl rand -base64 32`",
                bytes.len()
            ));
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| "the key-encryption key was refused".to_string())?;
        Ok(Self { key: Some(key) })
    }

    pub fn is_sealing(&self) -> bool {
        self.key.is_some()
    }

    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        match &self.key {
            None => format!("{PLAIN}{}", STANDARD.encode(plaintext)),
            Some(k) => {
                let mut buf = plaintext.to_vec();
                let nonce = k
                    .seal_in_place_append_tag(Aad::from(aad.as_bytes()), &mut buf)
                    .expect("AES-GCM sealing does not fail for small inputs");
                let mut out = nonce.as_ref().to_vec();
                out.extend_from_slice(&buf);
                format!("{SEALED}{}", STANDARD.encode(out))
            }
        }
    }

    pub fn open(&self, stored: &str, aad: &str) -> Result<Vec<u8>, String> {
        if let Some(b64) = stored.strip_prefix(PLAIN) {
            return STANDARD.decode(b64).map_err(|_| "stored secret is not valid base64".into());
        }
        let b64 = stored.strip_prefix(SEALED).ok_or("stored secret has an unknown format")?;
        let key = self.key.as_ref().ok_or(
            "stored secrets are encrypted: set the key-encryption key (PORTCULLIS_KEY_ENCRYPTION_KEY)",
        )?;
        let raw = STANDARD.decode(b64).map_err(|_| "sealed secret is not valid base64")?;
        if raw.len() < 12 + 16 {
            return Err("sealed secret is truncated".into());
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce")?;
        let mut buf = ct.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| "sealed secret does not open with this key-encryption key")?;
        Ok(plain.to_vec())
    }
}

/// Why a JWT did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("unexpected token type")]
    WrongType,
    #[error("signed by an unknown key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
}

struct State {
    signer: Option<(String, EncodingKey)>,
    verifiers: HashMap<String, DecodingKey>,
    jwks: JwkSet,
}

/// The loaded signing keys.
pub struct Keyring {
    sealer: Arc<Sealer>,
    state: RwLock<Arc<State>>,
    last_load: Mutex<Option<OffsetDateTime>>,
}

/// How long a replica waits between reloads triggered by unknown `kid`s.
const RELOAD_THROTTLE: Duration = Duration::seconds(5);

impl Keyring {
    pub fn new(sealer: Arc<Sealer>) -> Self {
        Self {
            sealer,
            state: RwLock::new(Arc::new(State {
                signer: None,
                verifiers: HashMap::new(),
                jwks: JwkSet::default(),
            })),
            last_load: Mutex::new(None),
        }
    }

    /// Loads the keys, creating the first signing key if there is none usable.
    pub async fn load<S: KeyStore>(&self, store: &S, now: OffsetDateTime) -> Result<(), String> {
        let mut keys = store.signing_keys().await.map_err(|e| e.to_string())?;
        if !keys.iter().any(|k| usable_for_signing(k, now)) {
            let k = self.generate(now)?;
            match store.insert_signing_key(&k).await {
                Ok(()) | Err(StoreError::Duplicate(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
            tracing::info!(kid = %k.kid, "created a signing key");
            keys = store.signing_keys().await.map_err(|e| e.to_string())?;
        }
        self.install(&keys, now)?;
        *self.last_load.lock().expect("lock") = Some(now);
        Ok(())
    }

    /// Reloads from the store unless it was done less than a few seconds ago.
    pub async fn reload_throttled<S: KeyStore>(&self, store: &S, now: OffsetDateTime) {
        let due = self.last_load.lock().expect("lock").is_none_or(|t| now - t >= RELOAD_THROTTLE);
        if due && let Err(e) = self.load(store, now).await {
            tracing::error!(error = %e, "reloading signing keys failed");
        }
    }

    /// A new P-256 key, sealed for storage.
    pub fn generate(&self, now: OffsetDateTime) -> Result<SigningKey, String> {
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| "key generation failed")?;
        let pkcs8 = pair.to_pkcs8v1().map_err(|_| "key export failed")?;
        let kid = KeyId::generate();
        let jwk = public_jwk(kid.as_str(), pair.public_key().as_ref())?;
        Ok(SigningKey {
            private_key: self.sealer.seal(pkcs8.as_ref(), kid.as_str()),
            kid,
            alg: "ES256".into(),
            public_jwk: serde_json::to_string(&jwk).expect("jwk serialises"),
            created_at: now,
            active_from: now,
            retired_at: None,
        })
    }

    fn install(&self, keys: &[SigningKey], now: OffsetDateTime) -> Result<(), String> {
        let mut verifiers = HashMap::new();
        let mut jwks = JwkSet::default();
        for k in keys.iter().filter(|k| k.retired_at.is_none_or(|r| r > now)) {
            let jwk: Jwk = serde_json::from_str(&k.public_jwk)
                .map_err(|e| format!("signing key {}: bad public key: {e}", k.kid))?;
            let dk = DecodingKey::from_ec_components(&jwk.x, &jwk.y)
                .map_err(|e| format!("signing key {}: {e}", k.kid))?;
            verifiers.insert(k.kid.to_string(), dk);
            jwks.keys.push(jwk);
        }
        // The newest key whose activation time has come signs (keys are listed newest first).
        let signer = match keys.iter().find(|k| usable_for_signing(k, now)) {
            Some(k) => {
                let der = self.sealer.open(&k.private_key, k.kid.as_str())?;
                Some((k.kid.to_string(), EncodingKey::from_ec_der(&der)))
            }
            None => None,
        };
        *self.state.write().expect("lock") = Arc::new(State { signer, verifiers, jwks });
        Ok(())
    }

    fn snapshot(&self) -> Arc<State> {
        self.state.read().expect("lock").clone()
    }

    pub fn jwks(&self) -> JwkSet {
        self.snapshot().jwks.clone()
    }

    /// Signs `claims` as a compact JWS with header `typ` and the current key.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, String> {
        let st = self.snapshot();
        let (kid, key) = st.signer.as_ref().ok_or("no signing key is loaded")?;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).map_err(|e| format!("signing failed: {e}"))
    }

    /// Checks the signature and header of a JWT and returns its claims. Time-based claims are
    /// not checked here: the caller checks them against its [`portcullis_domain::Clock`].
    pub fn verify<T: DeserializeOwned>(&self, token: &str, typ: &str) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(VerifyError::BadSignature);
        }
        if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(typ)) {
            return Err(VerifyError::WrongType);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let st = self.snapshot();
        let key = st.verifiers.get(&kid).ok_or(VerifyError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<T>(token, key, &v).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                _ => VerifyError::Malformed,
            }
        })
    }
}

fn usable_for_signing(k: &SigningKey, now: OffsetDateTime) -> bool {
    k.active_from <= now && k.retired_at.is_none_or(|r| r > now)
}

/// The JWK of an uncompressed P-256 point (`0x04 || x || y`).
fn public_jwk(kid: &str, point: &[u8]) -> Result<Jwk, String> {
    if point.len() != 65 || point[0] != 4 {
        return Err("unexpected public key encoding".into());
    }
    Ok(Jwk {
        kty: "EC".into(),
        crv: "P-256".into(),
        x: URL_SAFE_NO_PAD.encode(&point[1..33]),
        y: URL_SAFE_NO_PAD.encode(&point[33..]),
        kid: kid.into(),
        use_: "sig".into(),
        alg: "ES256".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct C {
        sub: String,
    }

    fn kek() -> SecretString {
        SecretString::from(STANDARD.encode([7u8; 32]))
    }

    #[test]
    fn sealing_round_trips_and_binds_aad() {
        let s = Sealer::new(Some(&kek())).unwrap();
        let sealed = s.seal(b"secret", "kid-1");
        assert!(sealed.starts_with(SEALED));
        assert!(!sealed.contains("c2VjcmV0"));
        assert_eq!(s.open(&sealed, "kid-1").unwrap(), b"secret");
        assert!(s.open(&sealed, "kid-2").is_err());
        let other = Sealer::new(Some(&SecretString::from(STANDARD.encode([8u8; 32])))).unwrap();
        assert!(other.open(&sealed, "kid-1").is_err());
        assert!(Sealer::new(None).unwrap().open(&sealed, "kid-1").is_err());
        assert!(Sealer::new(Some(&SecretString::from("short"))).is_err());
    }

    #[test]
    fn plain_storage_without_kek() {
        let s = Sealer::new(None).unwrap();
        let stored = s.seal(b"x", "a");
        assert!(stored.starts_with(PLAIN));
        assert_eq!(s.open(&stored, "a").unwrap(), b"x");
    }

    #[test]
    fn sign_verify_and_tamper() {
        let now = portcullis_domain::Clock::now(&portcullis_domain::MockClock::new());
        let ring = Keyring::new(Arc::new(Sealer::new(Some(&kek())).unwrap()));
        let k = ring.generate(now).unwrap();
        ring.install(std::slice::from_ref(&k), now).unwrap();
        let jwt = ring.sign("at+jwt", &C { sub: "u1".into() }).unwrap();
        assert_eq!(ring.verify::<C>(&jwt, "at+jwt").unwrap(), C { sub: "u1".into() });
        assert_eq!(ring.verify::<C>(&jwt, "JWT"), Err(VerifyError::WrongType));

        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        assert_eq!(ring.verify::<C>(&parts.join("."), "at+jwt"), Err(VerifyError::BadSignature));
        assert_eq!(ring.verify::<C>("a.b.c", "at+jwt"), Err(VerifyError::Malformed));

        let other = Keyring::new(Arc::new(Sealer::new(None).unwrap()));
        let k2 = other.generate(now).unwrap();
        other.install(std::slice::from_ref(&k2), now).unwrap();
        assert_eq!(other.verify::<C>(&jwt, "at+jwt"), Err(VerifyError::UnknownKey));
        assert_eq!(ring.jwks().keys.len(), 1);
        assert_eq!(ring.jwks().keys[0].kid, k.kid.to_string());
    }
}
