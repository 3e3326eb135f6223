//! Messages of the ingest family (`IngestScheduler`, `IngestJob`).

use std::time::Duration;

use actix::Message;
use uuid::Uuid;

/// The id of an ingest job: the id of the knowledge source it processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub Uuid);

/// Queue a job (sent by the upload handler, and at start-up for jobs that
/// were queued or interrupted). Queuing a job already queued or running does
/// nothing.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Enqueue(pub JobId);

/// Stop a job and forget it (sent when its source is deleted).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Cancel(pub JobId);

/// How a run of a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done: ready, failed for good, or its source is gone.
    Finished,
    /// A transient failure: run it again after this delay.
    RetryAfter(Duration),
}

/// Sent by an `IngestJob` to the scheduler when its run ends.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct JobEnded {
    pub job: JobId,
    pub outcome: Outcome,
}

/// Asks the scheduler what it holds (tests, metrics).
#[derive(Debug, Message)]
#[rtype(result = "SchedulerStats")]
pub struct GetSchedulerStats;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, actix::MessageResponse)]
pub struct SchedulerStats {
    pub queued: usize,
    pub running: usize,
    pub finished: u64,
    pub retried: u64,
}
