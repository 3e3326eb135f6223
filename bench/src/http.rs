//! `http`: requests/s and p50/p99 latency of Bwenge's `/healthz` and
//! `/readyz`, on SQLite and on PostgreSQL, at 1, 16 and 64 keep-alive
//! connections, next to a bare actix-web "hello" server measured in the same
//! run.
//!
//! Targets (see `bench/README.md`):
//! * `/healthz` at >= 0.8 of the bare server's throughput, at every
//!   connection count;
//! * p99 of `/readyz` <= 5 ms at 16 connections, on each database.
//!
//! This is a program, not a test: it prints a table of medians over several
//! rounds, the ratio to the baseline, and a PASS/MISS verdict per target. It
//! exits non-zero only when it cannot run (no server binary, a server that
//! does not start), never because a target was missed: on a shared,
//! noisy machine that is a figure to read, not a failure.
//!
//! Every server runs in its own child process, started once and kept for all
//! rounds:
//! * the real binary: `bwenge serve --bind 127.0.0.1:0 --data-dir <tmp>` with
//!   `BWENGE_DATABASE_URL` pointing at a fresh SQLite file or a fresh
//!   PostgreSQL database (created with `psql`, dropped at the end);
//! * the baseline: this very executable re-run as `http --bare-server`, an
//!   actix-web `HttpServer` with default settings (so the same default worker
//!   count) answering `GET /healthz` with `200 {"status":"ok"}`.
//!
//! Both print `listening on http://127.0.0.1:PORT` as their first line; the
//! port is read from it and the child's stdout/stderr are drained for as long
//! as it runs.
//!
//! The load generator is this process: N persistent HTTP/1.1 connections,
//! one task each, sending one request at a time and reading the whole
//! response (status line, headers, `Content-Length` or chunked body). A
//! warm-up, then a fixed measuring window; a request counts when it completes
//! inside the window, with a 200; any other status or an I/O error is an
//! error. Points are interleaved (for each connection count: bare, then each
//! database) so that a burst of noise from a neighbour hits comparable points
//! alike, and the ratio is the median of per-round ratios, each pairing
//! measurements taken seconds apart.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The JSON body of `/healthz`, the same for the bare server and Bwenge.
const HEALTHZ_BODY: &str = r#"{"status":"ok"}"#;
/// Throughput of `/healthz` against the bare server, at least.
const HEALTHZ_RATIO_TARGET: f64 = 0.8;
/// p99 of `/readyz`, at most, in milliseconds, at `READYZ_CONNS` connections.
const READYZ_P99_TARGET_MS: f64 = 5.0;
const READYZ_CONNS: usize = 16;
/// How long a server may take to print its `listening on` line and answer
/// its first `/healthz` (a release build with migrations takes well under).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a child's output kept to explain a failure: first and last.
const HEAD_LINES: usize = 20;
const TAIL_LINES: usize = 30;

#[derive(Parser, Debug)]
#[command(
    name = "http",
    about = "Requests/s and p50/p99 latency of Bwenge's /healthz and /readyz \
             (SQLite, PostgreSQL) against a bare actix-web server, same run."
)]
struct Args {
    /// Rounds; the table shows the median of each figure across rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,

    /// Warm-up before each measuring window, in seconds (not counted).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    warmup: Duration,

    /// Measuring window of each point, in seconds.
    #[arg(long, default_value = "3", value_parser = parse_secs)]
    duration: Duration,

    /// Connection counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    conns: Vec<usize>,

    /// Targets to run, comma-separated; without `bare` there is no ratio.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_values_t = [TargetKind::Bare, TargetKind::Sqlite, TargetKind::Postgres]
    )]
    targets: Vec<TargetKind>,

    /// The `bwenge` binary [default: `bwenge` next to this executable].
    #[arg(long, env = "BWENGE_BIN")]
    bwenge: Option<PathBuf>,

    /// PostgreSQL server URL, without a database name; a fresh database is
    /// created on it for the run and dropped at the end.
    #[arg(
        long,
        env = "BWENGE_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pg_url: String,

    /// Existing database `psql` connects to for CREATE/DROP DATABASE.
    #[arg(long, default_value = "test")]
    pg_admin_db: String,

    /// Internal: run the bare actix-web baseline server and nothing else.
    #[arg(long, hide = true)]
    bare_server: bool,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?}: expected a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum TargetKind {
    Bare,
    Sqlite,
    Postgres,
}

