//! The MCP endpoint (`/mcp`, streamable HTTP transport via `rmcp`): the reference API's
//! operations as MCP tools, behind the same guard.
//!
//! - The guard authenticates every request to `/mcp` for the MCP resource (its own RFC 9728
//!   metadata at `/.well-known/oauth-protected-resource/mcp`, so an MCP client finds our
//!   authorization server from the 401).
//! - `tools/list` shows only the tools the credential's scopes allow.
//! - A `tools/call` beyond the credential's scopes is refused **at the HTTP layer** with
//!   403 `insufficient_scope` naming the tool's scope — the challenge MCP clients answer by
//!   stepping up authorization — before rmcp sees it. The handler checks again (defence in depth).
//! - Stateless (no MCP sessions, JSON responses), so any replica can answer any request.

use crate::api::problem::Problem;
use crate::paths;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use portcullis_core::Cx;
use portcullis_core::admin::AdminError;
use portcullis_core::reference::{self as r, ReferenceApi};
use portcullis_guard::audit::AuditNote;
use portcullis_guard::{Guard, Principal, Rejection, Resource};
use portcullis_store::Store;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Largest MCP request body read for the scope check (rmcp's own limit is the same).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// One tool: its name, the scope it needs, what it does and its input schema.
struct ToolDef {
    name: &'static str,
    scope: &'static str,
    description: &'static str,
    schema: fn() -> Value,
}

fn object(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn page_schema() -> Value {
    object(
        json!({
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "items per page (default 50)"},
            "after": {"type": "string", "description": "next_cursor of the previous page"},
        }),
        &[],
    )
}

fn id_schema() -> Value {
    object(json!({"id": {"type": "string"}}), &["id"])
}

fn contact_schema() -> Value {
    object(
        json!({
            "name": {"type": "string"},
            "email": {"type": ["string", "null"], "format": "email"},
            "phone": {"type": ["string", "null"], "description": "E.164, like +14155550123"},
            "tags": {"type": "array", "items": {"type": "string"}},
        }),
        &["name"],
    )
}

fn contact_update_schema() -> Value {
    object(
        json!({
            "id": {"type": "string"},
            "name": {"type": "string"},
            "email": {"type": ["string", "null"]},
            "phone": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        }),
        &["id"],
    )
}

fn message_schema() -> Value {
    object(
        json!({
            "contact_id": {"type": "string"},
            "body": {"type": "string"},
            "channel": {"type": "string", "enum": r::CHANNELS},
        }),
        &["contact_id", "body"],
    )
}

fn broadcast_schema() -> Value {
    object(
        json!({
            "name": {"type": "string"},
            "body": {"type": "string"},
            "channel": {"type": "string", "enum": r::CHANNELS},
            "tag": {"type": "string", "description": "only contacts with this tag"},
        }),
        &["name", "body"],
    )
}

fn flow_schema() -> Value {
    object(
        json!({
            "name": {"type": "string"},
            "description": {"type": "string"},
            "steps": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 50},
        }),
        &["name", "steps"],
    )
}

fn flow_run_schema() -> Value {
    object(
        json!({
            "flow_id": {"type": "string"},
            "contact_id": {"type": "string"},
            "input": {"type": "object"},
        }),
        &["flow_id"],
    )
}

/// Every tool, with the same scope as its reference API route.
const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "list_contacts",
        scope: "contacts:read",
        description: "List contacts (with email and phone)",
        schema: page_schema,
    },
    ToolDef {
        name: "get_contact",
        scope: "contacts:read",
        description: "Get one contact by id",
        schema: id_schema,
    },
    ToolDef {
        name: "create_contact",
        scope: "contacts:write",
        description: "Create a contact",
        schema: contact_schema,
    },
    ToolDef {
        name: "update_contact",
        scope: "contacts:write",
        description: "Change a contact; null clears email or phone",
        schema: contact_update_schema,
    },
    ToolDef {
        name: "delete_contact",
        scope: "contacts:delete",
        description: "Delete a contact",
        schema: id_schema,
    },
    ToolDef {
        name: "list_messages",
        scope: "messages:read",
        description: "List messages",
        schema: page_schema,
    },
    ToolDef {
        name: "send_message",
        scope: "messages:write",
        description: "Send a message to a contact (sms, whatsapp or email)",
        schema: message_schema,
    },
    ToolDef {
        name: "list_broadcasts",
        scope: "broadcasts:read",
        description: "List broadcasts",
        schema: page_schema,
    },
    ToolDef {
        name: "create_broadcast",
        scope: "broadcasts:write",
        description: "Schedule a broadcast to all contacts, or those with a tag",
        schema: broadcast_schema,
    },
    ToolDef {
        name: "list_flows",
        scope: "flows:read",
        description: "List automation flows",
        schema: page_schema,
    },
    ToolDef {
        name: "create_flow",
        scope: "flows:write",
        description: "Create an automation flow",
        schema: flow_schema,
    },
    ToolDef {
        name: "execute_flow",
        scope: "flows:execute",
        description: "Run a flow, optionally for a contact",
        schema: flow_run_schema,
    },
];

