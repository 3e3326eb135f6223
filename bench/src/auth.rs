//! `auth`: sign-ins per second of the real `bwenge` binary and their p50/p99
//! latency at 4, 16 and 64 concurrent clients, next to raw argon2id
//! verifications per second measured in this process in the same run, and
//! the latency of `/healthz` while a login flood runs.
//!
//! Targets (see `bench/README.md`):
//! * logins/s at >= 0.9 of raw argon2id verifications/s at the server's
//!   hashing parallelism (one permit per core), at every client count;
//! * p99 of `/healthz` <= 10 ms while 64 clients flood `/v1/auth/login`:
//!   the flood must not starve the server.
//!
//! A program, not a test: it prints a table of medians over several rounds,
//! the ratios to the baseline and a PASS/MISS verdict per target; it exits
//! non-zero only when it cannot run.
//!
//! * The server: `bwenge serve --bind 127.0.0.1:0` on a fresh SQLite file,
//!   started like the `http` bench starts it (temporary data and working
//!   directory, `warn` logging), with the per-IP sign-in limit lifted
//!   (`BWENGE_AUTH__IP_BURST`, `BWENGE_AUTH__IP_REFILL_PER_SEC`: every client
//!   comes from 127.0.0.1) and its hashing pool set explicitly
//!   (`BWENGE_AUTH__HASH_CONCURRENCY`, `BWENGE_AUTH__HASH_QUEUE_WAIT_MS`).
//!   One account per client is registered through the API before measuring.
//! * The baseline: `bwenge::auth::password::verify_blocking`, the function
//!   the server's pool runs, on a hash made by `hash_blocking` (argon2id,
//!   m = 19456 KiB, t = 2, p = 1, checked), in as many threads as the server
//!   has hashing permits, and in one thread.
//! * The client: the same hand-written HTTP/1.1 keep-alive load generator as
//!   `http` (`bwenge_bench`), on one thread; one connection per client, one
//!   login in flight on each, retried at once whatever the answer.
//! * The starvation check: while `--flood-clients` clients sign in, one more
//!   connection sends `GET /healthz` every `--probe-interval-ms` (or right
//!   after the previous answer, if that took longer), next to the same probe
//!   on the idle server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bwenge::auth::password::{hash_blocking, verify_blocking};
use bwenge_bench::{
    Cleanup, ConnStats, CpuMeter, Server, Window, bwenge_command, fmt_opt, median, median_opt,
    parse_secs, pass, percentile_ms, post_json, round_trip, spawn_server, temp_dir,
};
use clap::Parser;
use tokio::net::TcpStream;

/// Logins/s against raw verifications/s at the same parallelism, at least.
const RATIO_TARGET: f64 = 0.9;
/// p99 of `/healthz` during the flood, at most, in milliseconds.
const HEALTHZ_P99_TARGET_MS: f64 = 10.0;
/// The argon2id parameters the server uses, as they appear in a PHC string.
const PHC_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";
/// Every bench account's password.
const PASSWORD: &str = "bench-correct-horse-battery-staple";
/// Concurrent registrations while creating the accounts.
const SETUP_CONNS: usize = 2;

#[derive(Parser, Debug)]
#[command(
    name = "auth",
    about = "Logins/s and p50/p99 of Bwenge's /v1/auth/login at several client counts against \
             raw argon2id verifications/s, and /healthz p99 during a login flood; same run."
)]
struct Args {
    /// Rounds; the table shows the median of each figure across rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,

    /// Warm-up before each measuring window, in seconds (not counted).
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    warmup: Duration,

    /// Measuring window of each point, in seconds.
    #[arg(long, default_value = "3", value_parser = parse_secs)]
    duration: Duration,

    /// Concurrent login clients (one keep-alive connection each), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [4usize, 16, 64])]
    clients: Vec<usize>,

    /// Login clients of the flood during which /healthz is probed.
    #[arg(long, default_value_t = 64)]
    flood_clients: usize,

    /// Interval between two /healthz probes, in milliseconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    probe_interval_ms: u64,

    /// The server's hashing permits (`auth.hash_concurrency`) and the raw
    /// baseline's threads; 0: one per core, like the server's default.
    #[arg(long, default_value_t = 0)]
    hash_concurrency: usize,

    /// The server's `auth.hash_queue_wait_ms`: how long a login waits for a
    /// hashing permit before a 503 (2000 is the shipped default).
    #[arg(long, default_value_t = 2000)]
    queue_wait_ms: u64,