impl TargetKind {
    fn label(self) -> &'static str {
        match self {
            Self::Bare => "bare actix hello",
            Self::Sqlite => "bwenge sqlite",
            Self::Postgres => "bwenge postgres",
        }
    }

    fn paths(self) -> &'static [&'static str] {
        match self {
            Self::Bare => &["/healthz"],
            Self::Sqlite | Self::Postgres => &["/healthz", "/readyz"],
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.bare_server {
        return match run_bare_server() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bare server: {e}");
                ExitCode::FAILURE
            }
        };
    }

    // The client runs on a current-thread runtime, i.e. on one core. On the
    // 2-core machine this bench is written for, a multi-threaded client would
    // take both cores away from the server it is measuring and turn the
    // figures into a measure of scheduler contention; one thread leaves the
    // server (2 actix workers by default) a core of its own plus whatever the
    // client does not use. The client's work per request is small (one write,
    // one read, a header scan: no routing, no middleware, no JSON), so one
    // core keeps up with the bare server far better than the server keeps up
    // with it; the `cli cpu` column shows how close to 100 % of its core it
    // gets, i.e. whether it is the bottleneck at a point. Whatever its limits,
    // both servers face the same client, so the ratios stay fair.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("http: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&args) => r,
            // Dropping `run` on Ctrl-C drops the servers' guards: children
            // killed, temporary directories and the PostgreSQL database
            // removed.
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// The baseline server.

/// `http --bare-server`: actix-web with default settings and one route.
fn run_bare_server() -> io::Result<()> {
    use actix_web::{App, HttpResponse, HttpServer, web};

    // The parent holds our stdin open; EOF means it is gone, and so are we
    // (in case it died without killing us).
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });

    actix_web::rt::System::new().block_on(async {
        let server = HttpServer::new(|| {
            App::new().route(
                "/healthz",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(HEALTHZ_BODY)
                }),
            )
        })
        .bind(("127.0.0.1", 0))?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| io::Error::other("bound to no address"))?;
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")?;
        stdout.flush()?;
        drop(stdout);
        server.run().await
    })
}

// ---------------------------------------------------------------------------
// Driving the run.

/// One measured point of one round.
#[derive(Clone, Debug)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    first_error: Option<String>,
    srv_cpu: Option<f64>,
    cli_cpu: Option<f64>,
}

/// All rounds of one row of the table.
struct Row {
    kind: TargetKind,
    path: &'static str,
    conns: usize,
    samples: Vec<Sample>,
    /// Per-round ratio of this row's req/s to the bare server's, same
    /// connection count, same round.
    ratios: Vec<f64>,
}

