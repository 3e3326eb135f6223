#![allow(clippy::unwrap_used)]
//! Behaviour of `bwenge_actors::registry::Registry`, observed through its
//! messages, its children's addresses and the metrics it records.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bwenge_actors::registry::{
    Lookup, Registry, RegistryConfig, RegistryStats, Remove, Shutdown, Stats, Touch,
};

/// A child with a little state, that can be told to panic or to stop.
struct Counter {
    count: u64,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Shutdown> for Counter {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Adds one and returns the new count.
struct Inc;

impl Message for Inc {
    type Result = u64;
}

impl Handler<Inc> for Counter {
    type Result = u64;

    fn handle(&mut self, _: Inc, _: &mut Context<Self>) -> u64 {
        self.count += 1;
        self.count
    }
}

struct Explode;

impl Message for Explode {
    type Result = ();
}

impl Handler<Explode> for Counter {
    type Result = ();

    fn handle(&mut self, _: Explode, _: &mut Context<Self>) {
        panic!("told to explode");
    }
}

struct StopSelf;

impl Message for StopSelf {
    type Result = ();
}

impl Handler<StopSelf> for Counter {
    type Result = ();

    fn handle(&mut self, _: StopSelf, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

type Reg = Registry<&'static str, Counter>;

fn config(idle: Duration, backoff_base: Duration) -> RegistryConfig {
    RegistryConfig {
        idle_timeout: idle,
        sweep_interval: Duration::from_millis(10),
        restart_backoff_base: backoff_base,
        restart_backoff_max: Duration::from_secs(5),
    }
}

fn start(config: RegistryConfig) -> Addr<Reg> {
    Registry::new("test", config, |_key: &&'static str| Counter { count: 0 }).start()
}

/// Long enough not to interfere with tests that are not about idleness.
const LONG: Duration = Duration::from_secs(60);

async fn lookup(registry: &Addr<Reg>, key: &'static str) -> Addr<Counter> {
    registry.send(Lookup::new(key)).await.unwrap()
}

async fn stats(registry: &Addr<Reg>) -> RegistryStats {
    registry.send(Stats).await.unwrap()
}

/// Polls `check` every 5 ms until it holds; fails the test after 3 s (CI
/// machines are shared and slow).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn lookup_is_idempotent() {
    let registry = start(config(LONG, Duration::from_millis(10)));
    let a = lookup(&registry, "a").await;
    let b = lookup(&registry, "a").await;
    assert_eq!(a, b);
    assert_eq!(a.send(Inc).await.unwrap(), 1);
    assert_eq!(b.send(Inc).await.unwrap(), 2);
    let stats = stats(&registry).await;
    assert_eq!(stats.started, 1);
    assert_eq!(stats.live, 1);
}

#[actix_rt::test]
async fn different_keys_get_different_actors() {
    let registry = start(config(LONG, Duration::from_millis(10)));
    let a = lookup(&registry, "a").await;
    let b = lookup(&registry, "b").await;
    assert_ne!(a, b);
    a.send(Inc).await.unwrap();
    assert_eq!(b.send(Inc).await.unwrap(), 1, "state is per key");
    let stats = stats(&registry).await;
    assert_eq!((stats.started, stats.live), (2, 2));
}

#[actix_rt::test]
async fn panicked_child_is_restarted_after_backoff() {
    let registry = start(config(LONG, Duration::from_millis(20)));
    let old = lookup(&registry, "a").await;
    assert_eq!(old.send(Inc).await.unwrap(), 1);

    assert!(
        old.send(Explode).await.is_err(),
        "a panicking handler never replies"
    );
    // No lookup: the backoff timer alone must bring it back.
    eventually("restart after backoff", || async {
        let s = stats(&registry).await;
        s.restarted == 1 && s.live == 1
    })
    .await;

    assert!(!old.connected(), "the panicked instance's address is dead");
    let new = lookup(&registry, "a").await;
    assert_ne!(new, old);
    assert_eq!(new.send(Inc).await.unwrap(), 1, "state starts afresh");
    let stats = stats(&registry).await;
    assert_eq!((stats.started, stats.restarted, stats.live), (1, 1, 1));
}

#[actix_rt::test]
async fn lookup_during_backoff_restarts_at_once() {
    let registry = start(config(LONG, Duration::from_millis(150)));
    let old = lookup(&registry, "a").await;
    assert!(old.send(Explode).await.is_err());
    eventually("the panic is noticed", || async {
        stats(&registry).await.live == 0
    })
    .await;

    let new = lookup(&registry, "a").await;
    assert_ne!(new, old);
    assert_eq!(new.send(Inc).await.unwrap(), 1);
    assert_eq!(stats(&registry).await.restarted, 1);

    // The cancelled timer must not restart it a second time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = stats(&registry).await;
    assert_eq!((stats.restarted, stats.live), (1, 1));
    assert_eq!(lookup(&registry, "a").await, new);
}

#[actix_rt::test]
async fn repeated_panics_back_off_exponentially() {
    let base = Duration::from_millis(40);
    let registry = start(config(LONG, base));
    let first = lookup(&registry, "a").await;
    assert!(first.send(Explode).await.is_err());
    eventually("first restart", || async {
        stats(&registry).await.restarted == 1
    })
    .await;

    // Fails again at once: the second delay is 2 × base.
    let second = lookup(&registry, "a").await;
    assert!(second.send(Explode).await.is_err());
    let crashed = tokio::time::Instant::now();
    eventually("second restart", || async {
        stats(&registry).await.restarted == 2
    })
    .await;
    assert!(
        crashed.elapsed() >= base * 2 - Duration::from_millis(5),
        "second restart came after {:?}, expected at least {:?}",
        crashed.elapsed(),
        base * 2
    );
}

#[test]
fn backoff_doubles_and_is_capped() {
    let config = RegistryConfig {
        restart_backoff_base: Duration::from_millis(100),
        restart_backoff_max: Duration::from_millis(500),
        ..RegistryConfig::default()
    };
    let delays: Vec<_> = (1..=5).map(|n| config.backoff(n)).collect();
    let ms = |n| Duration::from_millis(n);
    assert_eq!(delays, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
    assert_eq!(config.backoff(u32::MAX), ms(500));
}

#[test]
fn default_config() {
    let config = RegistryConfig::default();
    assert_eq!(config.idle_timeout, Duration::from_secs(300));
    assert_eq!(config.sweep_interval, Duration::from_secs(30));
    assert_eq!(config.restart_backoff_base, Duration::from_millis(100));
    assert_eq!(config.restart_backoff_max, Duration::from_secs(30));
    assert_eq!(
        RegistryConfig::with_idle_timeout(Duration::from_secs(20)).sweep_interval,
        Duration::from_secs(5)
    );
}

#[actix_rt::test]
async fn idle_children_are_stopped_and_restarted_on_demand() {
    let registry = start(config(Duration::from_millis(80), Duration::from_millis(10)));
    let old = lookup(&registry, "a").await;
    assert_eq!(stats(&registry).await.stopped_idle, 0);

    eventually("idle sweep", || async {
        stats(&registry).await.stopped_idle == 1
    })
    .await;
    assert_eq!(stats(&registry).await.live, 0);
    eventually("idle child stops", || async { !old.connected() }).await;

    let new = lookup(&registry, "a").await;
    assert_ne!(new, old);
    assert_eq!(new.send(Inc).await.unwrap(), 1);
    let stats = stats(&registry).await;
    assert_eq!((stats.started, stats.restarted, stats.live), (2, 0, 1));
}

#[actix_rt::test]
async fn touch_keeps_a_child_alive() {
    let registry = start(config(Duration::from_millis(80), Duration::from_millis(10)));
    let addr = lookup(&registry, "a").await;
    // Three idle timeouts' worth of touches, without any lookup.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        registry.send(Touch("a")).await.unwrap();
    }
    assert!(addr.connected());
    assert_eq!(stats(&registry).await.stopped_idle, 0);
    assert_eq!(lookup(&registry, "a").await, addr);

    // Touching an unknown key starts nothing.
    registry.send(Touch("b")).await.unwrap();
    assert_eq!(stats(&registry).await.started, 1);
}

#[actix_rt::test]
async fn concurrent_lookups_start_one_actor() {
    let registry = start(config(LONG, Duration::from_millis(10)));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let registry = registry.clone();
            actix::spawn(async move { registry.send(Lookup::new("a")).await.unwrap() })
        })
        .collect();
    let mut addrs = Vec::new();
    for task in tasks {
        addrs.push(task.await.unwrap());
    }
    assert!(addrs.iter().all(|addr| *addr == addrs[0]));
    let stats = stats(&registry).await;
    assert_eq!((stats.started, stats.live), (1, 1));
}

#[actix_rt::test]
async fn child_stopping_itself_is_removed_not_restarted() {
    let registry = start(config(LONG, Duration::from_millis(10)));
    let old = lookup(&registry, "a").await;
    old.send(StopSelf).await.unwrap();
    eventually("exit is noticed", || async {
        stats(&registry).await.live == 0
    })
    .await;

    // Several backoff periods: still nothing restarted.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = stats(&registry).await;
    assert_eq!((s.live, s.restarted), (0, 0));

    let new = lookup(&registry, "a").await;
    assert_ne!(new, old);
    let s = stats(&registry).await;
    assert_eq!((s.started, s.restarted, s.live), (2, 0, 1));
}

#[actix_rt::test]
async fn remove_stops_the_child() {
    let registry = start(config(LONG, Duration::from_millis(10)));
    let old = lookup(&registry, "a").await;
    let other = lookup(&registry, "b").await;
    registry.send(Remove("a")).await.unwrap();
    assert_eq!(stats(&registry).await.live, 1);
    eventually("removed child stops", || async { !old.connected() }).await;
    assert!(other.connected());

    // The old instance's exit must not take its successor with it.
    let new = lookup(&registry, "a").await;
    assert_ne!(new, old);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(lookup(&registry, "a").await, new);
    let s = stats(&registry).await;
    assert_eq!((s.started, s.restarted, s.live), (3, 0, 2));
}

#[actix_rt::test]
async fn remove_right_before_lookup_keeps_the_new_instance() {
    let registry = start(config(LONG, Duration::from_millis(10)));
    let old = lookup(&registry, "a").await;
    // Queued back to back: the old instance exits after its successor started.
    registry.do_send(Remove("a"));
    let new = lookup(&registry, "a").await;
    assert_ne!(new, old);
    eventually("removed child stops", || async { !old.connected() }).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(new.connected());
    assert_eq!(lookup(&registry, "a").await, new);
    assert_eq!(stats(&registry).await.live, 1);
}

#[actix_rt::test]
async fn stopping_the_registry_shuts_children_down() {
    let registry = start(config(LONG, Duration::from_millis(10)));
    let a = lookup(&registry, "a").await;
    let b = lookup(&registry, "b").await;
    drop(registry);
    eventually("children stop with the registry", || async {
        !a.connected() && !b.connected()
    })
    .await;
}

/// Records counters and gauges by `name{labels}` so the exported names can be
/// checked.
#[derive(Default)]
struct TestRecorder {
    values: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl TestRecorder {
    fn handle(&self, key: &metrics::Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}=\"{}\"", label.key(), label.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.values.lock().unwrap().entry(name).or_default().clone()
    }

    fn counter(&self, name: &str) -> u64 {
        let values = self.values.lock().unwrap();
        values
            .get(name)
            .map_or(0, |value| value.load(Ordering::SeqCst))
    }

    fn gauge(&self, name: &str) -> f64 {
        let values = self.values.lock().unwrap();
        values.get(name).map_or(f64::NAN, |value| {
            f64::from_bits(value.load(Ordering::SeqCst))
        })
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[actix_rt::test]
async fn metrics_are_exported_with_the_registry_label() {
    // The registry and its children run on this thread (actix_rt::test is a
    // single-threaded system), so a thread-local recorder sees everything.
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);

    // Idle long enough that a loaded machine restarts the crashed child
    // before the sweep could count it idle (400 ms was not, once, with a
    // release build running beside the tests).
    let registry = start(config(
        Duration::from_millis(1500),
        Duration::from_millis(10),
    ));
    let a = lookup(&registry, "a").await;
    lookup(&registry, "b").await;
    assert_eq!(
        recorder.gauge("bwenge_registry_actors{registry=\"test\"}"),
        2.0
    );

    assert!(a.send(Explode).await.is_err());
    eventually("restart", || async {
        stats(&registry).await.restarted == 1
    })
    .await;
    eventually("idle sweep", || async {
        stats(&registry).await.stopped_idle == 2
    })
    .await;

    assert_eq!(
        recorder.counter("bwenge_registry_started_total{registry=\"test\"}"),
        2
    );
    assert_eq!(
        recorder.counter("bwenge_registry_restarted_total{registry=\"test\"}"),
        1
    );
    assert_eq!(
        recorder.counter("bwenge_registry_stopped_idle_total{registry=\"test\"}"),
        2
    );
    assert_eq!(
        recorder.gauge("bwenge_registry_actors{registry=\"test\"}"),
        0.0
    );
}
