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
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_domain::KeyId;
use portcullis_proto::jwk::{Jwk, JwkSet};
use portcullis_store::{KeyStore, SigningKey, StoreError};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
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

/// Seals `plaintext` under a key derived from a high-entropy `secret` the caller holds (a
/// refresh token): only someone presenting that secret again can open it, and the database, which
/// holds only the secret's hash, cannot.
pub fn seal_under_secret(secret: &str, plaintext: &[u8]) -> String {
    let key = derived_key(secret);
    let mut buf = plaintext.to_vec();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(b"portcullis-successor"), &mut buf)
        .expect("AES-GCM sealing does not fail for small inputs");
    let mut out = nonce.as_ref().to_vec();
    out.extend_from_slice(&buf);
    STANDARD.encode(out)
}

/// Opens what [`seal_under_secret`] sealed with the same secret.
pub fn open_under_secret(secret: &str, sealed: &str) -> Option<Vec<u8>> {
    let raw = STANDARD.decode(sealed).ok()?;
    if raw.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = raw.split_at(12);
    let mut buf = ct.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    derived_key(secret)
        .open_in_place(nonce, Aad::from(b"portcullis-successor"), &mut buf)
        .ok()
        .map(|p| p.to_vec())
}

fn derived_key(secret: &str) -> RandomizedNonceKey {
    use sha2::{Digest, Sha256};
    let k =
        Sha256::new().chain_update(b"portcullis-successor-key:").chain_update(secret.as_bytes()).finalize();
    RandomizedNonceKey::new(&AES_256_GCM, &k).expect("32-byte key")
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

struct LoadedKey {
    kid: String,
    active_from: OffsetDateTime,
    retired_at: Option<OffsetDateTime>,
    /// The parsed key pair, for keys that may still sign (not retired when loaded).
    signing: Option<Arc<EcdsaKeyPair>>,
    decoding: DecodingKey,
    jwk: Jwk,
}

impl LoadedKey {
    fn published(&self, now: OffsetDateTime) -> bool {
        self.retired_at.is_none_or(|r| r > now)
    }
}

/// The loaded signing keys. Which key signs is decided at signing time from the clock, so a
/// rotated key starts signing on every replica at its activation time without coordination.
pub struct Keyring {
    sealer: Arc<Sealer>,
    /// Newest first.
    keys: RwLock<Arc<Vec<LoadedKey>>>,
    last_load: Mutex<Option<OffsetDateTime>>,
}

/// How long a replica waits between reloads triggered by unknown `kid`s or JWKS requests.
const RELOAD_THROTTLE: Duration = Duration::seconds(5);

/// How often every replica reloads keys in the background (well under the activation delay).
pub const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Keyring {
    pub fn new(sealer: Arc<Sealer>) -> Self {
        Self { sealer, keys: RwLock::new(Arc::new(Vec::new())), last_load: Mutex::new(None) }
    }

    /// Loads the keys, creating the first signing key if none can sign now.
    pub async fn load<S: KeyStore>(&self, store: &S, now: OffsetDateTime) -> Result<(), String> {
        let mut keys = store.signing_keys().await.map_err(|e| e.to_string())?;
        if !keys.iter().any(|k| usable_for_signing(k, now)) {
            let k = self.generate(now, now, next_generation(&keys))?;
            match store.insert_signing_key(&k).await {
                Ok(()) => tracing::info!(kid = %k.kid, "created a signing key"),
                // Another replica starting at the same moment created it: adopt that one.
                Err(StoreError::Duplicate(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
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

    /// A new P-256 key, sealed for storage, published from `now` and signing from `active_from`.
    pub fn generate(
        &self,
        now: OffsetDateTime,
        active_from: OffsetDateTime,
        generation: i64,
    ) -> Result<SigningKey, String> {
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
            active_from,
            retired_at: None,
            generation,
        })
    }

    fn install(&self, keys: &[SigningKey], now: OffsetDateTime) -> Result<(), String> {
        let mut loaded = Vec::new();
        for k in keys.iter().filter(|k| k.retired_at.is_none_or(|r| r > now)) {
            let jwk: Jwk = serde_json::from_str(&k.public_jwk)
                .map_err(|e| format!("signing key {}: bad public key: {e}", k.kid))?;
            let decoding = DecodingKey::from_ec_components(&jwk.x, &jwk.y)
                .map_err(|e| format!("signing key {}: {e}", k.kid))?;
            let der = self.sealer.open(&k.private_key, k.kid.as_str())?;
            loaded.push(LoadedKey {
                kid: k.kid.to_string(),
                active_from: k.active_from,
                retired_at: k.retired_at,
                signing: Some(Arc::new(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                        .map_err(|_| format!("signing key {}: not a P-256 PKCS#8 key", k.kid))?,
                )),
                decoding,
                jwk,
            });
        }
        *self.keys.write().expect("lock") = Arc::new(loaded);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<LoadedKey>> {
        self.keys.read().expect("lock").clone()
    }

    /// The published keys: every key not yet retired, including one waiting to start signing.
    pub fn jwks(&self, now: OffsetDateTime) -> JwkSet {
        JwkSet { keys: self.snapshot().iter().filter(|k| k.published(now)).map(|k| k.jwk.clone()).collect() }
    }

    /// The kid that signs at `now`.
    pub fn current_kid(&self, now: OffsetDateTime) -> Option<String> {
        self.snapshot().iter().find(|k| k.active_from <= now && k.published(now)).map(|k| k.kid.clone())
    }

    /// Signs `claims` as a compact JWS (RFC 7515 §7.1) with header `typ`, using the newest key
    /// active at `now`.
    ///
    /// Written out here rather than with `jsonwebtoken::encode`, which parses the PKCS#8 key
    /// again on every call (deriving the public point costs about as much as the signature):
    /// the key pair is parsed once, at load. Verification stays with `jsonwebtoken`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T, now: OffsetDateTime) -> Result<String, String> {
        #[derive(Serialize)]
        struct JwsHeader<'a> {
            alg: &'static str,
            typ: &'a str,
            kid: &'a str,
        }
        let keys = self.snapshot();
        let (k, pair) = keys
            .iter()
            .filter(|k| k.active_from <= now && k.published(now))
            .find_map(|k| k.signing.as_ref().map(|p| (k, p)))
            .ok_or("no signing key is active")?;
        let header = serde_json::to_vec(&JwsHeader { alg: "ES256", typ, kid: &k.kid })
            .map_err(|e| format!("signing failed: {e}"))?;
        let claims = serde_json::to_vec(claims).map_err(|e| format!("signing failed: {e}"))?;
        let mut jws = String::with_capacity((header.len() + claims.len()) * 4 / 3 + 90);
        URL_SAFE_NO_PAD.encode_string(&header, &mut jws);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jws);
        // ECDSA_P256_SHA256_FIXED_SIGNING gives R || S, 64 bytes: the JWS form (RFC 7518 §3.4).
        let sig = pair
            .sign(&aws_lc_rs::rand::SystemRandom::new(), jws.as_bytes())
            .map_err(|_| "signing failed".to_string())?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut jws);
        Ok(jws)
    }

    /// Checks the signature and header of a JWT and returns its claims. Time-based claims are
    /// not checked here: the caller checks them against its [`portcullis_domain::Clock`]. A key
    /// retired at `now` no longer verifies.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        now: OffsetDateTime,
    ) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(VerifyError::BadSignature);
        }
        if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(typ)) {
            return Err(VerifyError::WrongType);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let keys = self.snapshot();
        let key = keys.iter().find(|k| k.kid == kid && k.published(now)).ok_or(VerifyError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<T>(token, &key.decoding, &v).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                _ => VerifyError::Malformed,
            }
        })
    }
}

