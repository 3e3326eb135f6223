//! Answer quality on real manuals, measured through the real server
//! (issue #15): does a question worded as a student words it get an answer
//! that contains the answer's terms and cites a right page, and is a
//! question the material does not cover declined?
//!
//! Material: the four PDFs of `bench/data/answer-quality` (three ExpEYES
//! manuals from Debian's `expeyes-doc-en`, the PARI/GP tutorial from
//! `pari-doc`), uploaded as a teacher would into one organisation with the
//! real embedding model (all-MiniLM-L6-v2). One persona covers all four; the
//! 180 questions (and the 44 off-topic ones) are asked to it, each once,
//! with the answer cache off.
//!
//! Printed, for the train and the test split apart:
//! * retrieval (`GET /v1/search`, k = 10) for `bm25`, `dense` and `hybrid`:
//!   page hit@1, hit@5, MRR@10 (a hit is a passage of the right document on
//!   a right page);
//! * `ask` with the extractive responder: answered with a right page cited
//!   and every `must_contain` term in the text (overall and on
//!   student-worded questions), in-scope questions declined, off-topic
//!   questions answered, citation quotes found verbatim in their passage,
//!   p50/p99 latency of the answers not served from the answer cache (it is
//!   off; any hit is counted and printed apart).
//!
//! The baseline for latency in the same run is `GET /v1/search` on the same
//! questions (what every answer must at least do).
//!
//! cargo run --release -p bwenge-bench --bin answer-quality -- \
//!     --bwenge target/release/bwenge --model-dir models/all-MiniLM-L6-v2

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bwenge_bench::{
    bwenge_command, clear_answer_settings, fmt_opt, raise_chat_limits, spawn_server, temp_dir,
    use_local_model,
};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The server binary to measure.
    #[arg(long)]
    bwenge: PathBuf,
    /// The embedding model's directory (all-MiniLM-L6-v2).
    #[arg(long, env = "BWENGE_TEST_MODEL_DIR")]
    model_dir: PathBuf,
    /// The question set.
    #[arg(long, default_value = "bench/data/answer-quality")]
    data: PathBuf,
    /// Where `expeyes-doc-en` installed its PDFs.
    #[arg(long, default_value = "/usr/share/expeyes/doc")]
    expeyes_dir: PathBuf,
    /// Where `pari-doc` installed its PDFs.
    #[arg(long, default_value = "/usr/share/pari/doc")]
    pari_dir: PathBuf,
    /// Print every question's outcome (train split only, unless `--all`).
    #[arg(long)]
    verbose: bool,
    /// With `--verbose`: the test split's questions too.
    #[arg(long)]
    all: bool,
    /// Write each training question with its first ten hybrid hits (text,
    /// page, document, similarity) to this JSON-lines file, for replaying
    /// the extractive responder offline (`llm/examples/extractive-replay`).
    /// The test split is never written.
    #[arg(long)]
    dump: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Question {
    id: String,
    text: String,
    doc: Option<String>,
    pages: Vec<i64>,
    must_contain: Vec<String>,
    style: String,
    split: String,
}

#[derive(Debug, Default, Clone)]
struct Retrieval {
    hit1: bool,
    hit5: bool,
    rr: f64,
}

#[derive(Debug, Clone)]
struct Outcome {
    q: Question,
    retrieval: HashMap<&'static str, Retrieval>,
    grounded: bool,
    right_page: bool,
    terms: bool,
    quotes_ok: usize,
    quotes: usize,
    confidence: Option<f64>,
    best_similarity: Option<f64>,
    ask_ms: f64,
    /// Served from the answer cache (it is off, so this should never be
    /// true; a hit is reported apart and kept out of the latency).
    cached: bool,
    search_ms: f64,
    text: String,
}

