//! What the HTTP benchmarks (`http`, `auth`) share: server child processes
//! (started, waited for, drained, killed), a hand-written HTTP/1.1
//! keep-alive load generator on raw tokio sockets, CPU time from `/proc`,
//! and the small helpers of their tables (medians, PASS/MISS).
//!
//! The load generator is meant for a current-thread tokio runtime: on the
//! 2-core machine the benches are written for, a multi-threaded client would
//! take both cores from the server it measures.

pub mod cranfield;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a server may take to print its `listening on` line and answer
/// its first `/healthz` (a release build with migrations takes well under).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a child's output kept to explain a failure: first and last.
const HEAD_LINES: usize = 20;
const TAIL_LINES: usize = 30;

// ---------------------------------------------------------------------------
// Arguments and tables.

/// A clap value parser for a non-negative number of seconds (fractions
/// allowed).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?}: expected a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

pub fn errors_note(errors: u64) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!(", {errors} errors")
    }
}

pub fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The median of the finite values; `None` when there is none.
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

pub fn median_opt(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    median(values.flatten())
}

/// The `p` quantile (0..=1, nearest rank) of sorted nanoseconds, in
/// milliseconds; NaN when there is none.
/// One series' value in a Prometheus text page (`series` ends where the
/// value starts: name and labels, then a space); 0 when absent.
pub fn metric_value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The server's own timing of each stage (`bwenge_search_stage_seconds`,
/// `bwenge_answer_stage_seconds`) between two readings of `/metrics`: the mean from
/// the summaries' sum and count before and after, and the exporter's p50
/// and p99 (over its last minute, 3 × 20 s).
pub fn print_stages(before: &str, after: &str) {
    let value = metric_value;
    println!("stages, as the server timed them (mean over the run; p50, p99 over the last minute)");
    use bwenge::metrics::{
        ANSWER_STAGE_SECONDS, ANSWER_STAGES, SEARCH_STAGE_SECONDS, SEARCH_STAGES,
    };
    for (metric, stages) in [
        (SEARCH_STAGE_SECONDS, SEARCH_STAGES),
        (ANSWER_STAGE_SECONDS, ANSWER_STAGES),
    ] {
        for stage in stages {
            let label = format!("{{stage=\"{stage}\"}} ");
            let count = value(after, &format!("{metric}_count{label}"))
                - value(before, &format!("{metric}_count{label}"));
            let sum = value(after, &format!("{metric}_sum{label}"))
                - value(before, &format!("{metric}_sum{label}"));
            let q = |p: &str| {
                value(
                    after,
                    &format!("{metric}{{stage=\"{stage}\",quantile=\"{p}\"}} "),
                ) * 1e3
            };
            let kind = metric
                .trim_start_matches("bwenge_")
                .trim_end_matches("_stage_seconds");
            if count > 0.0 {
                println!(
                    "  {kind:<7} {stage:<12} n={count:<5} mean {:>7.3} ms  p50 {:>7.3} ms  p99 {:>7.3} ms",
                    sum / count * 1e3,
                    q("0.5"),
                    q("0.99")
                );
            }
        }
    }
}

pub fn percentile_ms(sorted_ns: &[u64], p: f64) -> f64 {
    let n = sorted_ns.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted_ns[rank - 1] as f64 / 1e6
}

/// Combined user + system CPU time of a process, from `/proc` (Linux only;
/// `None` elsewhere); `None` for this process.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after "pid (comm) ": state is the 1st, utime the 12th, stime the
    // 13th, in clock ticks: USER_HZ, which Linux fixes at 100 for userspace.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU use of a server process and of this process over a stretch of wall
/// time, in % of one core.
pub struct CpuMeter {
    server_pid: u32,
    server: Option<Duration>,
    client: Option<Duration>,
    at: Instant,
}

impl CpuMeter {
    pub fn start(server_pid: u32) -> Self {
        Self {
            server_pid,
            server: cpu_time(Some(server_pid)),
            client: cpu_time(None),
            at: Instant::now(),
        }
    }

    /// `(server %, client %)` since [`CpuMeter::start`].
    pub fn stop(&self) -> (Option<f64>, Option<f64>) {
        let server = cpu_time(Some(self.server_pid));
        let client = cpu_time(None);
        let elapsed = self.at.elapsed().as_secs_f64();
        let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) if elapsed > 0.0 => {
                Some(b.saturating_sub(a).as_secs_f64() / elapsed * 100.0)
            }
            _ => None,
        };
        (pct(self.server, server), pct(self.client, client))
    }
}

