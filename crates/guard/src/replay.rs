//! The DPoP `jti` memory ([`portcullis_core::replay::ReplayCache`]) in Redis, next to the shared
//! rate limits, so a proof used at one replica is refused at every other. When Redis fails the
//! in-process memory takes over (as the limiter does), with a warning.

use portcullis_core::replay::{MemoryReplay, ReplayCache, Use, UseFuture};

pub struct RedisReplay {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    fallback: MemoryReplay,
}

impl RedisReplay {
    /// Connects now, so a wrong URL fails at startup. Keys live under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, String> {
        let conn = crate::ratelimit::connect(url).await?;
        Ok(Self { conn, prefix: prefix.to_owned(), fallback: MemoryReplay::default() })
    }
}

impl ReplayCache for RedisReplay {
    fn first_use<'a>(&'a self, key: &'a str, now_ms: i64, expires_ms: i64) -> UseFuture<'a> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            // SET NX: one atomic "record unless present".
            let r: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(format!("{}{key}", self.prefix))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg((expires_ms - now_ms).max(1))
                .query_async(&mut conn)
                .await;
            match r {
                Ok(Some(_)) => Use::First,
                Ok(None) => Use::Replayed,
                Err(e) => {
                    tracing::warn!(error = %e, "Redis unavailable for DPoP replay checks; checking in-process");
                    self.fallback.check(key, now_ms, expires_ms)
                }
            }
        })
    }
}
