//! Rate limiter adapters: [`InProcessRateLimiter`] (token buckets in a map,
//! one node) and [`RedisRateLimiter`] (the same buckets in Redis hashes
//! `{prefix}rl:{key}`, updated atomically by a Lua script, shared by several
//! nodes).
//!
//! Both run the same arithmetic, in the same order, on `f64` tokens and a
//! clock in whole microseconds, so they answer identically for the same
//! sequence of calls at the same times:
//!
//! - a key never seen (or forgotten) is a full bucket;
//! - `tokens = min(capacity, tokens + elapsed_us * refill_per_sec / 1e6)`;
//! - if `tokens >= cost` the call is allowed and `cost` tokens are taken,
//!   `remaining = floor(tokens)`;
//! - otherwise it is limited with
//!   `retry_after = ceil((cost - tokens) * 1e6 / refill_per_sec)` µs;
//! - a bucket that is full again carries no information, so it is forgotten
//!   (Redis: PEXPIRE of the time to refill completely; in process: a lazy
//!   sweep), which keeps memory bounded by the keys active recently.
//!
//! Limits that could never allow the call (`cost > capacity`, zero capacity,
//! non-positive or non-finite refill) are [`PortError::Invalid`].

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bwenge_actors::ports::{PortError, PortResult, RateDecision, RateLimit, RateLimiter};
use std::time::Duration;
use tokio::time::Instant;

use super::{lock, unavailable};

const MICROS_PER_SEC: f64 = 1_000_000.0;

fn validate(limit: RateLimit, cost: u32) -> PortResult<()> {
    if limit.capacity == 0 {
        return Err(PortError::Invalid("rate limit capacity is 0".into()));
    }
    if !(limit.refill_per_sec.is_finite() && limit.refill_per_sec > 0.0) {
        return Err(PortError::Invalid(format!(
            "rate limit refill_per_sec must be positive and finite, got {}",
            limit.refill_per_sec
        )));
    }
    if cost > limit.capacity {
        return Err(PortError::Invalid(format!(
            "cost {cost} exceeds bucket capacity {}",
            limit.capacity
        )));
    }
    Ok(())
}

/// One bucket as stored between calls.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was computed, in µs since the limiter's origin.
    at_us: u64,
    /// When the bucket will be full again (and so can be forgotten).
    full_at_us: u64,
}

/// Token buckets inside one process.
#[derive(Debug)]
pub struct InProcessRateLimiter {
    origin: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    buckets: HashMap<String, Bucket>,
    /// Size at which the next check sweeps out refilled buckets; doubling it
    /// after each sweep keeps the sweep amortised O(1) per check.
    sweep_at: usize,
}

impl Default for InProcessRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessRateLimiter {
    /// A limiter with no buckets yet.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    #[cfg(test)]
    fn tracked_keys(&self) -> usize {
        lock(&self.state).buckets.len()
    }
}

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn check(&self, key: &str, limit: RateLimit, cost: u32) -> PortResult<RateDecision> {
        validate(limit, cost)?;
        let capacity = f64::from(limit.capacity);
        let rate = limit.refill_per_sec;
        let cost_f = f64::from(cost);

        let mut state = lock(&self.state);
        let now = self.now_us();
        if state.buckets.len() >= state.sweep_at {
            state.buckets.retain(|_, b| b.full_at_us > now);
            state.sweep_at = (state.buckets.len() * 2).max(1024);
        }

        // Keep the operation order in step with the Lua script below.
        let mut tokens = match state.buckets.get(key) {
            Some(b) => {
                let elapsed = now.saturating_sub(b.at_us) as f64;
                capacity.min(b.tokens + elapsed * rate / MICROS_PER_SEC)
            }
            None => capacity,
        };
        let decision = if tokens >= cost_f {
            tokens -= cost_f;
            RateDecision::Allowed {
                remaining: tokens.floor() as u32,
            }
        } else {
            let retry_us = ((cost_f - tokens) * MICROS_PER_SEC / rate).ceil();
            RateDecision::Limited {
                retry_after: Duration::from_micros(retry_us as u64),
            }
        };

        let refill_us = ((capacity - tokens) * MICROS_PER_SEC / rate).ceil();
        if refill_us > 0.0 {
            state.buckets.insert(
                key.to_owned(),
                Bucket {
                    tokens,
                    at_us: now,
                    full_at_us: now.saturating_add(refill_us as u64),
                },
            );
        } else {
            state.buckets.remove(key);
        }
        Ok(decision)
    }
}

