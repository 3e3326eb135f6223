//! `schools`: what one node pays per school for its search index, open and
//! closed, and how fast a closed index comes back (issue #16's lifecycle).
//!
//! ```sh
//! cargo run --release -p bwenge-bench --bin schools -- --schools 2000 --chunks 200
//! ```
//! Each school gets its own index of `--chunks` synthetic passages (60–120
//! words from a 2,000-word vocabulary, the school's number in each, fixed
//! seed) with 384-dimension vectors from the hashing embedder: memory and
//! open costs depend on the shape, not on the model. Phases, in one
//! process, RSS read from `/proc/self/status` after each:
//!
//! 1. each school's index opened from disk, searched, and closed again:
//!    what a school costs once idle or evicted (the registry keeps nothing
//!    but its files on disk);
//! 2. every index open, its writer closed: what an open school costs now
//!    between writes;
//! 3. the same with every writer open: what each open school cost before
//!    (a writer per index for the life of the process).
//!
//! The indexes are built (and closed) before any of these. RSS only grows
//! when memory is kept (what an allocator caches after a free is reused by
//! the next school), so each phase is the growth per school over the one
//! before.
//!
//! Then `--sample` schools, at random, are reopened from disk and searched
//! once (a closed school's first search), against the same search on an
//! index already open: the same-run baseline.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use bwenge_bench::{Rng, pass, percentile_ms, temp_dir};
use bwenge_search::{HashingEmbedder, IndexItem, OpenState, OrgIndex};
use clap::Parser;
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Memory per school of the search index, open and closed, and reopen latency")]
struct Args {
    /// Schools, each with its own index.
    #[arg(long, default_value_t = 2000)]
    schools: usize,
    /// Passages per school.
    #[arg(long, default_value_t = 200)]
    chunks: usize,
    /// Closed schools reopened and searched for the latency figures.
    #[arg(long, default_value_t = 300)]
    sample: usize,
}

/// A closed school's cost, at most (issue #16).
const CLOSED_TARGET_KIB: f64 = 64.0;
const DIM: usize = 384;

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("schools: {e}");
            ExitCode::FAILURE
        }
    }
}

fn word(i: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "mu", "ri", "to", "se", "na", "bi", "lo", "ve", "du", "ny", "ga", "pe", "zi", "ho",
        "wa",
    ];
    let mut w = String::new();
    let mut n = i + 16;
    while n > 0 {
        w.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    w
}

fn passages(school: usize, chunks: usize, rng: &mut Rng) -> Vec<String> {
    (0..chunks)
        .map(|_| {
            let len = 60 + rng.below(61);
            let mut words: Vec<String> = (0..len).map(|_| word(rng.below(2000))).collect();
            words.push(format!("school{school}"));
            words.join(" ")
        })
        .collect()
}

fn rss_kib() -> f64 {
    bwenge_bench::rss_kib(None).map_or(f64::NAN, |k| k as f64)
}

fn build(dir: &Path, school: usize, chunks: usize, rng: &mut Rng) -> Result<OrgIndex, String> {
    let embedder = HashingEmbedder::new(DIM);
    let id = bwenge_search::Embedder::id(&embedder);
    let (mut index, _) = OrgIndex::open_or_create(dir, &id, DIM).map_err(|e| e.to_string())?;
    let source = Uuid::new_v4();
    let items: Vec<IndexItem> = passages(school, chunks, rng)
        .into_iter()
        .enumerate()
        .map(|(i, text)| IndexItem {
            chunk_id: Uuid::new_v4(),
            source_id: source,
            title: format!("School {school} reader"),
            heading: String::new(),
            vector: embedder.embed_one(&text),
            text,
            page: Some(1 + i as u64 / 3),
        })
        .collect();
    index.add(&items).map_err(|e| e.to_string())?;
    index.persist().map_err(|e| e.to_string())?;
    while index.link_pending(10_000) > 0 {}
    Ok(index)
}

