//! The two cookies we set: the session and the CSRF binding. HttpOnly, SameSite=Lax, Path=/, and
//! Secure with the `__Host-` prefix when the issuer is https (the prefix pins them to our host).

use axum::http::{HeaderMap, HeaderValue, header};

pub struct CookieNames {
    pub session: &'static str,
    pub csrf: &'static str,
    pub secure: bool,
}

impl CookieNames {
    pub fn new(secure: bool) -> Self {
        if secure {
            Self { session: "__Host-pcl_session", csrf: "__Host-pcl_csrf", secure }
        } else {
            Self { session: "pcl_session", csrf: "pcl_csrf", secure }
        }
    }
}

/// The value of cookie `name` in the request.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value. `max_age` `None` is a browser-session cookie; `Some(0)` deletes.
pub fn set(names: &CookieNames, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut s = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if names.secure {
        s.push_str("; Secure");
    }
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&s).expect("cookie values are URL-safe base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cookie_header() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; pcl_csrf=xyz; b=2"));
        assert_eq!(get(&h, "pcl_csrf"), Some("xyz"));
        assert_eq!(get(&h, "c"), None);
    }

    #[test]
    fn secure_cookies_use_host_prefix() {
        let n = CookieNames::new(true);
        assert_eq!(n.session, "__Host-pcl_session");
        let v = set(&n, n.session, "v", Some(60));
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-pcl_session=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=60"
        );
    }
}