// ---------------------------------------------------------------------------
// Server processes.

/// A server child process: killed (then its data removed) on drop.
pub struct Server {
    label: String,
    pub addr: SocketAddr,
    child: Child,
    tail: Tail,
    /// Dropped after the child is killed (fields drop after `Drop::drop`).
    _data: Vec<Cleanup>,
}

impl Server {
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); its output:\n{}",
                self.label,
                self.tail.dump()
            )),
            Err(e) => Err(format!("{}: {e}", self.label)),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first and last lines the child printed.
    pub fn output(&self) -> String {
        self.tail.dump()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Something to undo at the end of the run, once the child is dead.
pub enum Cleanup {
    /// Remove this directory and everything in it.
    Dir(PathBuf),
    /// Run this (e.g. drop a database); taken on drop.
    Run(Option<Box<dyn FnOnce() + Send>>),
}

impl Cleanup {
    pub fn run(f: impl FnOnce() + Send + 'static) -> Self {
        Self::Run(Some(Box::new(f)))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Self::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::Run(f) => {
                if let Some(f) = f.take() {
                    f();
                }
            }
        }
    }
}

/// What a child printed, on either stream: its first lines (where a panic
/// message or a configuration error usually is) and its last ones.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<Lines>>);

#[derive(Default)]
struct Lines {
    head: Vec<String>,
    tail: VecDeque<String>,
    skipped: usize,
}

impl Tail {
    fn push(&self, line: String) {
        if let Ok(mut l) = self.0.lock() {
            if l.head.len() < HEAD_LINES {
                l.head.push(line);
                return;
            }
            if l.tail.len() == TAIL_LINES {
                l.tail.pop_front();
                l.skipped += 1;
            }
            l.tail.push_back(line);
        }
    }

    fn dump(&self) -> String {
        let Ok(l) = self.0.lock() else {
            return "  (unavailable)\n".to_owned();
        };
        if l.head.is_empty() {
            return "  (nothing)\n".to_owned();
        }
        let mut out: String = l.head.iter().map(|x| format!("  | {x}\n")).collect();
        if l.skipped > 0 {
            let _ = writeln!(out, "  | ... {} lines ...", l.skipped);
        }
        out.extend(l.tail.iter().map(|x| format!("  | {x}\n")));
        out
    }
}

/// A unique-enough name for this run's temporary things.
pub fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}_{nanos}", std::process::id())
}

