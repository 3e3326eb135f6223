//! Presence: who is connected where, shared by every node. A group (say,
//! an organisation) holds members (say, one per connection), each with a
//! small value and an expiry: the node that put an entry puts it again
//! before it expires while the member stays, and removes it when the
//! member leaves. A node that dies stops refreshing, so its entries expire
//! by themselves.
//!
//! [`InProcessPresence`] (one node) keeps the groups in memory;
//! [`RedisPresence`] (several nodes) keeps each group in a Redis hash
//! `{prefix}presence:{group}` whose values start with their expiry (Unix
//! milliseconds, 8 bytes big-endian). Readers skip and delete expired
//! fields; the hash itself expires when nobody has put anything in it for
//! a TTL. Node clocks are assumed to agree to well within a TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bwenge_actors::ports::PortResult;
use tokio::time::Instant;

use super::{lock, unavailable};

/// One entry to put: group, member, value.
pub type Entry = (String, String, Vec<u8>);

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Puts entries, each live for `ttl` from now unless put again.
    async fn put(&self, entries: &[Entry], ttl: Duration) -> PortResult<()>;
    async fn remove(&self, group: &str, member: &str) -> PortResult<()>;
    /// The values of the group's live entries, in no particular order.
    async fn list(&self, group: &str) -> PortResult<Vec<Vec<u8>>>;
}

/// A group's members: expiry and value.
type Members = HashMap<String, (Instant, Vec<u8>)>;

/// Presence within one process.
#[derive(Debug, Default)]
pub struct InProcessPresence {
    groups: Mutex<HashMap<String, Members>>,
}

impl InProcessPresence {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Presence for InProcessPresence {
    async fn put(&self, entries: &[Entry], ttl: Duration) -> PortResult<()> {
        let until = Instant::now() + ttl;
        let mut groups = lock(&self.groups);
        for (group, member, value) in entries {
            groups
                .entry(group.clone())
                .or_default()
                .insert(member.clone(), (until, value.clone()));
        }
        Ok(())
    }

    async fn remove(&self, group: &str, member: &str) -> PortResult<()> {
        let mut groups = lock(&self.groups);
        if let Some(g) = groups.get_mut(group) {
            g.remove(member);
            if g.is_empty() {
                groups.remove(group);
            }
        }
        Ok(())
    }

    async fn list(&self, group: &str) -> PortResult<Vec<Vec<u8>>> {
        let now = Instant::now();
        let mut groups = lock(&self.groups);
        let Some(g) = groups.get_mut(group) else {
            return Ok(Vec::new());
        };
        g.retain(|_, (until, _)| *until > now);
        Ok(g.values().map(|(_, v)| v.clone()).collect())
    }
}

/// Presence shared through Redis.
#[derive(Debug, Clone)]
pub struct RedisPresence {
    pool: deadpool_redis::Pool,
    key_prefix: String,
}

impl RedisPresence {
    pub fn new(pool: deadpool_redis::Pool, key_prefix: &str) -> Self {
        Self {
            pool,
            key_prefix: key_prefix.to_owned(),
        }
    }

    fn key(&self, group: &str) -> String {
        format!("{}presence:{group}", self.key_prefix)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A stored value: its expiry and the payload, or `None` if it is not one.
fn split(stored: &[u8]) -> Option<(u64, &[u8])> {
    let (head, value) = stored.split_at_checked(8)?;
    Some((u64::from_be_bytes(head.try_into().ok()?), value))
}

#[async_trait]
impl Presence for RedisPresence {
    async fn put(&self, entries: &[Entry], ttl: Duration) -> PortResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let until = now_ms().saturating_add(ttl_ms);
        let mut pipe = redis::pipe();
        for (group, member, value) in entries {
            let mut stored = Vec::with_capacity(8 + value.len());
            stored.extend_from_slice(&until.to_be_bytes());
            stored.extend_from_slice(value);
            let key = self.key(group);
            pipe.cmd("HSET").arg(&key).arg(member).arg(stored).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        }
        let mut conn = self.pool.get().await.map_err(|e| unavailable("pool", e))?;
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable("HSET", e))
    }