    /// Also measure logins against a second server whose queue wait is this
    /// long, to show the throughput ceiling without load shedding (rows
    /// labelled with it).
    #[arg(long)]
    ceiling_queue_wait_ms: Option<u64>,

    /// The `bwenge` binary [default: `bwenge` next to this executable].
    #[arg(long, env = "BWENGE_BIN")]
    bwenge: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One thread for the client, as in `http`: on a 2-core machine a
    // multi-threaded client would take cores from the server it measures.
    // The raw baseline runs on its own threads (the client is idle then).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("auth: cannot start the tokio runtime: {e}");
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
            eprintln!("auth: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Samples and rows.

/// Raw argon2id verifications in one window.
#[derive(Clone, Copy, Debug)]
struct RawSample {
    per_sec: f64,
    /// CPU of this process in the window, % of one core.
    cpu: Option<f64>,
}

/// One login point of one round.
#[derive(Clone, Debug)]
struct LoginSample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// `503 Service Unavailable`: no hashing permit within the queue wait.
    unavailable: u64,
    /// Every other non-200 answer, I/O error or timeout.
    other_errors: u64,
    first_error: Option<String>,
    srv_cpu: Option<f64>,
    cli_cpu: Option<f64>,
}

/// One `/healthz` probe of one round.
#[derive(Clone, Debug)]
struct ProbeSample {
    n: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    first_error: Option<String>,
}

struct LoginRow {
    /// Index into the servers.
    server: usize,
    clients: usize,
    samples: Vec<LoginSample>,
    /// Per round: this row's logins/s ÷ that round's raw verifications/s at
    /// the server's parallelism.
    ratios: Vec<f64>,
    /// Per round: the same ratio per CPU-second (logins per second of the
    /// server's CPU ÷ verifications per second of the baseline's CPU), which
    /// a shared machine's drifting share of the cores does not move.
    cpu_ratios: Vec<f64>,
}

/// A `bwenge` server of the run.
struct Bwenge {
    label: String,
    queue_wait_ms: u64,
    server: Server,
    /// Accounts registered, `bench-{i}@bench.example`.
    accounts: usize,
}

// ---------------------------------------------------------------------------
// Driving the run.

async fn run(args: &Args) -> Result<(), String> {
    if args.clients.is_empty() || args.clients.contains(&0) || args.flood_clients == 0 {
        return Err("--clients, --flood-clients: expected positive client counts".to_owned());
    }
    if args.duration.is_zero() {
        return Err("--duration: expected a positive number of seconds".to_owned());
    }
    let mut clients_list: Vec<usize> = Vec::new();
    for &c in &args.clients {
        if !clients_list.contains(&c) {
            clients_list.push(c);
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // What the server does with 0 (`Hasher::new`), spelled out so that the
    // baseline uses the same number.
    let threads = if args.hash_concurrency == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        args.hash_concurrency
    };
    let accounts = clients_list
        .iter()
        .copied()
        .chain([args.flood_clients])
        .max()
        .unwrap_or(1);

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

    // The baseline's hash, made and checked by the server's own code.
    let hash = hash_blocking(PASSWORD).map_err(|e| format!("hash_blocking: {e}"))?;
    if !hash.starts_with(PHC_PREFIX) {
        return Err(format!(
            "hash_blocking made {hash:?}, not argon2id with m=19456, t=2, p=1: update the bench"
        ));
    }
    if !verify_blocking(PASSWORD, &hash) {
        return Err("verify_blocking rejected its own hash".to_owned());
    }
    let hash: Arc<str> = hash.into();

    println!("bwenge-bench auth");
    println!(
        "  rounds {}, warm-up {:?}, window {:?} per point, login clients {:?}, flood {} clients, \
         /healthz probe every {} ms; {cores} CPUs; client: 1 thread (tokio current-thread); \
         bench built {}",
        args.rounds,
        args.warmup,
        args.duration,
        clients_list,
        args.flood_clients,
        args.probe_interval_ms,
        if cfg!(debug_assertions) {
            "debug (unoptimised baseline: use --release for real figures)"
        } else {
            "release"
        },
    );
    println!(
        "  argon2id m=19456 KiB, t=2, p=1 ({PHC_PREFIX}...); server: auth.hash_concurrency = \
         {threads} permits{}, auth.hash_queue_wait_ms = {}{}; raw baseline: \
         bwenge::auth::password::verify_blocking in-process on {threads} threads (= the \
         server's permits) and on 1",
        if args.hash_concurrency == 0 {
            " (one per core)"
        } else {
            ""
        },
        args.queue_wait_ms,
        if args.queue_wait_ms == 2000 {
            " (the default)"
        } else {
            ""
        },
    );
    println!("  bwenge: {}", bwenge_bin.display());
    println!("  load average (1, 5, 15 min) at start: {}", loadavg());
    println!();

    let mut servers: Vec<Bwenge> = Vec::new();
    let mut waits = vec![args.queue_wait_ms];
    waits.extend(args.ceiling_queue_wait_ms);
    for (i, &wait) in waits.iter().enumerate() {
        let label = if i == 0 {
            format!("bwenge (queue wait {wait} ms)")
        } else {
            format!("bwenge (queue wait {wait} ms, ceiling)")
        };
        let server = start_bwenge(&bwenge_bin, &label, threads, wait).await?;
        eprintln!("{label}: listening on {}", server.addr);
        let started = Instant::now();
        register_accounts(server.addr, accounts)
            .await
            .map_err(|e| format!("{label}: {e}; output:\n{}", server.output()))?;
        check_login(server.addr)
            .await
            .map_err(|e| format!("{label}: {e}; output:\n{}", server.output()))?;
        eprintln!(
            "{label}: {accounts} accounts registered in {:.1?}",
            started.elapsed()
        );
        servers.push(Bwenge {
            label,
            queue_wait_ms: wait,
            server,
            accounts,
        });
    }

    let mut raw_one: Vec<RawSample> = Vec::new();
    let mut raw_par: Vec<RawSample> = Vec::new();
    let mut rows: Vec<LoginRow> = Vec::new();
    for server in 0..servers.len() {
        for &clients in &clients_list {
            rows.push(LoginRow {
                server,
                clients,
                samples: Vec::new(),
                ratios: Vec::new(),
                cpu_ratios: Vec::new(),
            });
        }
    }
    let mut idle: Vec<ProbeSample> = Vec::new();
    let mut flood: Vec<(ProbeSample, LoginSample)> = Vec::new();
    let interval = Duration::from_millis(args.probe_interval_ms);

    let started = Instant::now();
    for round in 1..=args.rounds {
        let r = args.rounds;
        // The single-thread baseline, once per round.
        let one = raw_verify(1, &hash, args.warmup, args.duration).await?;
        eprintln!(
            "round {round}/{r} raw argon2id verify  1 thread  {:>7.1} /s  cpu {}",
            one.per_sec,
            cpu(one.cpu)
        );
        raw_one.push(one);

        for &clients in &clients_list {
            // The baseline at the server's parallelism right before the
            // points it is the ratio's denominator of: on a shared machine
            // the cores available drift within a round.
            let par = raw_verify(threads, &hash, args.warmup, args.duration).await?;
            eprintln!(
                "round {round}/{r} raw argon2id verify {threads:>2} threads {:>7.1} /s  cpu {}",
                par.per_sec,
                cpu(par.cpu)
            );
            raw_par.push(par);
            for (si, server) in servers.iter_mut().enumerate() {
                server.server.check_alive()?;
                let s = measure_logins(server, clients, args.warmup, args.duration).await;
                eprintln!(
                    "round {round}/{r} {:<40} c={clients:<3} {:>7.1} logins/s  p50 {:.1} ms  \
                     p99 {:.1} ms  srv cpu {}{}",
                    server.label,
                    s.rps,
                    s.p50_ms,
                    s.p99_ms,
                    cpu(s.srv_cpu),
                    error_summary(&s)
                );
                let row = rows
                    .iter_mut()
                    .find(|row| row.server == si && row.clients == clients)
                    .ok_or("internal: no row for a point")?;
                if par.per_sec > 0.0 {
                    row.ratios.push(s.rps / par.per_sec);
                }
                if let (Some(srv), Some(raw)) = (s.srv_cpu, par.cpu)
                    && srv > 0.0
                    && raw > 0.0
                    && par.per_sec > 0.0
                {
                    row.cpu_ratios.push((s.rps / srv) / (par.per_sec / raw));
                }
                row.samples.push(s);
            }
        }

        // The starvation check, on the default server.
        let Some(server) = servers.first_mut() else {
            return Err("internal: no server".to_owned());
        };
        server.server.check_alive()?;
        let w = Window::after(args.warmup, args.duration);
        let p = probe_healthz(server.server.addr, interval, w).await;
        eprintln!(
            "round {round}/{r} /healthz idle                 p50 {:.3} ms  p99 {:.3} ms  \
             max {:.3} ms  ({} probes{})",
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
            p.n,
            probe_errors(&p)
        );
        idle.push(p);
        let w = Window::after(args.warmup, args.duration);
        let (l, p) = tokio::join!(
            logins(server, args.flood_clients, w, args.duration),
            probe_healthz(server.server.addr, interval, w),
        );
        eprintln!(
            "round {round}/{r} /healthz during {}-client flood p50 {:.3} ms  p99 {:.3} ms  \
             max {:.3} ms  ({} probes{}); flood {:.1} logins/s{}",
            args.flood_clients,
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
            p.n,
            probe_errors(&p),
            l.rps,
            error_summary(&l)
        );
        flood.push((p, l));
    }
    eprintln!("measured in {:.0?}", started.elapsed());

    print_raw(threads, &raw_one, &raw_par);
    print_logins(&servers, &rows, threads);
    print_probes(args.flood_clients, interval, &idle, &flood);
    print_verdict(&servers, &rows, threads, args.flood_clients, &idle, &flood);

    println!("load average (1, 5, 15 min) at end: {}", loadavg());

    drop(servers); // kill the children, then remove their data
    Ok(())
}

/// The machine's load averages, from `/proc/loadavg` (Linux only): how much
/// else wanted the cores.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

// ---------------------------------------------------------------------------
// The server and its accounts.

async fn start_bwenge(
    bin: &Path,
    label: &str,
    hash_concurrency: usize,
    queue_wait_ms: u64,
) -> Result<Server, String> {
    let dir = temp_dir("auth", &format!("sqlite-{queue_wait_ms}"))?;
    let cleanup = vec![Cleanup::Dir(dir.clone())];
    let db = dir.join("bench.db");
    std::fs::File::create(&db).map_err(|e| format!("create {}: {e}", db.display()))?;
    let url = format!("sqlite://{}", db.display());
    let mut cmd = bwenge_command(bin, &dir, &url);
    cmd
        // Every client is 127.0.0.1: lift the per-IP sign-in limit, or the
        // flood measures 429s.
        .env("BWENGE_AUTH__IP_BURST", "1000000")
        .env("BWENGE_AUTH__IP_REFILL_PER_SEC", "1000000")
        .env(
            "BWENGE_AUTH__HASH_CONCURRENCY",
            hash_concurrency.to_string(),
        )
        .env("BWENGE_AUTH__HASH_QUEUE_WAIT_MS", queue_wait_ms.to_string());
    spawn_server(label, cmd, cleanup).await
}

fn email(i: usize) -> String {
    format!("bench-{i}@bench.example")
}

fn login_request(i: usize) -> Arc<[u8]> {
    let body = format!(r#"{{"email":"{}","password":"{PASSWORD}"}}"#, email(i));
    post_json("/v1/auth/login", &body).into()
}

/// Registers accounts `0..n` through the API, `SETUP_CONNS` at a time.
async fn register_accounts(addr: SocketAddr, n: usize) -> Result<(), String> {
    let tasks: Vec<_> = (0..SETUP_CONNS.min(n))
        .map(|k| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let mut buf = Vec::new();
                for i in (k..n).step_by(SETUP_CONNS) {
                    let body = format!(
                        r#"{{"organization_name":"Bench School {i}","full_name":"Bench User {i}","email":"{}","password":"{PASSWORD}"}}"#,
                        email(i)
                    );
                    let req = post_json("/v1/auth/register", &body);
                    let resp = tokio::time::timeout(
                        Duration::from_secs(30),
                        round_trip(&mut stream, &req, &mut buf),
                    )
                    .await
                    .map_err(|_| format!("registering {}: timed out", email(i)))?
                    .map_err(|e| format!("registering {}: {e}", email(i)))?;
                    if resp.status != 201 {
                        return Err(format!(
                            "registering {}: HTTP {} (expected 201)",
                            email(i),
                            resp.status
                        ));
                    }
                    if resp.close {
                        stream = TcpStream::connect(addr)
                            .await
                            .map_err(|e| format!("connect: {e}"))?;
                    }
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| format!("registration task failed: {e}"))??;
    }
    Ok(())
}

/// One login must answer 200 before anything is measured.
async fn check_login(addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut buf = Vec::new();
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        round_trip(&mut stream, &login_request(0), &mut buf),
    )
    .await
    .map_err(|_| "first login: timed out".to_owned())?
    .map_err(|e| format!("first login: {e}"))?;
    if resp.status != 200 {
        return Err(format!("first login: HTTP {} (expected 200)", resp.status));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Measuring.

/// Raw argon2id verifications/s on `threads` threads for warm-up + window.
async fn raw_verify(
    threads: usize,
    hash: &Arc<str>,
    warmup: Duration,
    duration: Duration,
) -> Result<RawSample, String> {
    let w = Window::after(warmup, duration);
    let hash = Arc::clone(hash);
    let work = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let (mut done, mut rejected) = (0u64, 0u64);
                        while Instant::now() < w.end {
                            let ok = verify_blocking(PASSWORD, &hash);
                            if !ok {
                                rejected += 1;
                            } else if w.contains(Instant::now()) {
                                done += 1;
                            }
                        }
                        (done, rejected)
                    })
                })
                .collect();
            let mut total = (0u64, 0u64);
            for h in handles {
                let (d, r) = h.join().map_err(|_| "a baseline thread panicked")?;
                total.0 += d;
                total.1 += r;
            }
            Ok::<_, String>(total)
        })
    });
    tokio::time::sleep_until(w.start.into()).await;
    let meter = CpuMeter::start(std::process::id());
    tokio::time::sleep_until(w.end.into()).await;
    let (_, cpu) = meter.stop();
    let (done, rejected) = work
        .await
        .map_err(|e| format!("baseline task failed: {e}"))??;
    if rejected > 0 {
        return Err(format!(
            "verify_blocking rejected the right password {rejected} times"
        ));
    }
    Ok(RawSample {
        per_sec: done as f64 / duration.as_secs_f64(),
        cpu,
    })
}

