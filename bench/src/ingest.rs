//! Ingest speed on real PDFs: extraction (the production child process),
//! chunking and indexing, then end to end with the local embedding model.
//!
//! ```sh
//! cargo build --release -p bwenge -p bwenge-bench && target/release/ingest --model-dir models/all-MiniLM-L6-v2
//! ```
//!
//! Corpus: every PDF under `--pdf-dir` (default `/usr/share/expeyes/doc`,
//! the ExpEYES manuals of Debian's `expeyes-doc-en`). Each PDF is one
//! source, processed the way `KnowledgeIngest::process` and
//! `KnowledgeSearch::index_source` do it: `extract_pdf_in_child` (the real
//! `bwenge __extract-pdf FILE` child, process start-up included), `chunk`
//! with the default configuration, embedding of the chunk texts (heading
//! path prepended when there is one; batches of 32), then
//! `delete_source` + `add` + `persist` on one organisation index.
//!
//! Targets (issue text): extraction + chunking + BM25 indexing (vectors from
//! the cheap hashing embedder) **≥ 100 pages/s**; end to end with the local
//! model **≥ 5 pages/s** on 2 cores.
//!
//! Same-run baselines: `pdftotext` (poppler-utils, one process per PDF, the
//! text read from a pipe) over the same PDFs for extraction; the model's
//! raw throughput on a fixed batch of 64 chunk texts for embedding.
//!
//! The parsers crate does not expose in-process PDF extraction (only
//! `extract_pdf_in_child` and the child's own entry point `pdf_child_main`,
//! which lowers the calling process's rlimits and writes JSON to stdout), so
//! only the child path is measured; the child's fixed cost is measured
//! apart, as `extract_pdf_in_child` on an empty file.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bwenge_bench::{fmt_opt, median, pass, temp_dir};
use bwenge_parsers::{Chunk, ChunkConfig, Document, ParseError, PdfLimits, extract_pdf_in_child};
use bwenge_search::{HashingEmbedder, IndexItem, LocalEmbedder, LocalEmbedderConfig, OrgIndex};
use clap::Parser;
use uuid::Uuid;

/// Issue targets.
const TARGET_PIPELINE_PAGES_S: f64 = 100.0;
const TARGET_E2E_PAGES_S: f64 = 5.0;
/// Texts per `embed` call, as `KnowledgeIngest` (`EMBED_BATCH`).
const EMBED_BATCH: usize = 32;
/// Size of the fixed batch for the model's raw throughput.
const RAW_BATCH: usize = 64;
/// Spawns of the child on an empty file per round (start-up cost).
const STARTUP_SPAWNS: usize = 3;
const DIM: usize = 384;

#[derive(Parser)]
#[command(about = "Ingest speed on real PDFs: extraction, chunking, indexing, local model")]
struct Args {
    /// Directory whose `*.pdf` files are the corpus.
    #[arg(long, default_value = "/usr/share/expeyes/doc")]
    pdf_dir: PathBuf,
    /// The `bwenge` binary [default: `bwenge` next to this executable].
    #[arg(long, env = "BWENGE_BIN")]
    bwenge: Option<PathBuf>,
    /// all-MiniLM-L6-v2 directory (scripts/fetch-model.sh); without it the
    /// end-to-end part is skipped.
    #[arg(long, env = "BWENGE_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Rounds of the extraction/chunking/indexing part (after one warm-up).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Rounds of the end-to-end part with the local model (after a warm-up
    /// batch).
    #[arg(long, default_value_t = 3)]
    model_rounds: usize,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Time and CPU.

/// This process's CPU time and that of its waited-for children, from
/// `/proc/self/stat` (Linux; `None` elsewhere).
fn cpu_now() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After "pid (comm) ": state, ..., then utime, stime, cutime, cstime at
    // 11..=14, in USER_HZ ticks (Linux fixes it at 100 for userspace).
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    let tick = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
    let (ut, st, cut, cst) = (tick(11)?, tick(12)?, tick(13)?, tick(14)?);
    let ms = |t: u64| Duration::from_millis(t * 10);
    Some((ms(ut + st), ms(cut + cst)))
}

/// Wall time with this process's and its children's CPU time.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    wall: Duration,
    own_cpu: Duration,
    child_cpu: Duration,
}

