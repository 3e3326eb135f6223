//! `embed-questions`: how many students' questions per second the local
//! model embeds when many arrive at once, with the question line (questions
//! that arrive together share one pass of the short-input encoder) against
//! each question in a pass of its own, measured in the same run.
//!
//! ```sh
//! cargo run --release -p bwenge-bench --bin embed-questions -- \
//!     --model-dir models/all-MiniLM-L6-v2 [--rounds 5]
//! ```
//!
//! The questions are the 180 of `bench/data/answer-quality` (worded as
//! students word them, each different, so nothing is cached). For each
//! number of questions in flight (1, 4, 16, 64), every round sends all of
//! them that many at a time:
//! * **baseline**: that many threads, each embedding its question in a
//!   pass of its own (`LocalEmbedder::embed_blocking`, what every question
//!   did before the line);
//! * **line**: that many tasks calling `Embedder::embed`, as the server's
//!   answering tasks do.
//!
//! It prints questions/s and per-question latency p50/p99 (medians over
//! rounds), and the line's throughput as a ratio of the baseline's.
//!
//! Where the CPU has a matrix unit (AMX) the model's products run there in
//! bfloat16 by default (`LocalEmbedderConfig::matrix_tiles`); then a second
//! table runs the question line both ways in the same rounds, the exact f32
//! products as the baseline, with the cosine of each question's two
//! vectors (lowest and median).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bwenge_bench::percentile_ms;
use bwenge_search::{Embedder, LocalEmbedder, LocalEmbedderConfig};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Question embedding throughput: the question line against one pass per question")]
struct Args {
    /// The all-MiniLM-L6-v2 directory (scripts/fetch-model.sh).
    #[arg(long)]
    model_dir: std::path::PathBuf,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

const DATA: &[&str] = &[
    include_str!("../data/answer-quality/expeyes.jsonl"),
    include_str!("../data/answer-quality/pari.jsonl"),
    include_str!("../data/answer-quality/offtopic.jsonl"),
];

fn questions() -> Vec<String> {
    DATA.iter()
        .flat_map(|f| f.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["question"].as_str().map(str::to_owned))
        .collect()
}

/// One round: every question, `inflight` at a time; returns (questions/s,
/// per-question latencies in ns).
async fn round_line(
    e: &Arc<LocalEmbedder>,
    qs: &Arc<Vec<String>>,
    inflight: usize,
) -> (f64, Vec<u64>) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..inflight)
        .map(|_| {
            let (e, qs, next) = (Arc::clone(e), Arc::clone(qs), Arc::clone(&next));
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(q) = qs.get(i) else { break };
                    let t = Instant::now();
                    let v = e.embed(std::slice::from_ref(q)).await;
                    assert!(v.is_ok_and(|v| v.len() == 1));
                    lat.push(t.elapsed().as_nanos() as u64);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.unwrap_or_default());
    }
    (qs.len() as f64 / started.elapsed().as_secs_f64(), lat)
}

