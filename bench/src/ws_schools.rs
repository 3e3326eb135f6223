//! `ws --schools N`: many schools on one node, questions never asked before
//! (issue #16's load).
//!
//! Each school registers (its own organisation and teacher), uploads its
//! own copy of a real PDF manual (`--docs`, in turn: each school's index
//! and chunks are its own) and gets its own persona; `--per-school`
//! sessions per school are then opened over WebSocket. Questions are the
//! dev set's student-worded questions on that school's manual
//! (`bench/data/answer-quality`), and with `--unique` each is phrased from
//! a pool with a variable part (an opening, the question, a closing with a
//! number never used before), so no two questions of the run are the same
//! text and no answer can come from the cache. The answer cache's hits and
//! misses are read from the server's `/metrics` and reported apart, never
//! in the latencies.
//!
//! Phases, one server (SQLite, the local model with `--model-dir`, else
//! the hashing embedder, said in the output):
//! 1. set-up (not measured: registration, upload, ingest);
//! 2. with `--cold`, the server is restarted on the same data, so no
//!    school's index is open and no model is warm;
//! 3. every school asks its first question, the schools spread evenly over
//!    one second (`--cold`: the cold first answers; else a warm-up);
//!    RSS once every school has asked;
//! 4. capacity: `--capacity-inflight` questions kept outstanding (a new one
//!    as each is answered) for `--warmup` + `--duration`; answers/s in the
//!    window is the node's capacity, per core too;
//! 5. warm load at `--load-fraction` of that capacity, open loop (questions
//!    at fixed times, whatever the answers do): ack, first delta, answer;
//! 6. overload at `--rate` questions/s: `ack` must not wait behind
//!    answering; `queued` frames and `overloaded` refusals counted.
//!
//! The echo baseline (unless `--no-baseline`) is the same number of
//! sessions on the bare actix-ws echo server at `--rate`, same client: its
//! "ack" is the echo.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bwenge_bench::{
    Cleanup, CpuMeter, RAISED_CHAT_LIMIT, Rng, bwenge_command, metric_value, pass, percentile_ms,
    raise_chat_limits, rss_kib, spawn_server, temp_dir,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;

use super::{Args, Ws, connect, http_json, loadavg, mib, nanos, upload, wait_ready};

/// Targets of issue #16 (2 cores, local model, unique questions).
const COLD_P99_TARGET_MS: f64 = 2000.0;
const WARM_P99_TARGET_MS: f64 = 150.0;
const ACK_P99_TARGET_MS: f64 = 10.0;
const RSS_TARGET_MIB: f64 = 1536.0;
const CAPACITY_GOAL: f64 = 100.0;

const PASSWORD: &str = "bench-schools-Quartz-Mango-42";
/// Schools set up at once (upload and ingest run on the server's pool).
const SETUP_CONCURRENCY: usize = 8;
const INGEST_TIMEOUT: Duration = Duration::from_secs(1800);

/// The dev set's questions, by the manual they are about.
const DEV_SETS: &[&str] = &[
    include_str!("../data/answer-quality/expeyes.jsonl"),
    include_str!("../data/answer-quality/pari.jsonl"),
];

const OPENINGS: &[&str] = &[
    "",
    "quick question: ",
    "sorry if this is obvious, ",
    "for our lab report, ",
    "hi! ",
    "teacher said to ask you: ",
];

/// The default manuals (Debian's `expeyes-doc-en` and `pari-doc`): 23 and
/// 60 pages.
pub fn default_docs() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/usr/share/expeyes/doc/en-eyesj-progman.pdf"),
        PathBuf::from("/usr/share/pari/doc/tutorial.pdf"),
    ]
}

/// The questions of the dev set on the manual named `file`.
fn questions_for(file: &str) -> Vec<String> {
    DEV_SETS
        .iter()
        .flat_map(|set| set.lines())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["doc"].as_str() == Some(file))
        .filter_map(|v| v["question"].as_str().map(str::to_owned))
        .collect()
}

/// Question texts: the pool's, verbatim or (`unique`) each phrased anew.
struct Phrasing {
    unique: bool,
    next: AtomicU64,
}

