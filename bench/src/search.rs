//! Search speed, graph recall and memory of `bwenge_search::OrgIndex` at
//! 100k chunks × 384 dimensions.
//!
//! ```sh
//! cargo run --release -p bwenge-bench --bin search -- --model-dir models/all-MiniLM-L6-v2
//! ```
//! The 100k chunks are synthetic: a word-bigram Markov chain trained on the
//! Cranfield abstracts generates 60–140-word chunks (fixed seed); their
//! vectors come from the hashing embedder (embedding 100k chunks with the
//! local model would take far too long on 2 cores). Queries are the 225
//! Cranfield queries. Graph recall on real embeddings is measured on the
//! Cranfield abstracts with the local model (`--model-dir`), which also
//! gives an end-to-end hybrid latency with a real query embedding.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bwenge_bench::Rng;
use bwenge_bench::cranfield::Cranfield;
use bwenge_search::{
    HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M, HashingEmbedder, IndexItem, LocalEmbedder,
    LocalEmbedderConfig, OrgIndex, OrgSearcher,
};
use clap::Parser;
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Latency, HNSW recall and memory of the hybrid index at 100k chunks")]
struct Args {
    /// all-MiniLM-L6-v2 directory (scripts/fetch-model.sh).
    #[arg(long, env = "BWENGE_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// The Cranfield collection's directory (cran.all.1400, cran.qry); not part of the
    /// repository (see `bench/README.md`).
    #[arg(long, alias = "data-dir", env = "BWENGE_CRANFIELD_DIR")]
    cranfield_dir: Option<PathBuf>,
    /// Number of synthetic chunks.
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// Rounds over the 225 queries for each latency figure.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
}

const SEED: u64 = 0x00b0_e11e_5eed_2024;
const CHUNKS_PER_SOURCE: usize = 100;
const BATCH: usize = 10_000;

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("search: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Word-bigram Markov chain over a corpus.
struct Chain {
    words: Vec<String>,
    /// Every token of the corpus as a word index (unigram distribution).
    tokens: Vec<u32>,
    /// Successors of each word, with multiplicity.
    next: Vec<Vec<u32>>,
}

impl Chain {
    fn new(texts: &[String]) -> Self {
        let mut ids = std::collections::HashMap::new();
        let mut words = Vec::new();
        let mut tokens = Vec::new();
        let mut next: Vec<Vec<u32>> = Vec::new();
        for t in texts {
            let mut prev: Option<u32> = None;
            for w in t.split_whitespace() {
                let id = *ids.entry(w.to_owned()).or_insert_with(|| {
                    words.push(w.to_owned());
                    next.push(Vec::new());
                    (words.len() - 1) as u32
                });
                tokens.push(id);
                if let Some(p) = prev {
                    next[p as usize].push(id);
                }
                prev = Some(id);
            }
        }
        Self {
            words,
            tokens,
            next,
        }
    }

    fn text(&self, rng: &mut Rng, len: usize) -> String {
        let mut out = String::with_capacity(len * 8);
        let mut w = self.tokens[rng.below(self.tokens.len())];
        for i in 0..len {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&self.words[w as usize]);
            let succ = &self.next[w as usize];
            w = if succ.is_empty() {
                self.tokens[rng.below(self.tokens.len())]
            } else {
                succ[rng.below(succ.len())]
            };
        }
        out
    }
}

fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:") / 1024, kb("VmHWM:") / 1024)
}

struct Lat(Vec<Duration>);

impl Lat {
    fn pct(&self, p: f64) -> f64 {
        let mut v: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    }
}