const MODES: [&str; 3] = ["bm25", "dense", "hybrid"];
const PASSWORD: &str = "answer-quality-bench-1";

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("answer-quality: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("answer-quality: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_questions(dir: &Path) -> Result<Vec<Question>, String> {
    let mut out = Vec::new();
    for file in ["expeyes.jsonl", "pari.jsonl", "offtopic.jsonl"] {
        let path = dir.join(file);
        let raw = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in raw.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
            let strings = |key: &str| -> Vec<String> {
                v[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            out.push(Question {
                id: v["id"].as_str().unwrap_or_default().to_owned(),
                text: v["question"].as_str().unwrap_or_default().to_owned(),
                doc: v["doc"].as_str().map(str::to_owned),
                pages: v["pages"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default(),
                must_contain: strings("must_contain"),
                style: v["style"].as_str().unwrap_or_default().to_owned(),
                split: v["split"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(out)
}

/// Lower-cased with runs of whitespace removed, so `10000 pF` matches
/// `10000pF` (the set's README asks matchers to normalise spacing).
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn get(&self, path: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| format!("GET {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {path}: {status} {v}"));
        }
        Ok(v)
    }

    /// A page as text (`/metrics`).
    async fn text(&self, path: &str) -> Result<String, String> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        r.text().await.map_err(|e| format!("GET {path}: {e}"))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| format!("POST {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {v}"));
        }
        Ok(v)
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let questions = load_questions(&args.data)?;
    let docs: Vec<(String, PathBuf)> = [
        ("en-eyes.pdf", &args.expeyes_dir),
        ("en-eyesj.pdf", &args.expeyes_dir),
        ("en-eyesj-progman.pdf", &args.expeyes_dir),
        ("tutorial.pdf", &args.pari_dir),
    ]
    .into_iter()
    .map(|(name, dir)| (name.to_owned(), dir.join(name)))
    .collect();
    for (_, path) in &docs {
        if !path.exists() {
            return Err(format!(
                "{} is missing: apt-get install expeyes-doc-en pari-doc",
                path.display()
            ));
        }
    }

    let dir = temp_dir("answer-quality", "server")?;
    let db = dir.join("bench.db");
    std::fs::File::create(&db).map_err(|e| format!("create {}: {e}", db.display()))?;
    let cfg = dir.join("bench.toml");
    std::fs::write(&cfg, "[llm]\nchain = [\"extractive\"]\n")
        .map_err(|e| format!("write {}: {e}", cfg.display()))?;
    let mut cmd = bwenge_command(&args.bwenge, &dir, &format!("sqlite://{}", db.display()));
    cmd.arg("--config").arg(&cfg);
    clear_answer_settings(&mut cmd);
    let model_dir = std::fs::canonicalize(&args.model_dir)
        .map_err(|e| format!("{}: {e}", args.model_dir.display()))?;
    // Every question is searched in three modes and then asked.
    use_local_model(&mut cmd, &model_dir);
    // One user asks every question.
    raise_chat_limits(&mut cmd);
    cmd.env("BWENGE_AUTH__ACCESS_TOKEN_TTL_SECS", "86400")
        .env("BWENGE_PERSONAS__CACHE_TTL_SECS", "0");
    let server = spawn_server("bwenge", cmd, Vec::new()).await?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;

    let reg: Value = http
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({
            "organization_name": "Answer quality school",
            "full_name": "Bench Teacher",
            "email": "teacher@answer-quality.example.com",
            "password": PASSWORD,
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let token = reg["tokens"]["access_token"]
        .as_str()
        .ok_or_else(|| format!("register: {reg}"))?
        .to_owned();
    let client = Client { http, base, token };

    // Upload the four manuals and wait for them.
    let started = Instant::now();
    let mut source_doc: HashMap<String, String> = HashMap::new();
    for (name, path) in &docs {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let part = reqwest::multipart::Part::bytes(data)
            .file_name(name.clone())
            .mime_str("application/pdf")
            .map_err(|e| e.to_string())?;
        let form = reqwest::multipart::Form::new()
            .text("title", name.clone())
            .part("file", part);
        let v: Value = client
            .http
            .post(format!("{}/v1/knowledge", client.base))
            .bearer_auth(&client.token)
            .multipart(form)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let id = v["id"]
            .as_str()
            .ok_or_else(|| format!("upload {name}: {v}"))?;
        source_doc.insert(id.to_owned(), name.clone());
    }
    loop {
        let mut ready = 0;
        for id in source_doc.keys() {
            let v = client.get(&format!("/v1/knowledge/{id}")).await?;
            match v["status"].as_str() {
                Some("ready") => ready += 1,
                Some("failed") => return Err(format!("ingest failed: {v}")),
                _ => {}
            }
        }
        if ready == source_doc.len() {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            return Err("ingest took longer than 30 minutes".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "ingested 4 manuals in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let persona = client
        .post(
            "/v1/personas",
            &json!({"name": "Lab tutor", "subject": "electronics, physics and mathematics"}),
        )
        .await?;
    let persona_id = persona["id"]
        .as_str()
        .ok_or_else(|| format!("persona: {persona}"))?
        .to_owned();

    // Ask every question once: search in each mode, then ask.
    let metrics_before = client.text("/metrics").await?;
    let mut outcomes = Vec::new();
    let mut dump = Vec::new();
    for q in &questions {
        let mut retrieval = HashMap::new();
        let mut passages: HashMap<String, String> = HashMap::new();
        let mut search_ms = 0.0;
        let mut best_similarity = None;
        for mode in MODES {
            let t = Instant::now();
            let v = client
                .get(&format!(
                    "/v1/search?k=10&mode={mode}&q={}",
                    urlencode(&q.text)
                ))
                .await?;
            if mode == "hybrid" {
                search_ms = t.elapsed().as_secs_f64() * 1e3;
            }
            let hits = v["hits"].as_array().cloned().unwrap_or_default();
            if mode == "hybrid" && q.split == "train" && args.dump.is_some() {
                let top: Vec<Value> = hits
                    .iter()
                    .take(10)
                    .map(|h| {
                        let doc = h["source_id"].as_str().and_then(|s| source_doc.get(s));
                        json!({"doc": doc, "page": h["page"], "text": h["text"],
                            "source_title": h["source_title"], "similarity": h["similarity"]})
                    })
                    .collect();
                dump.push(
                    json!({"id": q.id, "question": q.text, "doc": q.doc, "pages": q.pages,
                    "must_contain": q.must_contain, "style": q.style, "hits": top}),
                );
            }
            if mode == "hybrid" {
                best_similarity = hits
                    .iter()
                    .take(6)
                    .filter_map(|h| h["similarity"].as_f64())
                    .reduce(f64::max);
            }
            let mut r = Retrieval::default();
            for (i, h) in hits.iter().enumerate() {
                let doc = h["source_id"]
                    .as_str()
                    .and_then(|s| source_doc.get(s))
                    .cloned();
                if let (Some(id), Some(text)) = (h["chunk_id"].as_str(), h["text"].as_str()) {
                    passages.insert(id.to_owned(), text.to_owned());
                }
                let right = doc.is_some()
                    && doc == q.doc
                    && h["page"].as_i64().is_some_and(|p| q.pages.contains(&p));
                if right {
                    if r.rr == 0.0 {
                        r.rr = 1.0 / (i + 1) as f64;
                    }
                    r.hit1 |= i == 0;
                    r.hit5 |= i < 5;
                }
            }
            retrieval.insert(mode, r);
        }
        let t = Instant::now();
        let a = client
            .post(
                &format!("/v1/personas/{persona_id}/ask"),
                &json!({"question": q.text}),
            )
            .await?;
        let ask_ms = t.elapsed().as_secs_f64() * 1e3;
        let text = a["text"].as_str().unwrap_or_default().to_owned();
        let grounded = a["grounded"].as_bool().unwrap_or(false);
        let cites = a["citations"].as_array().cloned().unwrap_or_default();
        let right_page = cites.iter().any(|c| {
            let doc = c["source_id"]
                .as_str()
                .and_then(|s| source_doc.get(s))
                .cloned();
            doc.is_some()
                && doc == q.doc
                && c["page"].as_i64().is_some_and(|p| q.pages.contains(&p))
        });
        let squashed = squash(&text);
        let terms = q.must_contain.iter().all(|t| squashed.contains(&squash(t)));
        let mut quotes_ok = 0;
        for c in &cites {
            let quote = c["quote"].as_str().unwrap_or_default();
            // The persona searches as hybrid search does, so a cited chunk is
            // among the passages seen above; one that is not counts as a
            // failure (it cannot be checked).
            let chunk = c["chunk_id"]
                .as_str()
                .and_then(|id| passages.get(id))
                .map_or("", String::as_str);
            if !quote.is_empty() && chunk.contains(quote) {
                quotes_ok += 1;
            }
        }
        outcomes.push(Outcome {
            q: q.clone(),
            retrieval,
            grounded,
            right_page,
            terms,
            quotes_ok,
            quotes: cites.len(),
            confidence: a["confidence"].as_f64(),
            best_similarity,
            ask_ms,
            cached: a["cached"].as_bool().unwrap_or(false),
            search_ms,
            text,
        });
    }
    let metrics_after = client.text("/metrics").await?;
    drop(server);
    if let Some(path) = &args.dump {
        let lines: Vec<String> = dump.iter().map(Value::to_string).collect();
        std::fs::write(path, lines.join("\n") + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }

    if args.verbose {
        for o in &outcomes {
            if o.q.split != "train" && !args.all {
                continue;
            }
            let ok = o.grounded && o.right_page && o.terms;
            println!(
                "{:<8} {:<8} {:<5} grounded={:<5} page={:<5} terms={:<5} conf={} sim={} | {} | {}",
                o.q.id,
                o.q.style,
                if o.q.style == "offtopic" {
                    if o.grounded { "FALSE" } else { "ok" }
                } else if ok {
                    "ok"
                } else {
                    "MISS"
                },
                o.grounded,
                o.right_page,
                o.terms,
                fmt_opt(o.confidence, 2),
                fmt_opt(o.best_similarity, 2),
                o.q.text,
                o.text
                    .replace('\n', " ")
                    .chars()
                    .take(160)
                    .collect::<String>(),
            );
        }
    }
    // Searches include the bench's own `/v1/search` calls, three per question.
    bwenge_bench::print_stages(&metrics_before, &metrics_after);
    for split in ["train", "test"] {
        report(
            split,
            &outcomes
                .iter()
                .filter(|o| o.q.split == split)
                .collect::<Vec<_>>(),
        );
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn share(n: usize, d: usize) -> String {
    if d == 0 {
        "-".to_owned()
    } else {
        format!("{:.2} ({n}/{d})", n as f64 / d as f64)
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn report(split: &str, outcomes: &[&Outcome]) {
    let inscope: Vec<&Outcome> = outcomes
        .iter()
        .copied()
        .filter(|o| o.q.doc.is_some())
        .collect();
    let student: Vec<&Outcome> = inscope
        .iter()
        .copied()
        .filter(|o| o.q.style == "student")
        .collect();
    let offtopic: Vec<&Outcome> = outcomes
        .iter()
        .copied()
        .filter(|o| o.q.doc.is_none())
        .collect();
    println!(
        "\n== {split} split: {} in-scope ({} student-worded), {} off-topic ==",
        inscope.len(),
        student.len(),
        offtopic.len()
    );
    println!("retrieval (GET /v1/search, k=10)   hit@1   hit@5   MRR@10");
    for mode in MODES {
        let n = inscope.len().max(1) as f64;
        let get = |f: &dyn Fn(&Retrieval) -> f64| {
            inscope
                .iter()
                .map(|o| o.retrieval.get(mode).map_or(0.0, f))
                .sum::<f64>()
                / n
        };
        println!(
            "  {mode:<33} {:.3}   {:.3}   {:.3}",
            get(&|r| f64::from(u8::from(r.hit1))),
            get(&|r| f64::from(u8::from(r.hit5))),
            get(&|r| r.rr)
        );
    }
    fn correct(o: &&&Outcome) -> bool {
        o.grounded && o.right_page && o.terms
    }
    println!("ask (extractive responder)");
    println!(
        "  answered, right page and terms    {}",
        share(inscope.iter().filter(correct).count(), inscope.len())
    );
    println!(
        "    student-worded                  {}",
        share(student.iter().filter(correct).count(), student.len())
    );
    println!(
        "  answered with a right page        {}",
        share(
            inscope
                .iter()
                .filter(|o| o.grounded && o.right_page)
                .count(),
            inscope.len()
        )
    );
    println!(
        "  in-scope declined                 {}",
        share(
            inscope.iter().filter(|o| !o.grounded).count(),
            inscope.len()
        )
    );
    println!(
        "  off-topic answered                {}",
        share(
            offtopic.iter().filter(|o| o.grounded).count(),
            offtopic.len()
        )
    );
    let quotes: usize = outcomes.iter().map(|o| o.quotes).sum();
    let quotes_ok: usize = outcomes.iter().map(|o| o.quotes_ok).sum();
    println!(
        "  quotes verbatim in their passage  {}",
        share(quotes_ok, quotes)
    );
    let hits = outcomes.iter().filter(|o| o.cached).count();
    println!("  answer cache hits (kept out of latency) {hits}");
    let mut ask: Vec<f64> = outcomes
        .iter()
        .filter(|o| !o.cached)
        .map(|o| o.ask_ms)
        .collect();
    let mut search: Vec<f64> = outcomes.iter().map(|o| o.search_ms).collect();
    let (a50, a99) = (pct(&mut ask, 0.5), pct(&mut ask, 0.99));
    let (s50, s99) = (pct(&mut search, 0.5), pct(&mut search, 0.99));
    println!(
        "  ask latency p50 {a50:.1} ms, p99 {a99:.1} ms; baseline hybrid search p50 {s50:.1} ms, p99 {s99:.1} ms (ratio p50 {:.2})",
        a50 / s50
    );
}
