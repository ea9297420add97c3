//! The token endpoint's request (one variant per grant) and response (RFC 6749 §4.1.3, §5.1).

use crate::{ErrorCode, OAuthError, Params};
use serde::Serialize;

/// A token request, after the grant-specific parameters were checked for presence.
///
/// One variant per grant type; the core dispatches with an exhaustive `match`, so adding a grant
/// here without implementing it is a compile error.
pub enum TokenRequest {
    /// RFC 6749 §4.1.3 with RFC 7636 §4.5.
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
        resources: Vec<String>,
    },
    /// RFC 6749 §6.
    RefreshToken { refresh_token: String, scope: Option<String>, resources: Vec<String> },
    /// RFC 6749 §4.4.2.
    ClientCredentials { scope: Option<String>, resources: Vec<String> },
    /// RFC 8628 §3.4.
    DeviceCode { device_code: String, resources: Vec<String> },
    /// RFC 8693 §2.1.
    TokenExchange {
        subject_token: String,
        subject_token_type: String,
        requested_token_type: Option<String>,
        scope: Option<String>,
        audience: Option<String>,
        resources: Vec<String>,
        actor_token: Option<String>,
    },
}

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

impl TokenRequest {
    /// Parses the grant-specific part of a token request body. Client credentials are parsed
    /// separately (see [`crate::ClientAuth`]).
    pub fn from_params(p: &Params) -> Result<Self, OAuthError> {
        p.reject_repeated()?;
        let grant_type = p.require("grant_type")?;
        // RFC 8707 §2.2: `resource` may appear on any token request, more than once.
        let resources: Vec<String> = p.all("resource").into_iter().map(str::to_owned).collect();
        match grant_type {
            GRANT_AUTHORIZATION_CODE => Ok(Self::AuthorizationCode {
                code: p.require("code")?.to_owned(),
                redirect_uri: p.get("redirect_uri").map(str::to_owned),
                code_verifier: p.get("code_verifier").map(str::to_owned),
                resources,
            }),
            GRANT_REFRESH_TOKEN => Ok(Self::RefreshToken {
                refresh_token: p.require("refresh_token")?.to_owned(),
                scope: p.get("scope").map(str::to_owned),
                resources,
            }),
            GRANT_CLIENT_CREDENTIALS => {
                Ok(Self::ClientCredentials { scope: p.get("scope").map(str::to_owned), resources })
            }
            GRANT_DEVICE_CODE => {
                Ok(Self::DeviceCode { device_code: p.require("device_code")?.to_owned(), resources })
            }
            GRANT_TOKEN_EXCHANGE => Ok(Self::TokenExchange {
                subject_token: p.require("subject_token")?.to_owned(),
                subject_token_type: p.require("subject_token_type")?.to_owned(),
                requested_token_type: p.get("requested_token_type").map(str::to_owned),
                scope: p.get("scope").map(str::to_owned),
                audience: p.get("audience").map(str::to_owned),
                resources,
                actor_token: p.get("actor_token").map(str::to_owned),
            }),
            other => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type {} is not supported", truncate(other, 80)),
            )),
        }
    }

    pub fn grant_type(&self) -> &'static str {
        match self {
            Self::AuthorizationCode { .. } => GRANT_AUTHORIZATION_CODE,
            Self::RefreshToken { .. } => GRANT_REFRESH_TOKEN,
            Self::ClientCredentials { .. } => GRANT_CLIENT_CREDENTIALS,
            Self::DeviceCode { .. } => GRANT_DEVICE_CODE,
            Self::TokenExchange { .. } => GRANT_TOKEN_EXCHANGE,
        }
    }
}

/// Never print codes or tokens.
impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenRequest({})", self.grant_type())
    }
}

/// Client-supplied text echoed in an error description is cut short so a hostile value cannot
/// bloat responses or logs.
fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// RFC 6749 §5.1 successful response.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// RFC 8693 §2.2.1: the type of the issued token, in token-exchange responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

/// Never print tokens.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_grant_is_unsupported_grant_type() {
        let p = Params::parse(b"grant_type=password&username=a&password=b");
        let e = TokenRequest::from_params(&p).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedGrantType);
    }

    #[test]
    fn missing_grant_type_is_invalid_request() {
        let e = TokenRequest::from_params(&Params::parse(b"code=x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn each_grant_requires_its_parameters() {
        for body in [
            &b"grant_type=refresh_token"[..],
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code",
        ] {
            let e = TokenRequest::from_params(&Params::parse(body)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
        }
        let r = TokenRequest::from_params(&Params::parse(b"grant_type=client_credentials&scope=a")).unwrap();
        assert_eq!(r.grant_type(), GRANT_CLIENT_CREDENTIALS);
        let r = TokenRequest::from_params(&Params::parse(
            b"grant_type=refresh_token&refresh_token=pcl_rt_secret",
        ))
        .unwrap();
        assert!(!format!("{r:?}").contains("pcl_rt_secret"));
    }

    #[test]
    fn code_is_required() {
        let e = TokenRequest::from_params(&Params::parse(b"grant_type=authorization_code")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }
}
