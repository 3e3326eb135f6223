//! The chain's metrics, captured with a thread-local recorder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bwenge_llm::testing::{Script, ScriptedModel};
use bwenge_llm::{BreakerConfig, Chain, LanguageModel, LlmError, Usage};
use futures_util::StreamExt;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use parking_lot::Mutex;

use crate::common::request;

#[derive(Default)]
struct Cell {
    count: AtomicU64,
    value: Mutex<f64>,
    samples: Mutex<Vec<f64>>,
}

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        self.count.fetch_add(v, Ordering::SeqCst);
    }
    fn absolute(&self, v: u64) {
        self.count.fetch_max(v, Ordering::SeqCst);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, v: f64) {
        *self.value.lock() += v;
    }
    fn decrement(&self, v: f64) {
        *self.value.lock() -= v;
    }
    fn set(&self, v: f64) {
        *self.value.lock() = v;
    }
}

impl HistogramFn for Cell {
    fn record(&self, v: f64) {
        self.samples.lock().push(v);
    }
}

#[derive(Default)]
struct TestRecorder {
    cells: Mutex<BTreeMap<String, Arc<Cell>>>,
}

impl TestRecorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.cells.lock().entry(name).or_default().clone()
    }

    fn get(&self, name: &str) -> Option<Arc<Cell>> {
        self.cells.lock().get(name).cloned()
    }

    fn count(&self, name: &str) -> u64 {
        self.get(name).map_or(0, |c| c.count.load(Ordering::SeqCst))
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        self.get(name).map(|c| *c.value.lock())
    }

    fn samples(&self, name: &str) -> usize {
        self.get(name).map_or(0, |c| c.samples.lock().len())
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

// A current-thread runtime keeps every metric call on the recorder's thread.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn chain_records_calls_latency_tokens_and_circuit_state() {
    let rec = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&rec);

    let a = Arc::new(ScriptedModel::new(
        "a",
        Script::FailAtStart(LlmError::Timeout),
    ));
    a.then(Script::FailAtStart(LlmError::RateLimited {
        retry_after: None,
    }));
    let b = Arc::new(ScriptedModel::new(
        "b",
        Script::AnswerWith {
            deltas: vec!["x".into(), "y".into()],
            usage: Usage {
                prompt_tokens: 100,
                completion_tokens: 7,
            },
            animation: None,
        },
    ));
    let chain = Chain::new(
        vec![a.clone(), b.clone()],
        BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(30),
        },
    );
    assert_eq!(rec.gauge("bwenge_llm_circuit_open{provider=a}"), Some(0.0));

    for _ in 0..3 {
        let s = chain.stream(&request("Why?")).await.expect("stream");
        let events: Vec<_> = s.collect().await;
        assert!(events.iter().all(Result::is_ok));
    }
    assert_eq!(
        rec.count("bwenge_llm_calls_total{outcome=rate_limited,provider=a}"),
        1
    );
    assert_eq!(
        rec.count("bwenge_llm_calls_total{outcome=timeout,provider=a}"),
        1
    );
    assert_eq!(
        rec.count("bwenge_llm_calls_total{outcome=circuit_open,provider=a}"),
        1
    );
    assert_eq!(rec.gauge("bwenge_llm_circuit_open{provider=a}"), Some(1.0));
    assert_eq!(
        rec.count("bwenge_llm_calls_total{outcome=ok,provider=b}"),
        3
    );
    assert_eq!(
        rec.count("bwenge_llm_tokens_total{kind=prompt,provider=b}"),
        300
    );
    assert_eq!(
        rec.count("bwenge_llm_tokens_total{kind=completion,provider=b}"),
        21
    );
    assert_eq!(rec.samples("bwenge_llm_latency_seconds{provider=b}"), 3);
    assert_eq!(rec.samples("bwenge_llm_first_token_seconds{provider=b}"), 3);

    // A consumer that walks away mid-answer: aborted.
    b.then(Script::Hang);
    let req = request("Why?");
    let s = chain.stream(&req);
    let timed_out = tokio::time::timeout(Duration::from_secs(1), s).await;
    assert!(
        timed_out.is_err(),
        "the hanging provider never produced a first event"
    );
    b.then(Script::Answer(vec!["a".into(), "b".into(), "c".into()]));
    {
        let mut s = chain.stream(&request("Why?")).await.expect("stream");
        assert!(s.next().await.is_some());
    }
    assert_eq!(
        rec.count("bwenge_llm_calls_total{outcome=aborted,provider=b}"),
        2
    );

    // Recovery closes the breaker and resets the gauge.
    a.set_default(Script::Answer(vec!["ok".into()]));
    tokio::time::advance(Duration::from_secs(31)).await;
    let s = chain.stream(&request("Why?")).await.expect("stream");
    let events: Vec<_> = s.collect().await;
    assert!(events.iter().all(Result::is_ok));
    assert_eq!(rec.gauge("bwenge_llm_circuit_open{provider=a}"), Some(0.0));
    assert_eq!(
        rec.count("bwenge_llm_calls_total{outcome=ok,provider=a}"),
        1
    );
    assert_eq!(a.name(), "a");
}
