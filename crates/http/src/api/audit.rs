//! The workspace's audit log: search (`audit:read`), verification (`audit:read`), and the
//! recording of every admin API call.

use super::auth::Principal;
use super::ok;
use super::problem::Problem;
use crate::paths::api as p;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_core::Cx;
use portcullis_core::audit::search::{self, SearchParams};
use portcullis_core::audit::signer::VerifierKey;
use portcullis_core::audit::sinks;
use portcullis_core::audit::verify::{self, LogReport, Window};
use portcullis_guard::audit::CallRecorder;
use portcullis_store::Store;
use serde::Serialize;
use std::net::SocketAddr;

type ApiResult = Result<Response, Problem>;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn internal(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "audit log access failed");
    Problem::internal()
}

#[utoipa::path(get, path = p::AUDIT, tag = "audit", params(SearchParams),
    responses((status = 200, body = AuditPage), (status = 400, description = "A filter is malformed")))]
pub async fn search<S: Store>(State(cx): State<Cx<S>>, who: Principal, uri: axum::http::Uri) -> ApiResult {
    who.require("audit:read")?;
    let params = Query::<SearchParams>::try_from_uri(&uri)
        .map_err(|e| Problem::bad_request(format!("invalid search parameters: {}", e.body_text())))?
        .0;
    let q = search::build_query(who.workspace.id.as_str(), &params, &|v| cx.audit.redactor.pseudonym(v))
        .map_err(Problem::bad_request)?;
    let entries = cx.store.search_audit(&q).await.map_err(internal)?;
    let next_cursor =
        (entries.len() as i64 == q.limit).then(|| entries.last().map(search::encode_cursor)).flatten();
    Ok(ok(
        StatusCode::OK,
        &AuditPage { entries: entries.iter().map(search::entry_json).collect(), next_cursor },
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Verification {
    #[schema(value_type = Object)]
    pub report: LogReport,
    /// The C2SP verifier key the checkpoints were checked against.
    pub verifier_key: String,
}

#[utoipa::path(get, path = p::AUDIT_VERIFY, tag = "audit",
    responses((status = 200, body = Verification, description = "`report.ok` says whether the log is intact")))]
pub async fn verify<S: Store>(State(cx): State<Cx<S>>, who: Principal) -> ApiResult {
    who.require("audit:read")?;
    let key = VerifierKey::of(&cx.audit.signer);
    let report = verify::verify_log(&cx.store, &key, who.workspace.id.as_str(), Window::default())
        .await
        .map_err(internal)?;
    Ok(ok(StatusCode::OK, &Verification { report, verifier_key: cx.audit.signer.verifier_key() }))
}

/// Records every admin API call (the extractor adds the principal through the audit note).
pub async fn record_calls<S: Store>(State(cx): State<Cx<S>>, mut req: Request, next: Next) -> Response {
    let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
        return next.run(req).await;
    };
    if !cx.settings.audit.requests {
        return next.run(req).await;
    }
    let ip = portcullis_guard::client_ip::client_ip(&cx.settings.trusted_proxies, peer, req.headers());
    let mut call = CallRecorder::start(&cx, &mut req, "admin.request", ip, false);
    let req = match call.body(&cx, req).await {
        Ok(req) => req,
        Err(_) => {
            let resp = Problem::bad_request("the request body could not be read").into_response();
            call.finish(&cx, resp.status().as_u16(), Some("invalid_request")).await;
            return resp;
        }
    };
    let resp = next.run(req).await;
    call.finish(&cx, resp.status().as_u16(), None).await;
    resp
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSink {
    /// https, or http to a loopback address.
    pub url: String,
    /// Deliver the whole retained log, not only entries from now on.
    #[serde(default)]
    pub from_start: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSink {
    #[schema(value_type = Object)]
    pub sink: serde_json::Value,
    /// The Standard Webhooks signing secret (`whsec_…`), shown once.
    pub secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SinkList {
    #[schema(value_type = Vec<Object>)]
    pub sinks: Vec<serde_json::Value>,
}

#[utoipa::path(post, path = p::AUDIT_SINKS, tag = "audit", request_body = CreateSink,
    responses((status = 201, body = CreatedSink), (status = 400, description = "Invalid URL")))]
pub async fn create_sink<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    super::JsonBody(b): super::JsonBody<CreateSink>,
) -> ApiResult {
    who.require("audit:manage")?;
    let (sink, secret) =
        sinks::add(&cx, &who.workspace.id, &b.url, b.from_start).await.map_err(admin_problem)?;
    Ok(ok(StatusCode::CREATED, &CreatedSink { sink: sinks::view(&sink), secret }))
}

#[utoipa::path(get, path = p::AUDIT_SINKS, tag = "audit", responses((status = 200, body = SinkList)))]
pub async fn list_sinks<S: Store>(State(cx): State<Cx<S>>, who: Principal) -> ApiResult {
    who.require("audit:manage")?;
    let list = cx.store.list_audit_sinks(Some(&who.workspace.id)).await.map_err(internal)?;
    Ok(ok(StatusCode::OK, &SinkList { sinks: list.iter().map(sinks::view).collect() }))
}

#[utoipa::path(delete, path = p::AUDIT_SINK, tag = "audit", params(("id" = String, Path, description = "Sink id")),
    responses((status = 204), (status = 404, description = "No such active sink in this workspace")))]
pub async fn remove_sink<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult {
    who.require("audit:manage")?;
    let id = portcullis_domain::AuditSinkId::from_string(id.as_str());
    let mine =
        cx.store.audit_sink(&id).await.map_err(internal)?.is_some_and(|s| s.workspace_id == who.workspace.id);
    if !mine || !cx.store.disable_audit_sink(&id, cx.now()).await.map_err(internal)? {
        return Err(Problem::not_found("no such active sink"));
    }
    Ok(super::no_content())
}

fn admin_problem(e: portcullis_core::admin::AdminError) -> Problem {
    use portcullis_core::admin::AdminError;
    match e {
        AdminError::Invalid(m) => Problem::bad_request(m),
        other => internal(other),
    }
}