fn run(args: Args) -> Result<(), String> {
    let root = temp_dir("schools", "indexes")?;
    let embedder = HashingEmbedder::new(DIM);
    let id = bwenge_search::Embedder::id(&embedder);
    let mut rng = Rng(0x5c40_01e5_2026_1204);
    println!(
        "schools: {} schools × {} passages, {DIM} dimensions, in {}",
        args.schools,
        args.chunks,
        root.display()
    );

    // Every school's index is built first and closed (set-up, not measured).
    let started = Instant::now();
    for s in 0..args.schools {
        let mut index = build(&root.join(s.to_string()), s, args.chunks, &mut rng)?;
        index.close_writer();
    }
    let built = started.elapsed();
    let open_one = |s: usize| -> Result<OrgIndex, String> {
        let (mut index, _) = OrgIndex::open_or_create(&root.join(s.to_string()), &id, DIM)
            .map_err(|e| e.to_string())?;
        while index.link_pending(10_000) > 0 {}
        Ok(index)
    };
    // 1. Each school opened, searched and closed again.
    let start_kib = rss_kib();
    for s in 0..args.schools {
        let index = open_one(s)?;
        let q = format!("{} school{s}", word(s % 2000));
        index
            .searcher()
            .search_hybrid(&q, &embedder.embed_one(&q), 5, None)
            .map_err(|e| e.to_string())?;
    }
    let closed_kib = rss_kib();
    // 2. Every school open, writers closed.
    let mut open = Vec::with_capacity(args.schools);
    for s in 0..args.schools {
        open.push(open_one(s)?);
    }
    let without_writers_kib = rss_kib();
    // 3. The same with every writer open (one mutation each: a source that
    //    is not there deleted, and persisted).
    for index in &mut open {
        index
            .delete_source(Uuid::nil())
            .and_then(|_| index.persist())
            .map_err(|e| e.to_string())?;
    }
    let with_writers_kib = rss_kib();
    drop(open);
    let per = |from: f64, to: f64| (to - from) / args.schools as f64;
    let closed = per(start_kib, closed_kib);
    let searching = per(closed_kib, without_writers_kib);
    let writing = searching + per(without_writers_kib, with_writers_kib);
    println!("built in {:.1} s", built.as_secs_f64());
    println!(
        "RSS per school, closed (files on disk only):   {closed:8.1} KiB  target ≤ {CLOSED_TARGET_KIB} {} \
         (negative: the allocator gave back more than was kept)",
        pass(closed <= CLOSED_TARGET_KIB)
    );
    println!("RSS per school, open for searching (now):      {searching:8.1} KiB");
    println!(
        "RSS per school, open with its writer (before):  {writing:8.1} KiB  (now / before: {:.2}×)",
        searching / writing
    );

    // A closed school's first search (reopen from disk + search), against a
    // search on an index that is already open.
    let mut reopen_ns = Vec::new();
    let mut open_ns = Vec::new();
    for _ in 0..args.sample {
        let s = rng.below(args.schools);
        let query = format!(
            "{} {} school{s}",
            word(rng.below(2000)),
            word(rng.below(2000))
        );
        let vector = embedder.embed_one(&query);
        let t = Instant::now();
        let (index, state) = OrgIndex::open_or_create(&root.join(s.to_string()), &id, DIM)
            .map_err(|e| e.to_string())?;
        if !matches!(state, OpenState::Loaded { .. }) {
            return Err(format!("school {s} was rebuilt, not reopened: {state:?}"));
        }
        let searcher = index.searcher();
        let hits = searcher
            .search_hybrid(&query, &vector, 5, None)
            .map_err(|e| e.to_string())?;
        reopen_ns.push(t.elapsed().as_nanos() as u64);
        if hits.is_empty() {
            return Err(format!("school {s} found nothing"));
        }
        let t = Instant::now();
        searcher
            .search_hybrid(&query, &vector, 5, None)
            .map_err(|e| e.to_string())?;
        open_ns.push(t.elapsed().as_nanos() as u64);
    }
    reopen_ns.sort_unstable();
    open_ns.sort_unstable();
    let (r50, r99) = (
        percentile_ms(&reopen_ns, 0.5),
        percentile_ms(&reopen_ns, 0.99),
    );
    let (o50, o99) = (percentile_ms(&open_ns, 0.5), percentile_ms(&open_ns, 0.99));
    println!("first search of a closed school (reopen + search): p50 {r50:.2} ms, p99 {r99:.2} ms");
    println!("search on an open index (baseline):                p50 {o50:.2} ms, p99 {o99:.2} ms");
    println!(
        "ratio reopen / open: p50 {:.1}×, p99 {:.1}×",
        r50 / o50,
        r99 / o99
    );
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
