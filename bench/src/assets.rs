//! `assets`: serving a 3D avatar model through a signed URL
//! (`GET /assets/{key}?exp=…&sig=…`) against serving the same file from a
//! plain static-file route, in the same run; and the latency of a `304`
//! revalidation (`If-None-Match` with the model's ETag).
//!
//! Targets (see `bench/README.md`):
//! * at 64 concurrent clients, the signed URL's throughput and p99 at
//!   >= 0.8 of the static route's (p99: static p99 ÷ signed p99);
//! * p99 of a `304` revalidation <= 2 ms (one client revalidating).
//!
//! Servers, each a child process started once for the whole run:
//! * the real binary, `bwenge serve --bind 127.0.0.1:0` on a fresh SQLite
//!   file; an account is registered and the model uploaded through the API
//!   (`POST /v1/auth/register`, `POST /v1/models`), and its signed `url` is
//!   the one measured;
//! * the baseline: this executable re-run as `assets --static-server FILE`,
//!   an actix-web `HttpServer` with default settings (the same worker count
//!   as Bwenge) with one route, `GET /static/model`, that opens the file on
//!   every request and streams it with **the same code as the real route**
//!   (`bwenge::http::files::file_stream`: 128 KiB reads on the blocking
//!   pool, `Content-Length` set), answering `200` with its `Content-Type`
//!   and nothing else. What the real route adds is the rest of the server
//!   (middleware: request id, metrics, logging, CORS), the HMAC check, the
//!   database lookup of the key, and the validator and cache headers.
//!
//! The load generator is the `http` bench's (library `bwenge_bench`): one
//! client thread, N keep-alive connections, one request in flight on each,
//! every response read whole. A request counts when it completes inside
//! the window with the expected status (`200`, or `304` for revalidation).

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bwenge_bench::{
    Cleanup, ConnStats, CpuMeter, Server, Window, bwenge_command, errors_note, fmt_opt, median,
    median_opt, parse_secs, pass, percentile_ms, round_trip, spawn_server, temp_dir,
};
use clap::Parser;
use tokio::net::TcpStream;

/// Signed URL's throughput, and p99, against the static route's, at least.
const RATIO_TARGET: f64 = 0.8;
/// p99 of a 304 revalidation, at most, in milliseconds, at `REVALIDATE_CONNS`.
const REVALIDATE_P99_TARGET_MS: f64 = 2.0;
const REVALIDATE_CONNS: usize = 1;
/// The static route's path.
const STATIC_PATH: &str = "/static/model";

