//! Why the guard refused a request, rendered as RFC 6750 §3 challenges. Every 401 carries the
//! RFC 9728 §5.1 `resource_metadata` parameter so a client (an MCP client, say) can discover
//! which authorization server to ask.

use crate::Scheme;
use crate::ratelimit::Decision;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq)]
pub enum Rejection {
    /// No `Authorization: Bearer` credential.
    Missing,
    /// Unknown, malformed, expired or revoked credential, or one for another resource.
    InvalidToken(String),
    /// An API key used from outside its CIDR allowlist.
    IpNotAllowed(IpAddr),
    /// The credential lacks these scopes (all of them are needed).
    InsufficientScope(Vec<String>),
    RateLimited(Decision),
    /// A DPoP-bound token without a valid proof of its key for this request (RFC 9449 §7.1).
    InvalidDpopProof(String),
    /// The proof lacks the server nonce this deployment requires (RFC 9449 §9).
    UseDpopNonce,
    /// A storage failure (logged where it happened).
    Internal,
}

/// Characters allowed in a quoted challenge parameter (RFC 6750 §3: `%x20-21 / %x23-5B /
/// %x5D-7E`): anything else is dropped.
fn quoted(s: &str) -> String {
    s.chars().filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)).collect()
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing
            | Self::InvalidToken(_)
            | Self::IpNotAllowed(_)
            | Self::InvalidDpopProof(_)
            | Self::UseDpopNonce => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `WWW-Authenticate` value, if this rejection has one, in the scheme the client used
    /// (DPoP errors are always DPoP challenges, naming the accepted `algs`).
    pub fn challenge(&self, resource_metadata: &str, scheme: Scheme) -> Option<String> {
        let rm = quoted(resource_metadata);
        let (scheme, extra) = match (self, scheme) {
            (Self::InvalidDpopProof(_) | Self::UseDpopNonce, _) | (_, Scheme::Dpop) => {
                ("DPoP", format!(r#", algs="{}""#, portcullis_core::oauth::dpop::ALGS.join(" ")))
            }
            _ => ("Bearer", String::new()),
        };
        let c = match self {
            Self::Missing => format!(
                r#"{scheme} error="invalid_token", error_description="no credential was sent", resource_metadata="{rm}"{extra}"#
            ),
            Self::InvalidToken(why) => format!(
                r#"{scheme} error="invalid_token", error_description="{}", resource_metadata="{rm}"{extra}"#,
                quoted(why)
            ),
            Self::IpNotAllowed(_) => format!(
                r#"{scheme} error="invalid_token", error_description="the credential may not be used from this address", resource_metadata="{rm}"{extra}"#
            ),
            Self::InsufficientScope(scopes) => format!(
                r#"{scheme} error="insufficient_scope", error_description="the credential lacks a required scope", scope="{}", resource_metadata="{rm}"{extra}"#,
                quoted(&scopes.join(" "))
            ),
            Self::InvalidDpopProof(why) => format!(
                r#"{scheme} error="invalid_dpop_proof", error_description="{}", resource_metadata="{rm}"{extra}"#,
                quoted(why)
            ),
            Self::UseDpopNonce => format!(
                r#"{scheme} error="use_dpop_nonce", error_description="the DPoP proof must carry the nonce from the DPoP-Nonce header", resource_metadata="{rm}"{extra}"#
            ),
            Self::RateLimited(_) | Self::Internal => return None,
        };
        Some(c)
    }

    fn body(&self) -> serde_json::Value {
        match self {
            Self::Missing => json!({"error": "invalid_token", "error_description": "no credential was sent"}),
            Self::InvalidToken(why) => json!({"error": "invalid_token", "error_description": why}),
            Self::IpNotAllowed(ip) => json!({
                "error": "ip_not_allowed",
                "error_description": "this API key may not be used from this address",
                "ip": ip.to_string(),
            }),
            Self::InsufficientScope(scopes) => json!({
                "error": "insufficient_scope",
                "error_description": format!("this request needs the scope {}", scopes.join(" ")),
                "scope": scopes.join(" "),
            }),
            Self::RateLimited(d) => json!({
                "error": "rate_limited",
                "error_description": format!("the {} rate limit of {} requests per {} s is exhausted", d.policy, d.limit, d.window_secs),
                "retry_after": d.retry_after_secs,
            }),
            Self::InvalidDpopProof(why) => json!({"error": "invalid_dpop_proof", "error_description": why}),
            Self::UseDpopNonce => json!({
                "error": "use_dpop_nonce",
                "error_description": "the DPoP proof must carry the nonce from the DPoP-Nonce header",
            }),
            Self::Internal => json!({"error": "server_error", "error_description": "internal error"}),
        }
    }

    /// The full response: status, challenge, rate-limit headers and a JSON body.
    pub fn into_response_for(self, resource_metadata: &str, scheme: Scheme) -> Response {
        let mut r = (self.status(), axum::Json(self.body())).into_response();
        let h = r.headers_mut();
        if let Some(c) = self.challenge(resource_metadata, scheme)
            && let Ok(v) = HeaderValue::from_str(&c)
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Self::RateLimited(d) = &self {
            rate_limit_headers(d, h);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers), and `Retry-After`
/// (RFC 9110 §10.2.3) when refused.
pub fn rate_limit_headers(d: &Decision, h: &mut HeaderMap) {
    let policy = format!(r#""{}";q={};w={}"#, d.policy, d.limit, d.window_secs);
    let state = format!(r#""{}";r={};t={}"#, d.policy, d.remaining, d.reset_secs.max(0));
    for (name, v) in [("ratelimit-policy", policy), ("ratelimit", state)] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    }
    if let Some(s) = d.retry_after_secs {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s.max(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_name_the_missing_scope_and_the_metadata() {
        let r = Rejection::InsufficientScope(vec!["contacts:write".into()]);
        let c =
            r.challenge("https://api.example/.well-known/oauth-protected-resource", Scheme::Bearer).unwrap();
        assert!(c.starts_with(r#"Bearer error="insufficient_scope""#));
        assert!(c.contains(r#"scope="contacts:write""#));
        assert!(
            c.contains(r#"resource_metadata="https://api.example/.well-known/oauth-protected-resource""#)
        );
        let r = Rejection::InvalidToken("bad \"quote\" \\ here".into());
        assert!(r.challenge("x", Scheme::Bearer).unwrap().contains(r#"error_description="bad quote  here""#));
        let d = Rejection::InvalidDpopProof("replayed".into()).challenge("x", Scheme::Bearer).unwrap();
        assert!(d.starts_with(r#"DPoP error="invalid_dpop_proof""#) && d.contains(r#"algs="ES256"#));
    }
}
