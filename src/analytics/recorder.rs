//! Recording that never slows anyone down: [`EventRecorder::record`] puts
//! an event in a bounded queue and returns (a full queue drops the event
//! and counts it in `bwenge_analytics_events_dropped_total`, it never
//! waits); one background writer per process takes what is queued, up to
//! `analytics.batch` at a time, and writes it in one transaction with the
//! daily totals it changes (a group commit). Declined questions are
//! embedded here, off every request path, for the gaps report.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bwenge_search::Embedder;
use tokio::sync::{mpsc, oneshot};

use super::model::{Event, Kind, NOT_COVERED};
use super::store::{self, Batch, StoredEvent};
use crate::db::Db;
use crate::ids::UserId;

pub const EVENTS_RECORDED_TOTAL: &str = "bwenge_analytics_events_recorded_total";
pub const EVENTS_DROPPED_TOTAL: &str = "bwenge_analytics_events_dropped_total";
pub const BATCH_SECONDS: &str = "bwenge_analytics_batch_seconds";

enum Msg {
    Event(Box<Event>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The handle every emitter holds; cheap to clone.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Msg>,
    /// `analytics.record`: when false, events are neither queued nor
    /// counted as dropped.
    on: bool,
}

impl EventRecorder {
    /// Starts the writer (on the current tokio runtime) and returns its
    /// handle. The writer ends when every handle is dropped.
    ///
    /// `linger`: after the first event of a batch, how long the writer lets
    /// more join it before writing (a group commit: a busy node writes a few
    /// transactions a second instead of one per event, and leaves the
    /// database to chat). Zero writes at once.
    pub fn start(
        db: Db,
        embedder: Arc<dyn Embedder>,
        queue: usize,
        batch: usize,
        linger: std::time::Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let writer = Writer {
            db,
            embedder,
            batch: batch.max(1),
            linger,
        };
        tokio::spawn(writer.run(rx));
        Self { tx, on: true }
    }

    /// This recorder with recording switched off (`analytics.record =
    /// false`): every event is ignored.
    pub fn off(self) -> Self {
        Self { on: false, ..self }
    }

    /// Queues `event` for writing, or drops it (counted) when the queue is
    /// full. Never waits.
    pub fn record(&self, event: Event) {
        if !self.on {
            return;
        }
        if self.tx.try_send(Msg::Event(Box::new(event))).is_err() {
            metrics::counter!(EVENTS_DROPPED_TOTAL).increment(1);
        }
    }

    /// Waits until every event queued before this call is written (for
    /// jobs and tests; never on a request path).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Writer {
    db: Db,
    embedder: Arc<dyn Embedder>,
    batch: usize,
    linger: std::time::Duration,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Msg>) {
        let mut msgs = Vec::with_capacity(self.batch);
        while rx.recv_many(&mut msgs, self.batch).await > 0 {
            self.gather(&mut rx, &mut msgs).await;
            let mut events = Vec::with_capacity(msgs.len());
            let mut flushes = Vec::new();
            for m in msgs.drain(..) {
                match m {
                    Msg::Event(e) => events.push(*e),
                    Msg::Flush(tx) => flushes.push(tx),
                }
            }
            if !events.is_empty() {
                let n = events.len() as u64;
                let started = std::time::Instant::now();
                match self.write(events).await {
                    Ok(written) => {
                        metrics::counter!(EVENTS_RECORDED_TOTAL).increment(written);
                        metrics::counter!(EVENTS_DROPPED_TOTAL).increment(n - written);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, events = n, "analytics events could not be written");
                        metrics::counter!(EVENTS_DROPPED_TOTAL).increment(n);
                    }
                }
                metrics::histogram!(BATCH_SECONDS).record(started.elapsed().as_secs_f64());
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    /// Lets events join `msgs` for up to `linger`, until the batch is full
    /// or someone waits for a flush.
    async fn gather(&self, rx: &mut mpsc::Receiver<Msg>, msgs: &mut Vec<Msg>) {
        let flushing = |msgs: &[Msg]| msgs.iter().any(|m| matches!(m, Msg::Flush(_)));
        if self.linger.is_zero() || flushing(msgs) {
            return;
        }
        let deadline = tokio::time::sleep(self.linger);
        tokio::pin!(deadline);
        while msgs.len() < self.batch {
            let room = self.batch - msgs.len();
            tokio::select! {
                () = &mut deadline => return,
                n = rx.recv_many(msgs, room) => {
                    if n == 0 || flushing(msgs) {
                        return;
                    }
                }
            }
        }
    }

    /// Writes one batch; returns how many events were kept (events of
    /// members who no longer exist are dropped: an erased member must not
    /// come back through an event queued just before).
    async fn write(&self, events: Vec<Event>) -> Result<u64, crate::db::StoreError> {
        let users: Vec<UserId> = events
            .iter()
            .filter_map(|e| e.user)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let roles = store::student_flags(&self.db, &users).await?;
        let events: Vec<Event> = events
            .into_iter()
            .filter(|e| e.user.is_none_or(|u| roles.contains_key(&u)))
            .collect();
        let mut embeddings = self.embed_declined(&events).await;
        let stored = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| StoredEvent {
                embedding: embeddings.remove(&i),
                day: e.day(),
                event: e,
            })
            .collect();
        let batch = Batch::new(stored, |u| roles.get(&u).copied().unwrap_or(false));
        let n = batch.events.len() as u64;
        store::write_batch(&self.db, Arc::new(batch)).await?;
        Ok(n)
    }

    /// Vectors of the declined-as-not-covered questions, by index (none
    /// when the embedder fails: the gaps report embeds those itself).
    async fn embed_declined(&self, events: &[Event]) -> HashMap<usize, Vec<u8>> {
        let (idx, texts): (Vec<usize>, Vec<String>) = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == Kind::Question && e.refusal.as_deref() == Some(NOT_COVERED))
            .filter_map(|(i, e)| e.text.clone().map(|t| (i, t)))
            .unzip();
        if texts.is_empty() {
            return HashMap::new();
        }
        match self.embedder.embed(&texts).await {
            Ok(vectors) => idx
                .into_iter()
                .zip(vectors)
                .map(|(i, v)| (i, crate::knowledge::index::vector_to_bytes(&v)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "declined questions could not be embedded");
                HashMap::new()
            }
        }
    }
}
