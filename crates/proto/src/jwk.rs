//! Public JSON Web Keys (RFC 7517) as published at the JWKS endpoint.

use serde::{Deserialize, Serialize};

/// A public EC key on P-256 (the only key type we sign with today).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}
