//! HTTP routes of the built-in reference API ([`portcullis_core::reference`]), each behind the
//! guard with its scope declared next to it. Errors of the API itself are RFC 9457 problems;
//! refusals of the guard are RFC 6750 challenges.

use crate::api::problem::Problem;
use crate::api::{ok, parse_json};
use crate::paths::reference as p;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, patch, post};
use portcullis_core::Cx;
use portcullis_core::reference::{self as r, Page, ReferenceApi};
use portcullis_guard::{Guard, Principal};
use portcullis_store::Store;
use serde_json::json;

type ApiResult = Result<Response, Problem>;

/// Every route with its scope. The MCP tools use the same scopes (see `crate::mcp`).
pub fn router<S: Store>(g: &Guard<S>) -> Router<Cx<S>> {
    Router::new()
        .route(
            p::CONTACTS,
            get(list::<S, Contacts>)
                .layer(g.require(&["contacts:read"]).pii())
                .merge(post(create_contact::<S>).layer(g.require(&["contacts:write"]).pii())),
        )
        .route(
            p::CONTACT,
            get(show_contact::<S>)
                .layer(g.require(&["contacts:read"]).pii())
                .merge(patch(update_contact::<S>).layer(g.require(&["contacts:write"]).pii()))
                .merge(delete(delete_contact::<S>).layer(g.require(&["contacts:delete"]))),
        )
        .route(
            p::MESSAGES,
            get(list::<S, Messages>)
                .layer(g.require(&["messages:read"]))
                .merge(post(send_message::<S>).layer(g.require(&["messages:write"]))),
        )
        .route(
            p::BROADCASTS,
            get(list::<S, Broadcasts>)
                .layer(g.require(&["broadcasts:read"]))
                .merge(post(create_broadcast::<S>).layer(g.require(&["broadcasts:write"]))),
        )
        .route(
            p::FLOWS,
            get(list::<S, Flows>)
                .layer(g.require(&["flows:read"]))
                .merge(post(create_flow::<S>).layer(g.require(&["flows:write"]))),
        )
        .route(p::FLOW_EXECUTE, post(execute_flow::<S>).layer(g.require(&["flows:execute"])))
}

/// The contact list at `path` with a fixed principal and **no guard**: the unauthenticated
/// baseline `bench/guard` compares the guarded route against. Never mount it in a server.
pub fn unguarded_contact_list<S: Store>(path: &str, principal: Principal) -> Router<Cx<S>> {
    Router::new().route(path, get(list::<S, Contacts>)).layer(Extension(principal))
}

/// Which document kind a list route reads (one generic handler for the four lists).
pub trait Kind: Send + Sync + 'static {
    const KIND: &'static str;
    const FIELD: &'static str;
}
pub struct Contacts;
pub struct Messages;
pub struct Broadcasts;
pub struct Flows;
impl Kind for Contacts {
    const KIND: &'static str = r::CONTACT;
    const FIELD: &'static str = "contacts";
}
impl Kind for Messages {
    const KIND: &'static str = r::MESSAGE;
    const FIELD: &'static str = "messages";
}
impl Kind for Broadcasts {
    const KIND: &'static str = r::BROADCAST;
    const FIELD: &'static str = "broadcasts";
}
impl Kind for Flows {
    const KIND: &'static str = r::FLOW;
    const FIELD: &'static str = "flows";
}

fn api<'a, S: Store>(cx: &'a Cx<S>, p: &'a Principal) -> ReferenceApi<'a, S> {
    ReferenceApi::new(&cx.store, &cx.clock, &p.workspace_id)
}

/// `?after=<cursor>&limit=<1-100>`; other parameters are refused.
pub fn page_query(q: Option<&str>) -> Result<(Option<String>, Option<i64>), Problem> {
    let (mut after, mut limit) = (None, None);
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        match &*k {
            "after" => after = Some(v.into_owned()),
            "limit" => {
                limit = Some(
                    v.parse().map_err(|_| Problem::bad_request("limit must be a number from 1 to 100"))?,
                )
            }
            other => return Err(Problem::bad_request(format!("unknown query parameter {other:?}"))),
        }
    }
    Ok((after, limit))
}

fn page(field: &str, p: Page) -> Response {
    ok(StatusCode::OK, &json!({ field: p.items, "next_cursor": p.next_cursor }))
}

async fn list<S: Store, K: Kind>(
    State(cx): State<Cx<S>>,
    Extension(pr): Extension<Principal>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let (after, limit) = page_query(q.as_deref())?;
    Ok(page(K::FIELD, api(&cx, &pr).list(K::KIND, after.as_deref(), limit).await?))
}

/// The POST handlers that create a document: a strict JSON body into one [`ReferenceApi`]
/// method, 201 with the created document.
macro_rules! create_handler {
    ($($handler:ident => $method:ident),+ $(,)?) => {$(
        async fn $handler<S: Store>(
            State(cx): State<Cx<S>>,
            Extension(pr): Extension<Principal>,
            headers: HeaderMap,
            body: Bytes,
        ) -> ApiResult {
            let input = parse_json(&headers, &body)?;
            Ok(ok(StatusCode::CREATED, &api(&cx, &pr).$method(input).await?))
        }
    )+};
}

create_handler!(
    create_contact => create_contact,
    send_message => send_message,
    create_broadcast => create_broadcast,
    create_flow => create_flow,
);

async fn show_contact<S: Store>(
    State(cx): State<Cx<S>>,
    Extension(pr): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(ok(StatusCode::OK, &api(&cx, &pr).get(r::CONTACT, &id).await?))
}

async fn update_contact<S: Store>(
    State(cx): State<Cx<S>>,
    Extension(pr): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let patch = parse_json(&headers, &body)?;
    Ok(ok(StatusCode::OK, &api(&cx, &pr).update_contact(&id, patch).await?))
}

async fn delete_contact<S: Store>(
    State(cx): State<Cx<S>>,
    Extension(pr): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    api(&cx, &pr).delete_contact(&id).await?;
    Ok(crate::api::no_content())
}

async fn execute_flow<S: Store>(
    State(cx): State<Cx<S>>,
    Extension(pr): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let input: r::FlowRunInput = crate::api::credentials::optional_body(&headers, &body)?;
    Ok(ok(StatusCode::CREATED, &api(&cx, &pr).execute_flow(&id, input).await?))
}
