//! Admin API: the workspace, its OAuth clients and grants, and its members.

use super::auth::Principal;
use super::problem::Problem;
use super::{JsonBody, no_content, ok};
use crate::paths::api as p;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_core::Cx;
use portcullis_core::admin::NewClient;
use portcullis_core::views::{ClientView, GrantView, MemberView, WorkspaceView};
use portcullis_store::{Client, Store};
use serde::{Deserialize, Serialize};

type ApiResult = Result<Response, Problem>;

#[utoipa::path(get, path = p::WORKSPACE, tag = "workspace", responses(
    (status = 200, body = WorkspaceView),
    (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn show<S: Store>(who: Principal) -> ApiResult {
    Ok(ok(StatusCode::OK, &WorkspaceView::from(&who.workspace)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub bundle: Option<String>,
    /// Default: authorization_code and refresh_token.
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub public: bool,
    /// e.g. `10s` (0–60s).
    pub refresh_overlap: Option<String>,
    /// Accept only pushed authorization requests from this client (RFC 9126).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// Issue this client only DPoP-bound tokens (RFC 9449 §5.2).
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: ClientView,
    /// Confidential clients only; shown once.
    pub client_secret: Option<String>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret keeps working (default `0s`, at most `30d`).
    pub grace: Option<String>,
}

/// A client of this workspace (clients of other workspaces, and unbound third-party clients,
/// are not the workspace's to manage).
async fn own_client<S: Store>(cx: &Cx<S>, who: &Principal, id: &str) -> Result<Client, Problem> {
    match cx.admin().client(id).await {
        Ok(c) if c.workspace_id.as_ref() == Some(&who.workspace.id) => Ok(c),
        Ok(_) | Err(portcullis_core::admin::AdminError::NotFound(_)) => {
            Err(Problem::not_found(format!("client {id:?} does not exist")))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = p::CLIENTS, tag = "apps", responses((status = 200, body = ClientList)))]
pub async fn list_clients<S: Store>(State(cx): State<Cx<S>>, who: Principal) -> ApiResult {
    who.require("apps:manage")?;
    let cs = cx.admin().list_clients().await?;
    let own = cs.iter().filter(|c| c.workspace_id.as_ref() == Some(&who.workspace.id)).map(ClientView::from);
    Ok(ok(StatusCode::OK, &ClientList { clients: own.collect() }))
}

#[utoipa::path(post, path = p::CLIENTS, tag = "apps", request_body = CreateClient, responses(
    (status = 201, body = CreatedClient),
    (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_client<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    JsonBody(b): JsonBody<CreateClient>,
) -> ApiResult {
    who.require("apps:manage")?;
    let refresh_overlap = match &b.refresh_overlap {
        Some(v) => Some(
            portcullis_core::parse_duration(v)
                .map_err(|e| Problem::bad_request(format!("refresh_overlap: {e}")))?,
        ),
        None => None,
    };
    let created = cx
        .admin()
        .create_client(NewClient {
            name: b.name,
            redirect_uris: b.redirect_uris,
            scope: b.scopes.join(" "),
            grant_types: b.grant_types,
            public: b.public,
            workspace: Some(who.workspace.slug.to_string()),
            refresh_overlap,
            bundle: b.bundle,
            require_pushed_requests: b.require_pushed_authorization_requests,
            dpop_bound: b.dpop_bound_access_tokens,
        })
        .await?;
    use secrecy::ExposeSecret;
    Ok(ok(
        StatusCode::CREATED,
        &CreatedClient {
            client: ClientView::from(&created.client),
            client_secret: created.secret.as_ref().map(|s| s.expose_secret().to_owned()),
        },
    ))
}

#[utoipa::path(get, path = p::CLIENT, tag = "apps", params(("id" = String, Path, description = "Client id")),
    responses((status = 200, body = ClientView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn show_client<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    who.require("apps:manage")?;
    let c = own_client(&cx, &who, &id).await?;
    Ok(ok(StatusCode::OK, &ClientView::from(&c)))
}

#[utoipa::path(delete, path = p::CLIENT, tag = "apps", params(("id" = String, Path, description = "Client id")),
    responses((status = 200, body = ClientView, description = "The revoked client"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_client<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    who.require("apps:manage")?;
    own_client(&cx, &who, &id).await?;
    let c = cx.admin().revoke_client(&id).await?;
    Ok(ok(StatusCode::OK, &ClientView::from(&c)))
}

#[utoipa::path(post, path = p::CLIENT_ROTATE, tag = "apps", params(("id" = String, Path, description = "Client id")),
    request_body(content = Option<RotateSecret>),
    responses((status = 200, body = CreatedClient), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn rotate_client_secret<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    who.require("apps:manage")?;
    let b: RotateSecret = super::credentials::optional_body(&headers, &body)?;
    let grace = portcullis_core::parse_duration(b.grace.as_deref().unwrap_or("0s"))
        .map_err(|e| Problem::bad_request(format!("grace: {e}")))?;
    own_client(&cx, &who, &id).await?;
    let r = cx.admin().rotate_client_secret(&id, grace).await?;
    use secrecy::ExposeSecret;
    Ok(ok(
        StatusCode::OK,
        &CreatedClient {
            client: ClientView::from(&r.client),
            client_secret: r.secret.as_ref().map(|s| s.expose_secret().to_owned()),
        },
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GrantList {
    pub grants: Vec<GrantView>,
}

#[utoipa::path(get, path = p::GRANTS, tag = "apps", responses((status = 200, body = GrantList, description = "Active grants in this workspace, newest first")))]
pub async fn list_grants<S: Store>(State(cx): State<Cx<S>>, who: Principal) -> ApiResult {
    who.require("apps:manage")?;
    let gs = cx.admin().list_grants(Some(who.workspace.slug.as_str()), None).await?;
    Ok(ok(StatusCode::OK, &GrantList { grants: gs.iter().map(GrantView::from).collect() }))
}

#[utoipa::path(delete, path = p::GRANT, tag = "apps", params(("id" = String, Path, description = "Grant id (grt_…)")),
    responses((status = 200, body = GrantView, description = "The revoked grant; its tokens stop working"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_grant<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    who.require("apps:manage")?;
    let gid = portcullis_domain::GrantId::from_string(id.as_str());
    let grant = cx.store.grant_by_id(&gid).await.map_err(|e| {
        tracing::error!(error = %e, "loading a grant failed");
        Problem::internal()
    })?;
    if grant.is_none_or(|g| g.workspace_id != who.workspace.id) {
        return Err(Problem::not_found(format!("grant {id:?} does not exist")));
    }
    let g = cx.admin().revoke_grant(&id).await?;
    Ok(ok(StatusCode::OK, &GrantView::from(&g)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    /// The scopes the user may delegate in this workspace (replaces what they had).
    pub permissions: Vec<String>,
}

#[utoipa::path(get, path = p::MEMBERS, tag = "members", responses((status = 200, body = MemberList)))]
pub async fn list_members<S: Store>(State(cx): State<Cx<S>>, who: Principal) -> ApiResult {
    who.require("members:manage")?;
    let (_, ms) = cx.admin().list_members(who.workspace.slug.as_str()).await?;
    Ok(ok(
        StatusCode::OK,
        &MemberList { members: ms.iter().map(|(u, m)| MemberView::from((u, m))).collect() },
    ))
}

#[utoipa::path(put, path = p::MEMBER, tag = "members", params(("email" = String, Path, description = "An existing user's email")),
    request_body = PutMember,
    responses((status = 200, body = MemberView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn put_member<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(email): Path<String>,
    JsonBody(b): JsonBody<PutMember>,
) -> ApiResult {
    who.require("members:manage")?;
    let (_, user, m, _) =
        cx.admin().add_member(who.workspace.slug.as_str(), &email, &b.permissions.join(" ")).await?;
    Ok(ok(StatusCode::OK, &MemberView::from((&user, &m))))
}

#[utoipa::path(delete, path = p::MEMBER, tag = "members", params(("email" = String, Path, description = "The member's email")),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn remove_member<S: Store>(
    State(cx): State<Cx<S>>,
    who: Principal,
    Path(email): Path<String>,
) -> ApiResult {
    who.require("members:manage")?;
    cx.admin().remove_member(who.workspace.slug.as_str(), &email).await?;
    Ok(no_content())
}
