//! The audit entry of every call through the guard, allowed or refused.
//!
//! [`CallRecorder`] captures what the request says (method, route template, path, redacted
//! query and JSON body, request id, caller address) when it arrives, and turns it into one
//! [`AuditRecord`] when the response is ready. Handlers further in add what only they know
//! through the [`AuditNote`] request extension: the MCP tool called, whether personal data was
//! returned, the verified principal (when authentication happens in an extractor, as on the
//! admin API).

use crate::principal::Principal;
use crate::rejection::Rejection;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{Request, header};
use portcullis_core::Cx;
use portcullis_store::{AuditRecord, Store};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// What handlers tell the audit entry of the call they serve (a request extension).
#[derive(Clone, Debug, Default)]
pub struct AuditNote(Arc<Mutex<Note>>);

#[derive(Debug, Default)]
struct Note {
    tool: Option<String>,
    pii: Option<bool>,
    principal: Option<Principal>,
    error: Option<String>,
}

impl AuditNote {
    fn with<R>(&self, f: impl FnOnce(&mut Note) -> R) -> R {
        f(&mut self.0.lock().expect("audit note lock"))
    }

    /// The MCP tool this call invoked.
    pub fn set_tool(&self, tool: &str) {
        self.with(|n| n.tool = Some(tool.to_owned()));
    }

    /// Whether this call returned personal data (overrides the route's default).
    pub fn set_pii(&self, pii: bool) {
        self.with(|n| n.pii = Some(pii));
    }

    /// The verified caller, when authentication happened further in.
    pub fn set_principal(&self, p: &Principal) {
        self.with(|n| n.principal = Some(p.clone()));
    }

    /// The error code the call was refused or failed with.
    pub fn set_error(&self, code: &str) {
        self.with(|n| n.error = Some(code.to_owned()));
    }
}

/// The error code a rejection is recorded with.
pub fn rejection_code(r: &Rejection) -> &'static str {
    match r {
        Rejection::Missing => "missing_credential",
        Rejection::InvalidToken(_) => "invalid_token",
        Rejection::IpNotAllowed(_) => "ip_not_allowed",
        Rejection::InsufficientScope(_) => "insufficient_scope",
        Rejection::RateLimited(_) => "rate_limited",
        Rejection::InvalidDpopProof(_) => "invalid_dpop_proof",
        Rejection::UseDpopNonce => "use_dpop_nonce",
        Rejection::Internal => "server_error",
    }
}

/// One call in flight.
pub struct CallRecorder {
    record: AuditRecord,
    params: Map<String, Value>,
    pii: bool,
    note: AuditNote,
    started: std::time::Instant,
}

impl CallRecorder {
    /// Starts recording `req` as `event`; inserts the [`AuditNote`] into its extensions.
    #[allow(clippy::disallowed_methods, reason = "a duration, not a business time: monotonic clock")]
    pub fn start<S: Store>(cx: &Cx<S>, req: &mut Request<Body>, event: &str, ip: IpAddr, pii: bool) -> Self {
        let mut record = AuditRecord::new(event, cx.now());
        record.ip = Some(ip);
        record.method = Some(req.method().as_str().to_owned());
        record.path = Some(req.uri().path().to_owned());
        record.route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
        record.request_id =
            req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut params = Map::new();
        if let Some(q) = req.uri().query().filter(|q| !q.is_empty()) {
            params.insert("query".into(), Value::Object(cx.audit.redactor.query(q)));
        }
        let note = AuditNote::default();
        req.extensions_mut().insert(note.clone());
        Self { record, params, pii, note, started: std::time::Instant::now() }
    }

    /// Records the credential that authenticated the call.
    pub fn principal(&mut self, p: &Principal) {
        let r = &mut self.record;
        r.workspace_id = Some(p.workspace_id.clone());
        r.credential_kind = Some(p.kind.as_str().to_owned());
        r.credential_id = Some(p.credential_id.clone());
        r.user_id = p.user_id.as_ref().map(|u| u.to_string());
        r.client_id = p.client_id.clone();
        r.ip = Some(p.ip);
    }

    /// Reads a JSON body of known length up to the configured limit, records it redacted and
    /// puts it back; other bodies are recorded by size and type only. `Err` if the body could
    /// not be read (the client sent less than it announced).
    pub async fn body<S: Store>(
        &mut self,
        cx: &Cx<S>,
        req: Request<Body>,
    ) -> Result<Request<Body>, Request<Body>> {
        let headers = req.headers();
        let len = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let Some(len) = len.filter(|l| *l > 0) else {
            return Ok(req);
        };
        if !ctype.contains("json") || len > cx.audit.settings.body_limit {
            self.params.insert("body".into(), serde_json::json!({ "bytes": len, "type": ctype }));
            return Ok(req);
        }
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, len).await else {
            return Err(Request::from_parts(parts, Body::empty()));
        };
        let value = match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut v) => {
                cx.audit.redactor.redact(&mut v);
                v
            }
            Err(_) => serde_json::json!({ "bytes": len, "type": ctype, "valid_json": false }),
        };
        self.params.insert("body".into(), value);
        Ok(Request::from_parts(parts, Body::from(bytes)))
    }

    /// Finishes the record with the response status and an error code, and hands it to the
    /// audit appender.
    pub async fn finish<S: Store>(mut self, cx: &Cx<S>, status: u16, error: Option<&str>) {
        let note = std::mem::take(&mut *self.note.0.lock().expect("audit note lock"));
        if let Some(p) = &note.principal {
            self.principal(p);
        }
        let r = &mut self.record;
        r.status = Some(status);
        r.error = error.map(str::to_owned).or(note.error);
        r.tool = note.tool;
        r.pii_access = note.pii.unwrap_or(self.pii);
        r.duration_us = Some(self.started.elapsed().as_micros() as i64);
        r.params = Value::Object(self.params).to_string();
        cx.audit.record_call(self.record).await;
    }
}