#[derive(Parser, Debug)]
#[command(
    name = "assets",
    about = "Throughput and p50/p99 of a 3D model served through Bwenge's signed URL against \
             a plain static-file route, and the latency of 304 revalidations, same run."
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

    /// Connection counts of the download points, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize])]
    conns: Vec<usize>,

    /// Connection counts of the 304 points, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    revalidate_conns: Vec<usize>,

    /// The model file served [default: the repository's
    /// tests/fixtures/models/RobotExpressive.glb].
    #[arg(long)]
    model: Option<PathBuf>,

    /// The `bwenge` binary [default: `bwenge` next to this executable].
    #[arg(long, env = "BWENGE_BIN")]
    bwenge: Option<PathBuf>,

    /// Internal: run the static-file baseline server for FILE and nothing else.
    #[arg(long, hide = true, value_name = "FILE")]
    static_server: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.static_server {
        return match run_static_server(file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("static server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // One client thread, as in `http`: on a 2-core machine a multi-threaded
    // client would take cores from the servers it measures.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("assets: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&args) => r,
            // Dropping `run` kills the servers and removes their data.
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("assets: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// The baseline server.

/// `assets --static-server FILE`: actix-web with default settings and one
/// route streaming FILE as the real route streams a model.
fn run_static_server(file: &Path) -> io::Result<()> {
    use actix_web::body::SizedStream;
    use actix_web::{App, HttpResponse, HttpServer, web};

    // The parent holds our stdin open; EOF means it is gone, and so are we.
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });

    let file = Arc::new(file.to_path_buf());
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let file = file.clone();
            // `/healthz` for `spawn_server`'s readiness check.
            App::new()
                .route("/healthz", web::get().to(HttpResponse::Ok))
                .route(
                    STATIC_PATH,
                    web::get().to(move || {
                        let file = file.clone();
                        async move {
                            let opened = tokio::task::spawn_blocking(move || {
                                let f = std::fs::File::open(file.as_path())?;
                                let len = f.metadata()?.len();
                                Ok::<_, io::Error>((f, len))
                            })
                            .await;
                            match opened {
                                Ok(Ok((f, len))) => HttpResponse::Ok()
                                    .content_type("model/gltf-binary")
                                    .body(SizedStream::new(
                                        len,
                                        bwenge::http::files::file_stream(f, 0, len, |_| {}),
                                    )),
                                _ => HttpResponse::InternalServerError().finish(),
                            }
                        }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The baseline: the file from the static route, 200.
    Static,
    /// Bwenge's signed URL, 200.
    Signed,
    /// Bwenge's signed URL with `If-None-Match`, 304.
    Revalidate,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Static => "static route (bare actix)",
            Self::Signed => "bwenge signed URL",
            Self::Revalidate => "bwenge 304 If-None-Match",
        }
    }

    fn expect(self) -> u16 {
        match self {
            Self::Static | Self::Signed => 200,
            Self::Revalidate => 304,
        }
    }
}

/// One measured point of one round.
#[derive(Clone, Debug)]
struct Sample {
    rps: f64,
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    first_error: Option<String>,
    srv_cpu: Option<f64>,
    cli_cpu: Option<f64>,
}

/// All rounds of one row of the table.
struct Row {
    kind: Kind,
    conns: usize,
    samples: Vec<Sample>,
    /// Signed rows, per round: req/s ÷ the static route's req/s.
    ratios: Vec<f64>,
    /// Signed rows, per round: the static route's p99 ÷ this row's p99.
    p99_ratios: Vec<f64>,
}

fn dedup(list: &[usize]) -> Result<Vec<usize>, String> {
    let mut out: Vec<usize> = Vec::new();
    for &c in list {
        if c == 0 {
            return Err("connection counts must be positive".to_owned());
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

async fn run(args: &Args) -> Result<(), String> {
    if args.duration.is_zero() {
        return Err("--duration: expected a positive number of seconds".to_owned());
    }
    let conns_list = dedup(&args.conns)?;
    let reval_list = dedup(&args.revalidate_conns)?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bwenge_bin = match &args.bwenge {
        Some(p) => p.clone(),
        None => exe
            .parent()
            .ok_or("current_exe has no parent directory")?
            .join(format!("bwenge{}", std::env::consts::EXE_SUFFIX)),
    };
    if !bwenge_bin.is_file() {
        return Err(format!(
            "no bwenge binary at {}: build it (`cargo build --release -p bwenge -p bwenge-bench`) \
             or pass --bwenge PATH / BWENGE_BIN",
            bwenge_bin.display()
        ));
    }
    let bwenge_bin = std::path::absolute(&bwenge_bin).unwrap_or(bwenge_bin);
    let model = match &args.model {
        Some(p) => p.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models/RobotExpressive.glb"),
    };
    let model = model.canonicalize().unwrap_or(model);
    let bytes = std::fs::read(&model).map_err(|e| {
        format!(
            "cannot read the model {}: {e} (pass --model FILE: any .glb, e.g. RobotExpressive.glb \
             from the three.js examples, https://github.com/mrdoob/three.js/tree/dev/examples/models/gltf)",
            model.display()
        )
    })?;

    println!("bwenge-bench assets");
    println!(
        "  model {} ({} bytes); rounds {}, warm-up {:?}, window {:?} per point; download conns \
         {:?}, 304 conns {:?}; {} CPUs; client: 1 thread (tokio current-thread); bench built {}",
        model.display(),
        bytes.len(),
        args.rounds,
        args.warmup,
        args.duration,
        conns_list,
        reval_list,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cfg!(debug_assertions) {
            "debug (unoptimised client: use --release for real figures)"
        } else {
            "release"
        },
    );
    println!("  bwenge: {} (SQLite)", bwenge_bin.display());
    println!(
        "  baseline: actix-web, GET {STATIC_PATH}: the file opened per request and streamed with \
         bwenge::http::files::file_stream (the real route's code: 128 KiB reads on the \
         blocking pool), Content-Type only"
    );
    println!("  load average (1, 5, 15 min) at start: {}", loadavg());
    println!();

    // The servers.
    let mut cmd = Command::new(&exe);
    cmd.arg("--static-server").arg(&model).stdin(Stdio::piped());
    let mut baseline = spawn_server("static route", cmd, Vec::new()).await?;
    eprintln!("static route: listening on {}", baseline.addr);
    let mut bwenge = start_bwenge(&bwenge_bin).await?;
    eprintln!("bwenge: listening on {}", bwenge.addr);

    // The model, uploaded through the API; both servers must serve its bytes.
    let (url, etag) = upload(bwenge.addr, &model, &bytes).await?;
    eprintln!("bwenge: model uploaded, url {url}, etag {etag}");
    check_bytes(baseline.addr, STATIC_PATH, &bytes).await?;

    let signed_req: Arc<[u8]> = bwenge_bench::get(&url).into();
    let static_req: Arc<[u8]> = bwenge_bench::get(STATIC_PATH).into();
    let reval_req: Arc<[u8]> =
        format!("GET {url} HTTP/1.1\r\nHost: bench\r\nIf-None-Match: {etag}\r\n\r\n")
            .into_bytes()
            .into();

    let mut rows: Vec<Row> = Vec::new();
    for &conns in &conns_list {
        for kind in [Kind::Static, Kind::Signed] {
            rows.push(Row::new(kind, conns));
        }
    }
    for &conns in &reval_list {
        rows.push(Row::new(Kind::Revalidate, conns));
    }

    let started = Instant::now();
    for round in 1..=args.rounds {
        for &conns in &conns_list {
            // The baseline first, then the signed URL, seconds apart.
            for kind in [Kind::Static, Kind::Signed] {
                let (server, req) = match kind {
                    Kind::Static => (&mut baseline, &static_req),
                    _ => (&mut bwenge, &signed_req),
                };
                server.check_alive()?;
                let s = measure(server, req.clone(), kind.expect(), conns, args).await;
                progress(round, args.rounds, kind, conns, &s);
                row_mut(&mut rows, kind, conns)?.samples.push(s);
            }
            let base = rows
                .iter()
                .find(|r| r.kind == Kind::Static && r.conns == conns)
                .and_then(|r| r.samples.last())
                .cloned();
            let row = row_mut(&mut rows, Kind::Signed, conns)?;
            if let (Some(base), Some(s)) = (base, row.samples.last().cloned()) {
                if base.rps > 0.0 {
                    row.ratios.push(s.rps / base.rps);
                }
                if s.p99_ms > 0.0 && base.p99_ms.is_finite() {
                    row.p99_ratios.push(base.p99_ms / s.p99_ms);
                }
            }
        }
        for &conns in &reval_list {
            bwenge.check_alive()?;
            let s = measure(&bwenge, reval_req.clone(), 304, conns, args).await;
            progress(round, args.rounds, Kind::Revalidate, conns, &s);
            row_mut(&mut rows, Kind::Revalidate, conns)?.samples.push(s);
        }
    }
    eprintln!("measured in {:.0?}", started.elapsed());

    print_table(&rows);
    print_verdict(&rows);
    println!("load average (1, 5, 15 min) at end: {}", loadavg());

    drop(bwenge);
    drop(baseline);
    Ok(())
}

impl Row {
    fn new(kind: Kind, conns: usize) -> Self {
        Self {
            kind,
            conns,
            samples: Vec::new(),
            ratios: Vec::new(),
            p99_ratios: Vec::new(),
        }
    }
}

fn row_mut(rows: &mut [Row], kind: Kind, conns: usize) -> Result<&mut Row, String> {
    rows.iter_mut()
        .find(|r| r.kind == kind && r.conns == conns)
        .ok_or_else(|| "internal: no row for a point".to_owned())
}

fn progress(round: u32, rounds: u32, kind: Kind, conns: usize, s: &Sample) {
    eprintln!(
        "round {round}/{rounds} {:<26} c={conns:<3} {:>8.0} req/s {:>7.0} MB/s  p50 {:.3} ms  p99 {:.3} ms{}",
        kind.label(),
        s.rps,
        s.mb_per_s,
        s.p50_ms,
        s.p99_ms,
        match &s.first_error {
            Some(e) => format!("  {} errors, first: {e}", s.errors),
            None => String::new(),
        }
    );
}

/// The machine's load averages, from `/proc/loadavg` (Linux only).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

// ---------------------------------------------------------------------------
// Bwenge and its model.

async fn start_bwenge(bin: &Path) -> Result<Server, String> {
    let dir = temp_dir("assets", "sqlite")?;
    let cleanup = vec![Cleanup::Dir(dir.clone())];
    let db = dir.join("bench.db");
    std::fs::File::create(&db).map_err(|e| format!("create {}: {e}", db.display()))?;
    let url = format!("sqlite://{}", db.display());
    spawn_server("bwenge", bwenge_command(bin, &dir, &url), cleanup).await
}

/// Registers an account, uploads the model, and returns its signed URL and
/// ETag (after checking that the URL serves the exact bytes).
async fn upload(addr: SocketAddr, path: &Path, bytes: &[u8]) -> Result<(String, String), String> {
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/v1/auth/register"))
        .json(&serde_json::json!({
            "organization_name": "Bench School",
            "full_name": "Bench Teacher",
            "email": "assets@bench.example",
            "password": "correct horse battery staple",
        }))
        .send()
        .await
        .map_err(|e| format!("register: {e}"))?;
    if res.status() != 201 {
        return Err(format!("register: HTTP {}", res.status()));
    }
    let body: serde_json::Value = res.json().await.map_err(|e| format!("register: {e}"))?;
    let token = body["tokens"]["access_token"]
        .as_str()
        .ok_or("register: no access token")?
        .to_owned();
    let file_name = path
        .file_name()
        .map_or("model.glb".to_owned(), |n| n.to_string_lossy().into_owned());
    let form = reqwest::multipart::Form::new()
        .text("name", "Bench model")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(file_name),
        );
    let res = client
        .post(format!("{base}/v1/models"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .map_err(|e| format!("upload: {e}"))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| format!("upload: {e}"))?;
    if status != 201 {
        return Err(format!("upload: HTTP {status}: {text}"));
    }
    let model: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("upload: {e}"))?;
    let url = model["url"]
        .as_str()
        .filter(|u| u.starts_with('/'))
        .ok_or("upload: no relative url in the answer")?
        .to_owned();
    let res = client
        .get(format!("{base}{url}"))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if res.status() != 200 {
        return Err(format!("GET {url}: HTTP {}", res.status()));
    }
    let etag = res
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .ok_or("GET url: no ETag")?
        .to_owned();
    let served = res.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    if served[..] != bytes[..] {
        return Err(format!(
            "GET {url}: the bytes differ from {}",
            path.display()
        ));
    }
    Ok((url, etag))
}

/// The baseline must serve the same bytes.
async fn check_bytes(addr: SocketAddr, path: &str, bytes: &[u8]) -> Result<(), String> {
    let res = reqwest::get(format!("http://{addr}{path}"))
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    if res.status() != 200 {
        return Err(format!("GET {path}: HTTP {}", res.status()));
    }
    let served = res.bytes().await.map_err(|e| format!("GET {path}: {e}"))?;
    if served[..] != bytes[..] {
        return Err(format!("GET {path}: the bytes differ"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The load.

/// One point: `conns` connections sending `request` over and over through
/// the warm-up and the window, counting answers with status `expect`.
async fn measure(
    server: &Server,
    request: Arc<[u8]>,
    expect: u16,
    conns: usize,
    args: &Args,
) -> Sample {
    let window = Window::after(args.warmup, args.duration);
    // A request still in flight this long after the window is a hang.
    let grace = Duration::from_secs(5);
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(connection(
                server.addr,
                request.clone(),
                expect,
                window,
                grace,
            ))
        })
        .collect();
    tokio::time::sleep_until(window.start.into()).await;
    let meter = CpuMeter::start(server.pid());
    tokio::time::sleep_until(window.end.into()).await;
    let (srv_cpu, cli_cpu) = meter.stop();
    let mut all = ConnStats::default();
    let mut bytes = 0u64;
    for task in tasks {
        match task.await {
            Ok((s, b)) => {
                all.merge(s);
                bytes += b;
            }
            Err(e) => all.error(|| format!("client task failed: {e}")),
        }
    }
    all.latencies_ns.sort_unstable();
    let secs = args.duration.as_secs_f64();
    Sample {
        rps: all.latencies_ns.len() as f64 / secs,
        mb_per_s: bytes as f64 / secs / 1e6,
        p50_ms: percentile_ms(&all.latencies_ns, 0.50),
        p99_ms: percentile_ms(&all.latencies_ns, 0.99),
        errors: all.errors,
        first_error: all.first_error,
        srv_cpu,
        cli_cpu,
    }
}

/// One keep-alive connection (as `bwenge_bench::connection`, but counting
/// the status `expect` and the response bytes).
async fn connection(
    addr: SocketAddr,
    request: Arc<[u8]>,
    expect: u16,
    window: Window,
    grace: Duration,
) -> (ConnStats, u64) {
    let mut stats = ConnStats::default();
    let mut bytes = 0u64;
    let hard_deadline = window.end + grace;
    let mut stream: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    loop {
        let now = Instant::now();
        if now >= window.end {
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
                    if now >= window.start {
                        stats.error(|| format!("connect: {e}"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
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
                    if resp.status == expect {
                        stats
                            .latencies_ns
                            .push(u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX));
                        bytes += resp.len as u64;
                    } else {
                        stats.error(|| format!("HTTP {} (expected {expect})", resp.status));
                        *stats.statuses.entry(resp.status).or_default() += 1;
                    }
                }
                if resp.close {
                    stream = None;
                }
            }
        }
    }
    (stats, bytes)
}

// ---------------------------------------------------------------------------
// Output.

fn print_table(rows: &[Row]) {
    println!(
        "{:<26} {:>5} {:>9} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8}  {:>9} {:>9}",
        "target",
        "conns",
        "req/s",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "srv cpu",
        "cli cpu",
        "rps ratio",
        "p99 ratio",
    );
    for row in rows {
        let s = &row.samples;
        let cpu = |v: Option<f64>| v.map_or("-".to_owned(), |c| format!("{c:.0}%"));
        let ratio = |v: &[f64]| match row.kind {
            Kind::Signed => median(v.iter().copied()).map_or("-".to_owned(), |r| format!("{r:.2}")),
            _ => String::new(),
        };
        println!(
            "{:<26} {:>5} {:>9} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8}  {:>9} {:>9}",
            row.kind.label(),
            row.conns,
            fmt_opt(median(s.iter().map(|s| s.rps)), 0),
            fmt_opt(median(s.iter().map(|s| s.mb_per_s)), 0),
            fmt_opt(median(s.iter().map(|s| s.p50_ms)), 3),
            fmt_opt(median(s.iter().map(|s| s.p99_ms)), 3),
            s.iter().map(|s| s.errors).sum::<u64>(),
            cpu(median_opt(s.iter().map(|s| s.srv_cpu))),
            cpu(median_opt(s.iter().map(|s| s.cli_cpu))),
            ratio(&row.ratios),
            ratio(&row.p99_ratios),
        );
    }
    println!(
        "(medians of {} round(s); rps ratio = median of per-round signed req/s ÷ static req/s; \
         p99 ratio = median of per-round static p99 ÷ signed p99; MB/s counts whole responses; \
         cpu = % of one core during the window)",
        rows.first().map_or(0, |r| r.samples.len())
    );
    let mut errs = String::new();
    for row in rows {
        if let Some(e) = row.samples.iter().find_map(|s| s.first_error.as_deref()) {
            let _ = writeln!(errs, "  {} c={}: {e}", row.kind.label(), row.conns);
        }
    }
    if !errs.is_empty() {
        print!("first error per erroring row:\n{errs}");
    }
    println!();
}

fn print_verdict(rows: &[Row]) {
    println!("verdict");
    for row in rows.iter().filter(|r| r.kind == Kind::Signed) {
        let errors: u64 = row.samples.iter().map(|s| s.errors).sum();
        for (what, ratios) in [("throughput", &row.ratios), ("p99", &row.p99_ratios)] {
            let line = match median(ratios.iter().copied()) {
                None => "n/a  (no baseline figure)".to_owned(),
                Some(r) => format!(
                    "{}  ratio {r:.2} of the static route (target >= {RATIO_TARGET:.2}){}",
                    pass(r >= RATIO_TARGET && errors == 0),
                    errors_note(errors)
                ),
            };
            println!("  signed URL c={:<3} {what:<10} {line}", row.conns);
        }
    }
    match rows
        .iter()
        .find(|r| r.kind == Kind::Revalidate && r.conns == REVALIDATE_CONNS)
    {
        Some(row) => {
            let errors: u64 = row.samples.iter().map(|s| s.errors).sum();
            let line = match median(row.samples.iter().map(|s| s.p99_ms)) {
                None => "n/a  (no 304 answered)".to_owned(),
                Some(p99) => format!(
                    "{}  p99 {p99:.3} ms (target <= {REVALIDATE_P99_TARGET_MS} ms){}",
                    pass(p99 <= REVALIDATE_P99_TARGET_MS && errors == 0),
                    errors_note(errors)
                ),
            };
            println!("  304 revalidation c={REVALIDATE_CONNS:<3} {line}");
        }
        None => println!(
            "  304 revalidation c={REVALIDATE_CONNS:<3} n/a  (run with {REVALIDATE_CONNS} in --revalidate-conns)"
        ),
    }
}