/// The bucket update, atomic in Redis. KEYS[1] = bucket hash; ARGV =
/// capacity, refill_per_sec, cost. Returns {allowed, remaining, retry_us}.
///
/// The clock is Redis' own TIME so every node agrees on it. Tokens are
/// written with %.17g so they round-trip exactly (Lua's tostring would keep
/// only 14 digits and drift from the in-process limiter).
const SCRIPT: &str = r"
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local tokens = capacity
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
if stored[1] and stored[2] then
  local elapsed = now - tonumber(stored[2])
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(capacity, tonumber(stored[1]) + elapsed * rate / 1000000)
end

local allowed = 0
local retry_us = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_us = math.ceil((cost - tokens) * 1000000 / rate)
end

local refill_ms = math.ceil((capacity - tokens) * 1000 / rate)
if refill_ms > 0 then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], refill_ms)
else
  redis.call('DEL', KEYS[1])
end
return {allowed, math.floor(tokens), retry_us}
";

/// Token buckets shared by every node through Redis.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    pool: deadpool_redis::Pool,
    key_prefix: String,
    script: redis::Script,
}

impl RedisRateLimiter {
    /// Buckets are stored as hashes `{key_prefix}rl:{key}`.
    pub fn new(pool: deadpool_redis::Pool, key_prefix: &str) -> Self {
        Self {
            pool,
            key_prefix: key_prefix.to_owned(),
            script: redis::Script::new(SCRIPT),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, limit: RateLimit, cost: u32) -> PortResult<RateDecision> {
        validate(limit, cost)?;
        let mut conn = self.pool.get().await.map_err(|e| unavailable("pool", e))?;
        // `f64`'s Display is the shortest string that parses back to the same
        // value, so Lua sees exactly the rate the in-process limiter uses.
        let (allowed, remaining, retry_us): (i64, i64, i64) = self
            .script
            .key(format!("{}rl:{key}", self.key_prefix))
            .arg(limit.capacity)
            .arg(limit.refill_per_sec.to_string())
            .arg(cost)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("rate limit script", e))?;
        Ok(if allowed == 1 {
            RateDecision::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(0),
            }
        } else {
            RateDecision::Limited {
                retry_after: Duration::from_micros(u64::try_from(retry_us).unwrap_or(0)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::infra::test_support::{pool, prefix, redis_url};

    /// The in-process limiter always; the Redis one when configured.
    fn limiters() -> Vec<(&'static str, Arc<dyn RateLimiter>)> {
        let mut limiters: Vec<(&'static str, Arc<dyn RateLimiter>)> =
            vec![("in_process", Arc::new(InProcessRateLimiter::new()))];
        if let Some(url) = redis_url() {
            limiters.push((
                "redis",
                Arc::new(RedisRateLimiter::new(pool(&url), &prefix())),
            ));
        }
        limiters
    }

    fn limit(capacity: u32, refill_per_sec: f64) -> RateLimit {
        RateLimit {
            capacity,
            refill_per_sec,
        }
    }

    fn retry_after(name: &str, d: RateDecision) -> Duration {
        match d {
            RateDecision::Limited { retry_after } => retry_after,
            RateDecision::Allowed { .. } => panic!("[{name}] expected Limited, got {d:?}"),
        }
    }

    #[tokio::test]
    async fn allows_capacity_then_limits() {
        for (name, rl) in limiters() {
            let l = limit(5, 1.0);
            for remaining in (0..5).rev() {
                assert_eq!(
                    rl.check("k", l, 1).await.unwrap(),
                    RateDecision::Allowed { remaining },
                    "[{name}]"
                );
            }
            // Empty: the next token is about one second away.
            let wait = retry_after(name, rl.check("k", l, 1).await.unwrap());
            assert!(
                wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
                "[{name}] retry_after {wait:?}"
            );
            // Waiting for 3 tokens takes about three times as long.
            let wait3 = retry_after(name, rl.check("k", l, 3).await.unwrap());
            assert!(
                wait3 > Duration::from_millis(2900) && wait3 <= Duration::from_secs(3),
                "[{name}] retry_after {wait3:?}"
            );
        }
    }

    #[tokio::test]
    async fn refills_over_time_and_retry_after_is_enough() {
        for (name, rl) in limiters() {
            // One token every 50 ms.
            let l = limit(2, 20.0);
            assert!(rl.check("k", l, 2).await.unwrap().is_allowed(), "[{name}]");
            let wait = retry_after(name, rl.check("k", l, 1).await.unwrap());
            assert!(wait <= Duration::from_millis(50), "[{name}] {wait:?}");

            tokio::time::sleep(wait).await;
            assert!(rl.check("k", l, 1).await.unwrap().is_allowed(), "[{name}]");
            assert!(!rl.check("k", l, 1).await.unwrap().is_allowed(), "[{name}]");

            // Refilling stops at capacity however long the wait.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(
                rl.check("k", l, 1).await.unwrap(),
                RateDecision::Allowed { remaining: 1 },
                "[{name}]"
            );
        }
    }

    #[tokio::test]
    async fn keys_are_independent() {
        for (name, rl) in limiters() {
            let l = limit(1, 0.5);
            assert!(
                rl.check("alice", l, 1).await.unwrap().is_allowed(),
                "[{name}]"
            );
            assert!(
                !rl.check("alice", l, 1).await.unwrap().is_allowed(),
                "[{name}]"
            );
            assert!(
                rl.check("bob", l, 1).await.unwrap().is_allowed(),
                "[{name}]"
            );
            assert!(
                !rl.check("bob", l, 1).await.unwrap().is_allowed(),
                "[{name}]"
            );
        }
    }

    #[tokio::test]
    async fn impossible_limits_are_invalid() {
        for (name, rl) in limiters() {
            for (l, cost) in [
                (limit(2, 1.0), 3),
                (limit(0, 1.0), 0),
                (limit(2, 0.0), 1),
                (limit(2, -1.0), 1),
                (limit(2, f64::NAN), 1),
                (limit(2, f64::INFINITY), 1),
            ] {
                assert!(
                    matches!(rl.check("k", l, cost).await, Err(PortError::Invalid(_))),
                    "[{name}] {l:?} cost {cost}"
                );
            }
        }
    }

    #[tokio::test]
    async fn both_backends_answer_alike() {
        let Some(url) = redis_url() else {
            return;
        };
        let local = InProcessRateLimiter::new();
        let shared = RedisRateLimiter::new(pool(&url), &prefix());
        // A slow refill makes the few milliseconds between the two calls of
        // each step negligible for `remaining`.
        let l = limit(5, 0.5);
        for cost in [1, 2, 0, 1, 3, 1, 1, 5, 2] {
            let a = local.check("k", l, cost).await.unwrap();
            let b = shared.check("k", l, cost).await.unwrap();
            match (a, b) {
                (RateDecision::Allowed { .. }, RateDecision::Allowed { .. }) => {
                    assert_eq!(a, b, "cost {cost}");
                }
                (
                    RateDecision::Limited { retry_after: x },
                    RateDecision::Limited { retry_after: y },
                ) => {
                    assert!(x.abs_diff(y) < Duration::from_millis(50), "{x:?} vs {y:?}");
                }
                _ => panic!("cost {cost}: in-process {a:?}, redis {b:?}"),
            }
        }
    }

    #[tokio::test]
    async fn redis_limiters_share_one_bucket() {
        let Some(url) = redis_url() else {
            return;
        };
        let p = prefix();
        // Two pools: two nodes.
        let node_a: Arc<dyn RateLimiter> = Arc::new(RedisRateLimiter::new(pool(&url), &p));
        let node_b: Arc<dyn RateLimiter> = Arc::new(RedisRateLimiter::new(pool(&url), &p));
        let l = limit(3, 1.0);
        assert!(node_a.check("k", l, 1).await.unwrap().is_allowed());
        assert!(node_b.check("k", l, 1).await.unwrap().is_allowed());
        assert_eq!(
            node_a.check("k", l, 1).await.unwrap(),
            RateDecision::Allowed { remaining: 0 }
        );
        assert!(!node_b.check("k", l, 1).await.unwrap().is_allowed());
    }

    #[tokio::test]
    async fn redis_bucket_expires_once_full() {
        let Some(url) = redis_url() else {
            return;
        };
        let p = prefix();
        let pool = pool(&url);
        let rl = RedisRateLimiter::new(pool.clone(), &p);
        let mut conn = pool.get().await.unwrap();
        let key = format!("{p}rl:k");

        // 1 of 2 tokens taken at 10/s: full again in 100 ms.
        rl.check("k", limit(2, 10.0), 1).await.unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 50 && ttl <= 100, "PTTL {ttl}");
        // A call that leaves the bucket full stores nothing.
        rl.check("other", limit(2, 10.0), 0).await.unwrap();
        let exists: i64 = redis::cmd("EXISTS")
            .arg(format!("{p}rl:other"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(exists, 0);
    }

    #[tokio::test]
    async fn in_process_forgets_refilled_buckets() {
        let rl = InProcessRateLimiter::new();
        let l = limit(1, 100.0); // full again after 10 ms
        for i in 0..1024 {
            rl.check(&format!("k{i}"), l, 1).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        rl.check("last", l, 1).await.unwrap();
        assert_eq!(rl.tracked_keys(), 1);
        // A bucket left full is not stored at all.
        rl.check("peek", l, 0).await.unwrap();
        assert_eq!(rl.tracked_keys(), 1);
    }

    #[tokio::test]
    async fn redis_errors_are_unavailable() {
        let rl = RedisRateLimiter::new(pool("redis://127.0.0.1:1"), "p:");
        assert!(matches!(
            rl.check("k", limit(1, 1.0), 1).await,
            Err(PortError::Unavailable(_))
        ));
    }
}
