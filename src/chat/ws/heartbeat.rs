//! The heartbeat of a worker thread's sockets, and the clock decisions of
//! one socket (silent too long, time to mark its session in use).
//!
//! One timer per thread (and interval) instead of one per socket, which
//! would cost each idle socket a timer entry and its boxed future. Sockets
//! wait in a [`BeatQueue`] in the order they are due (one interval after
//! connecting, then every interval): each tick, every fiftieth of an
//! interval, beats those due and puts them back at the end, so the pings
//! stay spread over the interval as the sockets' own timers spread them,
//! at most a tick late. A socket that has gone is dropped when it comes
//! due. Time is tokio's ([`Instant`]), so tests pause and advance it.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actix::{Message, WeakAddr};
use tokio::time::Instant;

use super::WsConnection;

/// Time to ping (or to close a silent client).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Beat;

const TICKS_PER_INTERVAL: u32 = 50;

/// Sockets (`W`: a weak handle) in the order they are due, with when.
pub(crate) struct BeatQueue<W> {
    every: Duration,
    queue: VecDeque<(Instant, W)>,
}

impl<W> BeatQueue<W> {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            queue: VecDeque::new(),
        }
    }

    /// A socket joining at `now`: due one interval later. Due times only
    /// grow along the queue: each socket goes back one interval after its
    /// last due time, a new one one interval from now.
    pub(crate) fn join(&mut self, now: Instant, w: W) {
        self.queue.push_back((now + self.every, w));
    }

    /// The sockets due at `now`, in due order, each put back one interval
    /// later; those `alive` no longer finds are dropped.
    pub(crate) fn due<S>(&mut self, now: Instant, alive: impl Fn(&W) -> Option<S>) -> Vec<S> {
        let mut due = Vec::new();
        while self.queue.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((at, w)) = self.queue.pop_front()
                && let Some(s) = alive(&w)
            {
                self.queue.push_back((at + self.every, w));
                due.push(s);
            }
        }
        due
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Whether a client silent since `last_heard` has passed its timeout.
pub(crate) fn silent_too_long(last_heard: Instant, now: Instant, timeout: Duration) -> bool {
    now.saturating_duration_since(last_heard) > timeout
}

thread_local! {
    /// Per interval, this thread's queue, while its task runs.
    static QUEUES: RefCell<HashMap<Duration, BeatQueue<WeakAddr<WsConnection>>>> =
        RefCell::default();
}

/// Beats the socket every `every`, from this thread, while it lives.
pub(super) fn join(addr: WeakAddr<WsConnection>, every: Duration) {
    let start = QUEUES.with(|q| {
        let mut q = q.borrow_mut();
        let start = !q.contains_key(&every);
        q.entry(every)
            .or_insert_with(|| BeatQueue::new(every))
            .join(Instant::now(), addr);
        start
    });
    if start {
        actix::spawn(beat(every));
    }
}

/// Runs while this thread has sockets beaten every `every`.
async fn beat(every: Duration) {
    // When the task ends (no sockets left, or the runtime dropping it with
    // its sockets: a test's server stopping), the next socket starts a new
    // one.
    struct Forget(Duration);
    impl Drop for Forget {
        fn drop(&mut self) {
            let _ = QUEUES.try_with(|q| q.borrow_mut().remove(&self.0));
        }
    }
    let _forget = Forget(every);
    let mut tick = tokio::time::interval(every / TICKS_PER_INTERVAL);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (due, empty) = QUEUES.with(|q| {
            let mut q = q.borrow_mut();
            let Some(queue) = q.get_mut(&every) else {
                return (Vec::new(), true);
            };
            let due = queue.due(now, WeakAddr::upgrade);
            (due, queue.is_empty())
        });
        for addr in due {
            addr.do_send(Beat);
        }
        if empty {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::{Rc, Weak};

    use super::*;

    const EVERY: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn sockets_are_beaten_in_due_order_every_interval() {
        let (a, b) = (Rc::new('a'), Rc::new('b'));
        let mut q = BeatQueue::new(EVERY);
        q.join(Instant::now(), Rc::downgrade(&a));
        tokio::time::advance(Duration::from_secs(2)).await;
        q.join(Instant::now(), Rc::downgrade(&b));
        let due =
            |q: &mut BeatQueue<Weak<char>>| q.due(Instant::now(), |w| w.upgrade().map(|c| *c));

        // Nobody is due before an interval has passed since joining.
        tokio::time::advance(Duration::from_millis(2999)).await;
        assert!(due(&mut q).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(due(&mut q), vec!['a']);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(due(&mut q), vec!['b']);
        // Then every interval, still spread as they joined.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(due(&mut q), vec!['a']);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(due(&mut q), vec!['b']);
        // A socket gone is dropped when it comes due.
        drop(a);
        tokio::time::advance(EVERY).await;
        assert_eq!(due(&mut q), vec!['b']);
        drop(b);
        tokio::time::advance(EVERY).await;
        assert!(due(&mut q).is_empty());
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_is_silent_only_past_its_timeout() {
        let timeout = Duration::from_secs(10);
        let heard = Instant::now();
        tokio::time::advance(timeout).await;
        assert!(!silent_too_long(heard, Instant::now(), timeout));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(silent_too_long(heard, Instant::now(), timeout));
    }
}