fn tool(name: &str) -> Option<&'static ToolDef> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The guard of the MCP endpoint: the same budgets and caches as the reference API's, its own
/// resource identifier and metadata. Only tokens for this resource (`aud` = `<issuer>/mcp`, what
/// MCP clients ask for with RFC 8707 `resource`) are accepted: a token for the API is not
/// replayable here, nor the other way round.
pub fn guard<S: Store>(reference: &Guard<S>) -> Guard<S> {
    let issuer = &reference.cx().settings.issuer;
    let identifier = paths::url(issuer, paths::MCP);
    reference.for_resource(Resource {
        identifier: identifier.clone(),
        metadata_url: paths::url(issuer, paths::MCP_PROTECTED_RESOURCE),
        audiences: vec![identifier],
        scopes: crate::REFERENCE_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        name: "Portcullis MCP server".into(),
    })
}

/// `/mcp` behind `guard`, and its RFC 9728 metadata document.
pub fn router<S: Store>(guard: Guard<S>) -> Router<Cx<S>> {
    let cx = guard.cx().clone();
    let mut allowed_hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Ok(u) = url::Url::parse(&cx.settings.issuer)
        && let Some(host) = u.host_str()
    {
        allowed_hosts.push(host.to_owned());
        if let Some(port) = u.port() {
            allowed_hosts.push(format!("{host}:{port}"));
        }
    }
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(allowed_hosts);
    let service = StreamableHttpService::new(
        move || Ok(McpServer { cx: cx.clone() }),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let prm = guard.metadata();
    let check_guard = guard.clone();
    let endpoint = any(move |req: Request| {
        let mut service = service.clone();
        async move {
            use tower::Service;
            match service.call(req).await {
                Ok(r) => r.into_response(),
                Err(never) => match never {},
            }
        }
    })
    .layer::<_, std::convert::Infallible>(axum::middleware::from_fn(move |req: Request, next: Next| {
        tool_scopes(check_guard.clone(), req, next)
    }))
    .layer(guard.audited_as("mcp.request").require(&[]));
    Router::new().route(paths::MCP, endpoint).route(
        paths::MCP_PROTECTED_RESOURCE,
        axum::routing::get(move || async move { crate::routes::meta::public_document(&prm) })
            .layer(crate::public_cors()),
    )
}

/// Refuses a `tools/call` (alone or in a batch) for a tool whose scope the credential lacks,
/// with the 403 challenge naming that scope.
async fn tool_scopes<S: Store>(guard: Guard<S>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is too large",
        )
        .into_response();
    };
    if let (Some(p), Ok(v)) = (parts.extensions.get::<Principal>(), serde_json::from_slice::<Value>(&bytes)) {
        let messages = match &v {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        let mut missing: Vec<String> = Vec::new();
        let note = parts.extensions.get::<AuditNote>();
        let mut called: Vec<&str> = Vec::new();
        for m in messages {
            if m.get("method").and_then(Value::as_str) != Some("tools/call") {
                continue;
            }
            let name = m.pointer("/params/name").and_then(Value::as_str).unwrap_or_default();
            called.push(name);
            if let (Some(note), Some(t)) = (note, tool(name))
                && t.scope.starts_with("contacts:")
            {
                note.set_pii(true);
            }
            if let Some(t) = tool(name)
                && !p.has(t.scope)
                && !missing.iter().any(|s| s == t.scope)
            {
                missing.push(t.scope.to_owned());
            }
        }
        if let Some(note) = note
            && !called.is_empty()
        {
            note.set_tool(&called.join(","));
        }
        if !missing.is_empty() {
            if let Some(note) = note {
                note.set_error("insufficient_scope");
            }
            return guard.reject(Rejection::InsufficientScope(missing));
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The MCP server handler: one per request (stateless).
#[derive(Clone)]
struct McpServer<S> {
    cx: Cx<S>,
}

fn principal(ctx: &RequestContext<RoleServer>) -> Option<Principal> {
    ctx.extensions.get::<axum::http::request::Parts>()?.extensions.get::<Principal>().cloned()
}

fn args<T: serde::de::DeserializeOwned>(a: Value) -> Result<T, String> {
    serde_json::from_value(a).map_err(|e| format!("invalid arguments: {e}"))
}

fn take_id(a: &mut Map<String, Value>, field: &str) -> Result<String, String> {
    match a.remove(field) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(format!("invalid arguments: {field} is required")),
    }
}

impl<S: Store> McpServer<S> {
    async fn run(
        &self,
        p: &Principal,
        name: &str,
        mut a: Map<String, Value>,
    ) -> Result<Result<Value, String>, ErrorData> {
        let api = ReferenceApi::new(&self.cx.store, &self.cx.clock, &p.workspace_id);
        let page = |a: &Map<String, Value>| -> Result<(Option<String>, Option<i64>), String> {
            let after = a.get("after").and_then(Value::as_str).map(str::to_owned);
            let limit = match a.get("limit") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or("invalid arguments: limit must be an integer")?),
            };
            Ok((after, limit))
        };
        let list = |kind: &'static str, field: &'static str, a: Map<String, Value>| {
            let api = &api;
            async move {
                let (after, limit) = page(&a)?;
                let p = api.list(kind, after.as_deref(), limit).await.map_err(admin_text)?;
                Ok::<Value, String>(json!({ field: p.items, "next_cursor": p.next_cursor }))
            }
        };
        let out: Result<Value, String> = match name {
            "list_contacts" => list(r::CONTACT, "contacts", a).await,
            "list_messages" => list(r::MESSAGE, "messages", a).await,
            "list_broadcasts" => list(r::BROADCAST, "broadcasts", a).await,
            "list_flows" => list(r::FLOW, "flows", a).await,
            "get_contact" => match take_id(&mut a, "id") {
                Ok(id) => api.get(r::CONTACT, &id).await.map_err(admin_text),
                Err(e) => Err(e),
            },
            "create_contact" => match args(Value::Object(a)) {
                Ok(c) => api.create_contact(c).await.map_err(admin_text),
                Err(e) => Err(e),
            },
            "update_contact" => {
                match take_id(&mut a, "id").and_then(|id| Ok((id, args(Value::Object(a))?))) {
                    Ok((id, patch)) => api.update_contact(&id, patch).await.map_err(admin_text),
                    Err(e) => Err(e),
                }
            }
            "delete_contact" => match take_id(&mut a, "id") {
                Ok(id) => api.delete_contact(&id).await.map(|()| json!({"deleted": id})).map_err(admin_text),
                Err(e) => Err(e),
            },
            "send_message" => match args(Value::Object(a)) {
                Ok(m) => api.send_message(m).await.map_err(admin_text),
                Err(e) => Err(e),
            },
            "create_broadcast" => match args(Value::Object(a)) {
                Ok(b) => api.create_broadcast(b).await.map_err(admin_text),
                Err(e) => Err(e),
            },
            "create_flow" => match args(Value::Object(a)) {
                Ok(f) => api.create_flow(f).await.map_err(admin_text),
                Err(e) => Err(e),
            },
            "execute_flow" => {
                match take_id(&mut a, "flow_id").and_then(|id| Ok((id, args(Value::Object(a))?))) {
                    Ok((id, run)) => api.execute_flow(&id, run).await.map_err(admin_text),
                    Err(e) => Err(e),
                }
            }
            other => return Err(ErrorData::invalid_params(format!("unknown tool {other:?}"), None)),
        };
        Ok(out)
    }
}

