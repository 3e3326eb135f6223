//! The wall clock services read "now" from. In production it is the
//! system's; in tests it follows tokio's clock, so a test that pauses time
//! (`tokio::time::pause`) and advances it sees lockouts, one-time links and
//! access tokens expire without sleeping.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `None`: the system clock. `Some`: wall time anchored at a tokio
    /// instant, moving only as tokio's clock moves.
    anchor: Option<(DateTime<Utc>, tokio::time::Instant)>,
}

impl Clock {
    pub fn system() -> Self {
        Self { anchor: None }
    }

    /// A clock that starts at the current wall time and then follows tokio's
    /// clock (frozen while paused, moved by `advance`). Call it inside the
    /// runtime whose time the test controls.
    pub fn following_tokio() -> Self {
        Self {
            anchor: Some((Utc::now(), tokio::time::Instant::now())),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.anchor {
            None => Utc::now(),
            Some((wall, at)) => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(at);
                wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
            }
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_with_tokio_time() {
        let clock = Clock::following_tokio();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(clock.now() - start, chrono::Duration::hours(1));
    }
}
