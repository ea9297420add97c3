//! OAuth 2.1 / OpenID Connect protocol logic. No HTTP types: the adapter parses requests into
//! [`portcullis_proto`] types and renders what these functions return.
//!
//! - [`authorize`]: validates authorization requests and decides what the browser does next.
//! - [`consent`]: the consent page's data and the user's decision; issues authorization codes.
//! - [`token`]: the token endpoint, dispatching to one module per grant in [`grants`].
//! - [`device`]: the device authorization grant's endpoint and user-code entry (RFC 8628).
//! - [`revocation`], [`introspection`]: RFC 7009 and RFC 7662.
//! - [`client_auth`]: client authentication at the token endpoint (RFC 6749 §2.3).
//! - [`client_metadata`]: https `client_id`s resolved from Client ID Metadata Documents.
//! - [`pkce`]: RFC 7636 with S256 only.
//! - [`dpop`]: RFC 9449 proofs, nonces and key thumbprints for sender-constrained tokens.
//! - [`registration`]: dynamic client registration and management (RFC 7591, RFC 7592).
//! - [`resource`]: RFC 8707 resource indicators (which resource a token's `aud` names).
//! - [`tokens`]: minting access tokens (RFC 9068 JWTs), refresh tokens and ID tokens, and
//!   verifying access tokens with live revocation checks.
//! - [`userinfo`]: the OpenID Connect UserInfo endpoint.
//! - [`discovery`]: the RFC 8414 / OpenID Connect metadata document.

pub mod authorize;
pub mod client_auth;
pub mod client_metadata;
pub mod consent;
pub mod device;
pub mod discovery;
pub mod dpop;
pub mod grants;
pub mod introspection;
pub mod pkce;
pub mod registration;
pub mod resource;
pub mod revocation;
pub mod token;
pub mod tokens;
pub mod userinfo;

/// Appends query parameters to a redirect URI that may already have a query (RFC 6749 §3.1.2:
/// the query component "MUST be retained when adding additional query parameters").
pub fn append_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let q = ser.finish();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{q}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn append_query_keeps_existing_query() {
        assert_eq!(super::append_query("https://a/cb", &[("code", "x y")]), "https://a/cb?code=x+y");
        assert_eq!(super::append_query("https://a/cb?k=1", &[("code", "x")]), "https://a/cb?k=1&code=x");
    }
}
