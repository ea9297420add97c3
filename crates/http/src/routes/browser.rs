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
use portcullis_core::account;
use portcullis_core::csrf;
use portcullis_core::oauth::authorize::{self, AuthorizeError, Next};
use portcullis_core::oauth::consent::{self, ConsentError, ConsentStep, ConsentView, Decision};
use portcullis_core::oauth::device::{self, DeviceError};
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

fn login_url(base: &str, pending: &str) -> String {
    format!("{base}{}?req={pending}", paths::LOGIN)
}

fn consent_url(base: &str, pending: &str) -> String {
    format!("{base}{}?req={pending}", paths::CONSENT)
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
        Ok(Next::Login { pending }) => see_other(&login_url(cx.settings.path(), &pending)),
        Ok(Next::Consent { pending }) => see_other(&consent_url(cx.settings.path(), &pending)),
        Ok(Next::Redirect(url)) => see_other(&url),
        Err(AuthorizeError::Redirect(url) | AuthorizeError::Invalid { redirect: url, .. }) => see_other(&url),
        Err(AuthorizeError::Page(e)) => oauth_error_page(&e),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    action: &'a str,
    csrf: &'a str,
    pending: &'a str,
    next: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    app_name: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct PendingQuery {
    req: Option<String>,
    next: Option<String>,
}

/// Where sign-in may send the browser afterwards: only our own pages, never another origin
/// (no open redirect: a `//host` or `/\host` path would leave the site).
fn safe_next<'a>(base: &str, next: &'a str) -> Option<&'a str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && [paths::DEVICE, paths::ACCOUNT, paths::CONSENT].iter().any(|p| {
            let p = format!("{base}{p}");
            next == p || next.starts_with(&format!("{p}?")) || next.starts_with(&format!("{p}/"))
        });
    ok.then_some(next)
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
    let p = cx.pending(pending).await.ok()??;
    let req: authorize::AuthorizationRequest = serde_json::from_str(&p.payload).ok()?;
    portcullis_core::oauth::client_auth::cached_client(cx, req.client_id.as_str())
        .await
        .ok()?
        .map(|c| c.name.clone())
}

/// `GET /login?req=…` (continuing an authorization) or `GET /login?next=/device…` (our pages).
pub async fn login_page<S: Store>(
    State(cx): State<Cx<S>>,
    headers: HeaderMap,
    Query(q): Query<PendingQuery>,
) -> Response {
    let next = q.next.as_deref().and_then(|n| safe_next(cx.settings.path(), n)).unwrap_or("");
    let pending = q.req.unwrap_or_default();
    if pending.is_empty() && next.is_empty() {
        return missing_request();
    }
    let (binding, fresh) = csrf_binding(&cx, &headers);
    let token = csrf::token(&cx.csrf_key, &binding);
    let app = if pending.is_empty() { None } else { app_name(&cx, &pending).await };
    let r = page(
        StatusCode::OK,
        &LoginPage {
            action: &paths::local(&cx.settings, paths::LOGIN),
            csrf: &token,
            pending: &pending,
            next,
            email: "",
            error: None,
            app_name: app.as_deref(),
        },
    );
    with_csrf_cookie(&cx, r, fresh)
}

