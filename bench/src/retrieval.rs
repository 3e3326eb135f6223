//! Retrieval quality on Cranfield 1400: BM25 (the baseline), vectors and
//! hybrid (RRF) through `bwenge_search::OrgIndex`, with nDCG@10 (graded) and
//! recall@100. One run, fixed parameters, nothing tuned per query.
//!
//! ```sh
//! cargo run --release -p bwenge-bench --bin retrieval -- --model-dir models/all-MiniLM-L6-v2
//! ```
//! Without `--model-dir` / `BWENGE_MODEL_DIR` the vectors come from the
//! hashing embedder (a fallback of much lower quality), and it says so.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use bwenge_bench::cranfield::{Cranfield, parse_docs, parse_qrels, parse_queries};
use bwenge_search::{
    HashingEmbedder, Hit, IndexItem, LocalEmbedder, LocalEmbedderConfig, OrgIndex,
};
use clap::Parser;
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "nDCG@10 and recall@100 of BM25, vector and hybrid search on Cranfield 1400")]
struct Args {
    /// all-MiniLM-L6-v2 directory (scripts/fetch-model.sh); without it the
    /// hashing embedder is used.
    #[arg(long, env = "BWENGE_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// The Cranfield collection's directory (cran.all.1400, cran.qry, cranqrel); not part of the
    /// repository (see `bench/README.md`).
    #[arg(long, alias = "data-dir", env = "BWENGE_CRANFIELD_DIR")]
    cranfield_dir: Option<PathBuf>,
}

