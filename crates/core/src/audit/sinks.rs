//! Webhook sinks: a workspace's audit entries streamed to a SIEM.
//!
//! The log itself is the durable outbox: each sink keeps a cursor (the next position to deliver)
//! in the database, and the delivery worker sends the entries after it in batches, advancing the
//! cursor only after a 2xx. Delivery is therefore at-least-once; a batch resent after a failure
//! carries the same `webhook-id` and the same entry ids, so receivers can drop duplicates.
//! Requests follow Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA-256 of "id.timestamp.body">` under the sink's
//! `whsec_…` secret. Failures back off exponentially (with jitter) per sink; the worker runs apart
//! from the request path, so a sink that is down never slows the guard. One replica delivers to a
//! sink at a time (a lease in the database).

use super::search::entry_json;
use crate::Cx;
use crate::admin::AdminError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use portcullis_domain::{AuditSinkId, WorkspaceId};
use portcullis_store::{AuditSink, SinkLease, Store};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::time::Duration as StdDuration;
use time::Duration;

/// Entries per webhook request.
pub const BATCH: i64 = 500;
/// The longest wait between attempts to a failing sink.
pub const MAX_BACKOFF: StdDuration = StdDuration::from_secs(300);
const LEASE: Duration = Duration::seconds(60);

fn aad(id: &AuditSinkId) -> String {
    format!("audit_sink:{id}")
}

/// Checks a sink URL: https, or http to a loopback address (a receiver on the same host).
pub fn check_url(url: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(url).map_err(|e| format!("the sink URL is invalid: {e}"))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        _ => Err("the sink URL must be https (http only to a loopback address)".into()),
    }
}

/// Adds a sink for `workspace`; returns it and its signing secret (shown once).
pub async fn add<S: Store>(
    cx: &Cx<S>,
    workspace: &WorkspaceId,
    url: &str,
    from_start: bool,
) -> Result<(AuditSink, String), AdminError> {
    check_url(url).map_err(AdminError::Invalid)?;
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| AdminError::Invalid("no randomness".into()))?;
    let secret = format!("whsec_{}", B64.encode(raw));
    let id = AuditSinkId::generate();
    let cursor =
        if from_start { 0 } else { cx.store.audit_head(workspace.as_str()).await?.map_or(0, |h| h.size) };
    let sink = AuditSink {
        secret_sealed: cx.sealer.seal(secret.as_bytes(), &aad(&id)).into_bytes(),
        id,
        workspace_id: workspace.clone(),
        url: url.to_owned(),
        cursor,
        created_at: cx.now(),
        disabled_at: None,
        failures: 0,
        last_error: None,
        last_delivery_at: None,
    };
    cx.store.insert_audit_sink(&sink).await?;
    let mut r = crate::events::entry("audit_sink.created", cx.now(), Some(workspace));
    r.subject = Some(sink.id.to_string());
    r.params = json!({ "url": url, "from_start": from_start }).to_string();
    crate::events::write(cx.events(), r).await?;
    Ok((sink, secret))
}

/// The JSON view of a sink (never its secret).
pub fn view(s: &AuditSink) -> Value {
    json!({
        "id": s.id.as_str(),
        "workspace_id": s.workspace_id.as_str(),
        "url": s.url,
        "cursor": s.cursor,
        "created_at": crate::rfc3339(s.created_at),
        "disabled_at": s.disabled_at.map(crate::rfc3339),
        "failures": s.failures,
        "last_error": s.last_error,
        "last_delivery_at": s.last_delivery_at.map(crate::rfc3339),
    })
}

/// The Standard Webhooks signature header value of `body`.
pub fn signature(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = B64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "the sink secret is not base64".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// Backoff state of the sinks this worker delivers to.
#[derive(Default)]
struct Backoff {
    /// Monotonic: retry pacing is operational timing, not a business time.
    next_attempt: HashMap<AuditSinkId, tokio::time::Instant>,
}

fn jittered(base: StdDuration, failures: i32) -> StdDuration {
    let exp = base.saturating_mul(1u32 << failures.clamp(0, 16)).min(MAX_BACKOFF);
    let mut r = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut r);
    // 50%–150% of the exponential step ("equal jitter").
    exp.mul_f64(0.5 + f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX))
}