async fn run(args: &Args) -> Result<(), String> {
    if args.conns.is_empty() || args.conns.contains(&0) {
        return Err("--conns: expected positive connection counts".to_owned());
    }
    if args.duration.is_zero() {
        return Err("--duration: expected a positive number of seconds".to_owned());
    }
    let mut conns_list: Vec<usize> = Vec::new();
    for &c in &args.conns {
        if !conns_list.contains(&c) {
            conns_list.push(c);
        }
    }
    let mut kinds = args.targets.clone();
    kinds.sort();
    kinds.dedup();

    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bwenge_bin = match &args.bwenge {
        Some(p) => p.clone(),
        None => exe
            .parent()
            .ok_or("current_exe has no parent directory")?
            .join(format!("bwenge{}", std::env::consts::EXE_SUFFIX)),
    };
    let wants_bwenge = kinds.iter().any(|k| *k != TargetKind::Bare);
    if wants_bwenge && !bwenge_bin.is_file() {
        return Err(format!(
            "no bwenge binary at {}: build it (`cargo build --release -p bwenge -p bwenge-bench`) \
             or pass --bwenge PATH / BWENGE_BIN",
            bwenge_bin.display()
        ));
    }
    // Absolute, since the server runs in its own working directory.
    let bwenge_bin = std::path::absolute(&bwenge_bin).unwrap_or(bwenge_bin);

    println!("bwenge-bench http");
    println!(
        "  rounds {}, warm-up {:?}, window {:?} per point, conns {:?}; {} CPUs; \
         client: 1 thread (tokio current-thread); bench built {}",
        args.rounds,
        args.warmup,
        args.duration,
        conns_list,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cfg!(debug_assertions) {
            "debug (unoptimised client: use --release for real figures)"
        } else {
            "release"
        },
    );
    if wants_bwenge {
        println!("  bwenge: {}", bwenge_bin.display());
    }
    println!();

    // Start every server up front; they idle while others are measured.
    let mut servers: Vec<Server> = Vec::new();
    for &kind in &kinds {
        let started = match kind {
            TargetKind::Bare => start_bare(&exe).await.map(Some),
            TargetKind::Sqlite => start_sqlite(&bwenge_bin).await.map(Some),
            TargetKind::Postgres => start_postgres(&bwenge_bin, args).await,
        };
        match started {
            Ok(Some(server)) => {
                eprintln!("{}: listening on {}", kind.label(), server.addr);
                servers.push(server);
            }
            Ok(None) => {} // skipped, with a note already printed
            Err(e) => return Err(format!("{}: {e}", kind.label())),
        }
    }
    if servers.is_empty() {
        return Err("no server to measure".to_owned());
    }

    let mut rows: Vec<Row> = Vec::new();
    for server in &servers {
        for &path in server.kind.paths() {
            for &conns in &conns_list {
                rows.push(Row {
                    kind: server.kind,
                    path,
                    conns,
                    samples: Vec::new(),
                    ratios: Vec::new(),
                });
            }
        }
    }

    let started = Instant::now();
    for round in 1..=args.rounds {
        for &conns in &conns_list {
            // For each connection count: every target's /healthz (baseline
            // first), then every database's /readyz.
            for path in ["/healthz", "/readyz"] {
                for server in &mut servers {
                    if !server.kind.paths().contains(&path) {
                        continue;
                    }
                    server.check_alive()?;
                    let sample = measure(
                        server.addr,
                        path,
                        conns,
                        args.warmup,
                        args.duration,
                        server.child.id(),
                    )
                    .await;
                    eprintln!(
                        "round {round}/{} {:<16} {:<8} c={:<3} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms{}",
                        args.rounds,
                        server.kind.label(),
                        path,
                        conns,
                        sample.rps,
                        sample.p50_ms,
                        sample.p99_ms,
                        match &sample.first_error {
                            Some(e) => format!("  {} errors, first: {e}", sample.errors),
                            None => String::new(),
                        }
                    );
                    let row = rows
                        .iter_mut()
                        .find(|r| r.kind == server.kind && r.path == path && r.conns == conns)
                        .ok_or("internal: no row for a point")?;
                    row.samples.push(sample);
                }
            }
            // Pair this round's figures with this round's baseline.
            let bare_rps = rows
                .iter()
                .find(|r| r.kind == TargetKind::Bare && r.conns == conns)
                .and_then(|r| r.samples.last())
                .map(|s| s.rps);
            if let Some(bare_rps) = bare_rps.filter(|r| *r > 0.0) {
                for row in rows.iter_mut().filter(|r| r.conns == conns) {
                    if let Some(s) = row.samples.last() {
                        row.ratios.push(s.rps / bare_rps);
                    }
                }
            }
        }
    }
    eprintln!("measured in {:.0?}", started.elapsed());

    print_table(&rows);
    print_verdict(&rows, &kinds, &servers, &conns_list);

    drop(servers); // kill the children, then remove their data
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<16}  {:<8} {:>5} {:>10} {:>8} {:>8} {:>7} {:>8} {:>8}  ratio_vs_bare",
        "target", "path", "conns", "req/s", "p50 ms", "p99 ms", "errors", "srv cpu", "cli cpu",
    );
    for row in rows {
        let s = &row.samples;
        let rps = median(s.iter().map(|s| s.rps));
        let p50 = median(s.iter().map(|s| s.p50_ms));
        let p99 = median(s.iter().map(|s| s.p99_ms));
        let errors: u64 = s.iter().map(|s| s.errors).sum();
        let cpu = |v: Option<f64>| v.map_or("-".to_owned(), |c| format!("{c:.0}%"));
        let srv = cpu(median_opt(s.iter().map(|s| s.srv_cpu)));
        let cli = cpu(median_opt(s.iter().map(|s| s.cli_cpu)));
        // A ratio for /healthz rows only: /readyz does different work.
        let ratio = match (row.kind, row.path) {
            (TargetKind::Bare, _) | (_, "/readyz") => String::new(),
            _ => median(row.ratios.iter().copied()).map_or("-".to_owned(), |r| format!("{r:.2}")),
        };
        println!(
            "{:<16}  {:<8} {:>5} {:>10} {:>8} {:>8} {:>7} {:>8} {:>8}  {}",
            row.kind.label(),
            row.path,
            row.conns,
            fmt_opt(rps, 0),
            fmt_opt(p50, 3),
            fmt_opt(p99, 3),
            errors,
            srv,
            cli,
            ratio
        );
    }
    println!(
        "(medians of {} round(s); ratio = median of per-round req/s ÷ bare req/s at the same \
         conns; cpu = % of one core during the window)",
        rows.first().map_or(0, |r| r.samples.len())
    );
    let mut errs = String::new();
    for row in rows {
        if let Some(e) = row.samples.iter().find_map(|s| s.first_error.as_deref()) {
            let _ = writeln!(
                errs,
                "  {} {} c={}: {}",
                row.kind.label(),
                row.path,
                row.conns,
                e
            );
        }
    }
    if !errs.is_empty() {
        print!("first error per erroring row:\n{errs}");
    }
    println!();
}

