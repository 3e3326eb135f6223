//! Admission: how many questions this node answers at once, and the line
//! the others wait in.
//!
//! Answering is the costly part of chat (embedding, retrieval, the model).
//! Started all at once, questions share the cores and every one of them
//! slows down; past the node's capacity the first answers come later and
//! later without bound. So a question is *admitted* before it is stored:
//! it takes a [`Ticket`] (a place in line), and its answer starts when the
//! ticket's [`Turn`] comes, first come first served, at most
//! `chat.answer_concurrency` at a time. A question that must wait is told
//! where it stands (`queued` frame). When `chat.answer_queue` questions
//! already wait, a new one is refused before it is stored (`overloaded`,
//! with how long to wait), never left to pile up; so is one whose expected
//! wait (the questions ahead of it at the measured pace) would pass
//! `chat.answer_max_wait_secs`, when that is set. Acknowledging a question
//! never waits for any of this: only its answer does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Questions waiting for their turn (gauge).
pub const ANSWER_QUEUE: &str = "bwenge_chat_answer_queue";
/// Questions refused because the line was full (counter).
pub const ANSWER_REFUSED_TOTAL: &str = "bwenge_chat_answer_refused_total";
/// Time from admission to the turn (histogram, seconds).
pub const ANSWER_WAIT_SECONDS: &str = "bwenge_chat_answer_wait_seconds";

/// This node's line of questions to answer; cheap to clone.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    turns: Arc<Semaphore>,
    concurrency: usize,
    /// Questions that may wait beyond those being answered.
    bound: usize,
    /// The longest expected wait a new question is admitted to (`None`:
    /// only `bound` limits the line).
    max_wait: Option<Duration>,
    /// Tickets out: answering plus waiting.
    out: AtomicUsize,
    /// Smoothed time one answer holds its turn, in microseconds.
    service_us: AtomicU64,
}

/// Refused: the line is full. Try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub retry_after: Duration,
}

/// A place in line; dropping it gives the place up.
pub struct Ticket {
    inner: Arc<Inner>,
    /// Its place in line when it was admitted (1: next; 0: its turn was
    /// free at once).
    position: usize,
    admitted: Instant,
}

/// The turn to answer; dropping it lets the next question go.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
    _ticket: Ticket,
    started: Instant,
}

/// What the service assumes an answer takes before it has measured one.
const FIRST_GUESS: Duration = Duration::from_millis(50);

impl Admission {
    /// `concurrency` answers at once (at least 1); up to `bound` questions
    /// waiting beyond them.
    pub fn new(concurrency: usize, bound: usize) -> Self {
        Self::with_max_wait(concurrency, bound, None)
    }

    /// [`Admission::new`], and no new question admitted whose expected
    /// wait for its turn is longer than `max_wait`: the questions out
    /// ahead of it, `concurrency` at a time, at the measured pace (50 ms
    /// an answer until one is measured).
    pub fn with_max_wait(concurrency: usize, bound: usize, max_wait: Option<Duration>) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            inner: Arc::new(Inner {
                turns: Arc::new(Semaphore::new(concurrency)),
                concurrency,
                bound,
                max_wait,
                out: AtomicUsize::new(0),
                service_us: AtomicU64::new(FIRST_GUESS.as_micros() as u64),
            }),
        }
    }

    /// `chat.answer_concurrency`, where 0 means: twice the cores when only
    /// the built-in responder answers (the work is this node's CPU), and
    /// 64 per core when a remote model is in the chain (the work is mostly
    /// waiting for it).
    pub fn concurrency_for(configured: usize, remote_model: bool) -> usize {
        if configured > 0 {
            return configured;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        if remote_model { cores * 64 } else { cores * 2 }
    }

    /// A place in line for a new question, or [`Full`] when `bound`
    /// questions already wait.
    pub fn admit(&self) -> Result<Ticket, Full> {
        let mut out = self.inner.out.load(Ordering::Relaxed);
        loop {
            if let Some(full) = self.inner.full(out) {
                metrics::counter!(ANSWER_REFUSED_TOTAL).increment(1);
                return Err(full);
            }
            match self.inner.out.compare_exchange_weak(
                out,
                out + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(self.ticket(out)),
                Err(now) => out = now,
            }
        }
    }

    /// Refuses as [`Admission::admit`] would now, without taking a place
    /// (to refuse before counting the question against the allowance).
    pub fn check(&self) -> Result<(), Full> {
        match self.inner.full(self.inner.out.load(Ordering::Relaxed)) {
            Some(full) => Err(full),
            None => Ok(()),
        }
    }

    /// A place in line that is never refused: a question already stored
    /// and acknowledged (found unanswered on resume) is answered in its
    /// turn, whatever the line's length.
    pub fn admit_stored(&self) -> Ticket {
        let out = self.inner.out.fetch_add(1, Ordering::AcqRel);
        self.ticket(out)
    }

    /// The ticket of a question admitted when `out` others were out.
    fn ticket(&self, out: usize) -> Ticket {
        let position = if out >= self.inner.concurrency {
            out - self.inner.concurrency + 1
        } else {
            0
        };
        metrics::gauge!(ANSWER_QUEUE).set(self.inner.waiting() as f64);
        Ticket {
            inner: Arc::clone(&self.inner),
            position,
            admitted: Instant::now(),
        }
    }

    /// Questions waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting()
    }
}