/// A fresh directory `bwenge-bench-{bench}-{what}-{run id}` under the
/// system's temporary directory.
pub fn temp_dir(bench: &str, what: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("bwenge-bench-{bench}-{what}-{}", run_id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Per-user chat limits given to Bwenge by benches whose load comes from a
/// few users: the shipped 10 questions burst, 1 a second, would refuse it.
pub const RAISED_CHAT_LIMIT: &str = "1000000";

/// Lifts the per-user chat limits (questions over the socket and `ask`,
/// session starts, open sockets) to [`RAISED_CHAT_LIMIT`] for the server
/// `cmd` starts.
pub fn raise_chat_limits(cmd: &mut Command) {
    for var in [
        "BWENGE_CHAT__MESSAGES_BURST",
        "BWENGE_CHAT__MESSAGES_PER_SEC",
        "BWENGE_CHAT__STARTS_BURST",
        "BWENGE_CHAT__STARTS_PER_SEC",
        "BWENGE_CHAT__MAX_SOCKETS_PER_USER",
    ] {
        cmd.env(var, RAISED_CHAT_LIMIT);
    }
}

/// Keeps the caller's answering, embedding and chat settings (and Redis)
/// out of the server `cmd` starts: the bench decides them.
pub fn clear_answer_settings(cmd: &mut Command) {
    const DECIDED: [&str; 4] = [
        "BWENGE_LLM__",
        "BWENGE_PERSONAS__",
        "BWENGE_EMBEDDINGS__",
        "BWENGE_CHAT__",
    ];
    for (key, _) in std::env::vars() {
        if DECIDED.iter().any(|p| key.starts_with(p)) || key == "BWENGE_REDIS_URL" {
            cmd.env_remove(key);
        }
    }
}

/// Has the server `cmd` starts embed with the local model in `model_dir`
/// (an absolute path), never downloading, and without its memory of
/// recent questions' vectors: benches ask questions again (a search, then
/// the same ask), and a remembered vector would time a look-up, not the
/// model.
pub fn use_local_model(cmd: &mut Command, model_dir: &Path) {
    cmd.env("BWENGE_EMBEDDINGS__PROVIDER", "local")
        .env("BWENGE_EMBEDDINGS__MODEL_DIR", model_dir)
        .env("BWENGE_EMBEDDINGS__ALLOW_DOWNLOAD", "false")
        .env("BWENGE_EMBEDDINGS__REMEMBERED_QUESTIONS", "0");
}

/// `bwenge serve` on a free port of 127.0.0.1 with `data_dir` as its data
/// directory and working directory, on `database_url`, logging at `warn`.
pub fn bwenge_command(bin: &Path, data_dir: &Path, database_url: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--bind")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .env("BWENGE_DATABASE_URL", database_url)
        .env("BWENGE_LOG__LEVEL", "warn")
        // Benches measure the server, not the free plan's allowances: the
        // organisations they register get unlimited questions, storage and
        // members (billing's own tests hold the allowances).
        .env("BWENGE_BILLING__PLANS__FREE__QUESTIONS_PER_MONTH", "-1")
        .env("BWENGE_BILLING__PLANS__FREE__STORAGE_BYTES", "-1")
        .env("BWENGE_BILLING__PLANS__FREE__MEMBERS", "-1")
        // `RUST_LOG` would win over `log.level`: keep logging out of the way.
        .env_remove("RUST_LOG")
        // Run it away from the workspace so that a `./config` directory there
        // (possibly newer than the binary) does not apply: the layers come
        // from the copies compiled into the binary, plus the environment.
        .current_dir(data_dir)
        .stdin(Stdio::null());
    cmd
}

/// Starts `cmd`, waits for its `listening on http://ADDR` line and a 200 from
/// `/healthz`, and keeps draining its output in background threads. `label`
/// names it in errors; `data` is undone once the child is dead.
pub async fn spawn_server(
    label: &str,
    mut cmd: Command,
    data: Vec<Cleanup>,
) -> Result<Server, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
    let tail = Tail::default();
    let (tx, rx) = mpsc::channel::<SocketAddr>();
    if let Some(stdout) = child.stdout.take() {
        drain(stdout, tail.clone(), Some(tx));
    }
    if let Some(stderr) = child.stderr.take() {
        drain(stderr, tail.clone(), None);
    }
    // Wrap it now so that every early return below kills it.
    let mut server = Server {
        label: label.to_owned(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        child,
        tail,
        _data: data,
    };

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    server.addr = loop {
        match rx.try_recv() {
            Ok(addr) => break addr,
            Err(mpsc::TryRecvError::Empty) if Instant::now() < deadline => {
                server.check_alive()?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                server.check_alive()?;
                return Err(format!(
                    "no `listening on http://...` line within {STARTUP_TIMEOUT:?}; output:\n{}",
                    server.tail.dump()
                ));
            }
        }
    };

    // Listening is not serving yet: wait for a first 200 from /healthz.
    let req = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut last = String::new();
    while Instant::now() < deadline {
        server.check_alive()?;
        let attempt = tokio::time::timeout(Duration::from_secs(5), async {
            let mut stream = TcpStream::connect(server.addr).await?;
            let mut buf = Vec::new();
            round_trip(&mut stream, req, &mut buf).await
        })
        .await;
        match attempt {
            Ok(Ok(resp)) if resp.status == 200 => return Ok(server),
            Ok(Ok(resp)) => last = format!("HTTP {}", resp.status),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "GET /healthz never answered 200 within {STARTUP_TIMEOUT:?} (last: {last}); output:\n{}",
        server.tail.dump()
    ))
}

/// Reads a child's stream line by line until EOF so it never blocks on a
/// full pipe; the first `listening on http://ADDR` line goes to `addr_tx`.
fn drain(
    stream: impl Read + Send + 'static,
    tail: Tail,
    mut addr_tx: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if let Some(tx) = &addr_tx {
                let addr = text
                    .strip_prefix("listening on http://")
                    .and_then(|rest| rest.trim().trim_end_matches('/').parse().ok());
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                    addr_tx = None;
                }
            }
            tail.push(text);
        }
    });
}

// ---------------------------------------------------------------------------
// The load generator.

/// A warm-up, then a measuring window.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    /// Starts `warmup` from now and lasts `duration`.
    pub fn after(warmup: Duration, duration: Duration) -> Self {
        let start = Instant::now() + warmup;
        Self {
            start,
            end: start + duration,
        }
    }

    pub fn contains(&self, t: Instant) -> bool {
        t >= self.start && t <= self.end
    }
}