/// A tool error's text (storage failures are logged, never shown).
fn admin_text(e: AdminError) -> String {
    match e {
        AdminError::Internal(detail) => {
            tracing::error!(error = %detail, "MCP tool failed");
            "internal error".into()
        }
        other => other.to_string(),
    }
}

impl<S: Store> rmcp::ServerHandler for McpServer<S> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("portcullis", env!("CARGO_PKG_VERSION")))
            .with_instructions("Tools of the workspace your credential belongs to; each needs its scope.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let p = principal(&ctx).ok_or_else(|| ErrorData::internal_error("no principal", None))?;
        let tools = TOOLS
            .iter()
            .filter(|t| p.has(t.scope))
            .map(|t| {
                let Value::Object(schema) = (t.schema)() else { unreachable!("schemas are objects") };
                Tool::new(t.name, t.description, schema)
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let p = principal(&ctx).ok_or_else(|| ErrorData::internal_error("no principal", None))?;
        let Some(t) = tool(&request.name) else {
            return Err(ErrorData::invalid_params(format!("unknown tool {:?}", request.name), None));
        };
        if !p.has(t.scope) {
            // Unreachable through HTTP (refused with a 403 before rmcp); kept as a second check.
            return Err(ErrorData::invalid_request(format!("this tool needs the scope {}", t.scope), None));
        }
        let result = match self.run(&p, t.name, request.arguments.unwrap_or_default()).await? {
            Ok(v) => CallToolResult::structured(v),
            Err(msg) => CallToolResult::error(vec![ContentBlock::text(msg)]),
        };
        Ok(result.into())
    }
}
