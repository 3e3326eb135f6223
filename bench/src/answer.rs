//! `answer`: latency of `POST /v1/personas/{id}/ask` over about 100k
//! chunks, next to retrieval alone (`GET /v1/search`) measured on the same
//! server in the same rounds.
//!
//! Targets (see `bench/README.md`):
//! * with the extractive responder, `ask` p99 <= 60 ms at 16 concurrent
//!   clients (p50 and p99 at 1 and 16 clients are printed);
//! * with a local stub provider streaming at a fixed rate, the latency the
//!   pipeline adds before the first token, p99 <= 15 ms.
//!
//! What it does:
//! 1. builds plain-text files from the Cranfield abstracts (shuffled with a
//!    fixed seed, repeated as often as needed) until the server's own
//!    extraction and chunking code (`bwenge_parsers`) predicts `--chunks`
//!    chunks, uploads them through `POST /v1/knowledge` to a fresh `bwenge`
//!    (SQLite; the hashing embedder, or the local model with `--model-dir`)
//!    and waits until every source is `ready`;
//!    the chunk count printed is the sum of the sources' `chunk_count`;
//! 2. server A, extractive responder, answer cache off
//!    (`personas.cache_ttl_secs = 0`): rounds of, for each client count,
//!    search alone then ask, with the Cranfield queries in a fixed shuffled
//!    order;
//! 3. server B, same data directory, the chain is `["openai"]` pointed at
//!    `bwenge_llm::testing::StubServer` (streaming a fixed answer in N
//!    pieces, a fixed delay apart) behind a timestamping proxy in this
//!    process: the proxy notes when the whole provider request has arrived
//!    and when the provider's last byte went through, so each ask splits
//!    into before the model (the pipeline before the first token can
//!    exist), the provider's streaming, and after the last byte. Here each
//!    client sends, for each question, the search and then the ask, so every
//!    ask is paired with a retrieval-alone twin measured just before it
//!    under the same load;
//! 4. server C, same data, extractive, cache on: every question asked once,
//!    then the same rounds, all answered from the cache.
//!
//! Every figure is the median over rounds of the per-round value; ratios
//! are medians of per-round ratios. It exits non-zero only when it cannot
//! run, never because a target was missed.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bwenge_bench::Rng;
use bwenge_bench::cranfield::Cranfield;
use bwenge_bench::{
    Cleanup, CpuMeter, Server, Window, bwenge_command, clear_answer_settings, cpu_time,
    errors_note, fmt_opt, median, median_opt, parse_response, parse_secs, pass, percentile_ms,
    raise_chat_limits, run_id, spawn_server, temp_dir, use_local_model,
};
use bwenge_llm::testing::{StubBehaviour, StubServer};
use bwenge_parsers::{ChunkConfig, ExtractLimits};
use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `ask` p99 at `ASK_TARGET_CONNS` clients, at most (ms).
const ASK_P99_TARGET_MS: f64 = 60.0;
const ASK_TARGET_CONNS: usize = 16;
/// Latency the pipeline adds before the first token, p99, at most (ms).
const FIRST_TOKEN_P99_TARGET_MS: f64 = 15.0;
/// Passages per question: the server's `personas.top_k` default, and the
/// `k` of the retrieval-alone baseline.
const TOP_K: usize = 6;
const SEED: u64 = 0x00b0_e11e_a45e_2025;
const PASSWORD: &str = "answer-bench-Passw0rd!";
/// What the stub provider answers: two claims citing passage 1, then the
/// animation line, as a model following the prompt would.
const STUB_ANSWER: &str = "The passages describe how the flow behaves in this case [1]. \
    The measured values agree well with the theory they compare against [1].\n\
    [[animation gesture=explaining emotion=neutral]]";

#[derive(Parser, Debug)]
#[command(
    name = "answer",
    about = "Latency of POST /v1/personas/{id}/ask over ~100k chunks (extractive responder; \
             a streaming stub provider), against GET /v1/search alone, same server, same run."
)]
struct Args {
    /// Chunks to load (approximate: files are added until the server's
    /// chunker predicts at least this many; the real count is printed).
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,

    /// Chunks per uploaded file (one source each).
    #[arg(long, default_value_t = 2_500)]
    chunks_per_file: usize,

    /// Rounds; figures are medians over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,

    /// Warm-up before each measuring window, in seconds (not counted).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    warmup: Duration,

    /// Measuring window of each point (extractive and cached scenarios).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    duration: Duration,

    /// Measuring window of the stub provider's ask points (slower answers,
    /// so a longer window for as many samples).
    #[arg(long, default_value = "15", value_parser = parse_secs)]
    stub_duration: Duration,

    /// Concurrent clients, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    conns: Vec<usize>,

    /// Pieces the stub provider streams its answer in.
    #[arg(long, default_value_t = 10)]
    stub_chunks: usize,

    /// Pause of the stub provider before each piece, in milliseconds.
    #[arg(long, default_value_t = 5)]
    stub_chunk_delay_ms: u64,

    /// Skip the stub-provider scenario (server B).
    #[arg(long)]
    no_stub: bool,

    /// Skip the cache-hit scenario (server C).
    #[arg(long)]
    no_cache: bool,

    /// Longest wait for every upload to be `ready`.
    #[arg(long, default_value = "1800", value_parser = parse_secs)]
    ingest_timeout: Duration,

    /// Longest wait for a server to go idle (index merges after ingest,
    /// graph linking after a restart) before measuring.
    #[arg(long, default_value = "900", value_parser = parse_secs)]
    settle_timeout: Duration,

    /// The Cranfield collection's directory (cran.all.1400, cran.qry); not part of the
    /// repository (see `bench/README.md`).
    #[arg(long, alias = "data-dir", env = "BWENGE_CRANFIELD_DIR")]
    cranfield_dir: Option<PathBuf>,

    /// The `bwenge` binary [default: `bwenge` next to this executable].
    #[arg(long, env = "BWENGE_BIN")]
    bwenge: Option<PathBuf>,

    /// all-MiniLM-L6-v2 directory (`scripts/fetch-model.sh`): the server
    /// embeds chunks and questions with the local model and searches
    /// hybrid, with its memory of recent questions' vectors off (every
    /// round asks the same queries again). Without it, the hashing
    /// embedder (the server then searches BM25 only).
    #[arg(long)]
    model_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One client thread, as in the other HTTP benches: on 2 cores a
    // multi-threaded client would take the server's cores. The stub provider
    // and its proxy run on a second thread of their own (see `Stub`), so
    // that their timestamps do not wait behind the clients.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("answer: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&args) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("answer: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// The corpus.

/// The `.W` text (which starts with the title) of every Cranfield
/// document, on one line.
fn parse_abstracts(raw: &str) -> Vec<String> {
    raw.split("\n.I ")
        .filter_map(|rec| {
            let (_, rest) = rec.split_once("\n.W")?;
            let text = rest.split_whitespace().collect::<Vec<_>>().join(" ");
            (!text.is_empty()).then_some(text)
        })
        .collect()
}

/// The Cranfield queries, whitespace-normalised, without duplicates, in
/// file order.
fn parse_queries(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rec in raw.split("\n.I ") {
        let Some((_, text)) = rec.split_once("\n.W") else {
            continue;
        };
        let q = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !q.is_empty() && !out.contains(&q) {
            out.push(q);
        }
    }
    out
}

/// Every abstract in a fresh shuffled order, pass after pass.
struct AbstractStream {
    rng: Rng,
    order: Vec<usize>,
    pos: usize,
    passes: usize,
}

impl AbstractStream {
    fn new(n: usize) -> Self {
        Self {
            rng: Rng(SEED),
            order: (0..n).collect(),
            pos: n,
            passes: 0,
        }
    }

