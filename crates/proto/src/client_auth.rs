//! How a client authenticated at the token endpoint (RFC 6749 §2.3).

use crate::OAuthError;

/// The credentials a client presented. Parsed at the edge from the `Authorization` header and the
/// form body; verified by the core against the stored client.
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with form-urlencoded id and secret (RFC 6749 §2.3.1).
    Basic { client_id: String, secret: String },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post { client_id: String, secret: String },
    /// `none`: a public client identifies itself with `client_id` only.
    None { client_id: String },
}

impl ClientAuth {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } | Self::None { client_id } => {
                client_id
            }
        }
    }

    pub fn method(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
            Self::None { .. } => "none",
        }
    }

    /// Builds the credentials from the decoded Basic pair (if any) and the body parameters.
    ///
    /// RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each
    /// request." A `client_id` in the body next to Basic credentials must name the same client.
    pub fn from_parts(
        basic: Option<(String, String)>,
        body_client_id: Option<&str>,
        body_secret: Option<&str>,
    ) -> Result<Self, OAuthError> {
        match (basic, body_secret) {
            (Some(_), Some(_)) => {
                Err(OAuthError::invalid_request("the client used more than one authentication method"))
            }
            (Some((client_id, secret)), None) => {
                if body_client_id.is_some_and(|b| b != client_id) {
                    return Err(OAuthError::invalid_request(
                        "client_id in the body does not match the Authorization header",
                    ));
                }
                Ok(Self::Basic { client_id, secret })
            }
            (None, Some(secret)) => {
                let client_id = body_client_id
                    .ok_or_else(|| OAuthError::invalid_client("client_secret was sent without client_id"))?;
                Ok(Self::Post { client_id: client_id.to_owned(), secret: secret.to_owned() })
            }
            (None, None) => match body_client_id {
                Some(id) => Ok(Self::None { client_id: id.to_owned() }),
                None => Err(OAuthError::invalid_client("client authentication is required")),
            },
        }
    }
}

/// Never print secrets: only the method and client id.
impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAuth({}, {})", self.method(), self.client_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_methods_are_rejected() {
        let r = ClientAuth::from_parts(Some(("a".into(), "s".into())), None, Some("s"));
        assert!(r.is_err());
    }

    #[test]
    fn debug_hides_secret() {
        let a = ClientAuth::Post { client_id: "c".into(), secret: "hunter2".into() };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