impl Span {
    fn add(&mut self, o: Span) {
        self.wall += o.wall;
        self.own_cpu += o.own_cpu;
        self.child_cpu += o.child_cpu;
    }
    fn secs(&self) -> f64 {
        self.wall.as_secs_f64()
    }
    /// CPU (own + children) in % of one core; `None` for spans too short for
    /// `/proc`'s 10 ms ticks to mean anything.
    fn cpu_pct(&self) -> Option<f64> {
        (self.wall >= Duration::from_millis(200)).then(|| {
            (self.own_cpu + self.child_cpu).as_secs_f64() / self.wall.as_secs_f64() * 100.0
        })
    }
}

struct Meter {
    at: Instant,
    cpu: Option<(Duration, Duration)>,
}

impl Meter {
    fn start() -> Self {
        Self {
            cpu: cpu_now(),
            at: Instant::now(),
        }
    }
    fn stop(&self) -> Span {
        let wall = self.at.elapsed();
        let (own_cpu, child_cpu) = match (self.cpu, cpu_now()) {
            (Some((a, b)), Some((c, d))) => (c.saturating_sub(a), d.saturating_sub(b)),
            _ => (Duration::ZERO, Duration::ZERO),
        };
        Span {
            wall,
            own_cpu,
            child_cpu,
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "-".to_owned())
}

// ---------------------------------------------------------------------------
// Corpus.

struct Pdf {
    path: PathBuf,
    name: String,
    bytes: u64,
    /// One stable source id per PDF (the index replaces it every round).
    source_id: Uuid,
}

fn list_pdfs(dir: &Path) -> Result<Vec<Pdf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot list {}: {e} (install the corpus: apt-get install expeyes-doc-en, or pass --pdf-dir)",
            dir.display()
        )
    })?;
    let mut pdfs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let is_pdf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pdf"));
        if !is_pdf || !path.is_file() {
            continue;
        }
        let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let name = entry.file_name().to_string_lossy().into_owned();
        pdfs.push(Pdf {
            path,
            name,
            bytes,
            source_id: Uuid::nil(),
        });
    }
    pdfs.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, p) in pdfs.iter_mut().enumerate() {
        p.source_id = Uuid::from_u128(0x1_0000 + i as u128);
    }
    if pdfs.is_empty() {
        return Err(format!("no PDF in {}", dir.display()));
    }
    Ok(pdfs)
}

// ---------------------------------------------------------------------------
// The stages.

fn extract(rt: &tokio::runtime::Runtime, exe: &Path, pdf: &Path) -> Result<Document, String> {
    rt.block_on(extract_pdf_in_child(exe, pdf, &PdfLimits::default()))
        .map_err(|e| format!("extracting {}: {e}", pdf.display()))
}

/// `pdftotext FILE -`; returns the pages (form feeds) and characters seen.
fn pdftotext(pdf: &Path) -> Result<(usize, usize), String> {
    let out = Command::new("pdftotext")
        .args(["-q", "-enc", "UTF-8"])
        .arg(pdf)
        .arg("-")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("pdftotext: {e}"))?;
    if !out.status.success() {
        return Err(format!("pdftotext {}: {}", pdf.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok((
        text.matches('\u{c}').count(),
        text.chars().filter(|c| !c.is_whitespace()).count(),
    ))
}

/// The text the server embeds for a chunk (`KnowledgeIngest::process`).
fn embed_text(c: &Chunk) -> String {
    if c.heading_path.is_empty() {
        c.text.clone()
    } else {
        format!("{}\n{}", c.heading_path.join(" > "), c.text)
    }
}

fn items(pdf: &Pdf, title: &str, chunks: &[Chunk], vectors: Vec<Vec<f32>>) -> Vec<IndexItem> {
    chunks
        .iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (c, vector))| IndexItem {
            chunk_id: Uuid::from_u128((pdf.source_id.as_u128() << 32) + i as u128),
            source_id: pdf.source_id,
            title: title.to_owned(),
            heading: c.heading_path.join(" > "),
            text: c.text.clone(),
            page: Some(u64::from(c.page)),
            vector,
        })
        .collect()
}

/// `KnowledgeSearch::index_source`: replace the source, then persist.
fn index_source(index: &mut OrgIndex, source: Uuid, items: &[IndexItem]) -> Result<(), String> {
    index
        .delete_source(source)
        .and_then(|_| index.add(items))
        .and_then(|()| index.persist())
        .map_err(|e| format!("indexing: {e}"))
}

