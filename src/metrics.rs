//! Every metric Bwenge exports, in one file. Names are `bwenge_…` with unit
//! suffixes; labels are small fixed sets (route *patterns*, never raw paths).
//! Other crates (the actor registries, the adapters) emit through the same
//! `metrics` facade and are listed here for reference:
//! `bwenge_registry_actors`, `bwenge_registry_started_total`,
//! `bwenge_registry_restarted_total`, `bwenge_registry_stopped_idle_total`,
//! `bwenge_bus_published_total`, `bwenge_bus_dropped_total`,
//! `bwenge_cache_hits_total`, `bwenge_cache_misses_total`.
//! Analytics (`crate::analytics`): `bwenge_analytics_events_recorded_total`,
//! `bwenge_analytics_events_dropped_total` (queue full, or a batch that
//! could not be written), `bwenge_analytics_batch_seconds` and
//! `bwenge_analytics_report_seconds{report}`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS_TOTAL: &str = "bwenge_http_requests_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "bwenge_http_request_duration_seconds";
pub const HTTP_PANICS_TOTAL: &str = "bwenge_http_panics_total";
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "bwenge_process_resident_memory_bytes";
pub const BUILD_INFO: &str = "bwenge_build_info";
pub const WS_CONNECTIONS: &str = "bwenge_ws_connections";
pub const WS_SLOW_DISCONNECTS_TOTAL: &str = "bwenge_ws_slow_disconnects_total";
/// Teachers and admins watching the live classroom on this node (gauge).
pub const CLASSROOM_WATCHERS: &str = "bwenge_classroom_watchers";
/// Frames sent to live-classroom watchers (label `type`: snapshot,
/// presence, question, answer, flag, pong, error).
pub const CLASSROOM_FRAMES_SENT_TOTAL: &str = "bwenge_classroom_frames_sent_total";
/// Chat events the live classroom could not publish (its queue was full,
/// or the bus failed): chat never waits for it.
pub const CLASSROOM_EVENTS_DROPPED_TOTAL: &str = "bwenge_classroom_events_dropped_total";
/// Payments by `method` and final `status` (and `created`).
pub const PAYMENTS_TOTAL: &str = "bwenge_payments_total";
/// Questions, uploads and invitations refused past an `allowance`.
pub const QUOTA_REFUSALS: &str = "bwenge_quota_refusals_total";

/// Seconds each stage of a search took (summary, label `stage`: `embed`
/// the query's vector, `bm25`, `vectors`, `fusion`, `passages` reading the
/// hits' text from the database). Every search: `ask`, chat and `/v1/search`.
pub const SEARCH_STAGE_SECONDS: &str = "bwenge_search_stage_seconds";
/// Seconds each stage of answering a question took, cache misses only past
/// `cache` (summary, label `stage`: `safety`, `cache` the answer cache's
/// key and look-up, `retrieve` the whole search, `grounding` the decision
/// on it, `first_delta` from asking the responder to its first piece,
/// `generate` the whole answer, `cache_store`). With
/// [`SEARCH_STAGE_SECONDS`], what a question costs before its first delta.
pub const ANSWER_STAGE_SECONDS: &str = "bwenge_answer_stage_seconds";

/// The `stage` labels of [`SEARCH_STAGE_SECONDS`], in the order they run.
pub const SEARCH_STAGES: &[&str] = &["embed", "bm25", "vectors", "fusion", "passages"];
/// The `stage` labels of [`ANSWER_STAGE_SECONDS`], in the order they run.
pub const ANSWER_STAGES: &[&str] = &[
    "safety",
    "cache",
    "retrieve",
    "grounding",
    "first_delta",
    "generate",
    "cache_store",
];

/// Records one stage's time into a stage summary.
pub fn stage(metric: &'static str, stage: &'static str, took: Duration) {
    metrics::histogram!(metric, "stage" => stage).record(took.as_secs_f64());
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once (every app built in this process
/// shares it: the registry is global by nature) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.to_owned()),
                    LATENCY_BUCKETS,
                )
                .expect("the latency buckets are a fixed, non-empty list")
                .set_buckets_for_metric(Matcher::Prefix("bwenge_db_".to_owned()), LATENCY_BUCKETS)
                .expect("the latency buckets are a fixed, non-empty list");
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is already installed (an embedding
                // program's): keep ours private so /metrics still works.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

type RequestKey = (String, String, u16);

thread_local! {
    /// Handles per (route, method, status), per worker thread: the set is
    /// small (route patterns, not paths) and a cached handle skips the
    /// recorder's label hashing and allocation on every request.
    static REQUEST_HANDLES: std::cell::RefCell<
        std::collections::HashMap<RequestKey, (metrics::Counter, metrics::Histogram)>,
    > = std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Records one finished HTTP request.
pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    REQUEST_HANDLES.with(|cell| {
        let mut handles = cell.borrow_mut();
        let key = (route.to_owned(), method.to_owned(), status);
        let (counter, histogram) = handles.entry(key).or_insert_with(|| {
            let labels = [
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ];
            (
                metrics::counter!(HTTP_REQUESTS_TOTAL, &labels),
                metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, &labels),
            )
        });
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64());
    });
}

pub fn record_panic() {
    metrics::counter!(HTTP_PANICS_TOTAL).increment(1);
}

/// Renders the Prometheus text, refreshing process gauges first.
pub fn render(handle: &PrometheusHandle) -> String {
    if let Some(rss) = resident_memory_bytes() {
        metrics::gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(rss as f64);
    }
    handle.run_upkeep();
    handle.render()
}

/// Resident set size of this process, from `/proc/self/status` (Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
