//! What every request and response passes through, in one layer: a request id (`x-request-id`,
//! kept if the caller sent one, echoed on the response), the request span that puts method, path
//! and request id on every log line, the 30-second limit (408 after it), `nosniff`, and an error
//! line for 5xx responses.
//!
//! This was five tower-http layers (SetRequestId, Trace, PropagateRequestId, Timeout,
//! SetResponseHeader). Each is right on its own, but on the token endpoint together they cost
//! about as much CPU as the ES256 signature, and over the wire the nested futures, the traced
//! response body (the span entered again for every frame) and a `getrandom` system call per
//! request id were the largest item after the signature (see the README's Benchmarks).
//! This layer does the same work with one future per request.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How long a request may take, body and handler included.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Default)]
pub struct EdgeLayer;

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge { inner }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
}

impl<S> tower::Service<Request<Body>> for Edge<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let id = match req.headers().get(&REQUEST_ID) {
            Some(v) => v.clone(),
            None => {
                let v = new_request_id();
                req.headers_mut().insert(REQUEST_ID, v.clone());
                v
            }
        };
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = %id.to_str().unwrap_or("-"),
        );
        let fut = span.in_scope(|| self.inner.call(req));
        Box::pin(
            async move {
                let mut resp = match tokio::time::timeout(REQUEST_LIMIT, fut).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        tracing::warn!(limit_secs = REQUEST_LIMIT.as_secs(), "request timed out");
                        StatusCode::REQUEST_TIMEOUT.into_response()
                    }
                };
                if resp.status().is_server_error() {
                    tracing::error!(status = resp.status().as_u16(), "response failed");
                }
                let h = resp.headers_mut();
                h.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
                h.entry(REQUEST_ID).or_insert(id);
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

/// A random (v4) UUID from the thread-local CSPRNG: `Uuid::new_v4` without uuid's `fast-rng`
/// feature makes a `getrandom` system call per request.
fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf)).expect("a UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route("/boom", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
            .route(
                "/own-id",
                get(|| async { ([(REQUEST_ID, "from-handler"), (header::X_CONTENT_TYPE_OPTIONS, "x")], "") }),
            )
            .layer(EdgeLayer)
    }

    #[tokio::test]
    async fn a_request_id_is_made_kept_or_left_to_the_handler() {
        let r = app().oneshot(Request::get("/ok").body(Body::empty()).unwrap()).await.unwrap();
        let id = r.headers()[&REQUEST_ID].to_str().unwrap().to_owned();
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

        let r2 = app().oneshot(Request::get("/ok").body(Body::empty()).unwrap()).await.unwrap();
        assert_ne!(r2.headers()[&REQUEST_ID], id.as_str(), "every request gets its own id");

        let sent = Request::get("/ok").header(REQUEST_ID, "caller-7").body(Body::empty()).unwrap();
        let r = app().oneshot(sent).await.unwrap();
        assert_eq!(r.headers()[&REQUEST_ID], "caller-7");

        let r = app().oneshot(Request::get("/own-id").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.headers()[&REQUEST_ID], "from-handler");
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "x", "a handler's own value stays");

        let r = app().oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.status(), 500);
        assert!(r.headers().contains_key(&REQUEST_ID));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_over_the_limit_is_408() {
        let slow = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(REQUEST_LIMIT + Duration::from_secs(1)).await;
                    "late"
                }),
            )
            .layer(EdgeLayer);
        let r = slow.oneshot(Request::get("/slow").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(r.headers().contains_key(&REQUEST_ID));
    }
}