    fn next(&mut self) -> usize {
        if self.pos == self.order.len() {
            self.rng.shuffle(&mut self.order);
            self.pos = 0;
            self.passes += 1;
        }
        self.pos += 1;
        self.order[self.pos - 1]
    }
}

/// One generated file and the chunks the server's code makes of it.
struct CorpusFile {
    path: PathBuf,
    bytes: u64,
    predicted_chunks: usize,
}

/// Chunks the server will make of `path`: its sniffing, extraction and
/// chunking, as `KnowledgeIngest::process` runs them.
fn predict_chunks(path: &Path) -> Result<usize, String> {
    let name = path.file_name().and_then(|n| n.to_str());
    let kind = bwenge_parsers::sniff(path, name).map_err(|e| format!("sniff: {e}"))?;
    let doc = bwenge_parsers::extract(kind, path, &ExtractLimits::default())
        .map_err(|e| format!("extract {}: {e}", path.display()))?;
    Ok(bwenge_parsers::chunk(&doc, &ChunkConfig::default()).len())
}

fn write_file(path: &Path, abstracts: &[String], ids: &[usize]) -> Result<u64, String> {
    let mut text = String::new();
    for &i in ids {
        text.push_str(&abstracts[i]);
        text.push_str("\n\n");
    }
    std::fs::write(path, &text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(text.len() as u64)
}

/// Writes files into `dir` until the predicted chunks reach `target`.
fn build_corpus(
    dir: &Path,
    abstracts: &[String],
    target: usize,
    per_file: usize,
) -> Result<(Vec<CorpusFile>, usize), String> {
    let mut stream = AbstractStream::new(abstracts.len());
    // Calibrate: chunks per abstract on one full pass.
    let probe: Vec<usize> = (0..abstracts.len()).map(|_| stream.next()).collect();
    let probe_path = dir.join("probe.txt");
    write_file(&probe_path, abstracts, &probe)?;
    let per_abstract = predict_chunks(&probe_path)? as f64 / abstracts.len() as f64;
    let _ = std::fs::remove_file(&probe_path);
    let mut stream = AbstractStream::new(abstracts.len());

    let mut files = Vec::new();
    let mut total = 0usize;
    while total < target {
        let want = per_file.min(target - total).max(1);
        let n = ((want as f64 / per_abstract).ceil() as usize).max(1);
        let ids: Vec<usize> = (0..n).map(|_| stream.next()).collect();
        let path = dir.join(format!("cranfield-{:03}.txt", files.len() + 1));
        let bytes = write_file(&path, abstracts, &ids)?;
        let predicted = predict_chunks(&path)?;
        total += predicted;
        files.push(CorpusFile {
            path,
            bytes,
            predicted_chunks: predicted,
        });
    }
    Ok((files, stream.passes))
}

// ---------------------------------------------------------------------------
// Plain HTTP calls (set-up) on raw sockets.

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request with an optional bearer token and body.
fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn post_json(path: &str, token: Option<&str>, body: &Value) -> Vec<u8> {
    request(
        "POST",
        path,
        token,
        Some("application/json"),
        body.to_string().as_bytes(),
    )
}

/// Percent-encodes a query-string value.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The body of a whole response (`raw` is exactly one response).
fn body_of(raw: &[u8]) -> io::Result<Vec<u8>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let head_len = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..head_len]).to_ascii_lowercase();
    let body = &raw[head_len + 4..];
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    if !chunked {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let line_len = find(&body[pos..], b"\r\n").ok_or_else(|| bad("bad chunk"))?;
        let line = std::str::from_utf8(&body[pos..pos + line_len]).map_err(|_| bad("bad chunk"))?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        pos += line_len + 2;
        if size == 0 {
            return Ok(out);
        }
        let data = body
            .get(pos..pos + size)
            .ok_or_else(|| bad("short chunk"))?;
        out.extend_from_slice(data);
        pos += size + 2;
    }
}

/// Writes `req`, reads one whole response: status, whether the server
/// closes, body.
async fn exchange(
    stream: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> io::Result<(u16, bool, Vec<u8>)> {
    stream.write_all(req).await?;
    loop {
        if let Some(resp) = parse_response(buf)? {
            let body = body_of(&buf[..resp.len])?;
            buf.drain(..resp.len);
            return Ok((resp.status, resp.close, body));
        }
        buf.reserve(16 * 1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// One request on a fresh connection; the JSON answer (`Null` when empty).
async fn call(addr: SocketAddr, req: &[u8], expect: u16) -> Result<Value, String> {
    let attempt = tokio::time::timeout(Duration::from_secs(120), async {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut buf = Vec::new();
        exchange(&mut s, req, &mut buf).await
    })
    .await;
    let what = String::from_utf8_lossy(&req[..find(req, b"\r\n").unwrap_or(0)]).into_owned();
    let (status, _, body) = match attempt {
        Err(_) => return Err(format!("{what}: timed out")),
        Ok(Err(e)) => return Err(format!("{what}: {e}")),
        Ok(Ok(r)) => r,
    };
    if status != expect {
        return Err(format!(
            "{what}: HTTP {status} (expected {expect}): {}",
            String::from_utf8_lossy(&body)
        ));
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{what}: answer is not JSON: {e}"))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Result<&'a str, String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no {pointer} in {v}"))
}

// ---------------------------------------------------------------------------
// Servers.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// Extractive responder, answer cache off.
    Extractive,
    /// The stub provider, answer cache off.
    Stub,
    /// Extractive responder, answer cache on, every question cached.
    Cached,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Self::Extractive => "extractive, cache off",
            Self::Stub => "stub provider, cache off",
            Self::Cached => "extractive, cache hits",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::Extractive => "extractive",
            Self::Stub => "stub",
            Self::Cached => "cached",
        }
    }
}