fn print_verdict(rows: &[Row], kinds: &[TargetKind], servers: &[Server], conns_list: &[usize]) {
    println!("verdict");
    if !kinds.iter().any(|k| *k != TargetKind::Bare) {
        println!("  (no bwenge target in this run)");
        return;
    }
    let have_bare = servers.iter().any(|s| s.kind == TargetKind::Bare);
    for kind in [TargetKind::Sqlite, TargetKind::Postgres] {
        if !kinds.contains(&kind) {
            continue;
        }
        if !servers.iter().any(|s| s.kind == kind) {
            println!("  {:<16} skipped (see note above)", kind.label());
            continue;
        }
        for &conns in conns_list {
            let Some(row) = rows
                .iter()
                .find(|r| r.kind == kind && r.path == "/healthz" && r.conns == conns)
            else {
                continue;
            };
            let errors: u64 = row.samples.iter().map(|s| s.errors).sum();
            let line = match median(row.ratios.iter().copied()) {
                _ if !have_bare => "n/a  (no bare baseline in this run)".to_owned(),
                None => "n/a  (no baseline figure)".to_owned(),
                Some(r) => format!(
                    "{}  ratio {r:.2} (target >= {HEALTHZ_RATIO_TARGET:.2}){}",
                    pass(r >= HEALTHZ_RATIO_TARGET && errors == 0),
                    errors_note(errors)
                ),
            };
            println!("  {:<16} /healthz c={conns:<3} {line}", kind.label());
        }
        match rows
            .iter()
            .find(|r| r.kind == kind && r.path == "/readyz" && r.conns == READYZ_CONNS)
        {
            Some(row) => {
                let errors: u64 = row.samples.iter().map(|s| s.errors).sum();
                let line = match median(row.samples.iter().map(|s| s.p99_ms)) {
                    None => "n/a  (no successful request)".to_owned(),
                    Some(p99) => format!(
                        "{}  p99 {p99:.3} ms (target <= {READYZ_P99_TARGET_MS} ms){}",
                        pass(p99 <= READYZ_P99_TARGET_MS && errors == 0),
                        errors_note(errors)
                    ),
                };
                println!("  {:<16} /readyz  c={READYZ_CONNS:<3} {line}", kind.label());
            }
            None => println!(
                "  {:<16} /readyz  c={READYZ_CONNS:<3} n/a  (run with {READYZ_CONNS} in --conns)",
                kind.label()
            ),
        }
    }
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn errors_note(errors: u64) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!(", {errors} errors")
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
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

fn median_opt(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    median(values.flatten())
}

// ---------------------------------------------------------------------------
// Server processes.

/// A server child process: killed (then its data removed) on drop.
struct Server {
    kind: TargetKind,
    addr: SocketAddr,
    child: Child,
    tail: Tail,
    /// Dropped after the child is killed (fields drop after `Drop::drop`).
    _data: Vec<Cleanup>,
}

impl Server {
    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); its output:\n{}",
                self.kind.label(),
                self.tail.dump()
            )),
            Err(e) => Err(format!("{}: {e}", self.kind.label())),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Something to undo at the end of the run.