impl Phrasing {
    fn phrase(&self, pool: &[String], rng: &mut Rng) -> String {
        let q = &pool[rng.below(pool.len())];
        if !self.unique {
            return q.clone();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let open = OPENINGS[rng.below(OPENINGS.len())];
        match n % 3 {
            0 => format!("{open}{q} (group {n})"),
            1 => format!("{open}{q} i'm at table {n}, thanks"),
            _ => format!("{open}{q} — asking for homework #{n}"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Phase {
    First,
    Capacity,
    Load,
    Overload,
}

/// One question's outcome.
struct Outcome {
    phase: Phase,
    measured: bool,
    ack_ns: Option<u64>,
    delta_ns: Option<u64>,
    answer_ns: Option<u64>,
    queued: bool,
    refused: bool,
    /// When the outcome arrived.
    at: Instant,
}

#[derive(Default)]
struct Totals {
    outcomes: Mutex<Vec<Outcome>>,
    /// Measured questions sent, by phase.
    asked: Mutex<HashMap<Phase, usize>>,
    sent: AtomicU64,
    /// Questions with an outcome (answered, refused, or failed).
    finished: AtomicU64,
    errors: AtomicU64,
    disconnects: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Totals {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert(what);
    }

    fn take(&self, phase: Phase) -> (Vec<Outcome>, usize) {
        let asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&phase)
            .unwrap_or(0);
        let mut all = self
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mine, rest) = std::mem::take(&mut *all)
            .into_iter()
            .partition(|o| o.phase == phase);
        *all = rest;
        (mine, asked)
    }
}

struct AskCmd {
    text: String,
    phase: Phase,
    measured: bool,
    /// Released when the question is answered or refused (closed loop).
    permit: Option<OwnedSemaphorePermit>,
}

struct Pending {
    phase: Phase,
    measured: bool,
    sent: Instant,
    ack_ns: Option<u64>,
    delta_ns: Option<u64>,
    queued: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

/// One session's task: sends what it is told, matches the frames back.
async fn session_task(mut ws: Ws, echo: bool, totals: Arc<Totals>, mut rx: mpsc::Receiver<AskCmd>) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut by_seq: HashMap<i64, String> = HashMap::new();
    let mut n = 0u64;
    let finish = |p: Pending, answered: bool, refused: bool, totals: &Totals| {
        let answer_ns = answered.then(|| nanos(p.sent.elapsed()));
        totals.finished.fetch_add(1, Ordering::Relaxed);
        totals
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Outcome {
                phase: p.phase,
                measured: p.measured,
                ack_ns: p.ack_ns,
                delta_ns: p.delta_ns,
                answer_ns,
                queued: p.queued,
                refused,
                at: Instant::now(),
            });
    };
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                n += 1;
                let client_id = format!("q{n}");
                let frame = json!({"type": "message", "client_id": client_id, "text": cmd.text});
                let sent = Instant::now();
                if let Err(e) = ws.send(Message::text(frame.to_string())).await {
                    // Counted as ended (without an outcome, so "no outcome").
                    totals.finished.fetch_add(1, Ordering::Relaxed);
                    totals.disconnects.fetch_add(1, Ordering::Relaxed);
                    totals.error(format!("send: {e}"));
                    break;
                }
                pending.insert(client_id, Pending {
                    phase: cmd.phase,
                    measured: cmd.measured,
                    sent,
                    ack_ns: None,
                    delta_ns: None,
                    queued: false,
                    _permit: cmd.permit,
                });
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        totals.disconnects.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    totals.error("a frame that is not JSON".to_owned());
                    continue;
                };
                let kind = v["type"].as_str().unwrap_or_default();
                if echo {
                    // The echo of the question is its ack and its answer.
                    if let Some(id) = v["client_id"].as_str()
                        && let Some(mut p) = pending.remove(id)
                    {
                        p.ack_ns = Some(nanos(p.sent.elapsed()));
                        finish(p, true, false, &totals);
                    }
                    continue;
                }
                match kind {
                    "ack" => {
                        if let (Some(id), Some(seq)) = (v["client_id"].as_str(), v["seq"].as_i64())
                            && let Some(p) = pending.get_mut(id)
                        {
                            p.ack_ns = Some(nanos(p.sent.elapsed()));
                            by_seq.insert(seq, id.to_owned());
                        }
                    }
                    "queued" => {
                        if let Some(p) = v["reply_to"].as_i64().and_then(|s| by_seq.get(&s)).and_then(|id| pending.get_mut(id)) {
                            p.queued = true;
                        }
                    }
                    "delta" => {
                        if let Some(p) = v["reply_to"].as_i64().and_then(|s| by_seq.get(&s)).and_then(|id| pending.get_mut(id))
                            && p.delta_ns.is_none()
                        {
                            p.delta_ns = Some(nanos(p.sent.elapsed()));
                        }
                    }
                    "message" if v["role"].as_str() == Some("assistant") => {
                        if let Some(id) = v["reply_to"].as_i64().and_then(|s| by_seq.remove(&s))
                            && let Some(mut p) = pending.remove(&id)
                        {
                            // An answer without pieces (a refusal) arrives whole.
                            p.delta_ns.get_or_insert_with(|| nanos(p.sent.elapsed()));
                            finish(p, true, false, &totals);
                        }
                    }
                    "error" => {
                        let code = v["code"].as_str().unwrap_or("?").to_owned();
                        if let Some(p) = v["client_id"].as_str().and_then(|id| pending.remove(id)) {
                            finish(p, false, code == "overloaded", &totals);
                        }
                        if code != "overloaded" {
                            totals.error(format!("error frame: {v}"));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
}

/// A school as set up: its token, persona and questions.
struct School {
    token: String,
    /// For a new access token when the set-up outlasts the first one.
    refresh: String,
    persona: String,
    pool: Arc<Vec<String>>,
}

struct Fleet {
    /// Per school, its sessions' senders.
    schools: Vec<Vec<mpsc::Sender<AskCmd>>>,
    totals: Arc<Totals>,
    pools: Vec<Arc<Vec<String>>>,
}

/// The access and refresh tokens of an answer carrying `tokens`.
fn tokens_of(v: &Value, what: &str) -> Result<(String, String), String> {
    let token = |k: &str| {
        v["tokens"][k]
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("{what}: no tokens.{k}"))
    };
    Ok((token("access_token")?, token("refresh_token")?))
}

/// Exchanges each school's refresh token for new tokens.
async fn refresh_tokens(
    http: &reqwest::Client,
    base: &str,
    schools: &mut [School],
) -> Result<(), String> {
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let tasks: Vec<_> = schools
        .iter()
        .map(|school| {
            let (http, gate) = (http.clone(), gate.clone());
            let url = format!("{base}/v1/auth/refresh");
            let refresh = school.refresh.clone();
            tokio::spawn(async move {
                let _turn = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                let v = http_json(
                    http.post(url).json(&json!({ "refresh_token": refresh })),
                    "refresh",
                    200,
                )
                .await?;
                tokens_of(&v, "refresh")
            })
        })
        .collect();
    for (school, t) in schools.iter_mut().zip(tasks) {
        (school.token, school.refresh) = t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn open_fleet(
    addr: SocketAddr,
    sources: &[IpAddr],
    schools: &[School],
    per_school: usize,
    echo: bool,
) -> Result<Fleet, String> {
    let totals = Arc::new(Totals::default());
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for (s, school) in schools.iter().enumerate() {
        for k in 0..per_school {
            let path = if echo {
                "/ws".to_owned()
            } else {
                format!("/v1/chat/ws?access_token={}", school.token)
            };
            let persona = school.persona.clone();
            let src = sources[(s * per_school + k) % sources.len()];
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _turn = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                let mut ws = connect(addr, src, &path).await?;
                let start = json!({"type": "start", "persona_id": persona});
                ws.send(Message::text(start.to_string()))
                    .await
                    .map_err(|e| format!("send start: {e}"))?;
                loop {
                    let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
                        .await
                        .map_err(|_| "no session frame in time".to_owned())?;
                    match msg {
                        Some(Ok(Message::Text(t))) => {
                            let v: Value = serde_json::from_str(t.as_str())
                                .map_err(|e| format!("bad frame: {e}"))?;
                            match v["type"].as_str() {
                                Some("session") | Some("start") => return Ok((s, ws)),
                                Some("error") => return Err(format!("error frame: {v}")),
                                _ => {}
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => return Err("closed before the session started".to_owned()),
                    }
                }
            }));
        }
    }
    let mut fleet = Fleet {
        schools: (0..schools.len()).map(|_| Vec::new()).collect(),
        totals: totals.clone(),
        pools: schools.iter().map(|s| s.pool.clone()).collect(),
    };
    for t in tasks {
        let (s, ws) = t.await.map_err(|e| e.to_string())??;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(session_task(ws, echo, totals.clone(), rx));
        fleet.schools[s].push(tx);
    }
    Ok(fleet)
}

impl Fleet {
    fn sessions(&self) -> usize {
        self.schools.iter().map(Vec::len).sum()
    }

    /// Hands a question to a session; counted as sent from here, so that
    /// [`Fleet::settle`] waits for it even before its task has sent it.
    async fn ask(&self, school: usize, session: usize, cmd: AskCmd) {
        let t = &self.totals;
        let (phase, measured) = (cmd.phase, cmd.measured);
        let s = &self.schools[school];
        if s[session % s.len()].send(cmd).await.is_err() {
            return;
        }
        t.sent.fetch_add(1, Ordering::Relaxed);
        if measured {
            *t.asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(phase)
                .or_default() += 1;
        }
    }

    /// Waits until every question sent has an outcome, at most `limit`.
    async fn settle(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until && self.outstanding() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn outstanding(&self) -> u64 {
        let t = &self.totals;
        t.sent
            .load(Ordering::Relaxed)
            .saturating_sub(t.finished.load(Ordering::Relaxed))
    }

    /// The phase's outcomes, and how many of its measured questions were sent.
    fn take(&self, phase: Phase) -> (Vec<Outcome>, usize) {
        self.totals.take(phase)
    }
}

/// Open loop: `rate` questions/s for `warmup` + `window`, each to a random
/// school's random session; only the window's are measured.
async fn open_loop(
    fleet: &Fleet,
    phrasing: &Phrasing,
    phase: Phase,
    rate: f64,
    warmup: Duration,
    window: Duration,
    rng: &mut Rng,
) {
    let start = Instant::now();
    let total = ((warmup + window).as_secs_f64() * rate).round() as u64;
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let school = rng.below(fleet.schools.len());
        let text = phrasing.phrase(&fleet.pools[school], rng);
        let measured = at >= start + warmup;
        let session = rng.below(1 << 20);
        fleet
            .ask(
                school,
                session,
                AskCmd {
                    text,
                    phase,
                    measured,
                    permit: None,
                },
            )
            .await;
    }
}

/// An open-loop phase ([`open_loop`]), waited out for at most `drain`,
/// and its figures.
#[allow(clippy::too_many_arguments)]
async fn open_phase(
    fleet: &Fleet,
    phrasing: &Phrasing,
    phase: Phase,
    rate: f64,
    args: &Args,
    drain: Duration,
    rng: &mut Rng,
) -> Figures {
    open_loop(
        fleet,
        phrasing,
        phase,
        rate,
        args.warmup,
        args.duration,
        rng,
    )
    .await;
    fleet.settle(drain).await;
    figures(fleet.take(phase))
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

struct Figures {
    asked: usize,
    /// Sent, measured, and without an answer or a refusal by the end.
    lost: usize,
    answered: usize,
    refused: usize,
    queued: usize,
    ack: Vec<u64>,
    delta: Vec<u64>,
    answer: Vec<u64>,
}

fn figures((outcomes, asked): (Vec<Outcome>, usize)) -> Figures {
    let m: Vec<&Outcome> = outcomes.iter().filter(|o| o.measured).collect();
    Figures {
        asked,
        lost: asked.saturating_sub(m.len()),
        answered: m.iter().filter(|o| o.answer_ns.is_some()).count(),
        refused: m.iter().filter(|o| o.refused).count(),
        queued: m.iter().filter(|o| o.queued).count(),
        ack: sorted(m.iter().filter_map(|o| o.ack_ns).collect()),
        delta: sorted(m.iter().filter_map(|o| o.delta_ns).collect()),
        answer: sorted(m.iter().filter_map(|o| o.answer_ns).collect()),
    }
}

fn line(label: &str, f: &Figures) {
    let p = |v: &[u64], q| percentile_ms(v, q);
    println!(
        "  {label:<28} asked {:>6}, answered {:>6}, refused {:>5}, no outcome {:>4}, queued {:>6} | ack p50 {:>7.2} p99 {:>8.2} | first delta p50 {:>8.2} p99 {:>8.2} | answer p50 {:>8.2} p99 {:>8.2} ms",
        f.asked,
        f.answered,
        f.refused,
        f.lost,
        f.queued,
        p(&f.ack, 0.5),
        p(&f.ack, 0.99),
        p(&f.delta, 0.5),
        p(&f.delta, 0.99),
        p(&f.answer, 0.5),
        p(&f.answer, 0.99),
    );
}

async fn metrics(http: &reqwest::Client, base: &str) -> String {
    match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// A PDF every school uploads its own copy of: its file name and bytes.
type Pdf = (String, Arc<Vec<u8>>);

/// Reads `path` as a [`Pdf`]; `hint` follows the error.
fn read_pdf(path: &Path, hint: &str) -> Result<Pdf, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}{hint}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("manual.pdf")
        .to_owned();
    Ok((name, Arc::new(bytes)))
}

/// Registers a school, uploads its manual and its copy of the library,
/// creates its persona; the school and its sources' ids.
async fn set_up_school(
    http: &reqwest::Client,
    base: &str,
    i: usize,
    manual: &Pdf,
    library: &[Pdf],
) -> Result<(School, Vec<String>), String> {
    let reg = http_json(
        http.post(format!("{base}/v1/auth/register")).json(&json!({
            "organization_name": format!("School {i}"), "full_name": format!("Teacher {i}"),
            "email": format!("teacher{i}@schools.bench.test"), "password": PASSWORD})),
        "register",
        201,
    )
    .await?;
    let (token, refresh) = tokens_of(&reg, "register")?;
    let mut sources = Vec::with_capacity(1 + library.len());
    for (file, bytes) in std::iter::once(manual).chain(library) {
        sources.push(
            upload(
                http,
                base,
                &token,
                (file, "application/pdf", bytes.to_vec()),
                file,
            )
            .await?,
        );
    }
    let persona = http_json(
        http.post(format!("{base}/v1/personas"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("Tutor {i}")})),
        "create persona",
        201,
    )
    .await?;
    let persona = persona["id"].as_str().ok_or("persona: no id")?.to_owned();
    let name = &manual.0;
    let pool = Arc::new(questions_for(name));
    if pool.is_empty() {
        return Err(format!("the dev set has no question on {name}"));
    }
    Ok((
        School {
            token,
            refresh,
            persona,
            pool,
        },
        sources,
    ))
}

fn start_command(bin: &Path, dir: &Path, url: &str, model_dir: Option<&Path>) -> Command {
    let mut cmd = bwenge_command(bin, dir, url);
    match model_dir {
        Some(m) => cmd
            .env("BWENGE_EMBEDDINGS__PROVIDER", "local")
            .env("BWENGE_EMBEDDINGS__MODEL_DIR", m)
            .env("BWENGE_EMBEDDINGS__ALLOW_DOWNLOAD", "false"),
        None => cmd.env("BWENGE_EMBEDDINGS__PROVIDER", "hashing"),
    };
    raise_chat_limits(&mut cmd);
    // Every school registers from this one address.
    cmd.env("BWENGE_AUTH__IP_BURST", RAISED_CHAT_LIMIT)
        .env("BWENGE_AUTH__IP_REFILL_PER_SEC", RAISED_CHAT_LIMIT);
    cmd
}

pub async fn run(args: &Args, bwenge_bin: &Path, sources: &[IpAddr]) -> Result<(), String> {
    let n = args.schools;
    let per = args.per_school.max(1);
    let docs = if args.docs.is_empty() {
        default_docs()
    } else {
        args.docs.clone()
    };
    let manuals = docs
        .iter()
        .map(|d| {
            read_pdf(
                d,
                " (the default manuals come from Debian's expeyes-doc-en and pari-doc; \
                 or pass --docs)",
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let library = args
        .library
        .iter()
        .map(|d| read_pdf(d, " (--library)"))
        .collect::<Result<Vec<_>, _>>()?;
    let library = Arc::new(library);
    let model_dir = match &args.model_dir {
        Some(m) => Some(std::fs::canonicalize(m).map_err(|e| format!("{}: {e}", m.display()))?),
        None => None,
    };
    println!("bwenge-bench ws --schools");
    println!(
        "  {n} schools × {per} sessions; manuals in turn: {}; questions: the dev set's on each \
         school's manual, {}",
        docs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if args.unique {
            "each phrased anew with a variable part (unique: no cache hit possible)"
        } else {
            "verbatim (repeats: cache hits possible, counted apart)"
        }
    );
    println!(
        "  embedder: {}; {} CPUs; load average at start {}",
        model_dir.as_ref().map_or_else(
            || "hashing (NOT the issue's local model: pass --model-dir)".to_owned(),
            |m| format!("local model {}", m.display())
        ),
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        loadavg()
    );

    let dir = temp_dir("ws-schools", "sqlite")?;
    let db = dir.join("bench.db");
    std::fs::File::create(&db).map_err(|e| format!("create {}: {e}", db.display()))?;
    let url = format!("sqlite://{}", db.display());
    let cleanup = Cleanup::Dir(dir.clone());
    let mut server = spawn_server(
        "bwenge",
        start_command(bwenge_bin, &dir, &url, model_dir.as_deref()),
        Vec::new(),
    )
    .await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;

    // 1. Set-up.
    let started = Instant::now();
    let base = format!("http://{}", server.addr);
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, base, gate) = (http.clone(), base.clone(), gate.clone());
        let manual = manuals[i % manuals.len()].clone();
        let library = library.clone();
        tasks.push(tokio::spawn(async move {
            let _turn = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let (school, sources) = set_up_school(&http, &base, i, &manual, &library).await?;
            let mut chunks = 0;
            for source in &sources {
                chunks += wait_ready(&http, &base, &school.token, source, INGEST_TIMEOUT).await?;
            }
            Ok::<(School, u64), String>((school, chunks))
        }));
    }
    let mut schools = Vec::with_capacity(n);
    let mut chunks = Vec::with_capacity(n);
    for (i, t) in tasks.into_iter().enumerate() {
        let (school, c) = t.await.map_err(|e| e.to_string())??;
        schools.push(school);
        chunks.push(c);
        if (i + 1) % 50 == 0 {
            eprintln!("schools: {} set up in {:.0?}", i + 1, started.elapsed());
        }
    }
    chunks.sort_unstable();
    let extra = if library.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = library.iter().map(|(f, _)| f.as_str()).collect();
        format!(
            " (the manual and {} more PDF(s) each: {})",
            names.len(),
            names.join(", ")
        )
    };
    println!(
        "  set-up: {n} schools registered, manuals ingested, personas made in {:.1} s (not measured); \
         chunks per school: min {}, median {}, max {}{extra}",
        started.elapsed().as_secs_f64(),
        chunks.first().unwrap_or(&0),
        chunks.get(chunks.len() / 2).unwrap_or(&0),
        chunks.last().unwrap_or(&0),
    );

    // 2. Cold: a fresh process on the same data.
    if args.cold {
        drop(server);
        server = spawn_server(
            "bwenge",
            start_command(bwenge_bin, &dir, &url, model_dir.as_deref()),
            Vec::new(),
        )
        .await?;
        println!("  --cold: the server restarted on the same data (no index open, no model warm)");
    }
    let base = format!("http://{}", server.addr);
    // Access tokens last 15 minutes, less than setting up many schools
    // takes: each teacher refreshes theirs, as a client would.
    refresh_tokens(&http, &base, &mut schools).await?;
    let pid = server.pid();
    let opened = Instant::now();
    let fleet = open_fleet(server.addr, sources, &schools, per, false).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.check_alive()?;
    let rss_open = rss_kib(Some(pid));
    println!(
        "  {} sessions open in {:.1} s; server RSS {} MiB before any school asked",
        fleet.sessions(),
        opened.elapsed().as_secs_f64(),
        mib(rss_open)
    );
    let m0 = metrics(&http, &base).await;

    let phrasing = Phrasing {
        unique: args.unique,
        next: AtomicU64::new(0),
    };
    let mut rng = Rng(0x5c4_001);

    // 3. Every school's first question within one second.
    let spread = Duration::from_secs(1);
    let t0 = Instant::now();
    for (s, school) in schools.iter().enumerate() {
        let at = t0 + spread.mul_f64(s as f64 / n as f64);
        tokio::time::sleep_until(at.into()).await;
        let text = phrasing.phrase(&school.pool, &mut rng);
        fleet
            .ask(
                s,
                0,
                AskCmd {
                    text,
                    phase: Phase::First,
                    measured: true,
                    permit: None,
                },
            )
            .await;
    }
    fleet.settle(args.drain).await;
    let first = figures(fleet.take(Phase::First));
    server.check_alive()?;
    let rss_asked = rss_kib(Some(pid));
    let m1 = metrics(&http, &base).await;
    let open_idx = metric_value(
        &m1,
        &format!("{} ", bwenge::knowledge::index::SEARCH_OPEN_INDEXES),
    );

    // 4. Capacity, closed loop.
    let m_cap0 = metrics(&http, &base).await;
    let inflight = Arc::new(Semaphore::new(args.capacity_inflight.max(1)));
    let cap_start = Instant::now();
    let window_start = cap_start + args.warmup;
    let cap_end = window_start + args.duration;
    let meter = CpuMeter::start(pid);
    while Instant::now() < cap_end {
        let permit = inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let s = rng.below(n);
        let text = phrasing.phrase(&schools[s].pool, &mut rng);
        let measured = Instant::now() >= window_start;
        fleet
            .ask(
                s,
                rng.below(1 << 20),
                AskCmd {
                    text,
                    phase: Phase::Capacity,
                    measured,
                    permit: Some(permit),
                },
            )
            .await;
    }
    let (srv_cpu, _) = meter.stop();
    fleet.settle(args.drain).await;
    let m_cap1 = metrics(&http, &base).await;
    let cap = fleet.take(Phase::Capacity);
    // Answers that arrived in the window, whenever they were asked.
    let answered_in_window = cap
        .0
        .iter()
        .filter(|o| o.answer_ns.is_some() && o.at >= window_start && o.at < cap_end)
        .count();
    let capacity = answered_in_window as f64 / args.duration.as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let capf = figures(cap);

    // 5. Warm load at a fraction of capacity.
    let load_rate = (capacity * args.load_fraction).max(1.0);
    let load = open_phase(
        &fleet,
        &phrasing,
        Phase::Load,
        load_rate,
        args,
        args.drain,
        &mut rng,
    )
    .await;

    // 6. Overload at --rate.
    let over = open_phase(
        &fleet,
        &phrasing,
        Phase::Overload,
        args.rate,
        args,
        args.drain,
        &mut rng,
    )
    .await;
    server.check_alive()?;
    let rss_end = rss_kib(Some(pid));
    let m2 = metrics(&http, &base).await;
    let series = |page: &str, name: &str| metric_value(page, &format!("{name} "));
    let hits = series(&m2, bwenge::personas::answer::CACHE_HITS_TOTAL)
        - series(&m0, bwenge::personas::answer::CACHE_HITS_TOTAL);
    let misses = series(&m2, bwenge::personas::answer::CACHE_MISSES_TOTAL)
        - series(&m0, bwenge::personas::answer::CACHE_MISSES_TOTAL);
    let disconnects = fleet.totals.disconnects.load(Ordering::Relaxed);
    let errors = fleet.totals.errors.load(Ordering::Relaxed);
    let first_error = fleet
        .totals
        .first_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    drop(fleet);
    drop(server);

    // The echo baseline at --rate, same sessions, same client.
    let echo = if args.no_baseline {
        None
    } else {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--echo-server").stdin(Stdio::piped());
        let echo_server = spawn_server("echo baseline", cmd, Vec::new()).await?;
        let efleet = open_fleet(echo_server.addr, sources, &schools, per, true).await?;
        let f = open_phase(
            &efleet,
            &phrasing,
            Phase::Overload,
            args.rate,
            args,
            Duration::from_secs(30),
            &mut rng,
        )
        .await;
        drop(efleet);
        drop(echo_server);
        Some(f)
    };
    drop(cleanup);

    // Report.
    println!();
    println!(
        "  phase                        (latencies from the client's send; measured window only)"
    );
    line(
        if args.cold {
            "cold first question/school"
        } else {
            "first question/school"
        },
        &first,
    );
    line(
        &format!("capacity ({} in flight)", args.capacity_inflight),
        &capf,
    );
    line(&format!("warm load {load_rate:.1} q/s"), &load);
    line(&format!("overload {:.0} q/s", args.rate), &over);
    if let Some(e) = &echo {
        line(&format!("echo baseline {:.0} q/s", args.rate), e);
    }
    println!(
        "  capacity: {capacity:.1} answers/s on {cores:.0} cores = {:.1} per core (server CPU {:.0}% \
         of one core over the capacity phase)",
        capacity / cores,
        srv_cpu.unwrap_or(f64::NAN)
    );
    println!("  capacity phase:");
    bwenge_bench::print_stages(&m_cap0, &m_cap1);
    println!(
        "  server RSS: {} MiB sessions open, {} MiB after every school asked ({} indexes open), {} \
         MiB at the end; {:.1} KiB per school after asking",
        mib(rss_open),
        mib(rss_asked),
        open_idx,
        mib(rss_end),
        match (rss_open, rss_asked) {
            (Some(a), Some(b)) => (b.saturating_sub(a)) as f64 / n.max(1) as f64,
            _ => f64::NAN,
        }
    );
    println!(
        "  answer cache (server's counters, phases 3-6, reported apart; only a session's first \
         question asks it): {hits:.0} hits, {misses:.0} misses"
    );
    println!(
        "  client: {disconnects} disconnects, {errors} unexpected error frames{}",
        first_error.map_or(String::new(), |e| format!(" (first: {e})"))
    );
    println!();
    println!(
        "verdict (issue #16 targets; the issue's figures are for 2,000 schools × 5 with the local model)"
    );
    let p99 = |v: &[u64]| percentile_ms(v, 0.99);
    if args.cold {
        println!(
            "  cold first answer p99   {}  {:.1} ms (target <= {COLD_P99_TARGET_MS:.0} ms)",
            pass(p99(&first.delta) <= COLD_P99_TARGET_MS && first.answered == first.asked),
            p99(&first.delta)
        );
    }
    println!(
        "  warm first delta p99    {}  {:.1} ms at {:.0}% of capacity (target <= {WARM_P99_TARGET_MS:.0} ms)",
        pass(p99(&load.delta) <= WARM_P99_TARGET_MS),
        p99(&load.delta),
        args.load_fraction * 100.0
    );
    println!(
        "  ack p99 under overload  {}  {:.2} ms at {:.0} q/s (target <= {ACK_P99_TARGET_MS:.0} ms){}",
        pass(p99(&over.ack) <= ACK_P99_TARGET_MS),
        p99(&over.ack),
        args.rate,
        echo.as_ref().map_or(String::new(), |e| format!(
            "; echo baseline {:.2} ms, ratio {:.2}",
            p99(&e.ack),
            p99(&over.ack) / p99(&e.ack)
        ))
    );
    let rss_mib = rss_asked.map_or(f64::NAN, |k| k as f64 / 1024.0);
    println!(
        "  RSS after every school  {}  {rss_mib:.1} MiB (target <= {RSS_TARGET_MIB:.0} MiB)",
        pass(rss_mib <= RSS_TARGET_MIB)
    );
    println!(
        "  capacity                {}  {capacity:.1} answers/s (goal >= {CAPACITY_GOAL:.0} on 2 cores)",
        pass(capacity >= CAPACITY_GOAL)
    );
    println!("load average at end: {}", loadavg());
    Ok(())
}
