//! Every path we serve, in one place: the router and the discovery documents both read these, so
//! they cannot drift apart.

pub const HEALTHZ: &str = "/healthz";
pub const AUTHORIZE: &str = "/oauth2/authorize";
pub const TOKEN: &str = "/oauth2/token";
pub const JWKS: &str = "/oauth2/jwks";
pub const USERINFO: &str = "/oauth2/userinfo";
pub const LOGIN: &str = "/login";
pub const LOGOUT: &str = "/logout";
pub const CONSENT: &str = "/consent";
/// RFC 8414 §3.
pub const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
/// OpenID Connect Discovery 1.0 §4.
pub const OIDC_METADATA: &str = "/.well-known/openid-configuration";

/// The absolute URL of `path` under the issuer.
pub fn url(issuer: &str, path: &str) -> String {
    format!("{}{path}", issuer.trim_end_matches('/'))
}

/// Endpoint URLs for the metadata document.
pub fn endpoints(issuer: &str) -> portcullis_core::oauth::discovery::Endpoints {
    portcullis_core::oauth::discovery::Endpoints {
        authorization: url(issuer, AUTHORIZE),
        token: url(issuer, TOKEN),
        jwks: url(issuer, JWKS),
        userinfo: url(issuer, USERINFO),
    }
}