/// `POST /login`: verify the password, open a session, continue to consent.
pub async fn login_submit<S: Store>(
    State(cx): State<Cx<S>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ip = Some(portcullis_guard::client_ip::client_ip(&cx.settings.trusted_proxies, peer.ip(), &headers));
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !csrf_ok(&cx, &headers, form.get("csrf").unwrap_or("")) {
        return csrf_failed();
    }
    let pending = form.get("req").unwrap_or("").to_owned();
    let next = form.get("next").and_then(|n| safe_next(cx.settings.path(), n)).unwrap_or("").to_owned();
    let target = if !next.is_empty() {
        next.clone()
    } else if !pending.is_empty() {
        consent_url(cx.settings.path(), &pending)
    } else {
        return missing_request();
    };
    let email = form.get("email").unwrap_or("").to_owned();
    let password = SecretString::from(form.get("password").unwrap_or("").to_owned());
    match sessions::login(&cx, &email, password, ip).await {
        Ok(signed_in) => {
            let n = names(&cx);
            let mut r = see_other(&target);
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
            let app = if pending.is_empty() { None } else { app_name(&cx, &pending).await };
            let msg = e.to_string();
            page(
                status,
                &LoginPage {
                    action: &paths::local(&cx.settings, paths::LOGIN),
                    csrf: &token,
                    pending: &pending,
                    next: &next,
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
    /// The hidden field naming what is being answered: `req` (browser flow) or `user_code`.
    pending_field: &'a str,
    pending: &'a str,
    client_name: &'a str,
    redirect_host: &'a str,
    unverified: bool,
    scopes: Vec<ScopeRow>,
    workspaces: Vec<WorkspaceRow>,
}

/// Renders the consent page for `view`, posting to `action` with the pending id in `field`.
fn consent_view_page<S>(
    cx: &Cx<S>,
    headers: &HeaderMap,
    action: &str,
    field: &str,
    view: &ConsentView,
) -> Response {
    let (binding, fresh) = csrf_binding(cx, headers);
    let token = csrf::token(&cx.csrf_key, &binding);
    let r = page(
        StatusCode::OK,
        &ConsentPage {
            action,
            csrf: &token,
            pending_field: field,
            pending: &view.pending,
            client_name: &view.client_name,
            redirect_host: &view.redirect_host,
            unverified: view.unverified,
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
    with_csrf_cookie(cx, r, fresh)
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
        Ok(ConsentStep::Login) => see_other(&login_url(cx.settings.path(), &pending)),
        Ok(ConsentStep::Redirect(url)) => see_other(&url),
        Ok(ConsentStep::Show(view)) => {
            consent_view_page(&cx, &headers, &paths::local(&cx.settings, paths::CONSENT), "req", &view)
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
        Ok(None) => return see_other(&login_url(cx.settings.path(), pending)),
        Err(r) => return r,
    };
    let decision = match decision(&form) {
        Ok(d) => d,
        Err(msg) => return consent_error(ConsentError::Invalid(msg.into())),
    };
    match consent::decide(&cx, pending, &session, decision).await {
        Ok(url) => see_other(&url),
        Err(e) => consent_error(e),
    }
}

/// The consent decision posted by a form: Allow with a workspace, or Deny.
fn decision(form: &Params) -> Result<Decision, &'static str> {
    match (form.get("decision"), form.get("workspace")) {
        (Some("deny"), _) => Ok(Decision::Deny),
        (Some("allow"), Some(ws)) => Ok(Decision::Allow { workspace: WorkspaceId::from_string(ws) }),
        (Some("allow"), None) => Err("choose a workspace"),
        _ => Err("choose Allow or Deny"),
    }
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage<'a> {
    action: &'a str,
    code: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage<'a> {
    title: &'a str,
    message: &'a str,
}

#[derive(Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
    result: Option<String>,
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn device_error(base: &str, e: &DeviceError, code: &str) -> Response {
    let status = match e {
        DeviceError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        DeviceError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let msg = e.to_string();
    page(status, &DevicePage { action: &format!("{base}{}", paths::DEVICE), code, error: Some(&msg) })
}

/// `GET /device[?user_code=…]` (RFC 8628 §3.3): the code form, or with a code, the consent page.
pub async fn device_page<S: Store>(
    State(cx): State<Cx<S>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<DeviceQuery>,
) -> Response {
    let session = match current_session(&cx, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let mut here = paths::local(&cx.settings, paths::DEVICE);
            if let Some(q) = uri.query() {
                here = format!("{here}?{q}");
            }
            return see_other(&format!(
                "{}?next={}",
                &paths::local(&cx.settings, paths::LOGIN),
                url_encode(&here)
            ));
        }
        Err(r) => return r,
    };
    let Some(code) = q.user_code.filter(|c| !c.trim().is_empty()) else {
        return page(
            StatusCode::OK,
            &DevicePage { action: &paths::local(&cx.settings, paths::DEVICE), code: "", error: None },
        );
    };
    match device::consent_view(&cx, &session, &code).await {
        Ok(view) => {
            consent_view_page(&cx, &headers, &paths::local(&cx.settings, paths::DEVICE), "user_code", &view)
        }
        Err(e) => device_error(cx.settings.path(), &e, &code),
    }
}

/// `POST /device`: the answer for a device, then a 303 to the result page.
pub async fn device_submit<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap, body: Body) -> Response {
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !csrf_ok(&cx, &headers, form.get("csrf").unwrap_or("")) {
        return csrf_failed();
    }
    let code = form.get("user_code").unwrap_or("").to_owned();
    let session = match current_session(&cx, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return see_other(&format!(
                "{}?next={}",
                &paths::local(&cx.settings, paths::LOGIN),
                url_encode(&paths::local(&cx.settings, paths::DEVICE))
            ));
        }
        Err(r) => return r,
    };
    let d = match decision(&form) {
        Ok(d) => d,
        Err(msg) => return consent_error(ConsentError::Invalid(msg.into())),
    };
    match device::decide(&cx, &session, &code, d).await {
        Ok(true) => {
            see_other(&format!("{}?result=approved", &paths::local(&cx.settings, paths::DEVICE_DONE)))
        }
        Ok(false) => see_other(&format!("{}?result=denied", &paths::local(&cx.settings, paths::DEVICE_DONE))),
        Err(e) => device_error(cx.settings.path(), &e, &code),
    }
}

/// `GET /device/done`
pub async fn device_done(Query(q): Query<DeviceQuery>) -> Response {
    let (title, message) = match q.result.as_deref() {
        Some("approved") => ("Device connected", "You can return to your device; it is signed in now."),
        _ => ("Request denied", "The device was not given access. You can close this page."),
    };
    page(StatusCode::OK, &NoticePage { title, message })
}

struct GrantRow {
    id: String,
    client_name: String,
    workspace_name: String,
    scopes: String,
    since: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    action: &'a str,
    csrf: &'a str,
    grants: Vec<GrantRow>,
}

/// `GET /account`: the apps the user has given access, each with a Revoke button.
pub async fn account_page<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap) -> Response {
    let session = match current_session(&cx, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return see_other(&format!(
                "{}?next={}",
                &paths::local(&cx.settings, paths::LOGIN),
                url_encode(&paths::local(&cx.settings, paths::ACCOUNT))
            ));
        }
        Err(r) => return r,
    };
    let grants = match account::grants(&cx, &session).await {
        Ok(g) => g,
        Err(e) => return oauth_error_page(&e),
    };
    let (binding, fresh) = csrf_binding(&cx, &headers);
    let token = csrf::token(&cx.csrf_key, &binding);
    let rows = grants
        .into_iter()
        .map(|g| GrantRow {
            id: g.grant.id.to_string(),
            client_name: g.client_name,
            workspace_name: g.workspace_name,
            scopes: g.grant.scopes.to_string(),
            since: g.grant.created_at.date().to_string(),
        })
        .collect();
    let r = page(
        StatusCode::OK,
        &AccountPage {
            action: &paths::local(&cx.settings, paths::ACCOUNT_REVOKE),
            csrf: &token,
            grants: rows,
        },
    );
    with_csrf_cookie(&cx, r, fresh)
}

/// `POST /account/revoke`: withdraws consent for one grant (its tokens stop working at once).
pub async fn account_revoke<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap, body: Body) -> Response {
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !csrf_ok(&cx, &headers, form.get("csrf").unwrap_or("")) {
        return csrf_failed();
    }
    let session = match current_session(&cx, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return see_other(&format!(
                "{}?next={}",
                &paths::local(&cx.settings, paths::LOGIN),
                url_encode(&paths::local(&cx.settings, paths::ACCOUNT))
            ));
        }
        Err(r) => return r,
    };
    match account::revoke(&cx, &session, form.get("grant").unwrap_or("")).await {
        Ok(true) => see_other(&paths::local(&cx.settings, paths::ACCOUNT)),
        Ok(false) => {
            error_page(StatusCode::NOT_FOUND, "Nothing to revoke", "That access was already removed.", None)
        }
        Err(e) => oauth_error_page(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_our_pages() {
        assert_eq!(safe_next("", "/device?user_code=WDJB-MJHT"), Some("/device?user_code=WDJB-MJHT"));
        assert_eq!(safe_next("", "/account"), Some("/account"));
        for bad in
            ["//evil.example", "https://evil.example", "/\\evil.example", "/admin", "/devicex", "device"]
        {
            assert_eq!(safe_next("", bad), None, "{bad}");
        }
        assert_eq!(safe_next("/t", "/t/account"), Some("/t/account"));
        assert_eq!(safe_next("/t", "/account"), None);
    }
}