impl Inner {
    fn waiting(&self) -> usize {
        self.out
            .load(Ordering::Relaxed)
            .saturating_sub(self.concurrency)
    }

    /// Refused, when `out` tickets are out: the line is full. Try again
    /// once the questions out are answered, `concurrency` at a time at the
    /// measured pace (whole seconds, 1 to 60).
    fn full(&self, out: usize) -> Option<Full> {
        let per_answer = self.service_us.load(Ordering::Relaxed) as f64 / 1e6;
        let too_long = self.max_wait.is_some_and(|most| {
            // The new question would be number `out - concurrency + 1`
            // in line; each turn frees `concurrency` places per answer.
            let ahead = (out + 1).saturating_sub(self.concurrency);
            ahead as f64 * per_answer / self.concurrency as f64 > most.as_secs_f64()
        });
        if out < self.concurrency + self.bound && !too_long {
            return None;
        }
        let secs = (out as f64 * per_answer / self.concurrency as f64).ceil();
        Some(Full {
            retry_after: Duration::from_secs(secs.clamp(1.0, 60.0) as u64),
        })
    }
}

impl Ticket {
    /// Its place in line when it was admitted (1: next to be answered; 0:
    /// no wait).
    pub fn position(&self) -> usize {
        self.position
    }

    /// Waits for this question's turn (first come, first served).
    pub async fn turn(self) -> Turn {
        let permit = Arc::clone(&self.inner.turns)
            .acquire_owned()
            .await
            .expect("the admission semaphore is never closed");
        metrics::histogram!(ANSWER_WAIT_SECONDS).record(self.admitted.elapsed().as_secs_f64());
        Turn {
            _permit: permit,
            _ticket: self,
            started: Instant::now(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.inner.out.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(ANSWER_QUEUE).set(self.inner.waiting() as f64);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // An exponentially weighted mean (1/8 the newest) of how long a
        // turn is held: what `retry_after` estimates with.
        let took = self.started.elapsed().as_micros() as u64;
        let inner = &self._ticket.inner;
        let old = inner.service_us.load(Ordering::Relaxed);
        let new = old - old / 8 + took / 8;
        inner.service_us.store(new.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn questions_wait_their_turn_in_order_and_the_line_has_an_end() {
        let a = Admission::new(2, 3);
        let t: Vec<Ticket> = (0..5).map(|_| a.admit().unwrap()).collect();
        assert_eq!(
            t.iter().map(Ticket::position).collect::<Vec<_>>(),
            vec![0, 0, 1, 2, 3]
        );
        assert_eq!(a.waiting(), 3);
        let full = a.admit().err().expect("the line is full");
        assert!(full.retry_after >= Duration::from_secs(1));
        // A stored question is never refused.
        let stored = a.admit_stored();
        assert_eq!(stored.position(), 4);
        assert_eq!(a.waiting(), 4);
        drop(stored);

        // Two answer; the third waits until one of them is done.
        let mut t = t.into_iter();
        let first = t.next().unwrap().turn().await;
        let _second = t.next().unwrap().turn().await;
        let third = t.next().unwrap();
        let waiting = tokio::spawn(third.turn());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no turn is free");
        drop(first);
        let _third = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the freed turn goes to the next in line")
            .unwrap();
        // The answered question's place is free again, and only it.
        let again = a.admit().expect("room for one");
        assert!(a.admit().is_err());
        // Places given up make room.
        drop(t);
        drop(again);
        let _more: Vec<Ticket> = (0..3).map(|_| a.admit().unwrap()).collect();
        assert!(a.admit().is_err());
    }

    #[test]
    fn a_line_bounded_in_time_refuses_what_would_wait_too_long() {
        // One at a time, 50 ms an answer until one is measured: a wait of
        // at most 1 s is 20 questions in line besides the one answered.
        let a = Admission::with_max_wait(1, 1000, Some(Duration::from_millis(1010)));
        let t: Vec<Ticket> = (0..21).map(|_| a.admit().unwrap()).collect();
        assert_eq!(t.last().unwrap().position(), 20);
        let full = a.admit().err().expect("a 21st in line would wait 1.05 s");
        assert!(full.retry_after >= Duration::from_secs(1));
        assert!(a.check().is_err());
        // A stored question is never refused.
        let _stored = a.admit_stored();
        // Without the time bound the count bound alone applies.
        let b = Admission::new(1, 1000);
        let _u: Vec<Ticket> = (0..500).map(|_| b.admit().unwrap()).collect();
    }

    #[test]
    fn automatic_concurrency_follows_the_kind_of_work() {
        assert_eq!(Admission::concurrency_for(7, false), 7);
        let local = Admission::concurrency_for(0, false);
        let remote = Admission::concurrency_for(0, true);
        assert!(local >= 2 && remote == local * 32, "{local} {remote}");
    }
}
