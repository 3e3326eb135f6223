//! An access token cached until shortly before it expires, fetched by one
//! caller at a time (many concurrent calls make one token request).

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::ProviderError;

#[derive(Default)]
pub(crate) struct TokenCache {
    inner: Mutex<Option<Cached>>,
}

struct Cached {
    token: String,
    valid_until: Instant,
}

/// How long a token is used: its lifetime minus a margin of a tenth of it,
/// at most a minute (a 3600 s MoMo token is used 59 minutes, a 180 s Airtel
/// token 162 s), so that a request never leaves with a token about to expire.
pub(crate) fn usable_for(expires_in: Duration) -> Duration {
    let margin = (expires_in / 10).min(Duration::from_secs(60));
    expires_in.saturating_sub(margin)
}

impl TokenCache {
    /// The cached token, or a new one from `fetch` (which returns the token
    /// and its `expires_in`).
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<String, ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), ProviderError>>,
    {
        let mut guard = self.inner.lock().await;
        if let Some(c) = guard.as_ref()
            && Instant::now() < c.valid_until
        {
            return Ok(c.token.clone());
        }
        let (token, expires_in) = fetch().await?;
        *guard = Some(Cached {
            token: token.clone(),
            valid_until: Instant::now() + usable_for(expires_in),
        });
        Ok(token)
    }

    /// Forgets `token` (the provider refused it), unless another caller has
    /// already replaced it.
    pub(crate) async fn invalidate(&self, token: &str) {
        let mut guard = self.inner.lock().await;
        if guard.as_ref().is_some_and(|c| c.token == token) {
            *guard = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn margin_is_a_tenth_at_most_a_minute() {
        assert_eq!(
            usable_for(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            usable_for(Duration::from_secs(180)),
            Duration::from_secs(162)
        );
        assert_eq!(usable_for(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn one_fetch_until_expiry_then_another() {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let fetch = |fetches: Arc<AtomicUsize>| async move {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok((format!("token-{n}"), Duration::from_secs(100)))
        };
        // Ten concurrent callers share one fetch.
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache.get(|| fetch(fetches)).await.unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "token-1");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(89)).await;
        assert_eq!(
            cache.get(|| fetch(fetches.clone())).await.unwrap(),
            "token-1"
        );
        // 100 s minus the 10 s margin.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache.get(|| fetch(fetches.clone())).await.unwrap(),
            "token-2"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn invalidation_forgets_only_the_refused_token() {
        let cache = TokenCache::default();
        let t1 = cache
            .get(|| async { Ok(("a".to_owned(), Duration::from_secs(100))) })
            .await
            .unwrap();
        cache.invalidate("other").await;
        let again = cache
            .get(|| async { Ok(("b".to_owned(), Duration::from_secs(100))) })
            .await
            .unwrap();
        assert_eq!((t1.as_str(), again.as_str()), ("a", "a"));
        cache.invalidate("a").await;
        let fresh = cache
            .get(|| async { Ok(("b".to_owned(), Duration::from_secs(100))) })
            .await
            .unwrap();
        assert_eq!(fresh, "b");
    }

    #[tokio::test]
    async fn a_failed_fetch_caches_nothing() {
        let cache = TokenCache::default();
        let err = cache
            .get(|| async {
                Err(ProviderError::Rejected {
                    status: 401,
                    message: "no".into(),
                })
            })
            .await;
        assert!(err.is_err());
        let ok = cache
            .get(|| async { Ok(("a".to_owned(), Duration::from_secs(100))) })
            .await
            .unwrap();
        assert_eq!(ok, "a");
    }
}
