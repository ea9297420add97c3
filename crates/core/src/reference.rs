//! The built-in reference API: a small messaging CRM (contacts, messages, broadcasts, flows) so a
//! fresh install has a protected API to call, and the guard, the MCP endpoint and the tests have
//! something real to protect. Every operation acts in one workspace (the caller's); nothing here
//! knows about credentials: the HTTP and MCP adapters check scopes before calling in.
//!
//! Documents are validated here and stored as JSON per workspace and kind
//! ([`portcullis_store::DocumentStore`]); ids are time-ordered so lists page by id.

use crate::admin::AdminError;
use crate::rfc3339;
use portcullis_domain::{Clock, Email, WorkspaceId};
use portcullis_store::{Document, Store, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub const CONTACT: &str = "contact";
pub const MESSAGE: &str = "message";
pub const BROADCAST: &str = "broadcast";
pub const FLOW: &str = "flow";
pub const FLOW_RUN: &str = "flow_run";

/// The most items one list call returns.
pub const MAX_PAGE: i64 = 100;
const MAX_BODY_CHARS: usize = 4096;
/// Channels a message or broadcast can go out on.
pub const CHANNELS: &[&str] = &["sms", "whatsapp", "email"];

fn id_prefix(kind: &str) -> &'static str {
    match kind {
        CONTACT => "ctc_",
        MESSAGE => "msg_",
        BROADCAST => "bc_",
        FLOW => "flw_",
        _ => "run_",
    }
}

/// A new contact. `email` and `phone` are personal data: readable only with `contacts:read`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A partial update of a contact: absent fields stay, `null` clears `email`/`phone`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "some")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    pub phone: Option<Option<String>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Tells an explicit `null` (Some(None)) from an absent field (None).
fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    pub contact_id: String,
    pub body: String,
    /// `sms` (default), `whatsapp` or `email`.
    #[serde(default)]
    pub channel: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastInput {
    pub name: String,
    pub body: String,
    #[serde(default)]
    pub channel: Option<String>,
    /// Only contacts with this tag (all contacts when absent).
    #[serde(default)]
    pub tag: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The flow's steps, in order (1–50 short descriptions).
    pub steps: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunInput {
    /// The contact the flow runs for, if any.
    #[serde(default)]
    pub contact_id: Option<String>,
    /// Variables for the run (a JSON object of at most 16 KiB).
    #[serde(default)]
    pub input: Option<Map<String, Value>>,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    /// Pass as `after` to get the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// The reference API acting in one workspace.
pub struct ReferenceApi<'a, S> {
    store: &'a S,
    clock: &'a Arc<dyn Clock>,
    ws: &'a WorkspaceId,
}

fn invalid(msg: impl Into<String>) -> AdminError {
    AdminError::Invalid(msg.into())
}

fn text(field: &str, v: &str, max: usize) -> Result<String, AdminError> {
    let t = v.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(format!("{field} must be 1-{max} characters without control characters")));
    }
    Ok(t.to_owned())
}

fn email(v: &str) -> Result<String, AdminError> {
    Email::parse(v).map(|e| e.as_str().to_owned()).map_err(|e| invalid(e.0))
}

/// E.164: a `+`, then 8 to 15 digits, the first not 0.
fn phone(v: &str) -> Result<String, AdminError> {
    let digits = v.trim().strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    ok.then(|| format!("+{digits}"))
        .ok_or_else(|| invalid(format!("phone {v:?} must be in E.164 form, like +14155550123")))
}

fn tags(v: &[String]) -> Result<Vec<String>, AdminError> {
    if v.len() > 20 {
        return Err(invalid("at most 20 tags"));
    }
    let mut out: Vec<String> = v.iter().map(|t| text("a tag", t, 50)).collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn channel(v: Option<&str>) -> Result<&'static str, AdminError> {
    let v = v.unwrap_or("sms");
    CHANNELS
        .iter()
        .find(|c| **c == v)
        .copied()
        .ok_or_else(|| invalid(format!("channel must be one of {}", CHANNELS.join(", "))))
}

