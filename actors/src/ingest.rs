//! Ingest: one `IngestJob` actor per upload, owned by a [`Registry`], and the
//! `IngestScheduler` in front of it that bounds how many run at once and
//! queues the rest.
//!
//! The scheduler owns the queue and the set of running jobs; only its own
//! handlers mutate them. A job actor runs the [`IngestWork`] port once (parse
//! → chunk → embed → index; the adapter stores progress so a restart
//! resumes) and reports how it ended. A job whose actor panics is restarted
//! by the registry, which runs the work again; the work counts attempts and
//! gives up past its limit. Transient failures come back as `RetryAfter` and
//! are queued again after the delay.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;

use crate::messages::ingest::{
    Cancel, Enqueue, GetSchedulerStats, JobEnded, JobId, Outcome, SchedulerStats,
};
use crate::registry::{Lookup, Registry, RegistryConfig, Remove, Shutdown};

/// The work of one job, done by an adapter. Must be idempotent: a job can be
/// run again after a crash or a retry.
#[async_trait]
pub trait IngestWork: Send + Sync + 'static {
    async fn run(&self, job: JobId) -> Outcome;
}

/// One running job.
pub struct IngestJob {
    job: JobId,
    work: Arc<dyn IngestWork>,
    report: Recipient<JobEnded>,
}

impl Actor for IngestJob {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let work = self.work.clone();
        let job = self.job;
        let report = self.report.clone();
        let span = tracing::info_span!("ingest_job", source_id = %job.0);
        ctx.spawn(
            async move {
                let outcome = tracing::Instrument::instrument(work.run(job), span).await;
                report.do_send(JobEnded { job, outcome });
            }
            .into_actor(self)
            .map(|_, _, ctx: &mut Context<Self>| ctx.stop()),
        );
    }
}

impl Handler<Shutdown> for IngestJob {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

pub struct SchedulerConfig {
    /// Jobs running at once.
    pub max_concurrent: usize,
}

/// Bounds concurrency and queues jobs in arrival order.
pub struct IngestScheduler {
    config: SchedulerConfig,
    work: Arc<dyn IngestWork>,
    registry: Option<Addr<Registry<JobId, IngestJob>>>,
    queue: VecDeque<JobId>,
    running: HashSet<JobId>,
    /// Jobs waiting out a retry delay (not in the queue yet).
    delayed: HashSet<JobId>,
    finished: u64,
    retried: u64,
}

impl IngestScheduler {
    pub fn new(config: SchedulerConfig, work: Arc<dyn IngestWork>) -> Self {
        Self {
            config: SchedulerConfig {
                max_concurrent: config.max_concurrent.max(1),
            },
            work,
            registry: None,
            queue: VecDeque::new(),
            running: HashSet::new(),
            delayed: HashSet::new(),
            finished: 0,
            retried: 0,
        }
    }

    fn pump(&mut self) {
        let Some(registry) = self.registry.clone() else {
            return;
        };
        while self.running.len() < self.config.max_concurrent {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.running.insert(job);
            registry.do_send(Lookup::<JobId, IngestJob>::new(job));
        }
        metrics::gauge!("bwenge_ingest_jobs", "state" => "queued").set(self.queue.len() as f64);
        metrics::gauge!("bwenge_ingest_jobs", "state" => "running").set(self.running.len() as f64);
    }
}

impl Actor for IngestScheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let work = self.work.clone();
        let report = ctx.address().recipient::<JobEnded>();
        // Jobs never idle out: they stop themselves when done.
        let config = RegistryConfig::with_idle_timeout(Duration::from_secs(7 * 24 * 3600));
        let registry = Registry::new("ingest", config, move |job: &JobId| IngestJob {
            job: *job,
            work: work.clone(),
            report: report.clone(),
        })
        .start();
        self.registry = Some(registry);
        self.pump();
    }
}

impl Handler<Enqueue> for IngestScheduler {
    type Result = ();
    fn handle(&mut self, Enqueue(job): Enqueue, _: &mut Context<Self>) {
        if !self.running.contains(&job) && !self.queue.contains(&job) {
            self.delayed.remove(&job);
            self.queue.push_back(job);
        }
        self.pump();
    }
}

impl Handler<Cancel> for IngestScheduler {
    type Result = ();
    fn handle(&mut self, Cancel(job): Cancel, _: &mut Context<Self>) {
        self.queue.retain(|j| *j != job);
        self.delayed.remove(&job);
        if self.running.remove(&job)
            && let Some(registry) = &self.registry
        {
            registry.do_send(Remove(job));
        }
        self.pump();
    }
}

impl Handler<JobEnded> for IngestScheduler {
    type Result = ();
    fn handle(&mut self, ended: JobEnded, ctx: &mut Context<Self>) {
        if !self.running.remove(&ended.job) {
            // Cancelled meanwhile.
            return;
        }
        match ended.outcome {
            Outcome::Finished => self.finished += 1,
            Outcome::RetryAfter(delay) => {
                self.retried += 1;
                self.delayed.insert(ended.job);
                ctx.run_later(delay, move |this, _| {
                    if this.delayed.remove(&ended.job) {
                        this.queue.push_back(ended.job);
                        this.pump();
                    }
                });
            }
        }
        self.pump();
    }
}

impl Handler<GetSchedulerStats> for IngestScheduler {
    type Result = SchedulerStats;
    fn handle(&mut self, _: GetSchedulerStats, _: &mut Context<Self>) -> SchedulerStats {
        SchedulerStats {
            queued: self.queue.len() + self.delayed.len(),
            running: self.running.len(),
            finished: self.finished,
            retried: self.retried,
        }
    }
}