enum Cleanup {
    Dir(PathBuf),
    PgDatabase { admin_url: String, name: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Self::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::PgDatabase { admin_url, name } => {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                if let Err(e) = psql(admin_url, &sql) {
                    eprintln!("http: could not drop PostgreSQL database {name}: {e}");
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
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}_{nanos}", std::process::id())
}

fn temp_dir(what: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("bwenge-bench-http-{what}-{}", run_id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

async fn start_bare(exe: &Path) -> Result<Server, String> {
    let mut cmd = Command::new(exe);
    cmd.arg("--bare-server").stdin(Stdio::piped());
    spawn_server(TargetKind::Bare, cmd, Vec::new()).await
}

fn bwenge_command(bin: &Path, data_dir: &Path, database_url: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--bind")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .env("BWENGE_DATABASE_URL", database_url)
        .env("BWENGE_LOG__LEVEL", "warn")
        // `RUST_LOG` would win over `log.level`: keep logging out of the way.
        .env_remove("RUST_LOG")
        // Run it away from the workspace so that a `./config` directory there
        // (possibly newer than the binary) does not apply: the layers come
        // from the copies compiled into the binary, plus the environment.
        .current_dir(data_dir)
        .stdin(Stdio::null());
    cmd
}

async fn start_sqlite(bin: &Path) -> Result<Server, String> {
    let dir = temp_dir("sqlite")?;
    let cleanup = vec![Cleanup::Dir(dir.clone())];
    let db = dir.join("bench.db");
    // An empty file is an empty SQLite database; creating it spares the
    // server's `create_if_missing` setting from mattering here.
    std::fs::File::create(&db).map_err(|e| format!("create {}: {e}", db.display()))?;
    let url = format!("sqlite://{}", db.display());
    spawn_server(TargetKind::Sqlite, bwenge_command(bin, &dir, &url), cleanup).await
}

/// `Ok(None)` (with a printed note) when PostgreSQL is not reachable.
async fn start_postgres(bin: &Path, args: &Args) -> Result<Option<Server>, String> {
    let base = args.pg_url.trim_end_matches('/');
    let admin_url = format!("{base}/{}", args.pg_admin_db);
    let name = format!("bwenge_bench_{}", run_id());
    if let Err(e) = psql(&admin_url, &format!("CREATE DATABASE \"{name}\"")) {
        println!("note: PostgreSQL skipped: cannot create a database via {admin_url}: {e}\n");
        return Ok(None);
    }
    let dir = temp_dir("postgres")?;
    // Drop order: the database first (children are already dead), then the dir.
    let cleanup = vec![
        Cleanup::PgDatabase {
            admin_url,
            name: name.clone(),
        },
        Cleanup::Dir(dir.clone()),
    ];
    let url = format!("{base}/{name}");
    spawn_server(
        TargetKind::Postgres,
        bwenge_command(bin, &dir, &url),
        cleanup,
    )
    .await
    .map(Some)
}

/// Runs one SQL statement with `psql`, never prompting for a password.
fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Starts `cmd`, waits for its `listening on http://ADDR` line and a 200 from
/// `/healthz`, and keeps draining its output in background threads.
async fn spawn_server(
    kind: TargetKind,
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
        kind,
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

/// Combined user + system CPU time of a process, from `/proc` (Linux only;
/// `None` elsewhere).
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
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

// ---------------------------------------------------------------------------
// The load generator.

/// What one connection's task saw in the measuring window.
#[derive(Default)]
struct ConnStats {
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl ConnStats {
    fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }
}

/// One point: `conns` connections hammering `path` for warm-up + window.
async fn measure(
    addr: SocketAddr,
    path: &str,
    conns: usize,
    warmup: Duration,
    window: Duration,
    server_pid: u32,
) -> Sample {
    let request: Arc<[u8]> = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")
        .into_bytes()
        .into();
    let start = Instant::now();
    let window_start = start + warmup;
    let window_end = window_start + window;
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(connection(
                addr,
                Arc::clone(&request),
                window_start,
                window_end,
            ))
        })
        .collect();

    tokio::time::sleep_until(window_start.into()).await;
    let cpu0 = (cpu_time(Some(server_pid)), cpu_time(None), Instant::now());
    tokio::time::sleep_until(window_end.into()).await;
    let cpu1 = (cpu_time(Some(server_pid)), cpu_time(None), Instant::now());
    let elapsed = cpu1.2.duration_since(cpu0.2).as_secs_f64();
    let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) if elapsed > 0.0 => {
            Some(b.saturating_sub(a).as_secs_f64() / elapsed * 100.0)
        }
        _ => None,
    };

    let mut all = ConnStats::default();
    for task in tasks {
        match task.await {
            Ok(mut s) => {
                all.latencies_ns.append(&mut s.latencies_ns);
                all.errors += s.errors;
                if all.first_error.is_none() {
                    all.first_error = s.first_error;
                }
            }
            Err(e) => all.error(|| format!("client task failed: {e}")),
        }
    }
    all.latencies_ns.sort_unstable();
    let pctl_ms = |p: f64| -> f64 {
        let n = all.latencies_ns.len();
        if n == 0 {
            return f64::NAN;
        }
        // Nearest rank.
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        all.latencies_ns[rank - 1] as f64 / 1e6
    };
    Sample {
        rps: all.latencies_ns.len() as f64 / window.as_secs_f64(),
        p50_ms: pctl_ms(0.50),
        p99_ms: pctl_ms(0.99),
        errors: all.errors,
        first_error: all.first_error,
        srv_cpu: pct(cpu0.0, cpu1.0),
        cli_cpu: pct(cpu0.1, cpu1.1),
    }
}

/// One keep-alive connection: request, full response, repeat, until the end
/// of the window. A request counts in the window it completes in.
async fn connection(
    addr: SocketAddr,
    request: Arc<[u8]>,
    window_start: Instant,
    window_end: Instant,
) -> ConnStats {
    let mut stats = ConnStats::default();
    // A request still in flight this long after the window is a hang.
    let hard_deadline = window_end + Duration::from_secs(2);
    let mut stream: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        let in_window = now >= window_start;
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
        let counted = t1 >= window_start && t1 <= window_end;
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
                        let ns = u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX);
                        stats.latencies_ns.push(ns);
                    } else {
                        stats.error(|| format!("HTTP {}", resp.status));
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

/// What the client needs from a response.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    /// The server will close the connection after this response.
    close: bool,
    /// Bytes of `buf` the response took.
    len: usize,
}

/// Writes `request`, then reads one whole response into `buf` and removes it
/// from there.
async fn round_trip(
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
/// (it would end keep-alive, which the bench is about).
fn parse_response(buf: &[u8]) -> io::Result<Option<Response>> {
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
