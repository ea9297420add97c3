//! Sign-in and browser sessions. A session is a random cookie value; only its hash is stored.

use crate::context::{Cx, internal};
use crate::passwords;
use portcullis_domain::secret::prefix;
use portcullis_domain::{Email, TokenHash, random_token};
use portcullis_store::{Session, Store, User};
use secrecy::{ExposeSecret, SecretString};

/// A successful sign-in: the cookie value (secret) and the stored session.
pub struct SignedIn {
    pub cookie_value: SecretString,
    pub session: Session,
    pub user: User,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong email or password; deliberately does not say which.
    #[error("the email or password is incorrect")]
    InvalidCredentials,
    #[error("the server could not complete the sign-in")]
    Internal,
}

/// Verifies the credentials and opens a session. An unknown email costs the same time as a wrong
/// password.
pub async fn login<S: Store>(
    cx: &Cx<S>,
    email: &str,
    password: SecretString,
    ip: Option<std::net::IpAddr>,
) -> Result<SignedIn, LoginError> {
    // Sign-ins are instance events (a user is not in one workspace); the email is kept only as
    // its keyed hash, so attempts on one address can be found without storing it.
    let attempt = |kind: &str, user: Option<&portcullis_store::User>| {
        let mut r = crate::events::entry(kind, cx.now(), None);
        r.ip = ip;
        r.user_id = user.map(|u| u.id.to_string());
        r.actor = r.user_id.clone();
        r.params = serde_json::json!({ "email": cx.audit.redactor.pseudonym(email) }).to_string();
        r
    };
    let user = match Email::parse(email) {
        Ok(e) => cx.store.user_by_email(&e).await.map_err(|e| {
            internal(e);
            LoginError::Internal
        })?,
        Err(_) => None,
    };
    let ok = passwords::verify(password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let (user, known) = match user {
        Some(u) if ok => (Some(u), None),
        other => (None, other),
    };
    let Some(user) = user else {
        tracing::info!(event = "login_failed", "sign-in failed");
        crate::events::write(cx.events(), attempt("login.failed", known.as_ref())).await.map_err(|e| {
            internal(e);
            LoginError::Internal
        })?;
        return Err(LoginError::InvalidCredentials);
    };
    let now = cx.now();
    let cookie_value = random_token(prefix::SESSION);
    let session = Session {
        hash: TokenHash::of(cookie_value.expose_secret()),
        user_id: user.id.clone(),
        auth_time: now,
        created_at: now,
        expires_at: now + cx.settings.session_ttl,
    };
    let generation = cx.cache.snapshot();
    cx.store.insert_session(&session).await.map_err(|e| {
        internal(e);
        LoginError::Internal
    })?;
    cx.cache.put_session(session.clone(), now, generation);
    tracing::info!(event = "login_succeeded", user_id = %user.id, "signed in");
    crate::events::write(cx.events(), attempt("login.succeeded", Some(&user))).await.map_err(|e| {
        internal(e);
        LoginError::Internal
    })?;
    Ok(SignedIn { cookie_value, session, user })
}

/// The live session for a cookie value, if any.
pub async fn current<S: Store>(
    cx: &Cx<S>,
    cookie_value: &str,
) -> Result<Option<Session>, portcullis_proto::OAuthError> {
    if !cookie_value.starts_with(prefix::SESSION) {
        return Ok(None);
    }
    let (hash, now) = (TokenHash::of(cookie_value), cx.now());
    // Cached for `credential_cache_ttl`: a sign-out on another replica is seen within that.
    if let Some(s) = cx.cache.session(&hash, now, cx.settings.credential_cache_ttl) {
        return Ok((s.expires_at > now).then_some(s));
    }
    let generation = cx.cache.snapshot();
    let s = cx.store.session(&hash, now).await.map_err(internal)?;
    if let Some(s) = &s {
        cx.cache.put_session(s.clone(), now, generation);
    }
    Ok(s)
}

/// Ends a session (sign-out).
pub async fn logout<S: Store>(cx: &Cx<S>, cookie_value: &str) -> Result<(), portcullis_proto::OAuthError> {
    let hash = TokenHash::of(cookie_value);
    cx.cache.forget_session(&hash);
    cx.store.delete_session(&hash).await.map_err(internal)
}
