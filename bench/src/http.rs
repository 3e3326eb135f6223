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
//!
//! The server processes and the load generator live in the `bwenge_bench`
//! library (`src/common.rs`), shared with the `auth` bench.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bwenge_bench::{
    Cleanup, Server, Window, bwenge_command, errors_note, fmt_opt, median, median_opt, parse_secs,
    pass, percentile_ms, run_id, spawn_server, temp_dir,
};
use clap::{Parser, ValueEnum};

/// The JSON body of `/healthz`, the same for the bare server and Bwenge.
const HEALTHZ_BODY: &str = r#"{"status":"ok"}"#;
/// Throughput of `/healthz` against the bare server, at least.
const HEALTHZ_RATIO_TARGET: f64 = 0.8;
/// p99 of `/readyz`, at most, in milliseconds, at `READYZ_CONNS` connections.
const READYZ_P99_TARGET_MS: f64 = 5.0;
const READYZ_CONNS: usize = 16;

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
    let mut servers: Vec<Target> = Vec::new();
    for &kind in &kinds {
        let started = match kind {
            TargetKind::Bare => start_bare(&exe).await.map(Some),
            TargetKind::Sqlite => start_sqlite(&bwenge_bin).await.map(Some),
            TargetKind::Postgres => start_postgres(&bwenge_bin, args).await,
        };
        match started {
            Ok(Some(server)) => {
                eprintln!("{}: listening on {}", kind.label(), server.server.addr);
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
                    server.server.check_alive()?;
                    let sample = measure(
                        server.server.addr,
                        path,
                        conns,
                        args.warmup,
                        args.duration,
                        server.server.pid(),
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

fn print_verdict(rows: &[Row], kinds: &[TargetKind], servers: &[Target], conns_list: &[usize]) {
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

// ---------------------------------------------------------------------------
// Server processes.

/// A server of the run: which one, and its child process (killed, then its
/// data removed, on drop).
struct Target {
    kind: TargetKind,
    server: Server,
}

async fn start_bare(exe: &Path) -> Result<Target, String> {
    let mut cmd = Command::new(exe);
    cmd.arg("--bare-server").stdin(Stdio::piped());
    spawn(TargetKind::Bare, cmd, Vec::new()).await
}

/// Starts a server with `spawn_server`, labelled with its kind.
async fn spawn(kind: TargetKind, cmd: Command, data: Vec<Cleanup>) -> Result<Target, String> {
    let server = spawn_server(kind.label(), cmd, data).await?;
    Ok(Target { kind, server })
}

async fn start_sqlite(bin: &Path) -> Result<Target, String> {
    let dir = temp_dir("http", "sqlite")?;
    let cleanup = vec![Cleanup::Dir(dir.clone())];
    let db = dir.join("bench.db");
    // An empty file is an empty SQLite database; creating it spares the
    // server's `create_if_missing` setting from mattering here.
    std::fs::File::create(&db).map_err(|e| format!("create {}: {e}", db.display()))?;
    let url = format!("sqlite://{}", db.display());
    spawn(TargetKind::Sqlite, bwenge_command(bin, &dir, &url), cleanup).await
}

/// `Ok(None)` (with a printed note) when PostgreSQL is not reachable.
async fn start_postgres(bin: &Path, args: &Args) -> Result<Option<Target>, String> {
    let base = args.pg_url.trim_end_matches('/');
    let admin_url = format!("{base}/{}", args.pg_admin_db);
    let name = format!("bwenge_bench_{}", run_id());
    if let Err(e) = psql(&admin_url, &format!("CREATE DATABASE \"{name}\"")) {
        println!("note: PostgreSQL skipped: cannot create a database via {admin_url}: {e}\n");
        return Ok(None);
    }
    let dir = temp_dir("http", "postgres")?;
    // Drop order: the database first (children are already dead), then the dir.
    let cleanup = vec![
        {
            let name = name.clone();
            Cleanup::run(move || {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                if let Err(e) = psql(&admin_url, &sql) {
                    eprintln!("http: could not drop PostgreSQL database {name}: {e}");
                }
            })
        },
        Cleanup::Dir(dir.clone()),
    ];
    let url = format!("{base}/{name}");
    spawn(
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

// ---------------------------------------------------------------------------
// The load generator (`bwenge_bench::load`).

/// One point: `conns` connections hammering `path` for warm-up + window.
async fn measure(
    addr: SocketAddr,
    path: &str,
    conns: usize,
    warmup: Duration,
    window: Duration,
    server_pid: u32,
) -> Sample {
    let request: Arc<[u8]> = bwenge_bench::get(path).into();
    let w = Window::after(warmup, window);
    // A request still in flight this long after the window is a hang.
    let grace = Duration::from_secs(2);
    let load = bwenge_bench::load(addr, vec![request; conns], w, grace, server_pid).await;
    let all = load.stats;
    Sample {
        rps: all.latencies_ns.len() as f64 / window.as_secs_f64(),
        p50_ms: percentile_ms(&all.latencies_ns, 0.50),
        p99_ms: percentile_ms(&all.latencies_ns, 0.99),
        errors: all.errors,
        first_error: all.first_error,
        srv_cpu: load.srv_cpu,
        cli_cpu: load.cli_cpu,
    }
}