impl<'a, S: Store> ReferenceApi<'a, S> {
    pub fn new(store: &'a S, clock: &'a Arc<dyn Clock>, ws: &'a WorkspaceId) -> Self {
        Self { store, clock, ws }
    }

    /// Lists `kind` after the cursor `after`, `limit` items (1–100, default 50).
    pub async fn list(
        &self,
        kind: &'static str,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page, AdminError> {
        let limit = limit.unwrap_or(50);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(invalid(format!("limit must be 1-{MAX_PAGE}")));
        }
        let mut docs = self.store.list_documents(self.ws, kind, after, limit + 1).await?;
        let more = docs.len() as i64 > limit;
        docs.truncate(limit as usize);
        let next_cursor = more.then(|| docs.last().map(|d| d.id.clone())).flatten();
        Ok(Page { items: docs.into_iter().map(|d| d.body).collect(), next_cursor })
    }

    pub async fn get(&self, kind: &'static str, id: &str) -> Result<Value, AdminError> {
        Ok(self.load(kind, id).await?.body)
    }

    async fn load(&self, kind: &'static str, id: &str) -> Result<Document, AdminError> {
        self.store
            .document(self.ws, kind, id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("{} {id:?} does not exist", kind.replace('_', " "))))
    }

    async fn insert(&self, kind: &'static str, mut body: Map<String, Value>) -> Result<Value, AdminError> {
        let now = self.clock.now();
        let id = format!("{}{}", id_prefix(kind), uuid_v7());
        body.insert("id".into(), json!(id));
        body.insert("created_at".into(), json!(rfc3339(now)));
        body.insert("updated_at".into(), json!(rfc3339(now)));
        let d = Document {
            workspace_id: self.ws.clone(),
            kind: kind.into(),
            id,
            body: Value::Object(body),
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_document(&d).await {
            Ok(()) => Ok(d.body),
            Err(StoreError::Duplicate(_)) => Err(AdminError::Conflict("id collision; retry".into())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn create_contact(&self, c: ContactInput) -> Result<Value, AdminError> {
        let mut body = Map::new();
        body.insert("name".into(), json!(text("name", &c.name, 200)?));
        body.insert("email".into(), json!(c.email.as_deref().map(email).transpose()?));
        body.insert("phone".into(), json!(c.phone.as_deref().map(phone).transpose()?));
        body.insert("tags".into(), json!(tags(&c.tags)?));
        self.insert(CONTACT, body).await
    }

    pub async fn update_contact(&self, id: &str, p: ContactPatch) -> Result<Value, AdminError> {
        let mut d = self.load(CONTACT, id).await?;
        let Value::Object(body) = &mut d.body else {
            return Err(AdminError::Internal("contact is not an object".into()));
        };
        if let Some(n) = &p.name {
            body.insert("name".into(), json!(text("name", n, 200)?));
        }
        if let Some(e) = &p.email {
            body.insert("email".into(), json!(e.as_deref().map(email).transpose()?));
        }
        if let Some(ph) = &p.phone {
            body.insert("phone".into(), json!(ph.as_deref().map(phone).transpose()?));
        }
        if let Some(t) = &p.tags {
            body.insert("tags".into(), json!(tags(t)?));
        }
        let now = self.clock.now();
        body.insert("updated_at".into(), json!(rfc3339(now)));
        d.updated_at = now;
        if !self.store.update_document(&d).await? {
            return Err(AdminError::NotFound(format!("contact {id:?} does not exist")));
        }
        Ok(d.body)
    }

    pub async fn delete_contact(&self, id: &str) -> Result<(), AdminError> {
        if !self.store.delete_document(self.ws, CONTACT, id).await? {
            return Err(AdminError::NotFound(format!("contact {id:?} does not exist")));
        }
        Ok(())
    }

    /// Queues a message to a contact, on a channel the contact can be reached on.
    pub async fn send_message(&self, m: MessageInput) -> Result<Value, AdminError> {
        let body_text = text("body", &m.body, MAX_BODY_CHARS)?;
        let ch = channel(m.channel.as_deref())?;
        let contact = self.load(CONTACT, &m.contact_id).await.map_err(|e| match e {
            AdminError::NotFound(_) => invalid(format!("contact {:?} does not exist", m.contact_id)),
            e => e,
        })?;
        let address_field = if ch == "email" { "email" } else { "phone" };
        let to = contact.body.get(address_field).and_then(Value::as_str).map(str::to_owned);
        let Some(to) = to else {
            return Err(invalid(format!("the contact has no {address_field} to send {ch} to")));
        };
        let mut body = Map::new();
        body.insert("contact_id".into(), json!(contact.id));
        body.insert("channel".into(), json!(ch));
        body.insert("to".into(), json!(to));
        body.insert("body".into(), json!(body_text));
        body.insert("direction".into(), json!("outbound"));
        body.insert("status".into(), json!("queued"));
        self.insert(MESSAGE, body).await
    }

    /// Schedules a broadcast to every contact (with `tag`, if given).
    pub async fn create_broadcast(&self, b: BroadcastInput) -> Result<Value, AdminError> {
        let name = text("name", &b.name, 200)?;
        let body_text = text("body", &b.body, MAX_BODY_CHARS)?;
        let ch = channel(b.channel.as_deref())?;
        let tag = b.tag.as_deref().map(|t| text("tag", t, 50)).transpose()?;
        let recipients = match &tag {
            None => self.store.count_documents(self.ws, CONTACT).await?,
            Some(t) => self.count_tagged(t).await?,
        };
        let mut body = Map::new();
        body.insert("name".into(), json!(name));
        body.insert("body".into(), json!(body_text));
        body.insert("channel".into(), json!(ch));
        body.insert("tag".into(), json!(tag));
        body.insert("recipients".into(), json!(recipients));
        body.insert("status".into(), json!("scheduled"));
        self.insert(BROADCAST, body).await
    }

    async fn count_tagged(&self, tag: &str) -> Result<i64, AdminError> {
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let docs = self.store.list_documents(self.ws, CONTACT, after.as_deref(), 500).await?;
            let Some(last) = docs.last() else { break };
            after = Some(last.id.clone());
            n += docs
                .iter()
                .filter(|d| {
                    d.body.get("tags").and_then(Value::as_array).is_some_and(|t| t.iter().any(|x| x == tag))
                })
                .count() as i64;
        }
        Ok(n)
    }

    pub async fn create_flow(&self, f: FlowInput) -> Result<Value, AdminError> {
        if f.steps.is_empty() || f.steps.len() > 50 {
            return Err(invalid("a flow has 1-50 steps"));
        }
        let steps: Vec<String> = f.steps.iter().map(|s| text("a step", s, 200)).collect::<Result<_, _>>()?;
        let mut body = Map::new();
        body.insert("name".into(), json!(text("name", &f.name, 200)?));
        body.insert(
            "description".into(),
            json!(f.description.as_deref().map(|d| text("description", d, 1000)).transpose()?),
        );
        body.insert("steps".into(), json!(steps));
        self.insert(FLOW, body).await
    }

    /// Runs a flow (for a contact, with variables) and records the run.
    pub async fn execute_flow(&self, flow_id: &str, r: FlowRunInput) -> Result<Value, AdminError> {
        let flow = self.load(FLOW, flow_id).await?;
        if let Some(c) = &r.contact_id {
            self.load(CONTACT, c).await.map_err(|e| match e {
                AdminError::NotFound(_) => invalid(format!("contact {c:?} does not exist")),
                e => e,
            })?;
        }
        let input = Value::Object(r.input.unwrap_or_default());
        if input.to_string().len() > 16 * 1024 {
            return Err(invalid("input must be at most 16 KiB of JSON"));
        }
        let steps = flow.body.get("steps").and_then(Value::as_array).map_or(0, Vec::len);
        let mut body = Map::new();
        body.insert("flow_id".into(), json!(flow.id));
        body.insert("contact_id".into(), json!(r.contact_id));
        body.insert("input".into(), input);
        body.insert("steps_completed".into(), json!(steps));
        body.insert("status".into(), json!("completed"));
        self.insert(FLOW_RUN, body).await
    }
}

/// A UUIDv7 in simple form (time-ordered ids list in creation order).
fn uuid_v7() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
