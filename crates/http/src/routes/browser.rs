//! The browser side of the authorization code flow: the authorization endpoint, sign-in, consent
//! and sign-out pages. Every form carries a CSRF token; every successful post answers 303.

use crate::cookies::{self, CookieNames};
use crate::paths;
use crate::responses::{error_page, oauth_error_page, page, see_other};
use askama::Template;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use portcullis_core::Cx;
use portcullis_core::csrf;
use portcullis_core::oauth::authorize::{self, AuthorizeError, Next};
use portcullis_core::oauth::consent::{self, ConsentError, ConsentStep, Decision};
use portcullis_core::sessions::{self, LoginError};
use portcullis_domain::WorkspaceId;
use portcullis_proto::Params;
use portcullis_store::{Session, Store};
use secrecy::SecretString;
use serde::Deserialize;

/// Form bodies of our pages are small; anything larger is refused.
const FORM_LIMIT: usize = 16 * 1024;

fn names<S>(cx: &Cx<S>) -> CookieNames {
    CookieNames::new(cx.settings.secure_cookies())
}

/// The signed-in session of this browser, if any.
async fn current_session<S: Store>(cx: &Cx<S>, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(v) = cookies::get(headers, names(cx).session) else { return Ok(None) };
    sessions::current(cx, v).await.map_err(|e| oauth_error_page(&e))
}

/// The browser's CSRF binding: the existing cookie, or a fresh value to set with the response.
fn csrf_binding<S>(cx: &Cx<S>, headers: &HeaderMap) -> (String, Option<String>) {
    match cookies::get(headers, names(cx).csrf) {
        Some(v) if v.len() >= 16 && v.len() <= 64 => (v.to_owned(), None),
        _ => {
            let fresh = portcullis_domain::secret::random_id(24);
            (fresh.clone(), Some(fresh))
        }
    }
}

fn with_csrf_cookie<S>(cx: &Cx<S>, mut r: Response, fresh: Option<String>) -> Response {
    if let Some(v) = fresh {
        let n = names(cx);
        r.headers_mut().append(header::SET_COOKIE, cookies::set(&n, n.csrf, &v, None));
    }
    r
}

fn csrf_ok<S>(cx: &Cx<S>, headers: &HeaderMap, submitted: &str) -> bool {
    cookies::get(headers, names(cx).csrf).is_some_and(|b| csrf::verify(&cx.csrf_key, b, submitted))
}

fn csrf_failed() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form could not be verified (CSRF check failed). Go back, reload the page and try again.",
        None,
    )
}

async fn read_form(body: Body) -> Result<Params, Response> {
    axum::body::to_bytes(body, FORM_LIMIT).await.map(|b| Params::parse(&b)).map_err(|_| {
        error_page(StatusCode::PAYLOAD_TOO_LARGE, "Request too large", "The form is too large.", None)
    })
}

fn login_url(pending: &str) -> String {
    format!("{}?req={pending}", paths::LOGIN)
}

fn consent_url(pending: &str) -> String {
    format!("{}?req={pending}", paths::CONSENT)
}