/// One round of extraction + chunking + indexing with hashing vectors.
#[derive(Default)]
struct CheapRound {
    pdftotext: Span,
    /// Median of `STARTUP_SPAWNS` spawns on an empty file, seconds.
    startup: f64,
    extract: Span,
    chunk: Span,
    hash: Span,
    index: Span,
    pages: u64,
    chunks: usize,
}

impl CheapRound {
    fn pipeline(&self) -> Span {
        let mut s = self.extract;
        s.add(self.chunk);
        s.add(self.hash);
        s.add(self.index);
        s
    }
}

struct Ctx<'a> {
    rt: tokio::runtime::Runtime,
    exe: &'a Path,
    empty_file: PathBuf,
    pdfs: &'a [Pdf],
    work: PathBuf,
    with_pdftotext: bool,
}

fn cheap_round(ctx: &Ctx<'_>, n: usize) -> Result<CheapRound, String> {
    let mut r = CheapRound::default();
    // Baseline first, then the same PDFs through Bwenge, in the same round.
    if ctx.with_pdftotext {
        for pdf in ctx.pdfs {
            let m = Meter::start();
            pdftotext(&pdf.path)?;
            r.pdftotext.add(m.stop());
        }
    }
    let mut startups = Vec::with_capacity(STARTUP_SPAWNS);
    for _ in 0..STARTUP_SPAWNS {
        let t = Instant::now();
        let res = ctx.rt.block_on(extract_pdf_in_child(
            ctx.exe,
            &ctx.empty_file,
            &PdfLimits::default(),
        ));
        startups.push(t.elapsed().as_secs_f64());
        if !matches!(res, Err(ParseError::Malformed(_))) {
            return Err(format!(
                "the child on an empty file should say Malformed, got {res:?}"
            ));
        }
    }
    r.startup = median(startups.into_iter()).unwrap_or(f64::NAN);

    let dir = ctx.work.join(format!("cheap-{n}"));
    let hashing = HashingEmbedder::new(DIM);
    let m = Meter::start();
    let (mut index, _) =
        OrgIndex::open_or_create(&dir, "hashing:384", DIM).map_err(|e| format!("index: {e}"))?;
    r.index.add(m.stop());
    let cfg = ChunkConfig::default();
    for pdf in ctx.pdfs {
        let m = Meter::start();
        let doc = extract(&ctx.rt, ctx.exe, &pdf.path)?;
        r.extract.add(m.stop());
        r.pages += u64::from(doc.page_count);

        let m = Meter::start();
        let chunks = bwenge_parsers::chunk(&doc, &cfg);
        r.chunk.add(m.stop());
        r.chunks += chunks.len();

        let m = Meter::start();
        let vectors: Vec<Vec<f32>> = chunks
            .iter()
            .map(|c| hashing.embed_one(&embed_text(c)))
            .collect();
        r.hash.add(m.stop());

        let title = doc.title.clone().unwrap_or_else(|| pdf.name.clone());
        let m = Meter::start();
        let items = items(pdf, &title, &chunks, vectors);
        index_source(&mut index, pdf.source_id, &items)?;
        r.index.add(m.stop());
    }
    if index.len() != r.chunks {
        return Err(format!(
            "index holds {} chunks, expected {}",
            index.len(),
            r.chunks
        ));
    }
    let hits = index
        .search_bm25("oscilloscope", 5, None)
        .map_err(|e| format!("search: {e}"))?;
    if hits.is_empty() {
        return Err("BM25 finds nothing for \"oscilloscope\" in the ExpEYES manuals".into());
    }
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}

/// One end-to-end round with the local model.
#[derive(Default)]
struct ModelRound {
    /// The fixed batch of 64, embedded alone (the model's raw throughput).
    raw: Span,
    /// The same batch through candle's padded batches (the baseline: what
    /// every passage went through before the panels took documents).
    raw_candle: Span,
    /// The fixed batch with the exact f32 products, where the model's run
    /// on the matrix unit's bfloat16 tiles.
    raw_exact: Option<Span>,
    total: Span,
    extract: Span,
    chunk: Span,
    embed: Span,
    index: Span,
    pages: u64,
    chunks: usize,
}

