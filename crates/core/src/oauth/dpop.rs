//! DPoP (RFC 9449): sender-constrained tokens. A client signs a fresh proof JWT for every request
//! with a key it holds; tokens issued against a proof carry that key's thumbprint (`cnf.jkt`) and
//! are useless without new proofs from the same key.
//!
//! [`verify`] implements the checks of RFC 9449 §4.3 (and §7 for resource servers): `typ`, an
//! asymmetric `alg` the public `jwk` in the header pins, no private key material, `htm`/`htu` of
//! this very request, `iat` within the window, the server nonce when configured (§8, stateless
//! HMAC nonces any replica can check), `ath` when an access token accompanies the proof, and a
//! `jti` not seen before within the window ([`crate::replay`]).

use crate::context::Cx;
use crate::replay::Use;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_proto::{ErrorCode, OAuthError};
use portcullis_store::Store;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::Duration;

/// Proof signature algorithms we verify (`dpop_signing_alg_values_supported`).
pub const ALGS: &[&str] = &["ES256", "ES384", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

/// The longest proof JWT we parse.
const MAX_PROOF_LEN: usize = 8 * 1024;

/// How DPoP proofs are checked.
#[derive(Clone, Debug)]
pub struct DpopSettings {
    /// Require a server-provided nonce in every proof (RFC 9449 §8, §9), at the token endpoint
    /// and at protected resources. Limits pre-generated proofs to the nonce's lifetime.
    pub require_nonce: bool,
    /// How old a proof's `iat` may be.
    pub max_age: Duration,
    /// How far in the future a proof's `iat` may be (client clocks run fast).
    pub leeway: Duration,
    /// How long a nonce stays acceptable (it is accepted in its window and the next).
    pub nonce_lifetime: Duration,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            require_nonce: false,
            max_age: Duration::seconds(60),
            leeway: Duration::seconds(5),
            nonce_lifetime: Duration::minutes(5),
        }
    }
}

/// A verified proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key (`cnf.jkt` of bound tokens).
    pub jkt: String,
}

/// Why a proof was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpopError {
    /// Missing, malformed, wrongly signed, replayed, for another request or key.
    Invalid(String),
    /// The server requires a nonce and the proof has none or a stale one: retry with the nonce
    /// from the `DPoP-Nonce` header.
    UseNonce,
}

impl DpopError {
    /// The token endpoint's error (RFC 9449 §5, §8).
    pub fn oauth(&self) -> OAuthError {
        match self {
            Self::Invalid(why) => OAuthError::new(ErrorCode::InvalidDpopProof, why.clone()),
            Self::UseNonce => OAuthError::new(
                ErrorCode::UseDpopNonce,
                "the authorization server requires a nonce in the DPoP proof",
            ),
        }
    }

    pub fn description(&self) -> String {
        match self {
            Self::Invalid(why) => why.clone(),
            Self::UseNonce => "the resource server requires a nonce in the DPoP proof".into(),
        }
    }
}

fn invalid(why: impl Into<String>) -> DpopError {
    DpopError::Invalid(why.into())
}

/// The request a proof must be for.
pub struct Target<'a> {
    /// The HTTP method, as sent.
    pub method: &'a str,
    /// The request's absolute URL as the client addressed it (query and fragment are ignored).
    pub url: &'a str,
    /// The access token sent with the proof (at protected resources): the proof's `ath` must be
    /// its hash.
    pub access_token: Option<&'a str>,
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// Checks one proof (the value of the single `DPoP` header) for `target`, and records its `jti`.
pub async fn verify<S: Store>(cx: &Cx<S>, proof: &str, target: &Target<'_>) -> Result<Proof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(invalid("the DPoP proof is too long"));
    }
    let header_b64 = proof.split('.').next().unwrap_or_default();
    let header: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("the DPoP proof is not a JWT"))?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(invalid("the DPoP proof's typ must be dpop+jwt"));
    }
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if !ALGS.contains(&alg_name) {
        return Err(invalid(format!("the DPoP proof's alg must be one of {}", ALGS.join(" "))));
    }
    let alg: Algorithm = alg_name.parse().map_err(|_| invalid("unsupported alg"))?;
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("the DPoP proof's header carries no jwk"))?;
    let jkt = thumbprint(jwk)?;
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(Value::Object(jwk.clone()))
        .map_err(|_| invalid("the DPoP proof's jwk is not a public key"))?;
    let key = DecodingKey::from_jwk(&parsed).map_err(|_| invalid("the DPoP proof's jwk is not usable"))?;
    let mut v = Validation::new(alg);
    // Proofs carry no exp, aud or nbf: their time is `iat`, checked below against our clock.
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(proof, &key, &v)
        .map_err(|e| invalid(format!("the DPoP proof does not verify ({e})")))?
        .claims;

    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(invalid("the DPoP proof's jti must be 1 to 256 characters"));
    }
    if claims.htm != target.method {
        return Err(invalid("the DPoP proof's htm is not this request's method"));
    }
    if !same_uri(&claims.htu, target.url) {
        return Err(invalid("the DPoP proof's htu is not this request's URL"));
    }
    let settings = &cx.settings.dpop;
    let now = cx.now().unix_timestamp();
    if claims.iat < now - settings.max_age.whole_seconds() {
        return Err(invalid("the DPoP proof is too old (iat)"));
    }
    if claims.iat > now + settings.leeway.whole_seconds() {
        return Err(invalid("the DPoP proof's iat is in the future"));
    }
    if settings.require_nonce && !claims.nonce.as_deref().is_some_and(|n| nonce_valid(cx, n)) {
        return Err(DpopError::UseNonce);
    }
    if let Some(token) = target.access_token {
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
        if claims.ath.as_deref() != Some(expected.as_str()) {
            return Err(invalid("the DPoP proof's ath does not match the access token"));
        }
    }
    // The window the jti is remembered for covers every iat still accepted.
    let now_ms = (cx.now().unix_timestamp_nanos() / 1_000_000) as i64;
    let until_ms = (claims.iat + settings.max_age.whole_seconds() + settings.leeway.whole_seconds()) * 1000;
    let key = format!("dpop:{jkt}:{}", claims.jti);
    match cx.replay.first_use(&key, now_ms, until_ms.max(now_ms + 1000)).await {
        Use::First => Ok(Proof { jkt }),
        Use::Replayed => Err(invalid("the DPoP proof was already used (jti)")),
        Use::Full => {
            tracing::error!("DPoP replay cache is full; refusing proofs");
            Err(invalid("the DPoP proof cannot be checked for replay right now"))
        }
    }
}