/// `GET|POST /oauth2/authorize` (RFC 6749 §3.1: GET must be supported, POST may be).
pub async fn authorize<S: Store>(
    State(cx): State<Cx<S>>,
    method: Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Response {
    let params = if method == Method::POST {
        match read_form(body).await {
            Ok(p) => p,
            Err(r) => return r,
        }
    } else {
        Params::parse(uri.query().unwrap_or("").as_bytes())
    };
    let session = match current_session(&cx, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match authorize::start(&cx, &params, session.as_ref()).await {
        Ok(Next::Login { pending }) => see_other(&login_url(&pending)),
        Ok(Next::Consent { pending }) => see_other(&consent_url(&pending)),
        Ok(Next::Redirect(url)) => see_other(&url),
        Err(AuthorizeError::Redirect(url)) => see_other(&url),
        Err(AuthorizeError::Page(e)) => oauth_error_page(&e),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    action: &'a str,
    csrf: &'a str,
    pending: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    app_name: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct PendingQuery {
    req: Option<String>,
}

fn missing_request() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Nothing to sign in to",
        "Sign-in starts from an application. Return to the app and try again.",
        None,
    )
}

async fn app_name<S: Store>(cx: &Cx<S>, pending: &str) -> Option<String> {
    let p = cx.store.pending(pending, cx.now()).await.ok()??;
    let req: authorize::AuthorizationRequest = serde_json::from_str(&p.payload).ok()?;
    cx.store.client_by_id(&req.client_id).await.ok()?.map(|c| c.name)
}

/// `GET /login?req=…`
pub async fn login_page<S: Store>(
    State(cx): State<Cx<S>>,
    headers: HeaderMap,
    Query(q): Query<PendingQuery>,
) -> Response {
    let Some(pending) = q.req else { return missing_request() };
    let (binding, fresh) = csrf_binding(&cx, &headers);
    let token = csrf::token(&cx.csrf_key, &binding);
    let app = app_name(&cx, &pending).await;
    let r = page(
        StatusCode::OK,
        &LoginPage {
            action: paths::LOGIN,
            csrf: &token,
            pending: &pending,
            email: "",
            error: None,
            app_name: app.as_deref(),
        },
    );
    with_csrf_cookie(&cx, r, fresh)
}

/// `POST /login`: verify the password, open a session, continue to consent.
pub async fn login_submit<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap, body: Body) -> Response {
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !csrf_ok(&cx, &headers, form.get("csrf").unwrap_or("")) {
        return csrf_failed();
    }
    let Some(pending) = form.get("req").map(str::to_owned) else { return missing_request() };
    let email = form.get("email").unwrap_or("").to_owned();
    let password = SecretString::from(form.get("password").unwrap_or("").to_owned());
    match sessions::login(&cx, &email, password).await {
        Ok(signed_in) => {
            let n = names(&cx);
            let mut r = see_other(&consent_url(&pending));
            let age = cx.settings.session_ttl.whole_seconds();
            use secrecy::ExposeSecret;
            r.headers_mut().append(
                header::SET_COOKIE,
                cookies::set(&n, n.session, signed_in.cookie_value.expose_secret(), Some(age)),
            );
            r
        }
        Err(e) => {
            let status = match e {
                LoginError::InvalidCredentials => StatusCode::OK,
                LoginError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let binding = cookies::get(&headers, names(&cx).csrf).unwrap_or_default();
            let token = csrf::token(&cx.csrf_key, binding);
            let app = app_name(&cx, &pending).await;
            let msg = e.to_string();
            page(
                status,
                &LoginPage {
                    action: paths::LOGIN,
                    csrf: &token,
                    pending: &pending,
                    email: &email,
                    error: Some(&msg),
                    app_name: app.as_deref(),
                },
            )
        }
    }
}

/// `POST /logout`: ends the session.
pub async fn logout<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap, body: Body) -> Response {
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !csrf_ok(&cx, &headers, form.get("csrf").unwrap_or("")) {
        return csrf_failed();
    }
    let n = names(&cx);
    if let Some(v) = cookies::get(&headers, n.session)
        && let Err(e) = sessions::logout(&cx, v).await
    {
        return oauth_error_page(&e);
    }
    let mut r = error_page(StatusCode::OK, "Signed out", "You are signed out.", None);
    r.headers_mut().append(header::SET_COOKIE, cookies::set(&n, n.session, "", Some(0)));
    r
}

struct ScopeRow {
    name: String,
    description: String,
}

struct WorkspaceRow {
    id: String,
    slug: String,
    name: String,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    action: &'a str,
    csrf: &'a str,
    pending: &'a str,
    client_name: &'a str,
    redirect_host: &'a str,
    scopes: Vec<ScopeRow>,
    workspaces: Vec<WorkspaceRow>,
}

fn consent_error(e: ConsentError) -> Response {
    let status = match e {
        ConsentError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    error_page(status, "This request cannot be completed", &e.to_string(), None)
}

/// `GET /consent?req=…`
pub async fn consent_page<S: Store>(
    State(cx): State<Cx<S>>,
    headers: HeaderMap,
    Query(q): Query<PendingQuery>,
) -> Response {
    let Some(pending) = q.req else { return missing_request() };
    let session = match current_session(&cx, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match consent::show(&cx, &pending, session.as_ref()).await {
        Ok(ConsentStep::Login) => see_other(&login_url(&pending)),
        Ok(ConsentStep::Redirect(url)) => see_other(&url),
        Ok(ConsentStep::Show(view)) => {
            let (binding, fresh) = csrf_binding(&cx, &headers);
            let token = csrf::token(&cx.csrf_key, &binding);
            let r = page(
                StatusCode::OK,
                &ConsentPage {
                    action: paths::CONSENT,
                    csrf: &token,
                    pending: &view.pending,
                    client_name: &view.client_name,
                    redirect_host: &view.redirect_host,
                    scopes: view
                        .scopes
                        .iter()
                        .map(|s| ScopeRow { name: s.scope.to_string(), description: s.description.clone() })
                        .collect(),
                    workspaces: view
                        .workspaces
                        .iter()
                        .map(|w| WorkspaceRow {
                            id: w.id.to_string(),
                            slug: w.slug.to_string(),
                            name: w.name.clone(),
                        })
                        .collect(),
                },
            );
            with_csrf_cookie(&cx, r, fresh)
        }
        Err(e) => consent_error(e),
    }
}

/// `POST /consent`: Allow (with the chosen workspace) or Deny.
pub async fn consent_submit<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap, body: Body) -> Response {
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !csrf_ok(&cx, &headers, form.get("csrf").unwrap_or("")) {
        return csrf_failed();
    }
    let Some(pending) = form.get("req") else { return missing_request() };
    let session = match current_session(&cx, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other(&login_url(pending)),
        Err(r) => return r,
    };
    let decision = match (form.get("decision"), form.get("workspace")) {
        (Some("deny"), _) => Decision::Deny,
        (Some("allow"), Some(ws)) => Decision::Allow { workspace: WorkspaceId::from_string(ws) },
        (Some("allow"), None) => {
            return consent_error(ConsentError::Invalid("choose a workspace".into()));
        }
        _ => return consent_error(ConsentError::Invalid("choose Allow or Deny".into())),
    };
    match consent::decide(&cx, pending, &session, decision).await {
        Ok(url) => see_other(&url),
        Err(e) => consent_error(e),
    }
}