fn model_round(
    ctx: &Ctx<'_>,
    model: &LocalEmbedder,
    candle: &LocalEmbedder,
    exact: Option<&LocalEmbedder>,
    raw_batch: &[String],
    n: usize,
) -> Result<ModelRound, String> {
    let mut r = ModelRound::default();
    let m = Meter::start();
    let v = model
        .embed_blocking(raw_batch)
        .map_err(|e| format!("embedding: {e}"))?;
    r.raw = m.stop();
    let m = Meter::start();
    let w = candle
        .embed_blocking(raw_batch)
        .map_err(|e| format!("embedding: {e}"))?;
    r.raw_candle = m.stop();
    if let Some(exact) = exact {
        let m = Meter::start();
        exact
            .embed_blocking(raw_batch)
            .map_err(|e| format!("embedding: {e}"))?;
        r.raw_exact = Some(m.stop());
    }
    if v.len() != raw_batch.len() || w.len() != raw_batch.len() {
        return Err("the model returned the wrong number of vectors".into());
    }

    let dir = ctx.work.join(format!("model-{n}"));
    let cfg = ChunkConfig::default();
    let all = Meter::start();
    let m = Meter::start();
    let (mut index, _) = OrgIndex::open_or_create(&dir, "local:all-MiniLM-L6-v2", DIM)
        .map_err(|e| format!("index: {e}"))?;
    r.index.add(m.stop());
    for pdf in ctx.pdfs {
        let m = Meter::start();
        let doc = extract(&ctx.rt, ctx.exe, &pdf.path)?;
        r.extract.add(m.stop());
        r.pages += u64::from(doc.page_count);

        let m = Meter::start();
        let chunks = bwenge_parsers::chunk(&doc, &cfg);
        r.chunk.add(m.stop());
        r.chunks += chunks.len();

        let m = Meter::start();
        let mut vectors = Vec::with_capacity(chunks.len());
        for batch in chunks.chunks(EMBED_BATCH) {
            let texts: Vec<String> = batch.iter().map(embed_text).collect();
            vectors.extend(
                model
                    .embed_blocking(&texts)
                    .map_err(|e| format!("embedding: {e}"))?,
            );
        }
        r.embed.add(m.stop());

        let title = doc.title.clone().unwrap_or_else(|| pdf.name.clone());
        let m = Meter::start();
        let items = items(pdf, &title, &chunks, vectors);
        index_source(&mut index, pdf.source_id, &items)?;
        r.index.add(m.stop());
    }
    r.total = all.stop();
    if index.len() != r.chunks {
        return Err(format!(
            "index holds {} chunks, expected {}",
            index.len(),
            r.chunks
        ));
    }
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}

// ---------------------------------------------------------------------------
// Report.

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Median over rounds of a per-round figure.
fn med<T>(rounds: &[T], f: impl Fn(&T) -> f64) -> Option<f64> {
    median(rounds.iter().map(f))
}

fn med_cpu<T>(rounds: &[T], f: impl Fn(&T) -> Span) -> String {
    fmt_opt(median(rounds.iter().filter_map(|r| f(r).cpu_pct())), 0)
}

fn row(
    stage: &str,
    secs: Option<f64>,
    pages_s: Option<f64>,
    chunks_s: Option<f64>,
    cpu: &str,
    ratio: &str,
) {
    println!(
        "  {stage:<38} {:>9} {:>9} {:>9} {:>6} {ratio}",
        fmt_opt(secs, 3),
        fmt_opt(pages_s, 1),
        fmt_opt(chunks_s, 1),
        cpu,
    );
}

fn header() {
    println!(
        "  {:<38} {:>9} {:>9} {:>9} {:>6} ratio",
        "stage", "median s", "pages/s", "chunks/s", "cpu %"
    );
}