/// Rotates the signing key: the new key is published at once and signs from `now + delay` (so
/// caches of the JWKS pick it up first); every older key retires once all tokens it may sign have
/// expired (`longest_token_ttl` after the switch, plus a minute of leeway).
///
/// The new key takes the next generation number, which is unique in the store: when several
/// replicas rotate at the same moment, one adds its key and the others get `Ok(None)` and change
/// nothing.
pub async fn rotate<S: KeyStore>(
    keys: &Keyring,
    store: &S,
    now: OffsetDateTime,
    delay: Duration,
    longest_token_ttl: Duration,
) -> Result<Option<SigningKey>, String> {
    let current = store.signing_keys().await.map_err(|e| e.to_string())?;
    rotate_after(keys, store, &current, now, delay, longest_token_ttl).await
}

async fn rotate_after<S: KeyStore>(
    keys: &Keyring,
    store: &S,
    current: &[SigningKey],
    now: OffsetDateTime,
    delay: Duration,
    longest_token_ttl: Duration,
) -> Result<Option<SigningKey>, String> {
    let next = keys.generate(now, now + delay, next_generation(current))?;
    let retire_at = next.active_from + longest_token_ttl + Duration::minutes(1);
    match store.rotate_signing_key(&next, retire_at).await {
        Ok(()) => Ok(Some(next)),
        Err(StoreError::Duplicate(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Rotates when the newest key was created `every` or longer ago (scheduled rotation, done by the
/// replica holding the maintenance lease). Returns the new key, or `None` when none was due or
/// another replica rotated first.
pub async fn rotate_if_due<S: KeyStore>(
    keys: &Keyring,
    store: &S,
    now: OffsetDateTime,
    every: Duration,
    delay: Duration,
    longest_token_ttl: Duration,
) -> Result<Option<SigningKey>, String> {
    let current = store.signing_keys().await.map_err(|e| e.to_string())?;
    let newest = current.iter().map(|k| k.created_at).max();
    if newest.is_some_and(|t| now - t < every) {
        return Ok(None);
    }
    rotate_after(keys, store, &current, now, delay, longest_token_ttl).await
}

fn next_generation(keys: &[SigningKey]) -> i64 {
    keys.iter().map(|k| k.generation).max().unwrap_or(0) + 1
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
    fn sealing_under_a_secret_needs_that_secret() {
        let sealed = seal_under_secret("pcl_rt_a", b"successor");
        assert_eq!(open_under_secret("pcl_rt_a", &sealed).as_deref(), Some(&b"successor"[..]));
        assert_eq!(open_under_secret("pcl_rt_b", &sealed), None);
        assert_eq!(open_under_secret("pcl_rt_a", "garbage"), None);
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
        let k = ring.generate(now, now, 1).unwrap();
        ring.install(std::slice::from_ref(&k), now).unwrap();
        let jwt = ring.sign("at+jwt", &C { sub: "u1".into() }, now).unwrap();
        assert_eq!(ring.verify::<C>(&jwt, "at+jwt", now).unwrap(), C { sub: "u1".into() });
        assert_eq!(ring.verify::<C>(&jwt, "JWT", now), Err(VerifyError::WrongType));

        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        assert_eq!(ring.verify::<C>(&parts.join("."), "at+jwt", now), Err(VerifyError::BadSignature));
        assert_eq!(ring.verify::<C>("a.b.c", "at+jwt", now), Err(VerifyError::Malformed));

        let other = Keyring::new(Arc::new(Sealer::new(None).unwrap()));
        let k2 = other.generate(now, now, 1).unwrap();
        other.install(std::slice::from_ref(&k2), now).unwrap();
        assert_eq!(other.verify::<C>(&jwt, "at+jwt", now), Err(VerifyError::UnknownKey));
        assert_eq!(ring.jwks(now).keys.len(), 1);
        assert_eq!(ring.jwks(now).keys[0].kid, k.kid.to_string());
    }

    #[test]
    fn a_rotated_key_is_published_first_and_the_old_one_retires_later() {
        let t = portcullis_domain::Clock::now(&portcullis_domain::MockClock::new());
        let ring = Keyring::new(Arc::new(Sealer::new(None).unwrap()));
        let mut old = ring.generate(t, t, 1).unwrap();
        let new = ring.generate(t, t + Duration::minutes(10), 2).unwrap();
        old.retired_at = Some(t + Duration::minutes(26));
        let keys = vec![new.clone(), old.clone()];

        ring.install(&keys, t).unwrap();
        assert_eq!(ring.jwks(t).keys.len(), 2, "the new key is published before it signs");
        assert_eq!(ring.current_kid(t), Some(old.kid.to_string()));
        let early = ring.sign("at+jwt", &C { sub: "a".into() }, t).unwrap();

        let later = t + Duration::minutes(11);
        ring.install(&keys, later).unwrap();
        assert_eq!(ring.current_kid(later), Some(new.kid.to_string()));
        assert!(ring.verify::<C>(&early, "at+jwt", later).is_ok(), "old tokens still verify");

        let gone = t + Duration::minutes(27);
        ring.install(&keys, gone).unwrap();
        assert_eq!(ring.jwks(gone).keys.len(), 1);
        assert_eq!(ring.verify::<C>(&early, "at+jwt", gone), Err(VerifyError::UnknownKey));
    }
}
