//! Resource indicators (RFC 8707): which protected resource an access token is for.
//!
//! A client names the resource on the authorization request (what the user consents to) and on
//! the token request (which one this access token is for). Tokens are audience-restricted to one
//! resource, so a token obtained for one API cannot be replayed at another.

use crate::settings::Settings;
use portcullis_proto::{ErrorCode, OAuthError};

fn invalid_target(why: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidTarget, why)
}

/// Checks `resource` values (§2: absolute URIs without a fragment) against the protected
/// resources we serve; duplicates are dropped. Unknown resources are `invalid_target`.
pub fn requested(settings: &Settings, values: &[&str]) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let ok = url::Url::parse(v).is_ok_and(|u| u.fragment().is_none() && !u.cannot_be_a_base())
            && !v.contains('#')
            && !v.chars().any(char::is_whitespace);
        if !ok {
            return Err(invalid_target("resource must be an absolute URI without a fragment (RFC 8707 §2)"));
        }
        if !settings.is_resource(v) {
            let shown: String = v.chars().take(120).collect();
            return Err(invalid_target(format!("{shown} is not a protected resource of this server")));
        }
        if !out.iter().any(|o| o == v) {
            out.push((*v).to_owned());
        }
    }
    Ok(out)
}

/// The audience of an access token, given what the authorization was for (`authorized`; empty
/// when it named none, which means the default audience) and what this token request names.
pub fn audience(
    settings: &Settings,
    authorized: &[String],
    requested: &[String],
) -> Result<String, OAuthError> {
    let default = [settings.audience.clone()];
    let authorized = if authorized.is_empty() { &default[..] } else { authorized };
    match requested {
        [] => match authorized {
            [only] => Ok(only.clone()),
            _ => Err(invalid_target(
                "the authorization covers several resources: name the one this token is for",
            )),
        },
        [one] if authorized.contains(one) => Ok(one.clone()),
        [one] => Err(invalid_target(format!("{one} was not part of this authorization"))),
        _ => Err(invalid_target("an access token is issued for one resource at a time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::new("https://as.example")
    }

    #[test]
    fn only_our_resources_are_accepted() {
        let s = settings();
        assert_eq!(
            requested(&s, &["https://as.example/mcp", "https://as.example/mcp"]).unwrap(),
            vec!["https://as.example/mcp"]
        );
        for bad in [
            "https://evil.example/mcp",
            "/mcp",
            "https://as.example/mcp#x",
            "urn:x",
            "https://as.example/mcp/",
        ] {
            assert_eq!(requested(&s, &[bad]).unwrap_err().code, ErrorCode::InvalidTarget, "{bad}");
        }
    }

    #[test]
    fn audience_rules() {
        let s = settings();
        let mcp = "https://as.example/mcp".to_owned();
        let api = "https://as.example/api".to_owned();
        assert_eq!(audience(&s, &[], &[]).unwrap(), api, "nothing named: the default audience");
        assert_eq!(audience(&s, &[], std::slice::from_ref(&api)).unwrap(), api);
        assert!(audience(&s, &[], std::slice::from_ref(&mcp)).is_err(), "not authorized");
        assert_eq!(audience(&s, std::slice::from_ref(&mcp), &[]).unwrap(), mcp);
        let both = [mcp.clone(), api.clone()];
        assert!(audience(&s, &both, &[]).is_err(), "ambiguous");
        assert_eq!(audience(&s, &both, std::slice::from_ref(&api)).unwrap(), api);
        assert!(audience(&s, &both, &both).is_err(), "one per token");
    }
}
