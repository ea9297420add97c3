//! Redaction of call parameters before they are stored.
//!
//! Each field name (at any depth, compared case-insensitively with `-` read as `_`) has one
//! action:
//! - `drop`: removed (secrets: passwords, tokens, codes, keys);
//! - `hash`: replaced by a keyed hash (`hmac:…`, HMAC-SHA-256 under a server secret), so equal
//!   values stay searchable (`portcullis audit hash VALUE`) without being readable;
//! - `mask`: replaced by `"[redacted]"` (names, message bodies, addresses);
//! - anything else is kept.
//!
//! Independently of names, any string that looks like a credential (an API key, a JWT, a
//! `Bearer …` value) is replaced by `"[secret]"`, wherever it appears.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;

/// Field lists from configuration; they extend (or with `keep`, shrink) the defaults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionRules {
    pub drop: Vec<String>,
    pub hash: Vec<String>,
    pub mask: Vec<String>,
    /// Fields to keep even though a default rule names them.
    pub keep: Vec<String>,
}

pub const DEFAULT_DROP: &[&str] = &[
    "password",
    "passphrase",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "subject_token",
    "actor_token",
    "assertion",
    "client_assertion",
    "code",
    "code_verifier",
    "device_code",
    "user_code",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "private_key",
    "otp",
    "pin",
    "cvv",
    "card_number",
];
pub const DEFAULT_HASH: &[&str] =
    &["email", "phone", "phone_number", "mobile", "to", "from", "recipient", "recipients", "ssn", "tax_id"];
pub const DEFAULT_MASK: &[&str] = &[
    "name",
    "first_name",
    "last_name",
    "full_name",
    "display_name",
    "address",
    "street",
    "birthdate",
    "date_of_birth",
    "dob",
    "body",
    "text",
    "message",
    "content",
    "notes",
    "attributes",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Drop,
    Hash,
    Mask,
}

/// Applies the rules; holds the pseudonym key.
pub struct Redactor {
    rules: Vec<(String, Action)>,
    key: [u8; 32],
}

fn normalise(field: &str) -> String {
    field.trim().to_ascii_lowercase().replace('-', "_")
}

impl Redactor {
    pub fn new(rules: &RedactionRules, key: [u8; 32]) -> Self {
        let keep: Vec<String> = rules.keep.iter().map(|f| normalise(f)).collect();
        let mut out: Vec<(String, Action)> = Vec::new();
        let mut add = |fields: &mut dyn Iterator<Item = &str>, action| {
            for f in fields {
                let f = normalise(f);
                if !keep.contains(&f) {
                    out.retain(|(name, _)| name != &f);
                    out.push((f, action));
                }
            }
        };
        add(&mut DEFAULT_MASK.iter().copied(), Action::Mask);
        add(&mut DEFAULT_HASH.iter().copied(), Action::Hash);
        add(&mut DEFAULT_DROP.iter().copied(), Action::Drop);
        add(&mut rules.mask.iter().map(String::as_str), Action::Mask);
        add(&mut rules.hash.iter().map(String::as_str), Action::Hash);
        add(&mut rules.drop.iter().map(String::as_str), Action::Drop);
        Self { rules: out, key }
    }

    fn action(&self, field: &str) -> Option<Action> {
        let f = normalise(field);
        self.rules.iter().find(|(name, _)| *name == f).map(|(_, a)| *a)
    }

    /// The keyed hash of a value as stored (trimmed, lower-cased first so `Alice@X` and
    /// `alice@x` match).
    pub fn pseudonym(&self, value: &str) -> String {
        use base64::Engine as _;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(value.trim().to_lowercase().as_bytes());
        let d = mac.finalize().into_bytes();
        format!("hmac:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..18]))
    }

    /// Redacts a JSON value in place.
    pub fn redact(&self, v: &mut Value) {
        match v {
            Value::Object(map) => self.redact_map(map),
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact(i)),
            Value::String(s) if looks_like_secret(s) => *v = Value::String("[secret]".into()),
            _ => {}
        }
    }

