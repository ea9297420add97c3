//! The MCP endpoint over raw JSON-RPC (streamable HTTP, stateless): discovery from the 401,
//! tools filtered by scope, a call beyond the scopes refused with the 403 step-up challenge,
//! tool errors, revocation. The happy path through the official MCP SDK is in `interop/`.

use crate::support::{browser, json, s, tokens_for_resource, world};
use portcullis_testkit::{TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(mcp_tools_follow_the_credentials_scopes, mcp_with_oauth_tokens);

async fn rpc(app: &TestApp, cred: Option<&str>, method: &str, params: Value) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
    if let Some(c) = cred {
        r = r.bearer_auth(c);
    }
    r.send().await.unwrap()
}

fn init_params() -> Value {
    json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}})
}

async fn call(app: &TestApp, cred: &str, tool: &str, args: Value) -> reqwest::Response {
    rpc(app, Some(cred), "tools/call", json!({"name": tool, "arguments": args})).await
}

async fn tool_names(app: &TestApp, cred: &str) -> Vec<String> {
    let r = rpc(app, Some(cred), "tools/list", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json(r).await;
    let mut names: Vec<String> = v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| s(t, "name"))
        .collect();
    names.sort();
    names
}

async fn mcp_tools_follow_the_credentials_scopes(app: TestApp) {
    world(&app).await;
    // Discovery from the 401.
    let r = rpc(&app, None, "initialize", init_params()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let rm = app.url("/.well-known/oauth-protected-resource/mcp");
    assert!(c.contains(&format!(r#"resource_metadata="{rm}""#)), "{c}");
    let prm: Value = reqwest::get(&rm).await.unwrap().json().await.unwrap();
    assert_eq!(prm["resource"], app.url("/mcp"));
    assert_eq!(prm["authorization_servers"], json!([app.base]));

    let key = app.api_key("acme", "contacts:read messages:write").await;
    let r = rpc(&app, Some(&key), "initialize", init_params()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json(r).await;
    assert!(v["result"]["capabilities"]["tools"].is_object(), "{v}");
    assert_eq!(tool_names(&app, &key).await, ["get_contact", "list_contacts", "send_message"]);

    // Within scope.
    let v = json(call(&app, &key, "list_contacts", json!({"limit": 10})).await).await;
    assert_eq!(v["result"]["structuredContent"]["contacts"], json!([]), "{v}");
    // Beyond scope: HTTP 403 with the challenge naming the tool's scope; nothing written.
    let r = call(&app, &key, "create_contact", json!({"name": "Eve"})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        c.starts_with(r#"Bearer error="insufficient_scope""#) && c.contains(r#"scope="contacts:write""#),
        "{c}"
    );
    assert!(c.contains(&format!(r#"resource_metadata="{rm}""#)), "{c}");
    let writer = app.api_key("acme", "contacts:read contacts:write").await;
    let v = json(call(&app, &writer, "list_contacts", json!({})).await).await;
    assert_eq!(v["result"]["structuredContent"]["contacts"], json!([]));
    // A tool error is a result with isError, not a transport error.
    let v = json(call(&app, &writer, "create_contact", json!({"name": "Eve", "phone": "12"})).await).await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(v["result"]["content"][0]["text"].as_str().unwrap().contains("E.164"));
    let v = json(call(&app, &writer, "create_contact", json!({"name": "Eve", "colour": "red"})).await).await;
    assert_eq!(v["result"]["isError"], true, "unknown arguments are refused: {v}");
    let v =
        json(call(&app, &writer, "create_contact", json!({"name": "Eve", "phone": "+14155550123"})).await)
            .await;
    let id = v["result"]["structuredContent"]["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned();
    let v = json(call(&app, &key, "get_contact", json!({"id": id})).await).await;
    assert_eq!(v["result"]["structuredContent"]["phone"], "+14155550123");
    let v = json(call(&app, &key, "send_message", json!({"contact_id": id, "body": "hi"})).await).await;
    assert_eq!(v["result"]["structuredContent"]["status"], "queued", "{v}");
    // Unknown tools are a JSON-RPC error.
    let v = json(call(&app, &key, "drop_tables", json!({})).await).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("unknown tool"), "{v}");
    // Another workspace's key sees none of it.
    app.create_workspace("globex").await;
    let other = app.api_key("globex", "contacts:read").await;
    let v = json(call(&app, &other, "get_contact", json!({"id": id})).await).await;
    assert_eq!(v["result"]["isError"], true);
}

async fn mcp_with_oauth_tokens(app: TestApp) {
    let w = world(&app).await;
    let t = tokens_for_resource(&app, &w, &browser(), "contacts:read", &app.url("/mcp")).await;
    let at = s(&t, "access_token");
    assert_eq!(tool_names(&app, &at).await, ["get_contact", "list_contacts"]);
    assert_eq!(call(&app, &at, "create_contact", json!({"name": "X"})).await.status(), StatusCode::FORBIDDEN);
    let grant = crate::support::claims(&at)["grant_id"].as_str().unwrap().to_owned();
    app.revoke_grant(&grant).await;
    let r = rpc(&app, Some(&at), "tools/list", json!({})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));
}