/// Delivers to every live sink, forever, polling every `poll`.
pub fn spawn_delivery<S: Store>(
    cx: Cx<S>,
    poll: StdDuration,
    retry_base: StdDuration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(StdDuration::from_secs(10))
            .build()
            .expect("the webhook client builds");
        let holder = uuid::Uuid::new_v4().to_string();
        let mut backoff = Backoff::default();
        let mut every = tokio::time::interval(poll);
        loop {
            every.tick().await;
            if let Err(e) = deliver_once(&cx, &client, &holder, &mut backoff, retry_base).await {
                tracing::error!(error = %e, "audit sink delivery failed");
            }
        }
    })
}

async fn deliver_once<S: Store>(
    cx: &Cx<S>,
    client: &reqwest::Client,
    holder: &str,
    backoff: &mut Backoff,
    retry_base: StdDuration,
) -> Result<(), String> {
    let e = |e: portcullis_store::StoreError| e.to_string();
    for sink in cx.store.list_audit_sinks(None).await.map_err(e)? {
        let now = cx.now();
        if sink.disabled_at.is_some()
            || backoff.next_attempt.get(&sink.id).is_some_and(|t| *t > tokio::time::Instant::now())
        {
            continue;
        }
        let head = cx.store.audit_head(sink.workspace_id.as_str()).await.map_err(e)?;
        if head.is_none_or(|h| h.size <= sink.cursor) {
            continue;
        }
        if cx.store.lease_audit_sink(&sink.id, holder, now, now + LEASE).await.map_err(e)? != SinkLease::Taken
        {
            continue;
        }
        // Drain what is pending now, batch by batch, while the receiver accepts.
        let mut cursor = sink.cursor;
        let mut failures = sink.failures;
        loop {
            let entries =
                cx.store.audit_entries(sink.workspace_id.as_str(), cursor, BATCH).await.map_err(e)?;
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else { break };
            match post(
                cx,
                client,
                &sink,
                &entries.iter().map(entry_json).collect::<Vec<_>>(),
                first.seq,
                last.seq,
            )
            .await
            {
                Ok(()) => {
                    cursor = last.seq + 1;
                    failures = 0;
                    cx.store.record_sink_delivery(&sink.id, Some(cursor), None, cx.now()).await.map_err(e)?;
                    backoff.next_attempt.remove(&sink.id);
                }
                Err(why) => {
                    failures += 1;
                    tracing::warn!(sink = %sink.id, error = %why, failures, "audit webhook delivery failed; will retry");
                    cx.store.record_sink_delivery(&sink.id, None, Some(&why), cx.now()).await.map_err(e)?;
                    let wait = jittered(retry_base, failures - 1);
                    backoff.next_attempt.insert(sink.id.clone(), tokio::time::Instant::now() + wait);
                    break;
                }
            }
            if (entries.len() as i64) < BATCH {
                break;
            }
        }
    }
    Ok(())
}

async fn post<S: Store>(
    cx: &Cx<S>,
    client: &reqwest::Client,
    sink: &AuditSink,
    entries: &[Value],
    first: i64,
    last: i64,
) -> Result<(), String> {
    let sealed = String::from_utf8(sink.secret_sealed.clone()).map_err(|_| "the sink secret is corrupt")?;
    let secret = String::from_utf8(cx.sealer.open(&sealed, &aad(&sink.id))?)
        .map_err(|_| "the sink secret is corrupt")?;
    let now = cx.now();
    // The same batch always has the same id, so a receiver can tell a redelivery.
    let msg_id = format!("msg_{}_{first}_{last}", sink.id);
    let body = serde_json::to_vec(&json!({
        "type": "audit.entries",
        "timestamp": crate::rfc3339(now),
        "data": { "sink_id": sink.id.as_str(), "workspace_id": sink.workspace_id.as_str(), "entries": entries },
    }))
    .map_err(|e| e.to_string())?;
    let ts = now.unix_timestamp();
    let resp = client
        .post(&sink.url)
        .header("content-type", "application/json")
        .header("webhook-id", &msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature(&secret, &msg_id, ts, &body)?)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {}: {e}", sink.url))?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", resp.status().as_u16())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn sink_urls_are_https_or_loopback() {
        assert!(check_url("https://siem.example/hook").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://siem.example/hook").is_err());
        assert!(check_url("ftp://x").is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = StdDuration::from_secs(1);
        assert!(jittered(base, 0) <= StdDuration::from_millis(1500));
        assert!(jittered(base, 3) >= StdDuration::from_secs(4));
        assert!(jittered(base, 30) <= MAX_BACKOFF.mul_f64(1.5));
    }
}