/// Hybrid must beat BM25 by this much nDCG@10.
const TARGET_GAIN: f64 = 0.03;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("retrieval: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let cran = Cranfield::open(
        args.cranfield_dir.as_deref(),
        &["cran.all.1400", "cran.qry", "cranqrel"],
    )?;
    let docs = parse_docs(&cran.read("cran.all.1400")?);
    let queries = parse_queries(&cran.read("cran.qry")?);
    let qrels = parse_qrels(&cran.read("cranqrel")?);
    println!(
        "Cranfield: {} documents, {} queries, {} judged queries (data: {})",
        docs.len(),
        queries.len(),
        qrels.len(),
        cran.dir().display()
    );

    // Embed documents and queries.
    let doc_texts: Vec<String> = docs
        .iter()
        .map(|d| format!("{}\n{}", d.title, d.text))
        .collect();
    let started = Instant::now();
    let (embedder_id, doc_vecs, query_vecs) = match &args.model_dir {
        Some(dir) => {
            let model = LocalEmbedder::load_blocking(LocalEmbedderConfig::new(dir))
                .map_err(|e| e.to_string())?;
            let d = model
                .embed_blocking(&doc_texts)
                .map_err(|e| e.to_string())?;
            let q = model.embed_blocking(&queries).map_err(|e| e.to_string())?;
            ("local:all-MiniLM-L6-v2".to_owned(), d, q)
        }
        None => {
            println!();
            println!(
                "!!! NOTE: no --model-dir / BWENGE_MODEL_DIR: vectors come from the HASHING embedder,"
            );
            println!("!!! a word-overlap fallback. These are NOT the figures of the real model.");
            println!("!!! Fetch it with scripts/fetch-model.sh and pass --model-dir.");
            println!();
            let h = HashingEmbedder::default();
            let d = doc_texts.iter().map(|t| h.embed_one(t)).collect();
            let q = queries.iter().map(|t| h.embed_one(t)).collect();
            ("hashing:384".to_owned(), d, q)
        }
    };
    let embed_secs = started.elapsed().as_secs_f64();
    println!(
        "embedder {embedder_id}: {} documents + {} queries in {embed_secs:.1} s",
        docs.len(),
        queries.len()
    );

    let tmp = std::env::temp_dir().join(format!("bwenge-retrieval-{}", std::process::id()));
    let (mut index, _) = OrgIndex::open_or_create(&tmp, &embedder_id, doc_vecs[0].len())
        .map_err(|e| e.to_string())?;
    let items: Vec<IndexItem> = docs
        .iter()
        .zip(doc_vecs)
        .map(|(d, vector)| IndexItem {
            chunk_id: Uuid::from_u128(u128::from(d.id)),
            source_id: Uuid::from_u128(1 << 64 | u128::from(d.id)),
            title: d.title.clone(),
            heading: String::new(),
            text: d.text.clone(),
            page: None,
            vector,
        })
        .collect();
    index.add(&items).map_err(|e| e.to_string())?;

    let mut sums: [Metrics; 3] = Default::default();
    let mut judged = 0usize;
    for (qi, (q, qv)) in queries.iter().zip(&query_vecs).enumerate() {
        let Some(gains) = qrels.get(&(qi as u32 + 1)) else {
            continue;
        };
        if !gains.values().any(|g| *g > 0.0) {
            continue;
        }
        judged += 1;
        let runs = [
            index.search_bm25(q, 100, None),
            index.search_vector(qv, 100, None),
            index.search_hybrid(q, qv, 100, None),
        ];
        for (sum, run) in sums.iter_mut().zip(runs) {
            let ranked: Vec<u32> = run.map_err(|e| e.to_string())?.iter().map(doc_of).collect();
            sum.add(&evaluate(&ranked, gains));
        }
    }
    drop(index);
    let _ = std::fs::remove_dir_all(&tmp);

    let n = judged as f64;
    let base = sums[0].ndcg10 / n;
    println!();
    println!(
        "{judged} queries with relevant documents; graded gain 5 - code (codes 1-4), 0 for -1"
    );
    println!(
        "{:<28} {:>9} {:>10} {:>9} {:>13}",
        "run", "nDCG@10", "vs BM25", "ratio", "recall@100"
    );
    for (name, m) in ["BM25 (baseline)", "vectors", "hybrid (RRF k=60)"]
        .iter()
        .zip(&sums)
    {
        let ndcg = m.ndcg10 / n;
        println!(
            "{:<28} {:>9.4} {:>+10.4} {:>9.3} {:>13.4}",
            name,
            ndcg,
            ndcg - base,
            ndcg / base,
            m.recall100 / n
        );
    }
    let gain = sums[2].ndcg10 / n - base;
    println!();
    println!(
        "target: hybrid >= BM25 + {TARGET_GAIN:.2} nDCG@10 -> {} (hybrid - BM25 = {gain:+.4}, embedder {embedder_id})",
        if gain >= TARGET_GAIN { "PASS" } else { "MISS" }
    );
    Ok(())
}

fn doc_of(h: &Hit) -> u32 {
    h.chunk_id.as_u128() as u32
}

#[derive(Default, Clone, Copy)]
struct Metrics {
    ndcg10: f64,
    recall100: f64,
}

impl Metrics {
    fn add(&mut self, m: &Metrics) {
        self.ndcg10 += m.ndcg10;
        self.recall100 += m.recall100;
    }
}

/// nDCG@10 (gain / log2(rank + 1), ideal order of all judged gains) and
/// recall@100 (share of the documents with gain > 0 in the first 100).
fn evaluate(ranked: &[u32], gains: &HashMap<u32, f64>) -> Metrics {
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, d)| gains.get(d).copied().unwrap_or(0.0) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<f64> = gains.values().copied().filter(|g| *g > 0.0).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, g)| g / (i as f64 + 2.0).log2())
        .sum();
    let relevant: HashSet<u32> = gains
        .iter()
        .filter(|(_, g)| **g > 0.0)
        .map(|(d, _)| *d)
        .collect();
    let found = ranked
        .iter()
        .take(100)
        .filter(|d| relevant.contains(d))
        .count();
    Metrics {
        ndcg10: if idcg > 0.0 { dcg / idcg } else { 0.0 },
        recall100: found as f64 / relevant.len().max(1) as f64,
    }
}