/// `bwenge serve` on `dir` (created by the first start, reused by the
/// next), configured for `scenario`. `openai_base` is the stub's URL.
async fn start_server(
    bin: &Path,
    dir: &Path,
    scenario: Scenario,
    openai_base: Option<&str>,
    model_dir: Option<&Path>,
) -> Result<Server, String> {
    let db = dir.join("bench.db");
    if !db.exists() {
        std::fs::File::create(&db).map_err(|e| format!("create {}: {e}", db.display()))?;
    }
    // The chain is a list: a `--config` file layered over the defaults
    // (`BWENGE_*` variables only split `http.cors_origins` into a list).
    let toml = match (scenario, openai_base) {
        (Scenario::Stub, Some(base)) => format!(
            "[llm]\nchain = [\"openai\"]\n\n[llm.openai]\nbase_url = \"{base}\"\n\
             api_key = \"sk-stub\"\nmodel = \"gpt-4o-mini\"\n"
        ),
        (Scenario::Stub, None) => return Err("internal: no stub URL".to_owned()),
        _ => "[llm]\nchain = [\"extractive\"]\n".to_owned(),
    };
    let cfg = dir.join(format!("{}.toml", scenario.slug()));
    std::fs::write(&cfg, toml).map_err(|e| format!("write {}: {e}", cfg.display()))?;

    let url = format!("sqlite://{}", db.display());
    let mut cmd = bwenge_command(bin, dir, &url);
    cmd.arg("--config").arg(&cfg);
    clear_answer_settings(&mut cmd);
    // One admin asks every question: the per-user limit on questions
    // (shared by `ask` and the socket) would refuse all but ten.
    raise_chat_limits(&mut cmd);
    match model_dir {
        Some(model) => use_local_model(&mut cmd, model),
        None => {
            cmd.env("BWENGE_EMBEDDINGS__PROVIDER", "hashing");
        }
    }
    // The run takes longer than the default 15 minutes of a token.
    cmd.env("BWENGE_AUTH__ACCESS_TOKEN_TTL_SECS", "86400").env(
        "BWENGE_PERSONAS__CACHE_TTL_SECS",
        if scenario == Scenario::Cached {
            "3600"
        } else {
            "0"
        },
    );
    spawn_server(&format!("bwenge ({})", scenario.label()), cmd, Vec::new()).await
}

/// Waits until the server uses under 10 % of a core for two seconds in a
/// row (ingest merges, graph linking after a restart). Returns the wait.
async fn settle(server: &mut Server, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut quiet = 0;
    while start.elapsed() < timeout {
        server.check_alive()?;
        let (Some(a), t) = (cpu_time(Some(server.pid())), Instant::now()) else {
            return Ok(start.elapsed()); // no /proc: nothing to wait on
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = cpu_time(Some(server.pid())).unwrap_or(a);
        let pct = b.saturating_sub(a).as_secs_f64() / t.elapsed().as_secs_f64() * 100.0;
        quiet = if pct < 10.0 { quiet + 1 } else { 0 };
        if quiet >= 2 {
            return Ok(start.elapsed());
        }
    }
    eprintln!(
        "answer: the server was still busy after {:?}; measuring anyway",
        timeout
    );
    Ok(start.elapsed())
}

/// The organisation, its admin's token and the persona.
struct Setup {
    token: String,
    persona: String,
    sources: usize,
    chunks: i64,
    ingest: Duration,
}

async fn register(addr: SocketAddr) -> Result<String, String> {
    let v = call(
        addr,
        &post_json(
            "/v1/auth/register",
            None,
            &json!({
                "organization_name": "Answer bench school",
                "full_name": "Bench Admin",
                "email": "admin@answer-bench.example.com",
                "password": PASSWORD,
            }),
        ),
        201,
    )
    .await?;
    Ok(str_at(&v, "/tokens/access_token")?.to_owned())
}

fn multipart(file: &Path, title: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("answer-bench-{}", run_id());
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("corpus.txt");
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{title}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads every file, waits for all to be ready, creates the persona.
async fn load_knowledge(
    addr: SocketAddr,
    files: &[CorpusFile],
    timeout: Duration,
) -> Result<Setup, String> {
    let token = register(addr).await?;
    let started = Instant::now();
    let mut ids = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let data = std::fs::read(&f.path).map_err(|e| format!("{}: {e}", f.path.display()))?;
        let title = format!("Cranfield abstracts, part {}", i + 1);
        let (ct, body) = multipart(&f.path, &title, &data);
        let v = call(
            addr,
            &request("POST", "/v1/knowledge", Some(&token), Some(&ct), &body),
            202,
        )
        .await?;
        ids.push(str_at(&v, "/id")?.to_owned());
    }
    eprintln!(
        "uploaded {} files in {:.1} s; waiting for ingest",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    let mut last_report = Instant::now();
    let chunks = loop {
        let v = call(
            addr,
            &request("GET", "/v1/knowledge?limit=200", Some(&token), None, b""),
            200,
        )
        .await?;
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .ok_or("GET /v1/knowledge: no items")?;
        let mut ready = 0;
        let mut chunks = 0i64;
        for item in items {
            match item.get("status").and_then(Value::as_str) {
                Some("ready") => {
                    ready += 1;
                    chunks += item.get("chunk_count").and_then(Value::as_i64).unwrap_or(0);
                }
                Some("failed") => {
                    return Err(format!(
                        "ingest of {} failed: {}",
                        item.get("title").unwrap_or(&Value::Null),
                        item.get("error").unwrap_or(&Value::Null)
                    ));
                }
                _ => {}
            }
        }
        if ready == ids.len() {
            break chunks;
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "ingest not finished after {timeout:?}: {ready}/{} sources ready",
                ids.len()
            ));
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            eprintln!(
                "  {:>5.0} s: {ready}/{} sources ready, {chunks} chunks",
                started.elapsed().as_secs_f64(),
                ids.len()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ingest = started.elapsed();
    let v = call(
        addr,
        &post_json(
            "/v1/personas",
            Some(&token),
            &json!({
                "name": "Cranfield tutor",
                "subject": "aerodynamics",
                "knowledge_source_ids": [],
            }),
        ),
        201,
    )
    .await?;
    Ok(Setup {
        token,
        persona: str_at(&v, "/id")?.to_owned(),
        sources: ids.len(),
        chunks,
        ingest,
    })
}

// ---------------------------------------------------------------------------
// The stub provider and its timestamping proxy.

/// One provider request as the proxy saw it.
#[derive(Clone, Copy, Debug)]
struct Record {
    /// The question it carries (index into the questions).
    question: Option<usize>,
    /// When the whole request (head and body) had arrived.
    arrived: Instant,
    /// When the provider's last byte had been passed on.
    last_byte: Option<Instant>,
}

type Records = Arc<Mutex<Vec<Arc<Mutex<Record>>>>>;

/// `StubServer` plus the proxy in front of it, on a thread of their own
/// (a current-thread runtime); stopped on drop.
struct Stub {
    /// The proxy's address: the provider as the server knows it.
    addr: SocketAddr,
    records: Records,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stub {
    fn start(behaviour: StubBehaviour, questions: HashMap<String, usize>) -> Result<Self, String> {
        let records: Records = Arc::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let recs = records.clone();
        let questions = Arc::new(questions);
        let thread = std::thread::Builder::new()
            .name("stub-provider".to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let stub = match StubServer::openai(behaviour).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("stub: {e}")));
                            return;
                        }
                    };
                    let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("proxy: {e}")));
                            return;
                        }
                    };
                    let addr = match listener.local_addr() {
                        Ok(a) => a,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("proxy: {e}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(addr));
                    let upstream = stub.addr();
                    let accept = async {
                        while let Ok((sock, _)) = listener.accept().await {
                            let (questions, recs) = (questions.clone(), recs.clone());
                            tokio::spawn(async move {
                                let _ = proxy(sock, upstream, &questions, &recs).await;
                            });
                        }
                    };
                    tokio::select! {
                        () = accept => {}
                        _ = stop_rx => {}
                    }
                    drop(stub);
                });
            })
            .map_err(|e| format!("stub thread: {e}"))?;
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| format!("stub thread: {e}"))??;
        Ok(Self {
            addr,
            records,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The records so far, emptied.
    fn take(&self) -> Vec<Record> {
        let taken = match self.records.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => Vec::new(),
        };
        taken
            .iter()
            .filter_map(|r| r.lock().ok().map(|r| *r))
            .collect()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The question of a chat-completions request: the end of its last user
/// message, after `Student's question: ` (see `bwenge_llm`'s prompt).
fn question_of(body: &[u8], questions: &HashMap<String, usize>) -> Option<usize> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let user = v
        .get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    let text = user.get("content")?.as_str()?;
    let (_, q) = text.rsplit_once("Student's question: ")?;
    questions.get(q.trim()).copied()
}

/// Reads one request from the server, notes its arrival, forwards it to
/// the stub and passes the stub's answer back, noting the last byte.
async fn proxy(
    mut inbound: TcpStream,
    upstream: SocketAddr,
    questions: &HashMap<String, usize>,
    records: &Records,
) -> io::Result<()> {
    inbound.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(32 * 1024);
    let head_len = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 1 << 20 {
            return Err(io::Error::other("request head too large"));
        }
        if inbound.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_len + 4 + len {
        if inbound.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
    let arrived = Instant::now();
    let record = Arc::new(Mutex::new(Record {
        question: question_of(&buf[head_len + 4..head_len + 4 + len], questions),
        arrived,
        last_byte: None,
    }));
    if let Ok(mut r) = records.lock() {
        r.push(record.clone());
    }
    let mut out = TcpStream::connect(upstream).await?;
    out.set_nodelay(true)?;
    out.write_all(&buf).await?;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = out.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        // Stamped before passing it on, so never after the server has it.
        let at = Instant::now();
        if let Ok(mut r) = record.lock() {
            r.last_byte = Some(at);
        }
        inbound.write_all(&chunk[..n]).await?;
    }
    inbound.shutdown().await
}

// ---------------------------------------------------------------------------
// The load.

/// What a response said, by a look at its bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    grounded: bool,
    /// `provider: "none"`: answered without a model (not covered).
    no_model: bool,
    cached: bool,
    /// Search: no hit.
    empty: bool,
}