fn run(args: Args) -> Result<(), String> {
    let pdfs = list_pdfs(&args.pdf_dir)?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bwenge = match &args.bwenge {
        Some(p) => p.clone(),
        None => exe
            .parent()
            .ok_or("current_exe has no parent directory")?
            .join(format!("bwenge{}", std::env::consts::EXE_SUFFIX)),
    };
    if !bwenge.is_file() {
        return Err(format!(
            "no bwenge binary at {}: build it (`cargo build --release -p bwenge -p bwenge-bench`) \
             or pass --bwenge PATH / BWENGE_BIN",
            bwenge.display()
        ));
    }
    let bwenge = std::path::absolute(&bwenge).unwrap_or(bwenge);
    let rounds = args.rounds.max(1);
    let model_rounds = args.model_rounds.max(1);

    let with_pdftotext = Command::new("pdftotext")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();

    let work = temp_dir("ingest", "work")?;
    let _cleanup = RemoveOnDrop(work.clone());
    let empty_file = work.join("empty.pdf");
    std::fs::write(&empty_file, b"").map_err(|e| format!("{}: {e}", empty_file.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let ctx = Ctx {
        rt,
        exe: &bwenge,
        empty_file,
        pdfs: &pdfs,
        work: work.clone(),
        with_pdftotext,
    };

    println!("bwenge-bench ingest");
    println!("  bwenge: {}", bwenge.display());
    println!(
        "  cores: {}; load average at start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );

    // The corpus, described once (also the warm-up: page cache, first spawns).
    let cfg = ChunkConfig::default();
    println!("\ncorpus: {} ({} PDFs)", args.pdf_dir.display(), pdfs.len());
    println!(
        "  {:<28} {:>8} {:>6} {:>10} {:>7} {:>10} {:>10}",
        "file", "MB", "pages", "with text", "chunks", "chars", "pdftotext"
    );
    let (mut pages, mut chunks_total, mut bytes) = (0u64, 0usize, 0u64);
    let mut all_chunks: Vec<Chunk> = Vec::new();
    let mut doc_chunks: Vec<Vec<Chunk>> = Vec::new();
    for pdf in &pdfs {
        let doc = extract(&ctx.rt, &bwenge, &pdf.path)?;
        let chunks = bwenge_parsers::chunk(&doc, &cfg);
        let chars: usize = doc
            .sections
            .iter()
            .map(|s| s.text.chars().filter(|c| !c.is_whitespace()).count())
            .sum();
        let baseline = if with_pdftotext {
            let (p, c) = pdftotext(&pdf.path)?;
            format!("{p} p {}k", c / 1000)
        } else {
            "-".to_owned()
        };
        println!(
            "  {:<28} {:>8.2} {:>6} {:>10} {:>7} {:>9}k {:>10}",
            pdf.name,
            mb(pdf.bytes),
            doc.page_count,
            doc.sections.len(),
            chunks.len(),
            chars / 1000,
            baseline,
        );
        pages += u64::from(doc.page_count);
        chunks_total += chunks.len();
        bytes += pdf.bytes;
        all_chunks.extend(chunks.iter().cloned());
        doc_chunks.push(chunks);
    }
    println!(
        "  {:<28} {:>8.2} {:>6} {:>10} {:>7}",
        "total",
        mb(bytes),
        pages,
        "",
        chunks_total
    );
    println!(
        "  (chars: non-blank characters of the text Bwenge keeps; pdftotext: pages and chars it prints)"
    );
    if !with_pdftotext {
        println!(
            "\n  NOTE: pdftotext not found (apt-get install poppler-utils): no extraction baseline."
        );
    }

    // Part 1: extraction + chunking + BM25 (hashing vectors).
    println!(
        "\n[1] extraction + chunking + indexing (hashing vectors): {rounds} rounds after a warm-up"
    );
    let _ = cheap_round(&ctx, 0)?;
    let mut cheap = Vec::with_capacity(rounds);
    for n in 1..=rounds {
        let r = cheap_round(&ctx, n)?;
        println!(
            "  round {n}: pipeline {:.3} s = extract {:.3} + chunk {:.3} + hash {:.3} + index {:.3}; pdftotext {:.3} s",
            r.pipeline().secs(),
            r.extract.secs(),
            r.chunk.secs(),
            r.hash.secs(),
            r.index.secs(),
            r.pdftotext.secs()
        );
        cheap.push(r);
    }
    let p = pages as f64;
    let c = chunks_total as f64;
    let per_s = |secs: Option<f64>, n: f64| secs.map(|s| n / s);
    println!();
    header();
    let pt = med(&cheap, |r| r.pdftotext.secs());
    if with_pdftotext {
        row(
            "pdftotext (baseline, process per PDF)",
            pt,
            per_s(pt, p),
            None,
            &med_cpu(&cheap, |r| r.pdftotext),
            "1.00",
        );
    }
    let startup = med(&cheap, |r| r.startup);
    row(
        "child start-up (empty file), per spawn",
        startup,
        None,
        None,
        "",
        "",
    );
    let ext = med(&cheap, |r| r.extract.secs());
    let ext_ratio = if with_pdftotext {
        format!(
            "{} of pdftotext's pages/s",
            fmt_opt(med(&cheap, |r| r.pdftotext.secs() / r.extract.secs()), 2)
        )
    } else {
        String::new()
    };
    row(
        "(1) extraction (bwenge __extract-pdf)",
        ext,
        per_s(ext, p),
        None,
        &med_cpu(&cheap, |r| r.extract),
        &ext_ratio,
    );
    let ch = med(&cheap, |r| r.chunk.secs());
    row(
        "(2) chunking",
        ch,
        per_s(ch, p),
        per_s(ch, c),
        &med_cpu(&cheap, |r| r.chunk),
        "",
    );
    let hs = med(&cheap, |r| r.hash.secs());
    row(
        "(3a) hashing vectors",
        hs,
        per_s(hs, p),
        per_s(hs, c),
        &med_cpu(&cheap, |r| r.hash),
        "",
    );
    let ix = med(&cheap, |r| r.index.secs());
    row(
        "(3b) BM25 + HNSW index, persist",
        ix,
        per_s(ix, p),
        per_s(ix, c),
        &med_cpu(&cheap, |r| r.index),
        "",
    );
    let pipe = med(&cheap, |r| r.pipeline().secs());
    let pipe_pages = med(&cheap, |r| r.pages as f64 / r.pipeline().secs());
    let pipe_ratio = if with_pdftotext {
        format!(
            "{} of pdftotext's pages/s",
            fmt_opt(med(&cheap, |r| r.pdftotext.secs() / r.pipeline().secs()), 2)
        )
    } else {
        String::new()
    };
    row(
        "(1)+(2)+(3)",
        pipe,
        pipe_pages,
        med(&cheap, |r| r.chunks as f64 / r.pipeline().secs()),
        &med_cpu(&cheap, |r| r.pipeline()),
        &pipe_ratio,
    );
    let extract_share = med(&cheap, |r| r.extract.secs() / r.pipeline().secs());
    let startup_share = med(&cheap, |r| r.startup * pdfs.len() as f64 / r.extract.secs());
    println!(
        "  extraction is {}% of the pipeline; the child's start-up ({} PDFs × {} ms) is {}% of extraction",
        fmt_opt(extract_share.map(|x| x * 100.0), 0),
        pdfs.len(),
        fmt_opt(startup.map(|s| s * 1e3), 1),
        fmt_opt(startup_share.map(|x| x * 100.0), 0),
    );
    let ok1 = pipe_pages.is_some_and(|x| x >= TARGET_PIPELINE_PAGES_S);
    println!(
        "\n  {}: extraction + chunking + BM25 {} pages/s (target ≥ {TARGET_PIPELINE_PAGES_S})",
        pass(ok1),
        fmt_opt(pipe_pages, 1)
    );

    // Part 2: end to end with the local model.
    let Some(model_dir) = args.model_dir.clone() else {
        println!("\n[2] end to end with the local model: SKIPPED");
        println!("  !!! NO MODEL: pass --model-dir DIR or set BWENGE_MODEL_DIR (fetch it with");
        println!(
            "  !!! scripts/fetch-model.sh). The ≥ {TARGET_E2E_PAGES_S} pages/s target was NOT measured."
        );
        println!("\n  load average at end: {}", loadavg());
        return Ok(());
    };
    println!(
        "\n[2] end to end with the local model ({}): {model_rounds} rounds after a warm-up batch",
        model_dir.display()
    );
    let t = Instant::now();
    let model = match LocalEmbedder::load_blocking(LocalEmbedderConfig::new(&model_dir)) {
        Ok(m) => m,
        Err(e) => {
            println!(
                "  !!! MODEL NOT LOADED ({e}): end-to-end part SKIPPED; the ≥ {TARGET_E2E_PAGES_S} pages/s target was NOT measured."
            );
            println!("\n  load average at end: {}", loadavg());
            return Ok(());
        }
    };
    println!(
        "  model loaded in {:.2} s (once per server start; not counted below)",
        t.elapsed().as_secs_f64()
    );
    // The baseline: the same model with every passage through candle.
    let mut candle_config = LocalEmbedderConfig::new(&model_dir);
    candle_config.candle_for_documents = true;
    let candle = LocalEmbedder::load_blocking(candle_config)
        .map_err(|e| format!("the model again, for candle: {e}"))?;
    // On a CPU with the matrix unit, the exact f32 products too.
    println!("  the model's products run on {}", model.products());
    let exact = if model.products() == "amx-bf16" {
        let mut config = LocalEmbedderConfig::new(&model_dir);
        config.matrix_tiles = false;
        Some(
            LocalEmbedder::load_blocking(config)
                .map_err(|e| format!("the model again, exact: {e}"))?,
        )
    } else {
        None
    };
    // A fixed batch: 64 chunks evenly spread over the corpus (so their lengths
    // are the corpus's), in corpus order.
    let n_all = all_chunks.len();
    let raw_batch: Vec<String> = (0..RAW_BATCH.min(n_all))
        .map(|i| embed_text(&all_chunks[i * n_all / RAW_BATCH.min(n_all)]))
        .collect();
    let raw_tokens: usize = raw_batch
        .iter()
        .map(|t| bwenge_parsers::estimate_tokens(t))
        .sum();
    println!(
        "  fixed batch: {} chunk texts, {} estimated tokens in all (the model truncates at 256)",
        raw_batch.len(),
        raw_tokens
    );
    let padding = Padding::measure(&model_dir, &raw_batch, &doc_chunks);
    for m in [Some(&model), Some(&candle), exact.as_ref()]
        .into_iter()
        .flatten()
    {
        m.embed_blocking(&raw_batch)
            .map_err(|e| format!("embedding: {e}"))?;
    }
    let mut mr = Vec::with_capacity(model_rounds);
    for n in 1..=model_rounds {
        let r = model_round(&ctx, &model, &candle, exact.as_ref(), &raw_batch, n)?;
        println!(
            "  round {n}: end to end {:.2} s = extract {:.2} + chunk {:.3} + embed {:.2} + index {:.3}; raw batch {:.2} s (through candle {:.2} s)",
            r.total.secs(),
            r.extract.secs(),
            r.chunk.secs(),
            r.embed.secs(),
            r.index.secs(),
            r.raw.secs(),
            r.raw_candle.secs()
        );
        mr.push(r);
    }
    let rb = raw_batch.len() as f64;
    println!();
    header();
    let raw = med(&mr, |r| r.raw.secs());
    let raw_cps = med(&mr, |r| rb / r.raw.secs());
    row(
        "model alone, fixed batch of 64",
        raw,
        None,
        raw_cps,
        &med_cpu(&mr, |r| r.raw),
        "1.00",
    );
    row(
        "the same through candle (baseline)",
        med(&mr, |r| r.raw_candle.secs()),
        None,
        med(&mr, |r| rb / r.raw_candle.secs()),
        &med_cpu(&mr, |r| r.raw_candle),
        &format!(
            "the model alone is {}x candle's chunks/s",
            fmt_opt(med(&mr, |r| r.raw_candle.secs() / r.raw.secs()), 2)
        ),
    );
    if let Some(exact) = &exact {
        row(
            &format!("the same, exact f32 products ({})", exact.products()),
            med(&mr, |r| r.raw_exact.map_or(f64::NAN, |s| s.secs())),
            None,
            med(&mr, |r| r.raw_exact.map_or(f64::NAN, |s| rb / s.secs())),
            &med_cpu(&mr, |r| r.raw_exact.unwrap_or_default()),
            &format!(
                "the tiles are {}x the exact products' chunks/s",
                fmt_opt(
                    med(&mr, |r| r.raw_exact.map_or(f64::NAN, |s| s.secs())
                        / r.raw.secs()),
                    2
                )
            ),
        );
    }
    let emb = med(&mr, |r| r.embed.secs());
    row(
        "embedding inside ingest (batches of 32)",
        emb,
        per_s(emb, p),
        per_s(emb, c),
        &med_cpu(&mr, |r| r.embed),
        &format!(
            "{} of the model alone (chunks/s)",
            fmt_opt(
                med(&mr, |r| (r.chunks as f64 / r.embed.secs())
                    / (rb / r.raw.secs())),
                2
            )
        ),
    );
    let e2e = med(&mr, |r| r.total.secs());
    let e2e_pages = med(&mr, |r| r.pages as f64 / r.total.secs());
    row(
        "end to end: extract+chunk+embed+index",
        e2e,
        e2e_pages,
        med(&mr, |r| r.chunks as f64 / r.total.secs()),
        &med_cpu(&mr, |r| r.total),
        &format!(
            "{} of the model alone (chunks/s)",
            fmt_opt(
                med(&mr, |r| (r.chunks as f64 / r.total.secs())
                    / (rb / r.raw.secs())),
                2
            )
        ),
    );
    println!(
        "  embedding is {}% of end to end (extraction {}%, chunking {}%, indexing {}%); \
         the model alone would allow {} pages/s ({} chunks per page)",
        fmt_opt(med(&mr, |r| r.embed.secs() / r.total.secs() * 100.0), 0),
        fmt_opt(med(&mr, |r| r.extract.secs() / r.total.secs() * 100.0), 0),
        fmt_opt(med(&mr, |r| r.chunk.secs() / r.total.secs() * 100.0), 1),
        fmt_opt(med(&mr, |r| r.index.secs() / r.total.secs() * 100.0), 1),
        fmt_opt(raw_cps.map(|x| x * p / c), 1),
        fmt_opt(Some(c / p), 2),
    );
    match &padding {
        Ok(pad) => {
            let tps = |padded: usize, secs: Option<f64>| secs.map(|s| padded as f64 / s);
            println!(
                "  tokens the model runs (MiniLM's tokenizer, truncated at {MAX_TOKENS}; padding to the longest of each batch of 32):"
            );
            println!(
                "    fixed batch of 64:            {:>6} real / {:>6} padded = {:.2} useful; {} padded tokens/s",
                pad.raw.0,
                pad.raw.1,
                pad.raw.0 as f64 / pad.raw.1 as f64,
                fmt_opt(tps(pad.raw.1, raw), 0)
            );
            println!(
                "    ingest, as the server batches: {:>6} real / {:>6} padded = {:.2} useful; {} padded tokens/s",
                pad.ingest.0,
                pad.ingest.1,
                pad.ingest.0 as f64 / pad.ingest.1 as f64,
                fmt_opt(tps(pad.ingest.1, emb), 0)
            );
            println!(
                "    one embed call per document:  {:>6} real / {:>6} padded = {:.2} useful (not run; what sorting a whole document would pad)",
                pad.per_doc.0,
                pad.per_doc.1,
                pad.per_doc.0 as f64 / pad.per_doc.1 as f64,
            );
        }
        Err(e) => println!("  (token counts unavailable: {e})"),
    }
    let ok2 = e2e_pages.is_some_and(|x| x >= TARGET_E2E_PAGES_S);
    println!(
        "\n  {}: extraction + chunking + BM25 {} pages/s (target ≥ {TARGET_PIPELINE_PAGES_S})",
        pass(ok1),
        fmt_opt(pipe_pages, 1)
    );
    println!(
        "  {}: end to end with the local model {} pages/s (target ≥ {TARGET_E2E_PAGES_S})",
        pass(ok2),
        fmt_opt(e2e_pages, 1)
    );
    println!("\n  load average at end: {}", loadavg());
    Ok(())
}

/// Must match `LocalEmbedderConfig::new`'s `max_tokens` and `batch_size`.
const MAX_TOKENS: usize = 256;
const MODEL_BATCH: usize = 32;

/// Real and padded token counts `(real, padded)` of the forward passes
/// `LocalEmbedder` runs (it sorts each call's texts longest first, cuts them
/// into batches of 32 and pads each batch to its longest), from the model's
/// own tokenizer.
struct Padding {
    raw: (usize, usize),
    ingest: (usize, usize),
    per_doc: (usize, usize),
}

impl Padding {
    fn measure(dir: &Path, raw: &[String], docs: &[Vec<Chunk>]) -> Result<Self, String> {
        let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| format!("tokenizer.json: {e}"))?;
        tok.with_truncation(Some(tokenizers::TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|e| format!("tokenizer: {e}"))?;
        tok.with_padding(None);
        let lens = |texts: &[String]| -> Result<Vec<usize>, String> {
            texts
                .iter()
                .map(|t| {
                    tok.encode(t.as_str(), true)
                        .map(|e| e.get_ids().len())
                        .map_err(|e| format!("tokenizer: {e}"))
                })
                .collect()
        };
        // One `embed_blocking` call.
        let call = |mut l: Vec<usize>| -> (usize, usize) {
            l.sort_unstable_by(|a, b| b.cmp(a));
            let padded = l.chunks(MODEL_BATCH).map(|b| b.len() * b[0]).sum();
            (l.iter().sum(), padded)
        };
        let add = |a: (usize, usize), b: (usize, usize)| (a.0 + b.0, a.1 + b.1);
        let raw = call(lens(raw)?);
        let (mut ingest, mut per_doc) = ((0, 0), (0, 0));
        for chunks in docs {
            let texts: Vec<String> = chunks.iter().map(embed_text).collect();
            let l = lens(&texts)?;
            for b in l.chunks(EMBED_BATCH) {
                ingest = add(ingest, call(b.to_vec()));
            }
            per_doc = add(per_doc, call(l));
        }
        Ok(Self {
            raw,
            ingest,
            per_doc,
        })
    }
}

/// Removes the run's temporary directory, also on an early error.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