    fn redact_map(&self, map: &mut Map<String, Value>) {
        map.retain(|k, _| self.action(k) != Some(Action::Drop));
        for (k, v) in map.iter_mut() {
            match self.action(k) {
                Some(Action::Hash) => self.hash_leaves(v),
                Some(Action::Mask) => *v = Value::String("[redacted]".into()),
                _ => self.redact(v),
            }
        }
    }

    fn hash_leaves(&self, v: &mut Value) {
        match v {
            Value::String(s) => *v = Value::String(self.pseudonym(s)),
            Value::Number(n) => *v = Value::String(self.pseudonym(&n.to_string())),
            Value::Array(items) => items.iter_mut().for_each(|i| self.hash_leaves(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.hash_leaves(i)),
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// Query-string pairs as a redacted JSON object (repeated names become arrays).
    pub fn query(&self, query: &str) -> Map<String, Value> {
        let mut map = Map::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = Value::String(v.into_owned());
            match map.get_mut(k.as_ref()) {
                Some(Value::Array(items)) => items.push(v),
                Some(existing) => *existing = Value::Array(vec![existing.take(), v]),
                None => {
                    map.insert(k.into_owned(), v);
                }
            }
        }
        self.redact_map(&mut map);
        map
    }
}

/// API keys, JWTs (three base64url segments starting `eyJ`) and bearer values.
fn looks_like_secret(s: &str) -> bool {
    let t = s.trim();
    portcullis_domain::ApiKeySecret::looks_like(t)
        || t.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
        || (t.starts_with("eyJ") && t.split('.').count() == 3 && t.len() > 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_go_pii_is_hashed_or_masked_the_rest_stays() {
        let r = Redactor::new(&RedactionRules::default(), [7; 32]);
        let mut v = json!({
            "email": "Alice@Example.com",
            "Phone": "+15551234567",
            "name": "Alice",
            "password": "hunter2",
            "Client-Secret": "x",
            "tags": ["vip"],
            "nested": {"to": ["+1555", "+1666"], "code": "abc", "note": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"},
            "limit": 10
        });
        r.redact(&mut v);
        assert_eq!(v["email"], json!(r.pseudonym("alice@example.com")));
        assert!(v["email"].as_str().unwrap().starts_with("hmac:"));
        assert_eq!(v["Phone"], json!(r.pseudonym("+15551234567")));
        assert_eq!(v["name"], json!("[redacted]"));
        assert!(v.get("password").is_none() && v.get("Client-Secret").is_none());
        assert_eq!(v["tags"], json!(["vip"]));
        assert_eq!(v["nested"]["to"], json!([r.pseudonym("+1555"), r.pseudonym("+1666")]));
        assert!(v["nested"].get("code").is_none());
        assert_eq!(v["nested"]["note"], json!("[secret]"));
        assert_eq!(v["limit"], json!(10));
        let text = v.to_string();
        assert!(!text.contains("hunter2") && !text.contains("Alice") && !text.contains("5551234567"));
    }

    #[test]
    fn configured_rules_extend_and_shrink_the_defaults() {
        let rules = RedactionRules {
            drop: vec!["internal_ref".into()],
            hash: vec!["name".into()],
            mask: vec![],
            keep: vec!["to".into()],
        };
        let r = Redactor::new(&rules, [1; 32]);
        let mut v = json!({"internal_ref": "x", "name": "Bob", "to": "+1"});
        r.redact(&mut v);
        assert_eq!(v, json!({"name": r.pseudonym("bob"), "to": "+1"}));
        let other_key = Redactor::new(&rules, [2; 32]);
        assert_ne!(other_key.pseudonym("bob"), r.pseudonym("bob"), "the hash is keyed");
    }

    #[test]
    fn query_strings_are_redacted_too() {
        let r = Redactor::new(&RedactionRules::default(), [7; 32]);
        let q = r.query("limit=5&email=a%40b.c&tag=x&tag=y&access_token=pcl_live_zzz");
        assert_eq!(Value::Object(q), json!({"limit": "5", "email": r.pseudonym("a@b.c"), "tag": ["x", "y"]}));
    }
}