/// How long after the window a login may still be in flight before it
/// counts as a hang: a full queue wait, then a hash, with room to spare.
fn grace(server: &Bwenge) -> Duration {
    Duration::from_millis(server.queue_wait_ms) + Duration::from_secs(10)
}

async fn measure_logins(
    server: &Bwenge,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> LoginSample {
    logins(server, clients, Window::after(warmup, duration), duration).await
}

/// `clients` connections signing in over and over, each as its own account
/// (modulo the accounts registered).
async fn logins(server: &Bwenge, clients: usize, w: Window, duration: Duration) -> LoginSample {
    let requests = (0..clients)
        .map(|i| login_request(i % server.accounts))
        .collect();
    let load = bwenge_bench::load(
        server.server.addr,
        requests,
        w,
        grace(server),
        server.server.pid(),
    )
    .await;
    let all = load.stats;
    let unavailable = all.status_count(503);
    LoginSample {
        rps: all.latencies_ns.len() as f64 / duration.as_secs_f64(),
        p50_ms: percentile_ms(&all.latencies_ns, 0.50),
        p99_ms: percentile_ms(&all.latencies_ns, 0.99),
        unavailable,
        other_errors: all.errors.saturating_sub(unavailable),
        first_error: all.first_error,
        srv_cpu: load.srv_cpu,
        cli_cpu: load.cli_cpu,
    }
}

async fn probe_healthz(addr: SocketAddr, interval: Duration, w: Window) -> ProbeSample {
    let request: Arc<[u8]> = bwenge_bench::get("/healthz").into();
    let mut stats: ConnStats =
        bwenge_bench::probe(addr, request, interval, w, Duration::from_secs(2)).await;
    stats.latencies_ns.sort_unstable();
    let max_ms = stats
        .latencies_ns
        .last()
        .map_or(f64::NAN, |ns| *ns as f64 / 1e6);
    ProbeSample {
        n: stats.latencies_ns.len(),
        p50_ms: percentile_ms(&stats.latencies_ns, 0.50),
        p99_ms: percentile_ms(&stats.latencies_ns, 0.99),
        max_ms,
        errors: stats.errors,
        first_error: stats.first_error,
    }
}

fn error_summary(s: &LoginSample) -> String {
    if s.unavailable == 0 && s.other_errors == 0 {
        return String::new();
    }
    format!(
        "  {} 503s, {} other errors{}",
        s.unavailable,
        s.other_errors,
        s.first_error
            .as_deref()
            .map_or(String::new(), |e| format!(" (first: {e})"))
    )
}

fn probe_errors(p: &ProbeSample) -> String {
    match &p.first_error {
        Some(e) => format!(", {} errors, first: {e}", p.errors),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Output.

fn cpu(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |c| format!("{c:.0}%"))
}

fn print_raw(threads: usize, one: &[RawSample], par: &[RawSample]) {
    println!("raw argon2id verification, in-process (m=19456 KiB, t=2, p=1)");
    println!(
        "{:>8} {:>12} {:>10} {:>8}",
        "threads", "verifies/s", "ms/verify", "cpu"
    );
    for (n, samples) in [(1, one), (threads, par)] {
        let per_sec = median(samples.iter().map(|s| s.per_sec));
        // Each thread verifies back to back: threads / rate is one's time.
        let ms = per_sec.filter(|r| *r > 0.0).map(|r| n as f64 / r * 1e3);
        println!(
            "{n:>8} {:>12} {:>10} {:>8}",
            fmt_opt(per_sec, 1),
            fmt_opt(ms, 1),
            cpu(median_opt(samples.iter().map(|s| s.cpu)))
        );
    }
    println!(
        "(medians: 1 thread once per round, {threads} threads before each client count of \
         each round; ms/verify = threads ÷ rate; cpu = this process, % of one core)"
    );
    println!();
}

fn print_logins(servers: &[Bwenge], rows: &[LoginRow], threads: usize) {
    println!("POST /v1/auth/login");
    println!(
        "{:<40} {:>7} {:>9} {:>9} {:>9} {:>6} {:>6} {:>8} {:>8} {:>13} {:>8}",
        "server",
        "clients",
        "logins/s",
        "p50 ms",
        "p99 ms",
        "503s",
        "other",
        "srv cpu",
        "cli cpu",
        "ratio_vs_raw",
        "per_cpu",
    );
    for row in rows {
        let s = &row.samples;
        let label = servers.get(row.server).map_or("?", |b| b.label.as_str());
        println!(
            "{:<40} {:>7} {:>9} {:>9} {:>9} {:>6} {:>6} {:>8} {:>8} {:>13} {:>8}",
            label,
            row.clients,
            fmt_opt(median(s.iter().map(|s| s.rps)), 1),
            fmt_opt(median(s.iter().map(|s| s.p50_ms)), 1),
            fmt_opt(median(s.iter().map(|s| s.p99_ms)), 1),
            s.iter().map(|s| s.unavailable).sum::<u64>(),
            s.iter().map(|s| s.other_errors).sum::<u64>(),
            cpu(median_opt(s.iter().map(|s| s.srv_cpu))),
            cpu(median_opt(s.iter().map(|s| s.cli_cpu))),
            fmt_opt(median(row.ratios.iter().copied()), 2),
            fmt_opt(median(row.cpu_ratios.iter().copied()), 2),
        );
    }
    println!(
        "(medians of {} round(s); logins/s and latencies count 200s only; 503s and other \
         errors are totals over the rounds; ratio = median over rounds of logins/s ÷ raw \
         verifications/s on {threads} threads measured right before; per_cpu = the same ratio \
         per CPU-second (logins/s ÷ srv cpu over verifications/s ÷ the baseline's cpu), \
         which the share of the cores a shared machine leaves does not move; cpu = % of one \
         core during the window)",
        rows.first().map_or(0, |r| r.samples.len())
    );
    let mut errs = String::new();
    for row in rows {
        if let Some(e) = row.samples.iter().find_map(|s| s.first_error.as_deref()) {
            let label = servers.get(row.server).map_or("?", |b| b.label.as_str());
            errs.push_str(&format!("  {label} c={}: {e}\n", row.clients));
        }
    }
    if !errs.is_empty() {
        print!("first error per erroring row:\n{errs}");
    }
    println!();
}

fn print_probes(
    flood_clients: usize,
    interval: Duration,
    idle: &[ProbeSample],
    flood: &[(ProbeSample, LoginSample)],
) {
    println!(
        "GET /healthz, one connection, every {} ms",
        interval.as_millis()
    );
    println!(
        "{:<40} {:>7} {:>9} {:>9} {:>9} {:>6} {:>9} {:>6}",
        "while", "probes", "p50 ms", "p99 ms", "max ms", "errors", "logins/s", "503s"
    );
    let flood_probes: Vec<ProbeSample> = flood.iter().map(|(p, _)| p.clone()).collect();
    let flood_logins: Vec<LoginSample> = flood.iter().map(|(_, l)| l.clone()).collect();
    let rows = [
        ("the server is idle".to_owned(), idle, &[][..]),
        (
            format!("{flood_clients} clients flood /v1/auth/login"),
            &flood_probes[..],
            &flood_logins[..],
        ),
    ];
    for (what, probes, logins) in rows {
        let (rps, unavailable) = if logins.is_empty() {
            (String::new(), String::new())
        } else {
            (
                fmt_opt(median(logins.iter().map(|s| s.rps)), 1),
                logins
                    .iter()
                    .map(|s| s.unavailable)
                    .sum::<u64>()
                    .to_string(),
            )
        };
        println!(
            "{:<40} {:>7} {:>9} {:>9} {:>9} {:>6} {:>9} {:>6}",
            what,
            fmt_opt(median(probes.iter().map(|p| p.n as f64)), 0),
            fmt_opt(median(probes.iter().map(|p| p.p50_ms)), 3),
            fmt_opt(median(probes.iter().map(|p| p.p99_ms)), 3),
            fmt_opt(
                probes
                    .iter()
                    .map(|p| p.max_ms)
                    .filter(|m| m.is_finite())
                    .reduce(f64::max),
                3
            ),
            probes.iter().map(|p| p.errors).sum::<u64>(),
            rps,
            unavailable,
        );
    }
    println!(
        "(probes, p50, p99: medians of per-round figures; max: over all rounds; latency from \
         writing the request to the last byte of the answer)"
    );
    for (what, probes) in [("idle", idle), ("flood", flood_probes.as_slice())] {
        if let Some(e) = probes.iter().find_map(|p| p.first_error.as_deref()) {
            println!("  first probe error ({what}): {e}");
        }
    }
    println!();
}

fn print_verdict(
    servers: &[Bwenge],
    rows: &[LoginRow],
    threads: usize,
    flood_clients: usize,
    idle: &[ProbeSample],
    flood: &[(ProbeSample, LoginSample)],
) {
    println!("verdict");
    for row in rows {
        let Some(server) = servers.get(row.server) else {
            continue;
        };
        let unavailable: u64 = row.samples.iter().map(|s| s.unavailable).sum();
        let other: u64 = row.samples.iter().map(|s| s.other_errors).sum();
        let per_cpu = median(row.cpu_ratios.iter().copied())
            .map_or(String::new(), |c| format!("; per CPU-second {c:.2}"));
        let line = match median(row.ratios.iter().copied()) {
            None => "n/a  (no baseline figure)".to_owned(),
            Some(r) => format!(
                "{}  ratio {r:.2} of raw argon2id on {threads} threads (target >= \
                 {RATIO_TARGET:.2}{per_cpu}){}{}",
                pass(r >= RATIO_TARGET && other == 0),
                if unavailable > 0 {
                    format!(", {unavailable} 503s (queue wait exceeded)")
                } else {
                    String::new()
                },
                if other > 0 {
                    format!(", {other} other errors")
                } else {
                    String::new()
                },
            ),
        };
        println!("  {:<40} logins c={:<3} {line}", server.label, row.clients);
    }
    let p99 = median(flood.iter().map(|(p, _)| p.p99_ms));
    let idle_p99 = median(idle.iter().map(|p| p.p99_ms));
    let errors: u64 = flood.iter().map(|(p, _)| p.errors).sum();
    let line = match p99 {
        None => "n/a  (no successful probe)".to_owned(),
        Some(p99) => format!(
            "{}  p99 {p99:.3} ms (target <= {HEALTHZ_P99_TARGET_MS} ms; idle p99 {} ms){}",
            pass(p99 <= HEALTHZ_P99_TARGET_MS && errors == 0),
            fmt_opt(idle_p99, 3),
            if errors > 0 {
                format!(", {errors} probe errors")
            } else {
                String::new()
            }
        ),
    };
    let label = servers.first().map_or("?", |b| b.label.as_str());
    println!("  {label:<40} /healthz during a {flood_clients}-client login flood  {line}");
}
