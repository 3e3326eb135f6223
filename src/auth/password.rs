//! Password hashing: argon2id (m = 19 MiB, t = 2, p = 1), off the event
//! loop, with a bounded number of hashes in flight so a login flood cannot
//! starve other requests: excess waits briefly, then gets `503` with
//! `Retry-After`. Unknown accounts are verified against a dummy hash so they
//! cost the same time as a wrong password.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::auth::error::AuthError;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("argon2 parameters are constants");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    dummy_hash: Arc<String>,
}

impl Hasher {
    /// `concurrency` hashes at once (0: one per core); a caller waits at most
    /// `queue_wait` for a turn.
    pub fn new(concurrency: usize, queue_wait: Duration) -> Self {
        let n = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            concurrency
        };
        let dummy = hash_blocking("bwenge-dummy-password-for-timing")
            .expect("hashing a constant cannot fail");
        Self {
            permits: Arc::new(Semaphore::new(n)),
            queue_wait,
            dummy_hash: Arc::new(dummy),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| AuthError::Busy {
                retry_after: Duration::from_secs(1),
            })?
            .context("the hashing semaphore is closed")?;
        let span = tracing::Span::current();
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .await
        .context("password hashing task failed")?;
        Ok(out)
    }

    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let password = password.to_owned();
        Ok(self.run(move || hash_blocking(&password)).await??)
    }

    /// Verifies `password` against `hash`; with no hash (unknown account)
    /// verifies against a dummy and answers `false`, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let password = password.to_owned();
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy_hash.as_str().to_owned(), str::to_owned);
        let ok = self
            .run(move || {
                PasswordHash::new(&hash)
                    .map(|parsed| {
                        argon2()
                            .verify_password(password.as_bytes(), &parsed)
                            .is_ok()
                    })
                    .unwrap_or(false)
            })
            .await?;
        Ok(known && ok)
    }
}

/// One argon2id hash, synchronously (for the blocking pool and benches).
pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// One argon2id verification, synchronously (benches measure raw speed).
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_use_argon2id() {
        let h = Hasher::new(1, Duration::from_secs(5));
        let hash = h.hash("correct horse battery").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            h.verify("correct horse battery", Some(&hash))
                .await
                .unwrap()
        );
        assert!(!h.verify("wrong horse battery", Some(&hash)).await.unwrap());
        assert!(!h.verify("correct horse battery", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_answers_503() {
        let h = Hasher::new(1, Duration::from_millis(1));
        let hold = h.permits.clone().acquire_owned().await.unwrap();
        let err = h.hash("whatever whatever").await.unwrap_err();
        assert!(matches!(err, AuthError::Busy { .. }), "{err:?}");
        drop(hold);
        assert!(h.hash("whatever whatever").await.is_ok());
    }
}