fn round_alone(e: &Arc<LocalEmbedder>, qs: &Arc<Vec<String>>, inflight: usize) -> (f64, Vec<u64>) {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let lat = std::thread::scope(|s| {
        let workers: Vec<_> = (0..inflight)
            .map(|_| {
                s.spawn(|| {
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(q) = qs.get(i) else { break };
                        let t = Instant::now();
                        let v = e.embed_blocking(std::slice::from_ref(q));
                        assert!(v.is_ok_and(|v| v.len() == 1));
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    lat
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect::<Vec<u64>>()
    });
    (qs.len() as f64 / started.elapsed().as_secs_f64(), lat)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The question line with the exact products against the matrix unit's
/// bfloat16 tiles, alternating within each round.
async fn compare_tiles(
    exact: &Arc<LocalEmbedder>,
    tiled: &Arc<LocalEmbedder>,
    qs: &Arc<Vec<String>>,
    rounds: usize,
) {
    let (a, b) = (
        exact.embed_blocking(qs).unwrap_or_default(),
        tiled.embed_blocking(qs).unwrap_or_default(),
    );
    let cos: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(bwenge_search::embed::cosine(x, y)))
        .collect();
    println!(
        "cosine of each question's vectors, exact and tiled: lowest {:.5}, median {:.5} ({} questions)",
        cos.iter().copied().fold(f64::INFINITY, f64::min),
        median(cos.clone()),
        cos.len()
    );
    println!(
        "| in flight | question line, {} f32: q/s, p50, p99 | question line, amx-bf16: q/s, p50, p99 | throughput ratio |",
        exact.products()
    );
    println!("|---|---|---|---|");
    for inflight in [1usize, 4, 16, 64] {
        let mut figures = [
            (Vec::new(), Vec::new(), Vec::new()),
            (Vec::new(), Vec::new(), Vec::new()),
        ];
        for _ in 0..rounds {
            for (e, f) in [exact, tiled].into_iter().zip(figures.iter_mut()) {
                let (r, mut lat) = round_line(e, qs, inflight).await;
                lat.sort_unstable();
                f.0.push(r);
                f.1.push(percentile_ms(&lat, 0.5));
                f.2.push(percentile_ms(&lat, 0.99));
            }
        }
        let [(er, e50, e99), (tr, t50, t99)] = figures;
        let (er, tr) = (median(er), median(tr));
        println!(
            "| {inflight} | {er:.0}, {:.1} ms, {:.1} ms | {tr:.0}, {:.1} ms, {:.1} ms | {:.2}× |",
            median(e50),
            median(e99),
            median(t50),
            median(t99),
            tr / er
        );
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("embed-questions: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let mut config = LocalEmbedderConfig::new(&args.model_dir);
        config.allow_download = false;
        let e = match LocalEmbedder::load(config).await {
            Ok(e) => Arc::new(e),
            Err(err) => {
                eprintln!("embed-questions: {err}");
                return ExitCode::FAILURE;
            }
        };
        let qs = Arc::new(questions());
        println!(
            "{} questions, {} rounds, {} cores, products on {}",
            qs.len(),
            args.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            e.products()
        );
        // Warm-up: the pools and caches.
        let _ = round_line(&e, &qs, 4).await;
        println!("| in flight | one pass each: q/s, p50, p99 | question line: q/s, p50, p99 | throughput ratio |");
        println!("|---|---|---|---|");
        for inflight in [1usize, 4, 16, 64] {
            let (mut a_rate, mut a_p50, mut a_p99) = (Vec::new(), Vec::new(), Vec::new());
            let (mut l_rate, mut l_p50, mut l_p99) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..args.rounds {
                let (r, mut lat) = {
                    let (e, qs) = (Arc::clone(&e), Arc::clone(&qs));
                    tokio::task::spawn_blocking(move || round_alone(&e, &qs, inflight))
                        .await
                        .unwrap_or((f64::NAN, Vec::new()))
                };
                lat.sort_unstable();
                a_rate.push(r);
                a_p50.push(percentile_ms(&lat, 0.5));
                a_p99.push(percentile_ms(&lat, 0.99));
                let (r, mut lat) = round_line(&e, &qs, inflight).await;
                lat.sort_unstable();
                l_rate.push(r);
                l_p50.push(percentile_ms(&lat, 0.5));
                l_p99.push(percentile_ms(&lat, 0.99));
            }
            let (ar, lr) = (median(a_rate), median(l_rate));
            println!(
                "| {inflight} | {ar:.0}, {:.1} ms, {:.1} ms | {lr:.0}, {:.1} ms, {:.1} ms | {:.2}× |",
                median(a_p50),
                median(a_p99),
                median(l_p50),
                median(l_p99),
                lr / ar
            );
        }
        if e.products() == "amx-bf16" {
            let mut config = LocalEmbedderConfig::new(&args.model_dir);
            config.allow_download = false;
            config.matrix_tiles = false;
            match LocalEmbedder::load(config).await {
                Ok(exact) => {
                    let exact = Arc::new(exact);
                    let _ = round_line(&exact, &qs, 4).await;
                    compare_tiles(&exact, &e, &qs, args.rounds).await;
                }
                Err(err) => eprintln!("embed-questions: the exact model: {err}"),
            }
        }
        ExitCode::SUCCESS
    })
}