/// What one or more connections saw in the measuring window.
#[derive(Default)]
pub struct ConnStats {
    /// Latency of every 200 completed in the window.
    pub latencies_ns: Vec<u64>,
    /// Every other status, I/O error and timeout.
    pub errors: u64,
    pub first_error: Option<String>,
    /// The non-200 statuses among the errors, by status.
    pub statuses: BTreeMap<u16, u64>,
}

impl ConnStats {
    pub fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    fn status_error(&mut self, status: u16) {
        self.error(|| format!("HTTP {status}"));
        *self.statuses.entry(status).or_default() += 1;
    }

    /// Adds `other` in; latencies are appended, not sorted.
    pub fn merge(&mut self, mut other: ConnStats) {
        self.latencies_ns.append(&mut other.latencies_ns);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }

    /// Errors answered with this status.
    pub fn status_count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// One point's load: the merged stats (latencies sorted) and the CPU use of
/// the server and of this process during the window.
pub struct Load {
    pub stats: ConnStats,
    pub srv_cpu: Option<f64>,
    pub cli_cpu: Option<f64>,
}

/// One keep-alive connection per request in `requests`, each sending its
/// request over and over, one at a time, through the warm-up and `window`.
/// A request still in flight `grace` after the window is an error (a hang).
pub async fn load(
    addr: SocketAddr,
    requests: Vec<Arc<[u8]>>,
    window: Window,
    grace: Duration,
    server_pid: u32,
) -> Load {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| tokio::spawn(connection(addr, request, window, grace)))
        .collect();

    tokio::time::sleep_until(window.start.into()).await;
    let meter = CpuMeter::start(server_pid);
    tokio::time::sleep_until(window.end.into()).await;
    let (srv_cpu, cli_cpu) = meter.stop();

    let mut all = ConnStats::default();
    for task in tasks {
        match task.await {
            Ok(s) => all.merge(s),
            Err(e) => all.error(|| format!("client task failed: {e}")),
        }
    }
    all.latencies_ns.sort_unstable();
    Load {
        stats: all,
        srv_cpu,
        cli_cpu,
    }
}

/// One keep-alive connection: request, full response, repeat, until the end
/// of the window. A request counts in the window it completes in.
pub async fn connection(
    addr: SocketAddr,
    request: Arc<[u8]>,
    window: Window,
    grace: Duration,
) -> ConnStats {
    let mut stats = ConnStats::default();
    // A request still in flight this long after the window is a hang.
    let hard_deadline = window.end + grace;
    let mut stream: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let now = Instant::now();
        if now >= window.end {
            break;
        }
        let in_window = now >= window.start;
        let s = match stream.as_mut() {
            Some(s) => s,
            None => {
                match tokio::time::timeout_at(hard_deadline.into(), TcpStream::connect(addr)).await
                {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        buf.clear();
                        stream.insert(s)
                    }
                    Ok(Err(e)) => {
                        if in_window {
                            stats.error(|| format!("connect: {e}"));
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    Err(_) => {
                        stats.error(|| "connect timed out".to_owned());
                        break;
                    }
                }
            }
        };
        let t0 = Instant::now();
        let result =
            tokio::time::timeout_at(hard_deadline.into(), round_trip(s, &request, &mut buf)).await;
        let t1 = Instant::now();
        let counted = window.contains(t1);
        match result {
            Err(_) => {
                stats.error(|| "response timed out".to_owned());
                break;
            }
            Ok(Err(e)) => {
                if counted {
                    stats.error(|| format!("i/o: {e}"));
                }
                stream = None;
            }
            Ok(Ok(resp)) => {
                if counted {
                    if resp.status == 200 {
                        stats.latencies_ns.push(nanos(t1 - t0));
                    } else {
                        stats.status_error(resp.status);
                    }
                }
                if resp.close {
                    stream = None;
                }
            }
        }
    }
    stats
}