fn time<F: FnMut(usize) -> Result<(), String>>(
    rounds: usize,
    n: usize,
    mut f: F,
) -> Result<Lat, String> {
    for i in 0..n.min(50) {
        f(i)?; // warm-up
    }
    let mut out = Vec::with_capacity(rounds * n);
    for _ in 0..rounds {
        for i in 0..n {
            let t = Instant::now();
            f(i)?;
            out.push(t.elapsed());
        }
    }
    Ok(Lat(out))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn run(args: Args) -> Result<(), String> {
    let e = |e: bwenge_search::IndexError| e.to_string();
    let cran = Cranfield::open(
        args.cranfield_dir.as_deref(),
        &["cran.all.1400", "cran.qry"],
    )?;
    let docs = parse_docs(&cran.read("cran.all.1400")?);
    let queries = parse_queries(&cran.read("cran.qry")?);
    let chain = Chain::new(
        &docs
            .iter()
            .map(|(t, w)| format!("{t} {w}"))
            .collect::<Vec<_>>(),
    );
    println!(
        "corpus: {} synthetic chunks from a word-bigram chain over {} Cranfield abstracts ({} words), seed {SEED:#x}",
        args.chunks,
        docs.len(),
        chain.words.len()
    );
    let hashing = HashingEmbedder::default();
    let model = match &args.model_dir {
        Some(dir) => Some(
            LocalEmbedder::load_blocking(LocalEmbedderConfig::new(dir))
                .map_err(|e| e.to_string())?,
        ),
        None => {
            println!(
                "!!! NOTE: no --model-dir: recall on real embeddings and the end-to-end latency with the"
            );
            println!("!!! local model are replaced by hashing-embedder figures / skipped.");
            None
        }
    };

    // ------------------------------------------------------------------ build
    let tmp = std::env::temp_dir().join(format!("bwenge-search-bench-{}", std::process::id()));
    let (rss0, _) = rss();
    let (mut index, _) = OrgIndex::open_or_create(&tmp, &hashing_id(&hashing), 384).map_err(e)?;
    let mut rng = Rng(SEED);
    let started = Instant::now();
    let mut gen_time = Duration::ZERO;
    let mut done = 0;
    while done < args.chunks {
        let n = BATCH.min(args.chunks - done);
        let t = Instant::now();
        let items: Vec<IndexItem> = (done..done + n)
            .map(|i| {
                let title_len = 4 + rng.below(6);
                let text_len = 60 + rng.below(81);
                let title = chain.text(&mut rng, title_len);
                let text = chain.text(&mut rng, text_len);
                let vector = hashing.embed_one(&format!("{title}\n{text}"));
                IndexItem {
                    chunk_id: Uuid::from_u128(i as u128),
                    source_id: Uuid::from_u128((1 << 64) | (i / CHUNKS_PER_SOURCE) as u128),
                    title,
                    heading: String::new(),
                    text,
                    page: Some((i % CHUNKS_PER_SOURCE) as u64),
                    vector,
                }
            })
            .collect();
        gen_time += t.elapsed();
        index.add(&items).map_err(e)?;
        done += n;
    }
    let build = started.elapsed() - gen_time;
    let (rss1, hwm1) = rss();
    println!(
        "built {} chunks in {:.1} s ({:.0} chunks/s; BM25 + HNSW M={HNSW_M} ef_construction={HNSW_EF_CONSTRUCTION}, ef_search=max(k, {HNSW_EF_SEARCH})), text generation + hashing {:.1} s",
        index.len(),
        build.as_secs_f64(),
        index.len() as f64 / build.as_secs_f64(),
        gen_time.as_secs_f64()
    );
    let searcher = index.searcher();

    // --------------------------------------------------------------- latency
    let qv: Vec<Vec<f32>> = queries.iter().map(|q| hashing.embed_one(q)).collect();
    let nq = queries.len();
    let k = 10;
    let scope: HashSet<Uuid> = (0..5u128)
        .map(|s| Uuid::from_u128((1 << 64) | (s * 97)))
        .collect();
    let exact = time(1, nq, |i| {
        searcher
            .search_vector_exact(&qv[i], k)
            .map(|_| ())
            .map_err(e)
    })?;
    let vector = time(args.rounds, nq, |i| {
        searcher
            .search_vector(&qv[i], k, None)
            .map(|_| ())
            .map_err(e)
    })?;
    let bm25 = time(args.rounds, nq, |i| {
        searcher
            .search_bm25(&queries[i], k, None)
            .map(|_| ())
            .map_err(e)
    })?;
    let hybrid = time(args.rounds, nq, |i| {
        let v = hashing.embed_one(&queries[i]);
        searcher
            .search_hybrid(&queries[i], &v, k, None)
            .map(|_| ())
            .map_err(e)
    })?;
    let scoped = time(args.rounds, nq, |i| {
        let v = hashing.embed_one(&queries[i]);
        searcher
            .search_hybrid(&queries[i], &v, k, Some(&scope))
            .map(|_| ())
            .map_err(e)
    })?;
    println!();
    println!(
        "latency over {} queries × {} rounds, k = {k} (ms):",
        nq, args.rounds
    );
    println!(
        "{:<52} {:>8} {:>8} {:>16}",
        "", "p50", "p99", "p50 vs baseline"
    );
    let row = |name: &str, l: &Lat, base: Option<&Lat>| {
        let ratio = base
            .map(|b| format!("{:.3}×", l.pct(0.5) / b.pct(0.5)))
            .unwrap_or_default();
        println!(
            "{name:<52} {:>8.3} {:>8.3} {:>16}",
            l.pct(0.5),
            l.pct(0.99),
            ratio
        );
    };
    row("exact vector scan, 100k (baseline)", &exact, None);
    row("HNSW vector search", &vector, Some(&exact));
    row("BM25", &bm25, Some(&exact));
    row(
        "hybrid incl. hashing query embedding",
        &hybrid,
        Some(&exact),
    );
    row(
        "hybrid, scope of 5 sources (500 chunks)",
        &scoped,
        Some(&exact),
    );
    let mut e2e_line = None;
    if let Some(model) = &model {
        let embed = time(1, nq, |i| {
            model
                .embed_blocking(&queries[i..=i])
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        let e2e = time(1, nq, |i| {
            let real = model
                .embed_blocking(&queries[i..=i])
                .map_err(|e| e.to_string())?;
            std::hint::black_box(real);
            // The index holds hashing vectors, so search with the hashing
            // vector; the local-model embedding is there for its cost.
            let v = hashing.embed_one(&queries[i]);
            searcher
                .search_hybrid(&queries[i], &v, k, None)
                .map(|_| ())
                .map_err(e)
        })?;
        row("local-model query embedding alone", &embed, Some(&exact));
        row(
            "hybrid incl. local-model query embedding",
            &e2e,
            Some(&exact),
        );
        e2e_line = Some((e2e.pct(0.5), e2e.pct(0.99)));
    }

    // ---------------------------------------------------------------- recall
    let recall_100k = recall(&searcher, &qv, k)?;
    let (real_id, real_recall) = {
        let texts: Vec<String> = docs.iter().map(|(t, w)| format!("{t}\n{w}")).collect();
        let (id, dvecs, qvecs) = match &model {
            Some(m) => (
                "local:all-MiniLM-L6-v2",
                m.embed_blocking(&texts).map_err(|e| e.to_string())?,
                m.embed_blocking(&queries).map_err(|e| e.to_string())?,
            ),
            None => (
                "hashing:384",
                texts.iter().map(|t| hashing.embed_one(t)).collect(),
                queries.iter().map(|t| hashing.embed_one(t)).collect(),
            ),
        };
        let dir = tmp.with_extension("cranfield");
        let (mut small, _) = OrgIndex::open_or_create(&dir, id, 384).map_err(e)?;
        let items: Vec<IndexItem> = docs
            .iter()
            .zip(dvecs)
            .enumerate()
            .map(|(i, ((t, w), vector))| IndexItem {
                chunk_id: Uuid::from_u128(i as u128),
                source_id: Uuid::from_u128(i as u128),
                title: t.clone(),
                heading: String::new(),
                text: w.clone(),
                page: None,
                vector,
            })
            .collect();
        small.add(&items).map_err(e)?;
        let r = recall(&small.searcher(), &qvecs, k)?;
        drop(small);
        let _ = std::fs::remove_dir_all(&dir);
        (id, r)
    };
    println!();
    println!(
        "HNSW recall@{k} against an exact scan in the same run (exact = 1.000 is the baseline):"
    );
    println!("{:<54} {:>9} {:>10}", "", "recall", "ε-recall");
    println!(
        "{:<54} {:>9.4} {:>10.4}",
        "  100k synthetic chunks, hashing vectors", recall_100k.0, recall_100k.1
    );
    println!(
        "{:<54} {:>9.4} {:>10.4}",
        format!("  1400 Cranfield abstracts, {real_id}"),
        real_recall.0,
        real_recall.1
    );

    // ---------------------------------------------------------------- memory
    println!();
    println!(
        "memory: VmRSS {rss1} MB after building (peak {hwm1} MB); {rss0} MB before the index, so the index holds ~{} MB",
        rss1.saturating_sub(rss0)
    );

    // ----------------------------------------------------------- persistence
    let t = Instant::now();
    index.persist().map_err(e)?;
    let persist = t.elapsed();
    let vec_size = std::fs::metadata(tmp.join("vectors.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    let bm25_size: u64 = std::fs::read_dir(tmp.join("bm25"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    drop(searcher);
    drop(index);
    let t = Instant::now();
    let (mut index, state) =
        OrgIndex::open_or_create(&tmp, &hashing_id(&hashing), 384).map_err(e)?;
    let reopen = t.elapsed();
    let unlinked_searcher = index.searcher();
    let unlinked = time(1, 50, |i| {
        let v = hashing.embed_one(&queries[i]);
        unlinked_searcher
            .search_hybrid(&queries[i], &v, k, None)
            .map(|_| ())
            .map_err(e)
    })?;
    let t = Instant::now();
    while index.link_pending(1000) > 0 {}
    let link = t.elapsed();
    println!(
        "persistence: persist {:.2} s (vectors.bin {} MB, bm25/ {} MB); reopen {:.2} s ({state:?}; \
         reads vectors.bin, vectors unlinked: hybrid p50 {:.1} ms meanwhile); linking the graph \
         (link_pending(1000) until 0) {:.1} s; the first build took {:.1} s",
        persist.as_secs_f64(),
        vec_size >> 20,
        bm25_size >> 20,
        reopen.as_secs_f64(),
        unlinked.pct(0.5),
        link.as_secs_f64(),
        build.as_secs_f64()
    );
    drop(index);
    let _ = std::fs::remove_dir_all(&tmp);

    // --------------------------------------------------------------- verdicts
    println!();
    println!("targets:");
    println!(
        "  hybrid p50 <= 15 ms, p99 <= 30 ms (hashing query embedding): {:.2} / {:.2} ms -> {}",
        hybrid.pct(0.5),
        hybrid.pct(0.99),
        verdict(hybrid.pct(0.5) <= 15.0 && hybrid.pct(0.99) <= 30.0)
    );
    if let Some((p50, p99)) = e2e_line {
        println!(
            "  hybrid p50 <= 15 ms, p99 <= 30 ms (local-model query embedding): {p50:.2} / {p99:.2} ms -> {}",
            verdict(p50 <= 15.0 && p99 <= 30.0)
        );
    }
    println!(
        "  BM25 p99 <= 2 ms: {:.2} ms -> {}",
        bm25.pct(0.99),
        verdict(bm25.pct(0.99) <= 2.0)
    );
    println!(
        "  VmRSS <= 600 MB at 100k x 384: {rss1} MB -> {}",
        verdict(rss1 <= 600)
    );
    Ok(())
}

fn hashing_id(h: &HashingEmbedder) -> String {
    use bwenge_search::Embedder;
    h.id()
}

/// Mean share of the exact top-k that the graph search returns, and the
/// same counting a hit as found when its distance (1 − cosine) is within 1%
/// of the exact k-th distance (ε-recall, as ann-benchmarks reports it: near
/// ties at the cut-off are common with these vectors).
fn recall(s: &OrgSearcher, queries: &[Vec<f32>], k: usize) -> Result<(f64, f64), String> {
    let (mut sum, mut sum_eps) = (0.0, 0.0);
    for q in queries {
        let exact = s.search_vector_exact(q, k).map_err(|e| e.to_string())?;
        let ids: HashSet<Uuid> = exact.iter().map(|h| h.chunk_id).collect();
        let kth = exact.last().map_or(1.0, |h| 1.0 - h.score);
        let got = s.search_vector(q, k, None).map_err(|e| e.to_string())?;
        let n = exact.len().max(1) as f64;
        sum += got.iter().filter(|h| ids.contains(&h.chunk_id)).count() as f64 / n;
        sum_eps += got
            .iter()
            .filter(|h| 1.0 - h.score <= kth * 1.01 + 1e-6)
            .count() as f64
            / n;
    }
    let n = queries.len().max(1) as f64;
    Ok((sum / n, sum_eps / n))
}

/// (title, abstract) of every Cranfield document.
fn parse_docs(raw: &str) -> Vec<(String, String)> {
    let mut docs = Vec::new();
    for rec in raw.split("\n.I ") {
        let (mut title, mut text, mut field) = (String::new(), String::new(), "");
        for line in rec.lines().skip(1) {
            if line.starts_with('.') && line.len() == 2 {
                field = line;
                continue;
            }
            let target = match field {
                ".T" => &mut title,
                ".W" => &mut text,
                _ => continue,
            };
            target.push_str(line.trim());
            target.push(' ');
        }
        docs.push((title.trim().to_owned(), text.trim().to_owned()));
    }
    docs
}

fn parse_queries(raw: &str) -> Vec<String> {
    raw.split("\n.I ")
        .filter_map(|rec| {
            let (_, text) = rec.split_once("\n.W")?;
            Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}
