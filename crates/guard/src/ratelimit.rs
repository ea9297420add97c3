//! Request budgets (`600/min`) per credential and per workspace, enforced with GCRA (the generic
//! cell rate algorithm): each bucket stores one number, its *theoretical arrival time*, so a
//! budget of N per window allows bursts of up to N and then one request every window/N.
//!
//! Two backends with identical arithmetic: in-process (the default) and Redis (when a Redis URL
//! is configured), where one Lua script checks and updates every bucket of a request atomically,
//! so several replicas enforce one limit. The arithmetic is written here, not taken from
//! `governor`, because the same algorithm must run inside Redis and on the injected clock.
//!
//! A request is charged to all its buckets or to none: one refused by the workspace budget does
//! not spend the credential's. If Redis fails, the request is charged in-process instead (and
//! logged): limits keep holding per replica rather than failing open or taking the API down.

use portcullis_domain::RateLimit;
use std::collections::HashMap;
use std::sync::Mutex;

/// One budget a request is charged to.
#[derive(Clone, Debug)]
pub struct Budget {
    /// The bucket: `key:<id>`, `client:<ws>:<id>`, `ws:<id>`…
    pub bucket: String,
    pub limit: RateLimit,
    /// The policy name shown in the `RateLimit` headers (`credential`, `workspace`).
    pub policy: &'static str,
}

/// The outcome of charging a request, reported on the most constraining budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub policy: &'static str,
    pub limit: u32,
    pub window_secs: i64,
    pub remaining: u32,
    /// Seconds until the budget is whole again.
    pub reset_secs: i64,
    /// When refused: seconds until a request would be allowed.
    pub retry_after_secs: Option<i64>,
}

fn params(b: &Budget) -> (f64, f64) {
    let window_ms = (b.limit.window.whole_milliseconds().max(1)) as f64;
    (window_ms / f64::from(b.limit.limit.max(1)), window_ms)
}

/// Decision for an allowed request from each budget's new arrival time.
fn allowed(budgets: &[Budget], new_tats: &[f64], now: f64) -> Decision {
    let mut best: Option<Decision> = None;
    for (b, tat) in budgets.iter().zip(new_tats) {
        let (interval, window) = params(b);
        let remaining = ((window - (tat - now)) / interval).floor().max(0.0) as u32;
        let d = Decision {
            allowed: true,
            policy: b.policy,
            limit: b.limit.limit,
            window_secs: b.limit.window.whole_seconds(),
            remaining,
            reset_secs: ((tat - now) / 1000.0).ceil() as i64,
            retry_after_secs: None,
        };
        if best.as_ref().is_none_or(|x| d.remaining < x.remaining) {
            best = Some(d);
        }
    }
    best.expect("at least one budget")
}

fn refused(b: &Budget, wait_ms: f64, tat: f64, now: f64) -> Decision {
    Decision {
        allowed: false,
        policy: b.policy,
        limit: b.limit.limit,
        window_secs: b.limit.window.whole_seconds(),
        remaining: 0,
        reset_secs: ((tat - now) / 1000.0).ceil() as i64,
        retry_after_secs: Some(((wait_ms / 1000.0).ceil() as i64).max(1)),
    }
}

/// In-process buckets.
#[derive(Default)]
pub struct LocalLimiter {
    tats: Mutex<HashMap<String, f64>>,
}

impl LocalLimiter {
    fn charge(&self, budgets: &[Budget], now: f64) -> Decision {
        let mut tats = self.tats.lock().expect("lock");
        if tats.len() > 200_000 {
            // Buckets whose arrival time has passed are whole again: forgetting them is exact.
            tats.retain(|_, t| *t > now);
        }
        let mut new_tats = Vec::with_capacity(budgets.len());
        for b in budgets {
            let (interval, window) = params(b);
            let tat = tats.get(&b.bucket).copied().unwrap_or(now).max(now);
            let next = tat + interval;
            let allow_at = next - window;
            if now < allow_at {
                return refused(b, allow_at - now, tat, now);
            }
            new_tats.push(next);
        }
        for (b, t) in budgets.iter().zip(&new_tats) {
            tats.insert(b.bucket.clone(), *t);
        }
        allowed(budgets, &new_tats, now)
    }
}

/// The same algorithm in Redis: checks every bucket, then updates all or none. Times are
/// milliseconds as decimals (`%.3f`): Lua's default number formatting would round them.
const SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local news = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local nxt = tat + interval
  local allow_at = nxt - window
  if now < allow_at then
    return {0, i, string.format('%.3f', allow_at - now), string.format('%.3f', tat)}
  end
  news[i] = nxt