/// One connection sending `request` every `interval` (or right after the
/// previous response, when that took longer) through the warm-up and
/// `window`: a probe of the server's responsiveness while something else
/// loads it. Same accounting as [`connection`].
pub async fn probe(
    addr: SocketAddr,
    request: Arc<[u8]>,
    interval: Duration,
    window: Window,
    grace: Duration,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let hard_deadline = window.end + grace;
    let mut stream: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if Instant::now() >= window.end {
            break;
        }
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match tokio::time::timeout_at(hard_deadline.into(), TcpStream::connect(addr))
                .await
            {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    buf.clear();
                    stream.insert(s)
                }
                Ok(Err(e)) => {
                    if Instant::now() >= window.start {
                        stats.error(|| format!("connect: {e}"));
                    }
                    continue;
                }
                Err(_) => {
                    stats.error(|| "connect timed out".to_owned());
                    break;
                }
            },
        };
        let t0 = Instant::now();
        let result =
            tokio::time::timeout_at(hard_deadline.into(), round_trip(s, &request, &mut buf)).await;
        let t1 = Instant::now();
        let counted = window.contains(t1);
        match result {
            Err(_) => {
                stats.error(|| "response timed out".to_owned());
                break;
            }
            Ok(Err(e)) => {
                if counted {
                    stats.error(|| format!("i/o: {e}"));
                }
                stream = None;
            }
            Ok(Ok(resp)) => {
                if counted {
                    if resp.status == 200 {
                        stats.latencies_ns.push(nanos(t1 - t0));
                    } else {
                        stats.status_error(resp.status);
                    }
                }
                if resp.close {
                    stream = None;
                }
            }
        }
    }
    stats
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A request with a JSON body.
pub fn post_json(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A `GET` request.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

/// What the client needs from a response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server will close the connection after this response.
    pub close: bool,
    /// Bytes of `buf` the response took.
    pub len: usize,
}

/// Writes `request`, then reads one whole response into `buf` and removes it
/// from there.
pub async fn round_trip(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> io::Result<Response> {
    stream.write_all(request).await?;
    loop {
        if let Some(resp) = parse_response(buf)? {
            buf.drain(..resp.len);
            return Ok(resp);
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Parses one HTTP/1.x response at the start of `buf`: `Ok(None)` while it
/// is incomplete. Knows `Content-Length`, `Transfer-Encoding: chunked` and
/// bodiless statuses; a body delimited by closing the connection is refused
/// (it would end keep-alive, which the benches are about).
pub fn parse_response(buf: &[u8]) -> io::Result<Option<Response>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let Some(head_len) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(bad("response head over 64 KiB"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| bad("non-UTF-8 response head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("malformed status line"))?;
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not an HTTP/1.x response"));
    }
    let mut close = version == "HTTP/1.0";
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| bad("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                close = true;
            } else if value.contains("keep-alive") {
                close = false;
            }
        }
    }
    let body_start = head_len + 4;
    let len = if (100..200).contains(&status) || status == 204 || status == 304 {
        Some(body_start)
    } else if chunked {
        chunked_end(buf, body_start)?
    } else if let Some(n) = content_length {
        Some(body_start + n).filter(|end| *end <= buf.len())
    } else {
        return Err(bad("response without Content-Length or chunked body"));
    };
    Ok(len.map(|len| Response { status, close, len }))
}

/// The end of a chunked body starting at `pos`, if all of it is in `buf`.
fn chunked_end(buf: &[u8], mut pos: usize) -> io::Result<Option<usize>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    loop {
        let Some(line_len) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line =
            std::str::from_utf8(&buf[pos..pos + line_len]).map_err(|_| bad("bad chunk size"))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
        pos += line_len + 2;
        if size == 0 {
            // Optional trailers, then an empty line.
            return Ok(if buf[pos..].starts_with(b"\r\n") {
                Some(pos + 2)
            } else {
                find(&buf[pos..], b"\r\n\r\n").map(|i| pos + i + 4)
            });
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `VmRSS` of a process (this one for `None`), in KiB.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// xorshift64*: a small, fast generator with a fixed seed, so every run of
/// a bench draws the same load.
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_content_length_chunked_and_partial_responses() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}NEXT";
        let resp = parse_response(r).unwrap().unwrap();
        assert_eq!(
            (resp.status, resp.close, resp.len),
            (200, false, r.len() - 4)
        );
        assert!(parse_response(&r[..r.len() - 6]).unwrap().is_none());

        let c = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\
                  Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let resp = parse_response(c).unwrap().unwrap();
        assert_eq!((resp.status, resp.close, resp.len), (503, true, c.len()));
        assert!(parse_response(&c[..c.len() - 2]).unwrap().is_none());

        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let ns: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile_ms(&ns, 0.50), 50.0);
        assert_eq!(percentile_ms(&ns, 0.99), 99.0);
        assert_eq!(percentile_ms(&ns, 1.0), 100.0);
        assert!(percentile_ms(&[], 0.5).is_nan());
        assert_eq!(median([3.0, 1.0, f64::NAN, 2.0].into_iter()), Some(2.0));
    }
}