    async fn remove(&self, group: &str, member: &str) -> PortResult<()> {
        let mut conn = self.pool.get().await.map_err(|e| unavailable("pool", e))?;
        redis::cmd("HDEL")
            .arg(self.key(group))
            .arg(member)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| unavailable("HDEL", e))
    }

    async fn list(&self, group: &str) -> PortResult<Vec<Vec<u8>>> {
        let key = self.key(group);
        let mut conn = self.pool.get().await.map_err(|e| unavailable("pool", e))?;
        let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable("HGETALL", e))?;
        let now = now_ms();
        let mut live = Vec::with_capacity(all.len());
        let mut expired = Vec::new();
        for (member, stored) in all {
            match split(&stored) {
                Some((until, value)) if until > now => live.push(value.to_vec()),
                _ => expired.push(member),
            }
        }
        if !expired.is_empty() {
            // Left by a node that died; whoever reads first tidies up.
            let _ = redis::cmd("HDEL")
                .arg(&key)
                .arg(expired)
                .query_async::<i64>(&mut conn)
                .await;
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::infra::test_support::{pool, prefix, redis_url};

    /// A backend's name, a node, and (Redis) a second node.
    type Backend = (&'static str, Arc<dyn Presence>, Option<Arc<dyn Presence>>);

    fn backends() -> Vec<Backend> {
        let mut out: Vec<Backend> = vec![("in_process", Arc::new(InProcessPresence::new()), None)];
        if let Some(url) = redis_url() {
            let p = prefix();
            // Two nodes: separate pools, one prefix.
            out.push((
                "redis",
                Arc::new(RedisPresence::new(pool(&url), &p)),
                Some(Arc::new(RedisPresence::new(pool(&url), &p))),
            ));
        }
        out
    }

    fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        v.sort();
        v
    }

    fn entry(group: &str, member: &str, value: &[u8]) -> Entry {
        (group.to_owned(), member.to_owned(), value.to_vec())
    }

    #[tokio::test]
    async fn entries_are_listed_per_group_until_removed() {
        for (name, a, b) in backends() {
            let ttl = Duration::from_secs(30);
            a.put(&[entry("g", "1", b"one"), entry("h", "x", b"other")], ttl)
                .await
                .unwrap();
            // Another node's entry in the same group.
            b.as_ref()
                .unwrap_or(&a)
                .put(&[entry("g", "2", b"two")], ttl)
                .await
                .unwrap();
            assert_eq!(
                sorted(a.list("g").await.unwrap()),
                vec![b"one".to_vec(), b"two".to_vec()],
                "[{name}]"
            );
            // Put again: replaced, not doubled.
            a.put(&[entry("g", "1", b"uno")], ttl).await.unwrap();
            a.remove("g", "2").await.unwrap();
            assert_eq!(
                a.list("g").await.unwrap(),
                vec![b"uno".to_vec()],
                "[{name}]"
            );
            assert_eq!(
                a.list("h").await.unwrap(),
                vec![b"other".to_vec()],
                "[{name}]"
            );
            assert!(a.list("none").await.unwrap().is_empty(), "[{name}]");
        }
    }

    /// An entry nobody refreshes (its node died) disappears after its TTL.
    #[tokio::test]
    async fn an_entry_not_put_again_expires() {
        for (name, a, _) in backends() {
            a.put(&[entry("g", "gone", b"gone")], Duration::from_millis(150))
                .await
                .unwrap();
            a.put(&[entry("g", "kept", b"kept")], Duration::from_secs(30))
                .await
                .unwrap();
            assert_eq!(a.list("g").await.unwrap().len(), 2, "[{name}]");
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                a.list("g").await.unwrap(),
                vec![b"kept".to_vec()],
                "[{name}]"
            );
        }
    }
}