/// The RFC 7638 thumbprint: SHA-256 over the key's required members in lexicographic order.
/// Computed from the header's own members (jsonwebtoken's `Jwk::thumbprint` has no OKP case),
/// after refusing private key material (RFC 9449 §4.3 check 7).
fn thumbprint(jwk: &Map<String, Value>) -> Result<String, DpopError> {
    const PRIVATE: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
    if PRIVATE.iter().any(|m| jwk.contains_key(*m)) {
        return Err(invalid("the DPoP proof's jwk must be a public key"));
    }
    let member = |name: &str| -> Result<&str, DpopError> {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("the DPoP proof's jwk lacks {name}")))
    };
    let required: &[&str] = match member("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return Err(invalid("the DPoP proof's jwk must be an EC, RSA or OKP key")),
    };
    let mut canonical = Map::new();
    for name in required {
        canonical.insert((*name).to_owned(), Value::String(member(name)?.to_owned()));
    }
    // serde_json's Map keeps keys sorted (no preserve_order feature), as RFC 7638 §3.3 requires.
    let json = serde_json::to_string(&canonical).expect("a map of strings serialises");
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes())))
}

/// Whether two URIs name the same resource per RFC 9449 §4.3 check 9: compared after RFC 3986
/// syntax- and scheme-based normalisation (case of scheme and host, default port, percent-encoding
/// of unreserved characters, dot segments), ignoring query and fragment.
pub fn same_uri(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        url::Url::parse(s).ok().filter(|u| u.has_host()).map(|mut u| {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        })
    };
    matches!((norm(a), norm(b)), (Some(x), Some(y)) if x == y)
}

type HmacSha256 = Hmac<Sha256>;

/// A fresh nonce for the `DPoP-Nonce` header: the current time window and its MAC under a server
/// key, so every replica sharing the database accepts it without storing anything.
pub fn nonce<S: Store>(cx: &Cx<S>) -> String {
    nonce_for(cx, window(cx))
}

fn window<S: Store>(cx: &Cx<S>) -> i64 {
    cx.now().unix_timestamp() / cx.settings.dpop.nonce_lifetime.whole_seconds().max(1)
}

fn nonce_for<S: Store>(cx: &Cx<S>, window: i64) -> String {
    let mut mac = HmacSha256::new_from_slice(&cx.csrf_key[..]).expect("any key length");
    mac.update(b"portcullis dpop nonce\0");
    mac.update(&window.to_be_bytes());
    let tag = mac.finalize().into_bytes();
    let mut raw = window.to_be_bytes().to_vec();
    raw.extend_from_slice(&tag[..16]);
    URL_SAFE_NO_PAD.encode(raw)
}

fn nonce_valid<S: Store>(cx: &Cx<S>, n: &str) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(n) else { return false };
    let Some(w) = raw.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(i64::from_be_bytes) else {
        return false;
    };
    let current = window(cx);
    (w == current || w == current - 1)
        && subtle::ConstantTimeEq::ct_eq(nonce_for(cx, w).as_bytes(), n.as_bytes()).into()
}

/// `dpop_jkt` of an authorization request (RFC 9449 §10): a base64url SHA-256 thumbprint.
pub fn parse_jkt(v: &str) -> Result<String, OAuthError> {
    let ok = v.len() == 43 && URL_SAFE_NO_PAD.decode(v).is_ok_and(|b| b.len() == 32);
    ok.then(|| v.to_owned()).ok_or_else(|| {
        OAuthError::invalid_request("dpop_jkt must be the base64url SHA-256 thumbprint of a key")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk: Map<String, Value> = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn private_keys_are_refused() {
        let jwk: Map<String, Value> =
            serde_json::from_str(r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}"#).unwrap();
        assert!(thumbprint(&jwk).is_err());
    }

    #[test]
    fn uris_compare_after_normalisation_without_query() {
        assert!(same_uri("https://Server.example:443/t?x=1", "https://server.example/t"));
        assert!(same_uri("https://a.example/a/./x/../y", "https://a.example/a/y"));
        assert!(!same_uri("https://a.example/t", "https://a.example/t/"));
        assert!(!same_uri("https://a.example/t", "http://a.example/t"));
        assert!(!same_uri("not a url", "not a url"));
    }

    #[test]
    fn jkt_parameter_is_a_sha256_thumbprint() {
        assert!(parse_jkt("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs").is_ok());
        assert!(parse_jkt("short").is_err());
    }
}
