//! The ingest scheduler: bounded concurrency, queueing, retries, cancel,
//! and a job whose actor panics being run again.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use bwenge_actors::ingest::{IngestScheduler, IngestWork, SchedulerConfig};
use bwenge_actors::messages::ingest::{Cancel, Enqueue, GetSchedulerStats, JobId, Outcome};
use uuid::Uuid;

#[derive(Default)]
struct FakeWork {
    running: AtomicUsize,
    max_seen: AtomicUsize,
    runs: Mutex<HashMap<JobId, usize>>,
    /// Jobs that fail transiently on their first run.
    flaky: Mutex<Vec<JobId>>,
    /// Jobs that panic on their first run.
    crashy: Mutex<Vec<JobId>>,
    /// Jobs that never end by themselves.
    stuck: Mutex<Vec<JobId>>,
}

#[async_trait]
impl IngestWork for FakeWork {
    async fn run(&self, job: JobId) -> Outcome {
        let attempt = {
            let mut runs = self.runs.lock().unwrap();
            let n = runs.entry(job).or_default();
            *n += 1;
            *n
        };
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_seen.fetch_max(now, Ordering::SeqCst);
        if self.stuck.lock().unwrap().contains(&job) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if attempt == 1 && self.crashy.lock().unwrap().contains(&job) {
            panic!("parser blew up");
        }
        if attempt == 1 && self.flaky.lock().unwrap().contains(&job) {
            return Outcome::RetryAfter(Duration::from_millis(20));
        }
        Outcome::Finished
    }
}

fn job() -> JobId {
    JobId(Uuid::new_v4())
}

async fn wait_finished(s: &Addr<IngestScheduler>, n: u64) {
    for _ in 0..300 {
        let stats = s.send(GetSchedulerStats).await.unwrap();
        if stats.finished >= n && stats.running == 0 && stats.queued == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "jobs did not finish: {:?}",
        s.send(GetSchedulerStats).await.unwrap()
    );
}

#[actix_rt::test]
async fn runs_at_most_max_concurrent_and_drains_the_queue() {
    let work = Arc::new(FakeWork::default());
    let s = IngestScheduler::new(SchedulerConfig { max_concurrent: 2 }, work.clone()).start();
    let jobs: Vec<_> = (0..6).map(|_| job()).collect();
    for j in &jobs {
        s.do_send(Enqueue(*j));
        s.do_send(Enqueue(*j)); // duplicates are ignored
    }
    wait_finished(&s, 6).await;
    assert_eq!(work.max_seen.load(Ordering::SeqCst), 2);
    let runs = work.runs.lock().unwrap();
    assert!(jobs.iter().all(|j| runs[j] == 1));
}

#[actix_rt::test]
async fn transient_failures_are_retried() {
    let work = Arc::new(FakeWork::default());
    let flaky = job();
    work.flaky.lock().unwrap().push(flaky);
    let s = IngestScheduler::new(SchedulerConfig { max_concurrent: 1 }, work.clone()).start();
    s.do_send(Enqueue(flaky));
    wait_finished(&s, 1).await;
    assert_eq!(work.runs.lock().unwrap()[&flaky], 2);
    assert_eq!(s.send(GetSchedulerStats).await.unwrap().retried, 1);
}

#[actix_rt::test]
async fn a_job_whose_actor_panics_runs_again() {
    let work = Arc::new(FakeWork::default());
    let crashy = job();
    work.crashy.lock().unwrap().push(crashy);
    let s = IngestScheduler::new(SchedulerConfig { max_concurrent: 1 }, work.clone()).start();
    s.do_send(Enqueue(crashy));
    wait_finished(&s, 1).await;
    assert_eq!(work.runs.lock().unwrap()[&crashy], 2);
}

#[actix_rt::test]
async fn cancel_stops_a_running_job_and_frees_its_slot() {
    let work = Arc::new(FakeWork::default());
    let stuck = job();
    work.stuck.lock().unwrap().push(stuck);
    let s = IngestScheduler::new(SchedulerConfig { max_concurrent: 1 }, work.clone()).start();
    s.do_send(Enqueue(stuck));
    let next = job();
    s.do_send(Enqueue(next));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = s.send(GetSchedulerStats).await.unwrap();
    assert_eq!((stats.running, stats.queued), (1, 1));
    s.do_send(Cancel(stuck));
    wait_finished(&s, 1).await;
    assert_eq!(work.runs.lock().unwrap()[&next], 1);
}