impl Flags {
    fn of(body: &[u8]) -> Self {
        let has = |s: &[u8]| find(body, s).is_some();
        Self {
            grounded: has(b"\"grounded\":true"),
            no_model: has(b"\"provider\":\"none\""),
            cached: has(b"\"cached\":true"),
            empty: has(b"\"hits\":[]"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    question: usize,
    /// Which request of the iteration (see [`Requests::steps`]).
    step: usize,
    /// The iteration, unique in the point: pairs the steps of one question.
    iteration: usize,
    t0: Instant,
    t1: Instant,
    flags: Flags,
}

impl Sample {
    fn ns(&self) -> u64 {
        u64::try_from((self.t1 - self.t0).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What one or more connections saw; errors per step.
struct ConnOut {
    samples: Vec<Sample>,
    errors: Vec<u64>,
    first_error: Vec<Option<String>>,
}

impl ConnOut {
    fn new(steps: usize) -> Self {
        Self {
            samples: Vec::new(),
            errors: vec![0; steps],
            first_error: vec![None; steps],
        }
    }

    fn error(&mut self, step: usize, what: impl FnOnce() -> String) {
        self.errors[step] += 1;
        if self.first_error[step].is_none() {
            self.first_error[step] = Some(what());
        }
    }

    fn merge(&mut self, other: ConnOut) {
        self.samples.extend(other.samples);
        for (i, (n, e)) in other.errors.into_iter().zip(other.first_error).enumerate() {
            self.errors[i] += n;
            if self.first_error[i].is_none() {
                self.first_error[i] = e;
            }
        }
    }
}

/// A table of requests, one per question.
type ByQuestion = Arc<Vec<Arc<[u8]>>>;

/// The requests of one point. Each iteration takes the next question in
/// `order` and sends each step's request for it, one after the other, on
/// the same connection.
#[derive(Clone)]
struct Requests {
    steps: Vec<ByQuestion>,
    order: Arc<Vec<usize>>,
}

impl Requests {
    fn one(table: &ByQuestion, order: &Arc<Vec<usize>>) -> Self {
        Self {
            steps: vec![table.clone()],
            order: order.clone(),
        }
    }
}

/// One keep-alive connection: the next question's requests, each with its
/// whole response, repeat, until the end of the window.
async fn client(
    addr: SocketAddr,
    reqs: Requests,
    next: Arc<AtomicUsize>,
    window: Window,
    grace: Duration,
) -> ConnOut {
    let mut out = ConnOut::new(reqs.steps.len());
    let hard_deadline = window.end + grace;
    let mut stream: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    'iterations: loop {
        if Instant::now() >= window.end {
            break;
        }
        let iteration = next.fetch_add(1, Ordering::Relaxed);
        let question = reqs.order[iteration % reqs.order.len()];
        for (step, table) in reqs.steps.iter().enumerate() {
            let now = Instant::now();
            if now >= window.end {
                break 'iterations;
            }
            let s = match stream.as_mut() {
                Some(s) => s,
                None => {
                    match tokio::time::timeout_at(hard_deadline.into(), TcpStream::connect(addr))
                        .await
                    {
                        Ok(Ok(s)) => {
                            let _ = s.set_nodelay(true);
                            buf.clear();
                            stream.insert(s)
                        }
                        Ok(Err(e)) => {
                            if now >= window.start {
                                out.error(step, || format!("connect: {e}"));
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue 'iterations;
                        }
                        Err(_) => {
                            out.error(step, || "connect timed out".to_owned());
                            break 'iterations;
                        }
                    }
                }
            };
            let t0 = Instant::now();
            let result = tokio::time::timeout_at(
                hard_deadline.into(),
                exchange(s, &table[question], &mut buf),
            )
            .await;
            let t1 = Instant::now();
            let counted = window.contains(t1);
            match result {
                Err(_) => {
                    out.error(step, || "response timed out".to_owned());
                    break 'iterations;
                }
                Ok(Err(e)) => {
                    if counted {
                        out.error(step, || format!("i/o: {e}"));
                    }
                    stream = None;
                    continue 'iterations;
                }
                Ok(Ok((status, close, body))) => {
                    if close {
                        stream = None;
                    }
                    if !counted {
                        continue;
                    }
                    if status == 200 {
                        out.samples.push(Sample {
                            question,
                            step,
                            iteration,
                            t0,
                            t1,
                            flags: Flags::of(&body),
                        });
                    } else {
                        out.error(step, || {
                            format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(300)])
                            )
                        });
                        continue 'iterations;
                    }
                }
            }
        }
    }
    out
}

/// One point: `conns` clients through warm-up and window.
struct Point {
    samples: Vec<Sample>,
    /// Per step.
    errors: Vec<u64>,
    first_error: Vec<Option<String>>,
    srv_cpu: Option<f64>,
    cli_cpu: Option<f64>,
    window: Duration,
}

async fn run_point(
    server: &Server,
    reqs: &Requests,
    conns: usize,
    warmup: Duration,
    duration: Duration,
) -> Point {
    let window = Window::after(warmup, duration);
    let next = Arc::new(AtomicUsize::new(0));
    // A request still in flight this long after the window is a hang.
    let grace = Duration::from_secs(60);
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(client(
                server.addr,
                reqs.clone(),
                next.clone(),
                window,
                grace,
            ))
        })
        .collect();
    tokio::time::sleep_until(window.start.into()).await;
    let meter = CpuMeter::start(server.pid());
    tokio::time::sleep_until(window.end.into()).await;
    let (srv_cpu, cli_cpu) = meter.stop();
    let mut all = ConnOut::new(reqs.steps.len());
    for t in tasks {
        match t.await {
            Ok(o) => all.merge(o),
            Err(e) => all.error(0, || format!("client task failed: {e}")),
        }
    }
    Point {
        samples: all.samples,
        errors: all.errors,
        first_error: all.first_error,
        srv_cpu,
        cli_cpu,
        window: duration,
    }
}

// ---------------------------------------------------------------------------
// Figures.

/// p50 and p99 of one point's latencies, and its other counts.
#[derive(Clone, Debug)]
struct Stats {
    n: usize,
    rps: f64,
    p50: f64,
    p99: f64,
    errors: u64,
    first_error: Option<String>,
    srv_cpu: Option<f64>,
    cli_cpu: Option<f64>,
    grounded: usize,
    no_model: usize,
    cached: usize,
    empty: usize,
}

impl Stats {
    /// The figures of `step`'s requests (errors are the point's).
    fn of(p: &Point, step: usize) -> Self {
        let samples: Vec<&Sample> = p.samples.iter().filter(|s| s.step == step).collect();
        let mut ns: Vec<u64> = samples.iter().map(|s| s.ns()).collect();
        ns.sort_unstable();
        let count = |f: fn(&Flags) -> bool| samples.iter().filter(|s| f(&s.flags)).count();
        Self {
            n: ns.len(),
            rps: ns.len() as f64 / p.window.as_secs_f64(),
            p50: percentile_ms(&ns, 0.50),
            p99: percentile_ms(&ns, 0.99),
            errors: p.errors.get(step).copied().unwrap_or(0),
            first_error: p.first_error.get(step).cloned().flatten(),
            srv_cpu: p.srv_cpu,
            cli_cpu: p.cli_cpu,
            grounded: count(|f| f.grounded),
            no_model: count(|f| f.no_model),
            cached: count(|f| f.cached),
            empty: count(|f| f.empty),
        }
    }
}

/// p50 and p99 (ms) of a list of millisecond values.
fn p50_p99(values: &mut [f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    (at(0.50), at(0.99))
}

/// The split of the stub scenario's asks, one round.
#[derive(Clone, Debug, Default)]
struct FirstToken {
    /// Asks answered by the model, matched with their provider request.
    matched: usize,
    /// Asks answered by the model without a matching provider request.
    unmatched: usize,
    /// Asks answered without a model (the material does not cover it).
    no_model: usize,
    /// Matched asks whose search (the step before) was not counted.
    unpaired: usize,
    /// Client's request → the provider has the whole prompt.
    pre: (f64, f64),
    /// `pre` − the search the same client sent for the same question
    /// right before (paired).
    added: (f64, f64),
    /// Provider's streaming, as the proxy passed it on.
    stream: (f64, f64),
    /// Provider's last byte → the answer is at the client.
    post: (f64, f64),
    /// Whole ask − the provider's streaming: the pipeline's whole share.
    overhead: (f64, f64),
    /// The whole asks that reached the model.
    whole: (f64, f64),
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Matches the asks (step 1 of `point`) with the provider requests the
/// proxy saw, and pairs each with the search (step 0) the same client sent
/// for the same question right before it.
fn first_token(point: &Point, records: &[Record]) -> FirstToken {
    let search: HashMap<usize, f64> = point
        .samples
        .iter()
        .filter(|s| s.step == 0)
        .map(|s| (s.iteration, ms(s.t1 - s.t0)))
        .collect();
    let mut recs: HashMap<usize, Vec<(Record, bool)>> = HashMap::new();
    for r in records {
        if let Some(q) = r.question {
            recs.entry(q).or_default().push((*r, false));
        }
    }
    let mut out = FirstToken::default();
    let (mut pre, mut added, mut stream, mut post, mut overhead, mut whole) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for s in point.samples.iter().filter(|s| s.step == 1) {
        if s.flags.no_model {
            out.no_model += 1;
            continue;
        }
        let found = recs.get_mut(&s.question).and_then(|v| {
            v.iter_mut()
                .find(|(r, used)| !used && r.arrived >= s.t0 && r.arrived <= s.t1)
        });
        let Some((r, used)) = found else {
            out.unmatched += 1;
            continue;
        };
        *used = true;
        let Some(last) = r.last_byte.filter(|l| *l <= s.t1) else {
            out.unmatched += 1;
            continue;
        };
        out.matched += 1;
        let p = ms(r.arrived - s.t0);
        pre.push(p);
        match search.get(&s.iteration) {
            Some(retrieval) => added.push(p - retrieval),
            None => out.unpaired += 1,
        }
        stream.push(ms(last - r.arrived));
        post.push(ms(s.t1 - last));
        overhead.push(ms(s.t1 - s.t0) - ms(last - r.arrived));
        whole.push(ms(s.t1 - s.t0));
    }
    out.pre = p50_p99(&mut pre);
    out.added = p50_p99(&mut added);
    out.stream = p50_p99(&mut stream);
    out.post = p50_p99(&mut post);
    out.overhead = p50_p99(&mut overhead);
    out.whole = p50_p99(&mut whole);
    out
}

/// All rounds of one scenario at one client count.
struct Cell {
    scenario: Scenario,
    conns: usize,
    search: Vec<Stats>,
    ask: Vec<Stats>,
    first_token: Vec<FirstToken>,
}

impl Cell {
    fn new(scenario: Scenario, conns: usize) -> Self {
        Self {
            scenario,
            conns,
            search: Vec::new(),
            ask: Vec::new(),
            first_token: Vec::new(),
        }
    }

    /// Median over rounds of per-round (ask ÷ search) of a figure.
    fn ratio(&self, f: fn(&Stats) -> f64) -> Option<f64> {
        median(self.ask.iter().zip(&self.search).map(|(a, s)| f(a) / f(s)))
    }
}

fn med(v: &[Stats], f: fn(&Stats) -> f64) -> Option<f64> {
    median(v.iter().map(f))
}

fn med_ft(v: &[FirstToken], f: impl Fn(&FirstToken) -> f64) -> Option<f64> {
    median(v.iter().map(f))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "-".to_owned())
}

// ---------------------------------------------------------------------------
// Driving the run.

async fn run(args: &Args) -> Result<(), String> {
    if args.conns.is_empty() || args.conns.contains(&0) {
        return Err("--conns: expected positive client counts".to_owned());
    }
    if args.duration.is_zero() || args.stub_duration.is_zero() {
        return Err("--duration, --stub-duration: expected positive durations".to_owned());
    }
    if args.chunks == 0 || args.chunks_per_file == 0 {
        return Err("--chunks, --chunks-per-file: expected positive counts".to_owned());
    }
    let mut conns_list: Vec<usize> = Vec::new();
    for &c in &args.conns {
        if !conns_list.contains(&c) {
            conns_list.push(c);
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bin = match &args.bwenge {
        Some(p) => p.clone(),
        None => exe
            .parent()
            .ok_or("current_exe has no parent directory")?
            .join(format!("bwenge{}", std::env::consts::EXE_SUFFIX)),
    };
    if !bin.is_file() {
        return Err(format!(
            "no bwenge binary at {}: build it (`cargo build --release -p bwenge -p bwenge-bench`) \
             or pass --bwenge PATH / BWENGE_BIN",
            bin.display()
        ));
    }
    let bin = std::path::absolute(&bin).unwrap_or(bin);
    let model_dir = match &args.model_dir {
        Some(dir) => Some(
            std::fs::canonicalize(dir)
                .map_err(|e| format!("--model-dir {}: {e}", dir.display()))?,
        ),
        None => None,
    };
    let model = model_dir.as_deref();
    let embedder = if model.is_some() {
        "local all-MiniLM-L6-v2, hybrid search"
    } else {
        "hashing embedder, BM25 search"
    };
    let cran = Cranfield::open(
        args.cranfield_dir.as_deref(),
        &["cran.all.1400", "cran.qry"],
    )?;
    let abstracts = parse_abstracts(&cran.read("cran.all.1400")?);
    let queries = parse_queries(&cran.read("cran.qry")?);
    if abstracts.is_empty() || queries.is_empty() {
        return Err(format!(
            "no Cranfield documents or queries in {}",
            cran.dir().display()
        ));
    }

    println!("bwenge-bench answer");
    println!(
        "  rounds {}, warm-up {:?}, window {:?} ({:?} for the stub's asks), clients {:?}; {} CPUs; \
         client: 1 thread (tokio current-thread), stub provider + proxy: 1 thread; bench built {}",
        args.rounds,
        args.warmup,
        args.duration,
        args.stub_duration,
        conns_list,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cfg!(debug_assertions) {
            "debug (use --release for real figures)"
        } else {
            "release"
        }
    );
    println!("  bwenge: {}", bin.display());
    println!("  load average at start: {}", load_average());

    // The directories: dropped last, after every server is dead.
    let corpus_dir = temp_dir("answer", "corpus")?;
    let _corpus_guard = Cleanup::Dir(corpus_dir.clone());
    let data_dir = temp_dir("answer", "data")?;
    let _data_guard = Cleanup::Dir(data_dir.clone());

    let t = Instant::now();
    let (files, passes) = build_corpus(&corpus_dir, &abstracts, args.chunks, args.chunks_per_file)?;
    let predicted: usize = files.iter().map(|f| f.predicted_chunks).sum();
    let bytes: u64 = files.iter().map(|f| f.bytes).sum();
    eprintln!(
        "corpus: {} files, {:.1} MB, {predicted} chunks predicted, built in {:.1} s",
        files.len(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // ---------------------------------------------------------- server A
    let mut server = start_server(&bin, &data_dir, Scenario::Extractive, None, model).await?;
    eprintln!("bwenge (extractive) listening on {}", server.addr);
    let setup = load_knowledge(server.addr, &files, args.ingest_timeout).await?;
    let settled = settle(&mut server, args.settle_timeout).await?;
    println!(
        "  corpus: {} chunks (sum of the sources' chunk_count; {predicted} predicted by \
         bwenge_parsers) in {} plain-text sources, {:.1} MB: the {} Cranfield abstracts in {} \
         shuffled passes (seed {SEED:#x}); ingest {:.0} s ({:.0} chunks/s, {embedder}), \
         then {:.0} s until the server was idle",
        setup.chunks,
        setup.sources,
        bytes as f64 / 1e6,
        abstracts.len(),
        passes,
        setup.ingest.as_secs_f64(),
        setup.chunks as f64 / setup.ingest.as_secs_f64(),
        settled.as_secs_f64()
    );
    println!(
        "  questions: the {} distinct Cranfield queries in a fixed shuffled order; \
         ask = POST /v1/personas/{{id}}/ask (persona over every source, top_k {TOP_K}), \
         search alone = GET /v1/search?q=…&k={TOP_K}",
        queries.len()
    );
    println!();

    let mut order: Vec<usize> = (0..queries.len()).collect();
    Rng(SEED ^ 0x5eed).shuffle(&mut order);
    let order = Arc::new(order);
    let token = setup.token.as_str();
    let search_reqs: ByQuestion = Arc::new(
        queries
            .iter()
            .map(|q| {
                let path = format!("/v1/search?q={}&k={TOP_K}", url_encode(q));
                request("GET", &path, Some(token), None, b"").into()
            })
            .collect(),
    );
    let ask_path = format!("/v1/personas/{}/ask", setup.persona);
    let ask_reqs: ByQuestion = Arc::new(
        queries
            .iter()
            .map(|q| post_json(&ask_path, Some(token), &json!({ "question": q })).into())
            .collect(),
    );

    let mut cells: Vec<Cell> = Vec::new();
    measure(
        args,
        &mut server,
        Scenario::Extractive,
        &conns_list,
        &search_reqs,
        &ask_reqs,
        &order,
        None,
        &mut cells,
    )
    .await?;
    drop(server);

    // ---------------------------------------------------------- server B
    let stream_nominal = args.stub_chunks as f64 * args.stub_chunk_delay_ms as f64;
    if !args.no_stub {
        let questions: HashMap<String, usize> = queries
            .iter()
            .enumerate()
            .map(|(i, q)| (q.clone(), i))
            .collect();
        let stub = Stub::start(
            StubBehaviour::Stream {
                text: STUB_ANSWER.to_owned(),
                chunks: args.stub_chunks.max(1),
                chunk_delay: Duration::from_millis(args.stub_chunk_delay_ms),
            },
            questions,
        )?;
        let base = format!("http://{}/v1", stub.addr);
        let mut server = start_server(&bin, &data_dir, Scenario::Stub, Some(&base), model).await?;
        eprintln!("bwenge (stub provider) listening on {}", server.addr);
        let settled = reopen(&mut server, &search_reqs, args.settle_timeout).await?;
        eprintln!("  idle after {:.0} s", settled.as_secs_f64());
        // One ask that must reach the model: the set-up works end to end.
        check_stub(&server, &ask_reqs, &order, &stub).await?;
        measure(
            args,
            &mut server,
            Scenario::Stub,
            &conns_list,
            &search_reqs,
            &ask_reqs,
            &order,
            Some(&stub),
            &mut cells,
        )
        .await?;
        drop(server);
        drop(stub);
    }

    // ---------------------------------------------------------- server C
    if !args.no_cache {
        let mut server = start_server(&bin, &data_dir, Scenario::Cached, None, model).await?;
        eprintln!("bwenge (extractive, cache on) listening on {}", server.addr);
        let settled = reopen(&mut server, &search_reqs, args.settle_timeout).await?;
        eprintln!("  idle after {:.0} s", settled.as_secs_f64());
        // Fill the cache: every question once.
        for req in ask_reqs.iter() {
            call(server.addr, req, 200).await?;
        }
        measure(
            args,
            &mut server,
            Scenario::Cached,
            &conns_list,
            &search_reqs,
            &ask_reqs,
            &order,
            None,
            &mut cells,
        )
        .await?;
        drop(server);
    }

    print_tables(&cells, args, stream_nominal);
    print_verdict(&cells, &conns_list);
    println!("load average at end: {}", load_average());
    Ok(())
}

/// After a restart: the first search opens the index (and starts linking
/// its vectors in the background); then wait for quiet.
async fn reopen(
    server: &mut Server,
    search: &ByQuestion,
    timeout: Duration,
) -> Result<Duration, String> {
    call(server.addr, &search[0], 200).await?;
    settle(server, timeout).await
}

async fn check_stub(
    server: &Server,
    ask: &ByQuestion,
    order: &[usize],
    stub: &Stub,
) -> Result<(), String> {
    for &q in order {
        let v = call(server.addr, &ask[q], 200).await?;
        if v.get("provider").and_then(Value::as_str) == Some("none") {
            continue; // not covered: no model asked; try the next question
        }
        let provider = str_at(&v, "/provider")?;
        if !provider.starts_with("openai") {
            return Err(format!("the stub scenario answered with {provider}"));
        }
        let recs = stub.take();
        if !recs.iter().any(|r| r.question == Some(q)) {
            return Err(format!(
                "the proxy saw no provider request for the question asked ({} seen)",
                recs.len()
            ));
        }
        return Ok(());
    }
    Err("no question reached the model".to_owned())
}

/// The rounds of one scenario. Without a stub: for each client count, a
/// point of search alone, then a point of asks. With the stub: one point
/// per client count where each client sends, for each question, the search
/// and then the ask, so that each ask has its retrieval-alone twin measured
/// just before it, under the same load.
#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    server: &mut Server,
    scenario: Scenario,
    conns_list: &[usize],
    search: &ByQuestion,
    ask: &ByQuestion,
    order: &Arc<Vec<usize>>,
    stub: Option<&Stub>,
    cells: &mut Vec<Cell>,
) -> Result<(), String> {
    let first = cells.len();
    for &c in conns_list {
        cells.push(Cell::new(scenario, c));
    }
    for round in 1..=args.rounds {
        for (i, &c) in conns_list.iter().enumerate() {
            server.check_alive()?;
            let (ss, sa, ft) = match stub {
                None => {
                    let s = run_point(
                        server,
                        &Requests::one(search, order),
                        c,
                        args.warmup,
                        args.duration,
                    )
                    .await;
                    let a = run_point(
                        server,
                        &Requests::one(ask, order),
                        c,
                        args.warmup,
                        args.duration,
                    )
                    .await;
                    (Stats::of(&s, 0), Stats::of(&a, 0), None)
                }
                Some(stub) => {
                    stub.take(); // nothing to match from before this point
                    let both = Requests {
                        steps: vec![search.clone(), ask.clone()],
                        order: order.clone(),
                    };
                    let p = run_point(server, &both, c, args.warmup, args.stub_duration).await;
                    // Let the proxy finish its last records.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let ft = first_token(&p, &stub.take());
                    (Stats::of(&p, 0), Stats::of(&p, 1), Some(ft))
                }
            };
            let cell = &mut cells[first + i];
            let mut line = format!(
                "round {round}/{} {:<26} c={c:<3} search p50 {:.2} p99 {:.2} ms ({} req)  \
                 ask p50 {:.2} p99 {:.2} ms ({} req){}",
                args.rounds,
                scenario.label(),
                ss.p50,
                ss.p99,
                ss.n,
                sa.p50,
                sa.p99,
                sa.n,
                errors_note(ss.errors + sa.errors)
            );
            if let Some(ft) = ft {
                line.push_str(&format!(
                    "  before the model p50 {:.2} p99 {:.2} ms, minus retrieval p50 {:.2} p99 {:.2} ms",
                    ft.pre.0, ft.pre.1, ft.added.0, ft.added.1
                ));
                cell.first_token.push(ft);
            }
            if let Some(e) = sa.first_error.as_ref().or(ss.first_error.as_ref()) {
                line.push_str(&format!("  first error: {e}"));
            }
            eprintln!("{line}");
            cell.search.push(ss);
            cell.ask.push(sa);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Output.

fn cpu(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |c| format!("{c:.0}%"))
}

fn share(part: usize, n: usize) -> String {
    if n == 0 {
        "-".to_owned()
    } else {
        format!("{:.0}%", part as f64 / n as f64 * 100.0)
    }
}

fn print_tables(cells: &[Cell], args: &Args, stream_nominal: f64) {
    println!(
        "{:<26} {:>5}  {:<14} {:>7} {:>8} {:>8} {:>8} {:>6} {:>7} {:>7}  {:>9} {:>9}  answers",
        "scenario",
        "conns",
        "request",
        "n",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "srv cpu",
        "cli cpu",
        "p50 ratio",
        "p99 ratio",
    );
    for cell in cells {
        let search_name = if cell.scenario == Scenario::Stub {
            "search, paired"
        } else {
            "search alone"
        };
        for (name, rows) in [(search_name, &cell.search), ("ask", &cell.ask)] {
            let is_ask = name == "ask";
            let n: usize = rows.iter().map(|s| s.n).sum();
            let errors: u64 = rows.iter().map(|s| s.errors).sum();
            // The stub's asks include its streaming: no ratio to search.
            let (r50, r99) = if is_ask && cell.scenario != Scenario::Stub {
                (
                    fmt_opt(cell.ratio(|s| s.p50), 2),
                    fmt_opt(cell.ratio(|s| s.p99), 2),
                )
            } else {
                (String::new(), String::new())
            };
            let answers = if is_ask {
                let g: usize = rows.iter().map(|s| s.grounded).sum();
                let none: usize = rows.iter().map(|s| s.no_model).sum();
                let cached: usize = rows.iter().map(|s| s.cached).sum();
                let mut a = format!("grounded {}, no model {}", share(g, n), share(none, n));
                if cell.scenario == Scenario::Cached {
                    a.push_str(&format!(", cached {}", share(cached, n)));
                }
                a
            } else {
                let empty: usize = rows.iter().map(|s| s.empty).sum();
                format!("no hit {}", share(empty, n))
            };
            println!(
                "{:<26} {:>5}  {:<14} {:>7} {:>8} {:>8} {:>8} {:>6} {:>7} {:>7}  {:>9} {:>9}  {}",
                cell.scenario.label(),
                cell.conns,
                name,
                n,
                fmt_opt(med(rows, |s| s.rps), 1),
                fmt_opt(med(rows, |s| s.p50), 2),
                fmt_opt(med(rows, |s| s.p99), 2),
                errors,
                cpu(median_opt(rows.iter().map(|s| s.srv_cpu))),
                cpu(median_opt(rows.iter().map(|s| s.cli_cpu))),
                r50,
                r99,
                answers
            );
        }
    }
    println!(
        "(n = requests counted over all rounds; other figures: medians over {} round(s) of \
         per-round values; ratio = ask ÷ search alone, per round, same server and clients; \
         cpu = % of one core during the window; search, paired = in the stub's points each \
         client sends the search, then the ask, for each question)",
        args.rounds
    );
    for cell in cells {
        for (name, rows) in [("search", &cell.search), ("ask", &cell.ask)] {
            if let Some(e) = rows.iter().find_map(|s| s.first_error.as_deref()) {
                println!(
                    "  first error, {} c={} {name}: {e}",
                    cell.scenario.label(),
                    cell.conns
                );
            }
        }
    }
    println!();

    let stub_cells: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.scenario == Scenario::Stub)
        .collect();
    if stub_cells.is_empty() {
        return;
    }
    println!(
        "stub provider (OpenAI protocol, bwenge_llm::testing::StubServer): {} pieces, {} ms apart \
         (>= {stream_nominal:.0} ms of streaming per answer), behind a timestamping proxy",
        args.stub_chunks, args.stub_chunk_delay_ms
    );
    println!(
        "{:<58} {:>5} {:>9} {:>9}",
        "figure (ms)", "conns", "p50", "p99"
    );
    type Fig = fn(&FirstToken) -> (f64, f64);
    let figures: [(&str, Fig); 6] = [
        ("ask, whole (asks that reached the model)", |f| f.whole),
        ("A  request sent -> provider has the whole prompt", |f| {
            f.pre
        }),
        ("A - its search twin (added over retrieval alone)", |f| {
            f.added
        }),
        (
            "B  provider streaming (first to last byte, at the proxy)",
            |f| f.stream,
        ),
        ("C  provider's last byte -> answer at the client", |f| {
            f.post
        }),
        ("A + C = ask - provider streaming", |f| f.overhead),
    ];
    for cell in &stub_cells {
        let retrieval = (med(&cell.search, |s| s.p50), med(&cell.search, |s| s.p99));
        println!(
            "{:<58} {:>5} {:>9} {:>9}",
            "retrieval alone: the search sent right before each ask",
            cell.conns,
            fmt_opt(retrieval.0, 2),
            fmt_opt(retrieval.1, 2)
        );
        for (name, f) in figures {
            println!(
                "{:<58} {:>5} {:>9} {:>9}",
                name,
                cell.conns,
                fmt_opt(med_ft(&cell.first_token, |x| f(x).0), 2),
                fmt_opt(med_ft(&cell.first_token, |x| f(x).1), 2)
            );
        }
        let matched: usize = cell.first_token.iter().map(|f| f.matched).sum();
        let unmatched: usize = cell.first_token.iter().map(|f| f.unmatched).sum();
        let none: usize = cell.first_token.iter().map(|f| f.no_model).sum();
        let unpaired: usize = cell.first_token.iter().map(|f| f.unpaired).sum();
        println!(
            "  c={}: {matched} asks reached the model and were matched with their provider \
             request ({unpaired} of them without a counted search twin), {unmatched} unmatched, \
             {none} answered without a model (not covered)",
            cell.conns
        );
    }
    println!(
        "(medians over rounds of per-round p50/p99; the split's figures are over the asks that \
         reached the model; each client sends, for each question, GET /v1/search then the ask; \
         A - twin = each ask's A minus the latency of the search the same client sent for the \
         same question right before it)"
    );
    println!();
}

fn print_verdict(cells: &[Cell], conns_list: &[usize]) {
    println!("verdict");
    match cells
        .iter()
        .find(|c| c.scenario == Scenario::Extractive && c.conns == ASK_TARGET_CONNS)
    {
        Some(cell) => {
            let errors: u64 = cell.ask.iter().map(|s| s.errors).sum();
            let p99 = med(&cell.ask, |s| s.p99);
            let line = match p99 {
                None => "n/a  (no successful ask)".to_owned(),
                Some(p99) => format!(
                    "{}  p99 {p99:.2} ms (target <= {ASK_P99_TARGET_MS} ms; p50 {}, search alone \
                     p99 {} ms, ratio {}){}",
                    pass(p99 <= ASK_P99_TARGET_MS && errors == 0),
                    fmt_opt(med(&cell.ask, |s| s.p50), 2),
                    fmt_opt(med(&cell.search, |s| s.p99), 2),
                    fmt_opt(cell.ratio(|s| s.p99), 2),
                    errors_note(errors)
                ),
            };
            println!("  ask, extractive, c={ASK_TARGET_CONNS}: {line}");
        }
        None => println!(
            "  ask, extractive, c={ASK_TARGET_CONNS}: n/a  (run with {ASK_TARGET_CONNS} in --conns)"
        ),
    }
    for &c in conns_list {
        let Some(cell) = cells
            .iter()
            .find(|x| x.scenario == Scenario::Stub && x.conns == c)
        else {
            continue;
        };
        let errors: u64 = cell.ask.iter().map(|s| s.errors).sum::<u64>()
            + cell
                .first_token
                .iter()
                .map(|f| f.unmatched as u64)
                .sum::<u64>();
        let added = med_ft(&cell.first_token, |f| f.added.1);
        let pre = med_ft(&cell.first_token, |f| f.pre.1);
        let search = med(&cell.search, |s| s.p99);
        match (added, pre) {
            (Some(added), Some(pre)) => {
                println!(
                    "  before the first token, stub provider, c={c}: {}  added over retrieval alone \
                     p99 {added:.2} ms (target <= {FIRST_TOKEN_P99_TARGET_MS} ms){}",
                    pass(added <= FIRST_TOKEN_P99_TARGET_MS && errors == 0),
                    errors_note(errors)
                );
                println!(
                    "      (whole time before the model, retrieval included: {}  p99 {pre:.2} ms \
                     against the same {FIRST_TOKEN_P99_TARGET_MS} ms; retrieval alone p99 {} ms)",
                    pass(pre <= FIRST_TOKEN_P99_TARGET_MS && errors == 0),
                    fmt_opt(search, 2)
                );
            }
            _ => println!("  before the first token, stub provider, c={c}: n/a  (no matched ask)"),
        }
    }
    if let Some(cell) = cells
        .iter()
        .find(|c| c.scenario == Scenario::Cached && c.conns == ASK_TARGET_CONNS)
    {
        println!(
            "  (extra, no target) cached answers c={ASK_TARGET_CONNS}: p50 {} ms, p99 {} ms",
            fmt_opt(med(&cell.ask, |s| s.p50), 2),
            fmt_opt(med(&cell.ask, |s| s.p99), 2)
        );
    }
}