end
local out = {1}
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.3f', news[i]), 'PX', math.ceil(news[i] - now) + 1000)
  out[#out + 1] = string.format('%.3f', news[i])
end
return out
"#;

/// Buckets shared by every replica through Redis.
pub struct RedisLimiter {
    conn: redis::aio::ConnectionManager,
    script: redis::Script,
    prefix: String,
    fallback: LocalLimiter,
}

impl RedisLimiter {
    async fn charge(&self, budgets: &[Budget], now: f64) -> Decision {
        let mut inv = self.script.prepare_invoke();
        inv.arg(format!("{now:.3}"));
        for b in budgets {
            let (interval, window) = params(b);
            inv.key(format!("{}{}", self.prefix, b.bucket)).arg(format!("{interval:.3}")).arg(window);
        }
        let mut conn = self.conn.clone();
        match inv.invoke_async::<Vec<redis::Value>>(&mut conn).await {
            Ok(v) => match parse_reply(budgets, &v, now) {
                Some(d) => d,
                None => {
                    tracing::error!(reply = ?v, "unexpected rate-limit reply from Redis; charging in-process");
                    self.fallback.charge(budgets, now)
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "Redis unavailable for rate limits; charging in-process");
                self.fallback.charge(budgets, now)
            }
        }
    }
}

fn parse_reply(budgets: &[Budget], v: &[redis::Value], now: f64) -> Option<Decision> {
    let num = |x: &redis::Value| -> Option<f64> {
        match x {
            redis::Value::Int(i) => Some(*i as f64),
            redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            redis::Value::SimpleString(s) => s.parse().ok(),
            _ => None,
        }
    };
    let ok = num(v.first()?)?;
    if ok == 0.0 {
        let i = num(v.get(1)?)? as usize;
        let b = budgets.get(i.checked_sub(1)?)?;
        return Some(refused(b, num(v.get(2)?)?, num(v.get(3)?)?, now));
    }
    let tats: Option<Vec<f64>> = v[1..].iter().map(num).collect();
    let tats = tats?;
    (tats.len() == budgets.len()).then(|| allowed(budgets, &tats, now))
}

/// A Redis connection with short timeouts (the guard never waits long on it), made now so a wrong
/// URL fails at startup.
pub(crate) async fn connect(url: &str) -> Result<redis::aio::ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
        .set_response_timeout(Some(std::time::Duration::from_millis(500)))
        .set_number_of_retries(2);
    redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| format!("cannot connect to Redis: {e}"))
}

/// Where budgets are kept.
pub enum Limiter {
    Local(LocalLimiter),
    Redis(Box<RedisLimiter>),
}

impl Default for Limiter {
    fn default() -> Self {
        Self::Local(LocalLimiter::default())
    }
}

impl Limiter {
    /// Shared budgets in the Redis at `url` (`redis://127.0.0.1:6379`), with keys under
    /// `prefix`. Connects now, so a wrong URL fails at startup rather than on the first request.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, String> {
        let conn = connect(url).await?;
        Ok(Self::Redis(Box::new(RedisLimiter {
            conn,
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
            fallback: LocalLimiter::default(),
        })))
    }

    /// Charges one request to every budget (all or none), at `now_ms` (Unix milliseconds).
    pub async fn charge(&self, budgets: &[Budget], now_ms: i64) -> Option<Decision> {
        if budgets.is_empty() {
            return None;
        }
        let now = now_ms as f64;
        Some(match self {
            Self::Local(l) => l.charge(budgets, now),
            Self::Redis(r) => r.charge(budgets, now).await,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bucket: &str, limit: &str, policy: &'static str) -> Budget {
        Budget { bucket: bucket.into(), limit: RateLimit::parse(limit).unwrap(), policy }
    }

    #[tokio::test]
    async fn gcra_allows_a_burst_then_one_per_interval() {
        let l = Limiter::default();
        let b = [budget("k", "3/min", "credential")];
        let t0 = 1_800_000_000_000;
        for left in [2, 1, 0] {
            let d = l.charge(&b, t0).await.unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let d = l.charge(&b, t0 + 1_000).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, Some(19), "one request per 20 s once the burst is spent");
        assert!(l.charge(&b, t0 + 20_000).await.unwrap().allowed);
        assert!(!l.charge(&b, t0 + 20_001).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn a_request_is_charged_to_all_budgets_or_none() {
        let l = Limiter::default();
        let key = budget("key", "5/min", "credential");
        let ws = budget("ws", "1/min", "workspace");
        let t0 = 1_800_000_000_000;
        assert!(l.charge(&[key.clone(), ws.clone()], t0).await.unwrap().allowed);
        let d = l.charge(&[key.clone(), ws.clone()], t0).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.policy, "workspace");
        // The refused request did not spend the key's budget: 4 left.
        assert_eq!(l.charge(&[key], t0).await.unwrap().remaining, 3);
    }
}
