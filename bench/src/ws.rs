//! `ws`: chat over WebSocket at scale, with real WebSocket clients, against a
//! bare WebSocket echo server built with the same stack (actix-web 4 +
//! actix-ws 0.3) measured in the same run.
//!
//! Targets (see `bench/README.md`):
//! * at least 10,000 concurrent sessions with heartbeats, held for `--hold`
//!   (default 300 s), server RSS at most 16 KiB per idle session, no disconnects;
//! * at 1,000 questions/s spread over those sessions (extractive responder):
//!   `ack` p99 at most 10 ms, first `delta` p99 at most 60 ms, 0 errors;
//! * a reconnect storm (every client drops, and resumes within 10 s): all
//!   resumed, nothing lost (every acked question has exactly one answer by
//!   `seq`, no gap, no conflicting duplicate `seq`); time to caught-up p99
//!   reported.
//!
//! With `--schools N` it measures something else: many schools on one
//! node, each with its own teacher, manual and persona, questions never
//! asked before, the local model (see `ws_schools.rs` and issue #16).
//!
//! This is a program, not a test: it prints figures with their targets and
//! PASS/MISS, and exits non-zero only when it cannot run.
//!
//! Both servers are child processes: `bwenge serve` on a fresh SQLite
//! database (hashing embedder, the default chain, i.e. the extractive
//! responder), and this executable re-run as `ws --echo-server`: actix-web
//! with default settings and one actix-ws route that answers pings, echoes
//! text and pings every client on the same heartbeat as Bwenge (5 s, close
//! after 15 s of silence); it stores nothing. Each goes through the same
//! phases with the same client: establish the sessions, hold them idle,
//! questions at a fixed rate, a reconnect storm. The echo baseline's "ack"
//! is the echo of the question frame, so its latency is the stack's round
//! trip with this client on this machine.
//!
//! The client is this process, on a multi-threaded tokio runtime: one task
//! per session owning a `tokio-tungstenite` stream (4 KiB read buffer), which
//! reads continuously (so the library answers the server's pings) and takes
//! commands (ask, drop, finish) from a channel. Client sockets are bound to
//! several source addresses (127.0.0.2, 127.0.0.3, ...) so that 10k
//! connections, their `TIME_WAIT`s and the storm's reconnections never run
//! short of ephemeral ports; the servers listen on 127.0.0.1 only.

#[path = "ws_schools.rs"]
mod ws_schools;

/// The allocator `bwenge` uses, so the echo baseline is the same stack
/// (and the client measures both servers alike).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bwenge::chat::frames::{EventFrame, EventRole, ServerFrame, Tagged};
use bwenge_bench::{
    Cleanup, CpuMeter, RAISED_CHAT_LIMIT, Server, bwenge_command, fmt_opt, parse_secs, pass,
    percentile_ms, raise_chat_limits, rss_kib, spawn_server, temp_dir,
};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};

/// Concurrent sessions, at least.
const SESSIONS_TARGET: usize = 10_000;
/// Server RSS per idle session, at most, in KiB.
const RSS_TARGET_KIB: f64 = 16.0;
/// What a Python aiohttp server holding the same sessions (and storing
/// nothing) measures on this machine, per session: context only.
const AIOHTTP_KIB: f64 = 17.0;
/// Questions per second of the load phase (the issue's figure).
const RATE_TARGET: f64 = 1000.0;
const ACK_P99_TARGET_MS: f64 = 10.0;
const DELTA_P99_TARGET_MS: f64 = 60.0;
/// Every client resumes within this long after the drop (the issue's figure).
const STORM_WINDOW_TARGET: Duration = Duration::from_secs(10);

/// Bwenge's `chat.heartbeat_interval_secs` and `chat.client_timeout_secs`
/// (config/default.toml); the echo baseline uses the same.
const HEARTBEAT: Duration = Duration::from_secs(5);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Sessions opened and closed before the "before" RSS reading, so that
/// first-use allocations (routes, pools, actors) are not counted per session.
const WARM_SESSIONS: usize = 16;
/// Time for the sessions to settle (a heartbeat has gone round) before the
/// "idle" RSS reading.
const SETTLE: Duration = Duration::from_secs(6);
/// Establishing one session (TCP, handshake, `start`, `session`) may take
/// this long.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Delay before an unexpectedly disconnected client reconnects; between two
/// failed reconnection attempts.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
const RETRY_DELAY: Duration = Duration::from_millis(250);

const EMAIL: &str = "bench-ws@example.com";
const PASSWORD: &str = "bench-ws-Quartz-Mango-42";

/// The lesson uploaded as the persona's material (plain text).
const LESSON: &str = "\
Photosynthesis\n\n\
Photosynthesis is the process by which green plants make their own food. \
It takes place in the chloroplasts of leaf cells, which contain the green \
pigment chlorophyll. Chlorophyll absorbs light energy from the Sun. Plants \
take in carbon dioxide from the air through tiny pores called stomata, and \
water from the soil through their roots. Using light energy, they turn \
carbon dioxide and water into glucose and oxygen. The oxygen is released \
into the air through the stomata. Glucose is used for energy and to build \
starch and cellulose.\n\n\
The water cycle\n\n\
The water cycle is the continuous movement of water on, above and below the \
surface of the Earth. The Sun heats water in oceans, lakes and rivers, and \
it evaporates into water vapour. Plants also lose water vapour from their \
leaves, which is called transpiration. As the vapour rises it cools and \
condenses into tiny droplets that form clouds. When the droplets join and \
become heavy they fall as precipitation: rain, snow, sleet or hail. Water \
that reaches the ground flows into rivers as run-off or soaks into the soil \
and becomes groundwater, and eventually returns to the oceans.\n\n\
Volcanoes\n\n\
A volcano is an opening in the Earth's crust through which molten rock, \
ash and gases escape. Molten rock below the surface is called magma; when \
it reaches the surface it is called lava. Magma rises from the mantle \
through cracks in the crust. Volcanic ash can travel thousands of \
kilometres in the wind. Volcanoes are often found where tectonic plates \
meet, such as around the Pacific Ring of Fire. A volcano that may erupt \
again is active; one that has not erupted for a very long time is dormant.\n\n\
Fractions\n\n\
A fraction describes part of a whole. It has a numerator above the line and \
a denominator below it. The denominator says how many equal parts the whole \
is divided into, and the numerator says how many of those parts we have. To \
add fractions with different denominators, first find a common denominator, \
then add the numerators. Equivalent fractions, such as one half and two \
quarters, name the same amount.\n";

/// Questions asked, in turn (most are grounded in the lesson).
const QUESTIONS: &[&str] = &[
    "What is photosynthesis?",
    "Where does photosynthesis take place in a leaf?",
    "What does chlorophyll absorb?",
    "How do plants take in carbon dioxide?",
    "What gas do plants release during photosynthesis?",
    "What is glucose used for in plants?",
    "What is the water cycle?",
    "What makes water evaporate?",
    "What is transpiration?",
    "How do clouds form?",
    "What forms of precipitation are there?",
    "What happens to water that soaks into the soil?",
    "What is a volcano?",
    "What is the difference between magma and lava?",
    "How far can volcanic ash travel?",
    "Where are volcanoes often found?",
    "What is a dormant volcano?",
    "What is the Pacific Ring of Fire?",
    "What is the numerator of a fraction?",
    "What does the denominator tell us?",
    "How do you add fractions with different denominators?",
    "What are equivalent fractions?",
    "Why do plants need water for photosynthesis?",
    "What are stomata?",
];

#[derive(Parser, Debug)]
#[command(
    name = "ws",
    about = "Chat over WebSocket with real clients: idle sessions and server RSS, \
             questions at a fixed rate, a reconnect storm; Bwenge against a bare \
             actix-ws echo server, same run."
)]
struct Args {
    /// Concurrent sessions (one WebSocket each).
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,

    /// How long Bwenge's idle sessions are held, in seconds.
    #[arg(long, default_value = "300", value_parser = parse_secs)]
    hold: Duration,

    /// How long the echo baseline's idle sessions are held [default: --hold,
    /// at most 60 s].
    #[arg(long, value_parser = parse_secs)]
    baseline_hold: Option<Duration>,

    /// Questions per second of the load phase, spread round-robin over the
    /// sessions.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,

    /// Warm-up of the load phase, in seconds (questions asked, not counted).
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    warmup: Duration,

    /// Measuring window of the load phase, in seconds.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    duration: Duration,

    /// After the load, how long to wait at most for the answers still due.
    #[arg(long, default_value = "120", value_parser = parse_secs)]
    drain: Duration,

    /// Before the storm, questions flow at --rate this long, so that some are
    /// in flight (sent, not acked or not answered) when every client drops.
    #[arg(long, default_value = "3", value_parser = parse_secs)]
    storm_lead: Duration,

    /// Clients reconnect spread evenly over this window after the drop.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    storm_window: Duration,

    /// How long to wait at most for every client to be caught up after the
    /// drop.
    #[arg(long, default_value = "180", value_parser = parse_secs)]
    storm_timeout: Duration,

    /// Sessions being established at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,

    /// Client source addresses, 127.0.0.2 upwards (each has the whole
    /// ephemeral port range).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=200))]
    source_addrs: u8,

    /// Sessions whose stored history (`GET /v1/chat/sessions/{id}`) is
    /// compared with what their client holds, at the end.
    #[arg(long, default_value_t = 50)]
    verify_sample: usize,

    /// Skip the echo baseline (no ratios).
    #[arg(long)]
    no_baseline: bool,

    /// Also run Bwenge with SQLite's `synchronous = NORMAL` instead of the
    /// default FULL, and print the ack p99 ratio of the two.
    #[arg(long)]
    sync_normal: bool,

    /// Also run Bwenge with analytics off (`analytics.record = false`), after
    /// the run with it on, and print the ack p99 ratio of the two.
    #[arg(long)]
    analytics_off: bool,

    /// Run the Bwenge kinds this many times, alternating (on, off, on, off
    /// … with `--analytics-off`); the same-run ratios are then of the
    /// medians over the repeats, as one run's p99 moves by a quarter on
    /// its own on a shared machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeat: u32,

    /// Many schools on one node instead of one (issue #16): this many
    /// schools, each with its own teacher, manual and persona; the phases
    /// are those of `ws_schools.rs` (first question per school, capacity,
    /// warm load, overload at --rate), not the idle hold and storm.
    #[arg(long, default_value_t = 0)]
    schools: usize,

    /// With --schools: sessions per school.
    #[arg(long, default_value_t = 5)]
    per_school: usize,

    /// With --schools: every question phrased anew with a variable part, so
    /// none repeats and no answer can come from the cache.
    #[arg(long)]
    unique: bool,

    /// With --schools: restart the server after set-up so that every
    /// school's first question finds its index closed and the model cold.
    #[arg(long)]
    cold: bool,

    /// With --schools: the local embedding model (all-MiniLM-L6-v2 files);
    /// without it the hashing embedder is used, and said so.
    #[arg(long, env = "BWENGE_BENCH_MODEL_DIR")]
    model_dir: Option<PathBuf>,

    /// With --schools: the PDF manuals, given to the schools in turn
    /// [default: Debian's en-eyesj-progman.pdf and PARI's tutorial.pdf, the
    /// dev set's documents].
    #[arg(long, num_args = 1..)]
    docs: Vec<PathBuf>,

    /// With --schools: more PDFs every school uploads besides its manual
    /// (its own copy of each), so that its library is larger than what its
    /// questions are about: issue #16's capacity at 1k chunks per school.
    #[arg(long, num_args = 1..)]
    library: Vec<PathBuf>,

    /// With --schools: questions kept outstanding in the capacity phase.
    #[arg(long, default_value_t = 32)]
    capacity_inflight: usize,

    /// With --schools: the warm load's rate, as a fraction of the measured
    /// capacity.
    #[arg(long, default_value_t = 0.8)]
    load_fraction: f64,

    /// The `bwenge` binary [default: `bwenge` next to this executable].
    #[arg(long, env = "BWENGE_BIN")]
    bwenge: Option<PathBuf>,

    /// Internal: run the bare actix-ws echo server and nothing else.
    #[arg(long, hide = true)]
    echo_server: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.echo_server {
        return match run_echo_server() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("echo server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Multi-threaded (one worker per core): 10k client tasks, the servers'
    // pings answered while other tasks send. The servers face the same
    // client, so the ratios stay fair; `cli cpu` shows what it took.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&args) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        }
    });
    // Do not wait for 10k client tasks to wind down.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// The baseline server.

/// `ws --echo-server`: actix-web with default settings, `/healthz` (for
/// `spawn_server`) and `/ws`: echoes text, answers pings, pings every
/// `HEARTBEAT` and closes (4408) a client silent for `CLIENT_TIMEOUT`.
fn run_echo_server() -> io::Result<()> {
    use actix_web::{App, HttpResponse, HttpServer, web};

    // The parent holds our stdin open; EOF means it is gone.
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });

    actix_web::rt::System::new().block_on(async {
        let server = HttpServer::new(|| {
            App::new()
                .route(
                    "/healthz",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(r#"{"status":"ok"}"#)
                    }),
                )
                .route("/ws", web::get().to(echo_ws))
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

async fn echo_ws(
    req: actix_web::HttpRequest,
    body: actix_web::web::Payload,
) -> Result<actix_web::HttpResponse, actix_web::Error> {
    let (response, mut session, mut stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        let mut last_heard = Instant::now();
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                _ = beat.tick() => {
                    if last_heard.elapsed() > CLIENT_TIMEOUT {
                        let reason = actix_ws::CloseReason {
                            code: actix_ws::CloseCode::Other(4408),
                            description: None,
                        };
                        let _ = session.close(Some(reason)).await;
                        return;
                    }
                    if session.ping(b"").await.is_err() {
                        return;
                    }
                }
                frame = stream.recv() => {
                    last_heard = Instant::now();
                    let sent = match frame {
                        Some(Ok(actix_ws::Message::Text(t))) => session.text(t).await,
                        Some(Ok(actix_ws::Message::Ping(b))) => session.pong(&b).await,
                        Some(Ok(actix_ws::Message::Close(_)) | Err(_)) | None => {
                            let _ = session.close(None).await;
                            return;
                        }
                        Some(Ok(_)) => Ok(()),
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(response)
}

// ---------------------------------------------------------------------------
// System limits and /proc.

/// Raises this process's soft `RLIMIT_NOFILE` to the hard limit (children
/// inherit it); answers (before, after).
fn raise_nofile() -> Result<(libc::rlim_t, libc::rlim_t), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
    }
    let before = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `setrlimit` only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(format!("setrlimit: {}", io::Error::last_os_error()));
    }
    Ok((before, lim.rlim_cur))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "-".to_owned(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

// ---------------------------------------------------------------------------
// Shared client state: counters and samples every client task feeds.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Echo,
    Bwenge,
    /// Bwenge with `analytics.record = false`.
    BwengeNoAnalytics,
    /// Bwenge with `database.sqlite_synchronous = "normal"`.
    BwengeSyncNormal,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Echo => "echo baseline",
            Self::Bwenge => "bwenge",
            Self::BwengeNoAnalytics => "bwenge -anlyt",
            Self::BwengeSyncNormal => "bwenge sync=N",
        }
    }

    fn is_bwenge(self) -> bool {
        matches!(
            self,
            Self::Bwenge | Self::BwengeNoAnalytics | Self::BwengeSyncNormal
        )
    }
}

#[derive(Default)]
struct Samples {
    /// Send → `ack` (echo: send → echo), questions of the measuring window.
    ack_ns: Vec<u64>,
    /// Send → first `delta`.
    delta_ns: Vec<u64>,
    /// Send → finished answer.
    answer_ns: Vec<u64>,
    /// Scheduled → sent (how far the client lagged behind the schedule).
    lag_ns: Vec<u64>,
    /// When each answer (any question) arrived.
    answered_at: Vec<Instant>,
    /// Storm: reconnect start → `session` (resumed); → caught up.
    resumed_ns: Vec<u64>,
    caught_up_ns: Vec<u64>,
}

#[derive(Default)]
struct Shared {
    /// Questions sent and not yet answered.
    outstanding: AtomicI64,
    disconnects: AtomicU64,
    error_frames: AtomicU64,
    /// Frames that were not JSON, binary frames.
    bad_frames: AtomicU64,
    /// Answers (`message` with `reply_to`) that arrived without a `delta`
    /// before them, in the measuring window.
    no_delta: AtomicU64,
    /// Questions the dispatcher could not hand to a client (its queue full).
    backlog: AtomicU64,
    reconnect_failures: AtomicU64,
    resumed: AtomicU64,
    resume_failed: AtomicU64,
    caught_up: AtomicU64,
    /// At the storm's drop: questions sent and not acked / not answered.
    pre_drop_unacked: AtomicU64,
    pre_drop_unanswered: AtomicU64,
    resent: AtomicU64,
    /// Events received again (replay overlapping live), de-duplicated.
    duplicate_events: AtomicU64,
    samples: Mutex<Samples>,
    phase: Mutex<&'static str>,
    /// Why connections ended unexpectedly, and error codes, by kind.
    reasons: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note(map: &Mutex<BTreeMap<String, u64>>, what: String) {
        let mut m = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry(what).or_default() += 1;
    }

    fn phase(&self) -> &'static str {
        *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_phase(&self, p: &'static str) {
        *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = p;
    }

    fn take_samples(&self) -> Samples {
        std::mem::take(&mut *self.samples())
    }

    fn counters(&self) -> Counters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            disconnects: g(&self.disconnects),
            error_frames: g(&self.error_frames),
            bad_frames: g(&self.bad_frames),
            no_delta: g(&self.no_delta),
            backlog: g(&self.backlog),
            reconnect_failures: g(&self.reconnect_failures),
        }
    }

    fn describe(map: &Mutex<BTreeMap<String, u64>>) -> String {
        let m = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A snapshot of the counters, to take differences per phase.
#[derive(Clone, Copy, Default, Debug)]
struct Counters {
    disconnects: u64,
    error_frames: u64,
    bad_frames: u64,
    no_delta: u64,
    backlog: u64,
    reconnect_failures: u64,
}

impl Counters {
    fn since(self, before: Counters) -> Counters {
        Counters {
            disconnects: self.disconnects - before.disconnects,
            error_frames: self.error_frames - before.error_frames,
            bad_frames: self.bad_frames - before.bad_frames,
            no_delta: self.no_delta - before.no_delta,
            backlog: self.backlog - before.backlog,
            reconnect_failures: self.reconnect_failures - before.reconnect_failures,
        }
    }

    fn errors(self) -> u64 {
        self.disconnects + self.error_frames + self.bad_frames + self.backlog
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// One client: a task per session.

type Ws = WebSocketStream<TcpStream>;

/// What the driver tells a client.
enum Cmd {
    Ask(Ask),
    /// Drop the socket now (no close handshake), reconnect at `at` with
    /// `path` (a fresh token), resume.
    Drop {
        at: Instant,
        path: Arc<str>,
    },
    /// Answer (gaps in the `seq`s held, acked questions without their
    /// answer) without closing.
    Check(oneshot::Sender<(u64, u64)>),
    /// Check what was received, close, answer the summary, end.
    Finish(oneshot::Sender<Verify>),
}

struct Ask {
    text: &'static str,
    scheduled: Instant,
    /// In the load phase's measuring window: its latencies count.
    measured: bool,
}

struct Question {
    text: &'static str,
    scheduled: Instant,
    measured: bool,
    sent: Option<Instant>,
    seq: Option<i64>,
    acked: bool,
    delta: bool,
    answered: bool,
    /// Sent before the storm's drop and not answered then: must be caught up.
    pre_drop: bool,
}

struct Storm {
    /// When the client started reconnecting.
    started: Option<Instant>,
    /// The session's `last_seq` announced on resume.
    target: Option<i64>,
    resumed: bool,
    done: bool,
}

/// What one client checked at the end.
#[derive(Default, Debug)]
struct Verify {
    clients: u64,
    questions: u64,
    /// Questions the server stored (ack or the question's event seen).
    acked: u64,
    unacked: u64,
    answered_once: u64,
    unanswered: u64,
    /// Questions with more than one answer (distinct `seq`s replying to it).
    multi_answered: u64,
    /// Missing `seq`s between 1 and the highest received.
    gaps: u64,
    /// One `seq` received twice with different content.
    conflicts: u64,
    /// An ack's `seq` differing from the question event's, or from an
    /// earlier ack of the same `client_id`.
    seq_mismatch: u64,
    /// Answers to no question of this session.
    stray_answers: u64,
    events: u64,
    /// For the HTTP cross-check: the session and the `seq`s held.
    session: Option<(String, Vec<i64>)>,
}

impl Verify {
    fn add(&mut self, o: &Verify) {
        self.clients += o.clients;
        self.questions += o.questions;
        self.acked += o.acked;
        self.unacked += o.unacked;
        self.answered_once += o.answered_once;
        self.unanswered += o.unanswered;
        self.multi_answered += o.multi_answered;
        self.gaps += o.gaps;
        self.conflicts += o.conflicts;
        self.seq_mismatch += o.seq_mismatch;
        self.stray_answers += o.stray_answers;
        self.events += o.events;
    }

    /// Acked questions not answered exactly once, and holes or conflicts in
    /// the `seq`s (unacked questions are not counted: the server refused
    /// them with an error frame, or never got them).
    fn lost(&self) -> u64 {
        self.unanswered
            + self.multi_answered
            + self.gaps
            + self.conflicts
            + self.seq_mismatch
            + self.stray_answers
    }
}

/// A stored event as a client holds it.
struct Event {
    hash: u64,
    role_user: bool,
    reply_to: Option<i64>,
    client_id: Option<String>,
}

struct Client {
    idx: usize,
    kind: Kind,
    addr: SocketAddr,
    src: IpAddr,
    path: Arc<str>,
    persona: Arc<str>,
    shared: Arc<Shared>,
    ws: Option<Ws>,
    /// Attached to the session (after `session`; echo: after the echo of
    /// `start`/`resume`): questions may be sent.
    attached: bool,
    session_id: Option<String>,
    questions: Vec<Question>,
    by_seq: HashMap<i64, usize>,
    events: BTreeMap<i64, Event>,
    /// Every `seq` up to this one is held.
    contiguous: i64,
    outbox: Vec<usize>,
    reconnect_at: Option<Instant>,
    /// A `resume` was sent and its `session` has not come yet.
    resuming: bool,
    storm: Option<Storm>,
    seq_mismatch: u64,
    conflicts: u64,
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

async fn connect(addr: SocketAddr, src: IpAddr, path: &str) -> Result<Ws, String> {
    let attempt = async {
        let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        sock.bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("bind {src}: {e}"))?;
        let stream = sock
            .connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let url = format!("ws://{addr}{path}");
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(res) => format!("handshake: HTTP {}", res.status()),
                e => format!("handshake: {e}"),
            })?;
        Ok(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| "connect timed out".to_owned())?
}

async fn next_msg(ws: &mut Option<Ws>) -> Option<Result<Message, tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn event_hash(e: &EventFrame<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    e.role.as_str().hash(&mut h);
    e.reply_to.hash(&mut h);
    e.client_id.as_deref().hash(&mut h);
    e.text.hash(&mut h);
    h.finish()
}

impl Client {
    fn client_id(&self, n: usize) -> String {
        format!("c{}q{n}", self.idx)
    }

    /// The question number of one of this client's `client_id`s.
    fn question_of(&self, client_id: &str) -> Option<usize> {
        let rest = client_id.strip_prefix(&format!("c{}q", self.idx))?;
        rest.parse().ok().filter(|n| *n < self.questions.len())
    }

    async fn send_text(&mut self, text: String) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        match ws.send(Message::text(text)).await {
            Ok(()) => true,
            Err(e) => {
                self.disconnected(format!("send: {e}"));
                false
            }
        }
    }

    /// Connects and opens the session; `Ok` once it is attached.
    async fn establish(&mut self) -> Result<(), String> {
        let ws = connect(self.addr, self.src, &self.path).await?;
        self.ws = Some(ws);
        // The echo server sends it back: its "session".
        let start = json!({"type": "start", "persona_id": &*self.persona});
        if !self.send_text(start.to_string()).await {
            return Err("send start failed".to_owned());
        }
        let deadline = Instant::now() + ESTABLISH_TIMEOUT;
        loop {
            let Some(ws) = self.ws.as_mut() else {
                return Err("closed before the session started".to_owned());
            };
            let msg = tokio::time::timeout_at(deadline.into(), ws.next())
                .await
                .map_err(|_| "no session frame in time".to_owned())?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value =
                        serde_json::from_str(t.as_str()).map_err(|e| format!("bad frame: {e}"))?;
                    match v["type"].as_str() {
                        Some("session") => {
                            self.session_id = v["session_id"].as_str().map(str::to_owned);
                            if self.session_id.is_none() {
                                return Err(format!("session frame without id: {v}"));
                            }
                            self.attached = true;
                            return Ok(());
                        }
                        Some("start") if self.kind == Kind::Echo => {
                            self.session_id = Some(format!("echo-{}", self.idx));
                            self.attached = true;
                            return Ok(());
                        }
                        Some("error") => return Err(format!("error frame: {v}")),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    return Err(format!("closed: {}", close_code(c.as_ref())));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("closed before the session started".to_owned()),
            }
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        loop {
            let reconnect_at = self.reconnect_at;
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Cmd::Ask(a)) => self.ask(a).await,
                    Some(Cmd::Drop { at, path }) => self.drop_for_storm(at, path),
                    Some(Cmd::Check(tx)) => {
                        let _ = tx.send(self.check());
                    }
                    Some(Cmd::Finish(tx)) => {
                        let v = self.verify();
                        if let Some(mut ws) = self.ws.take() {
                            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                        }
                        let _ = tx.send(v);
                        break;
                    }
                },
                msg = next_msg(&mut self.ws) => self.on_msg(msg).await,
                () = sleep_until_opt(reconnect_at) => self.reconnect().await,
            }
        }
    }

    async fn ask(&mut self, a: Ask) {
        let n = self.questions.len();
        self.questions.push(Question {
            text: a.text,
            scheduled: a.scheduled,
            measured: a.measured,
            sent: None,
            seq: None,
            acked: false,
            delta: false,
            answered: false,
            pre_drop: false,
        });
        self.shared.outstanding.fetch_add(1, Ordering::Relaxed);
        if self.ws.is_some() && self.attached {
            self.send_question(n).await;
        } else {
            self.outbox.push(n);
        }
    }

    async fn send_question(&mut self, n: usize) {
        let frame = json!({"type": "message", "client_id": self.client_id(n),
            "text": self.questions[n].text})
        .to_string();
        let now = Instant::now();
        let q = &mut self.questions[n];
        if q.sent.is_none() {
            q.sent = Some(now);
            if q.measured {
                let lag = nanos(now.saturating_duration_since(q.scheduled));
                self.shared.samples().lag_ns.push(lag);
            }
        } else {
            self.shared.resent.fetch_add(1, Ordering::Relaxed);
        }
        self.send_text(frame).await;
    }

    fn drop_for_storm(&mut self, at: Instant, path: Arc<str>) {
        // Dropping the stream closes the TCP connection without a WebSocket
        // close handshake: what a phone losing its network looks like to
        // the server once the FIN (or RST) arrives.
        self.ws = None;
        self.attached = false;
        self.resuming = false;
        let (mut unacked, mut unanswered) = (0, 0);
        for q in &mut self.questions {
            if q.sent.is_some() && !q.answered {
                q.pre_drop = true;
                unanswered += 1;
                if !q.acked {
                    unacked += 1;
                }
            }
        }
        let s = &self.shared;
        s.pre_drop_unacked.fetch_add(unacked, Ordering::Relaxed);
        s.pre_drop_unanswered
            .fetch_add(unanswered, Ordering::Relaxed);
        self.path = path;
        self.storm = Some(Storm {
            started: None,
            target: None,
            resumed: false,
            done: false,
        });
        self.reconnect_at = Some(at);
    }

    async fn reconnect(&mut self) {
        self.reconnect_at = None;
        if let Some(st) = self.storm.as_mut()
            && st.started.is_none()
        {
            st.started = Some(Instant::now());
        }
        match connect(self.addr, self.src, &self.path).await {
            Ok(ws) => self.ws = Some(ws),
            Err(e) => {
                self.shared
                    .reconnect_failures
                    .fetch_add(1, Ordering::Relaxed);
                let phase = self.shared.phase();
                Shared::note(&self.shared.reasons, format!("{phase}: reconnect: {e}"));
                self.reconnect_at = Some(Instant::now() + RETRY_DELAY);
                return;
            }
        }
        let resume = json!({"type": "resume", "session_id": self.session_id,
            "last_seq": self.contiguous});
        self.resuming = true;
        self.send_text(resume.to_string()).await;
    }

    /// The connection ended without being asked to: counted, then resumed.
    fn disconnected(&mut self, reason: String) {
        if self.ws.take().is_none() {
            return;
        }
        self.attached = false;
        self.resuming = false;
        self.shared.disconnects.fetch_add(1, Ordering::Relaxed);
        let phase = self.shared.phase();
        Shared::note(&self.shared.reasons, format!("{phase}: {reason}"));
        self.reconnect_at = Some(Instant::now() + RECONNECT_DELAY);
    }

    async fn on_msg(&mut self, msg: Option<Result<Message, tungstenite::Error>>) {
        match msg {
            Some(Ok(Message::Text(t))) => match self.kind {
                Kind::Bwenge | Kind::BwengeNoAnalytics | Kind::BwengeSyncNormal => {
                    match serde_json::from_str::<ServerFrame<'_>>(t.as_str()) {
                        Ok(f) => self.on_server_frame(&f).await,
                        Err(_) => {
                            self.shared.bad_frames.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Kind::Echo => match serde_json::from_str::<Value>(t.as_str()) {
                    Ok(v) => self.on_echo_frame(&v).await,
                    Err(_) => {
                        self.shared.bad_frames.fetch_add(1, Ordering::Relaxed);
                    }
                },
            },
            Some(Ok(Message::Binary(_))) => {
                self.shared.bad_frames.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(Message::Close(c))) => {
                self.disconnected(format!("closed by server: {}", close_code(c.as_ref())));
            }
            // Pings are answered by the library on the next read.
            Some(Ok(_)) => {}
            Some(Err(e)) => self.disconnected(format!("read: {}", short_error(&e))),
            None => self.disconnected("stream ended".to_owned()),
        }
    }

    /// A frame of Bwenge's, as the server's frame type.
    async fn on_server_frame(&mut self, f: &ServerFrame<'_>) {
        let now = Instant::now();
        match f {
            ServerFrame::Session {
                session_id,
                resumed,
                last_seq,
                ..
            } => {
                let same = self.session_id.as_deref() == Some(session_id.to_string().as_str());
                if same && *resumed {
                    self.attached = true;
                    self.resuming = false;
                    if let Some(st) = self.storm.as_mut()
                        && !st.resumed
                    {
                        st.resumed = true;
                        st.target = Some(*last_seq);
                        self.shared.resumed.fetch_add(1, Ordering::Relaxed);
                        if let Some(t0) = st.started {
                            self.shared.samples().resumed_ns.push(nanos(now - t0));
                        }
                    }
                    self.after_attach().await;
                } else {
                    self.resume_refused(format!("bad resume answer: {f:?}"));
                }
            }
            ServerFrame::Ack { client_id, seq } => {
                if let Some(n) = self.question_of(client_id) {
                    self.acked(n, *seq, now);
                }
            }
            ServerFrame::Delta { reply_to, .. } => {
                if let Some(&n) = self.by_seq.get(reply_to) {
                    let q = &mut self.questions[n];
                    if !q.delta {
                        q.delta = true;
                        if q.measured
                            && let Some(sent) = q.sent
                        {
                            self.shared.samples().delta_ns.push(nanos(now - sent));
                        }
                    }
                }
            }
            ServerFrame::Message(e) => self.on_event(e, now),
            ServerFrame::Replay { events } => {
                for Tagged::Message(e) in events {
                    self.on_event(e, now);
                }
            }
            ServerFrame::Error { code, reply_to, .. } => {
                self.on_error_frame(code, reply_to.is_some());
            }
            // Waiting for a turn: the answer's latency will show it.
            ServerFrame::Queued { .. }
            | ServerFrame::Pong
            | ServerFrame::Ingest(_)
            | ServerFrame::Authenticated { .. } => {}
        }
        self.check_caught_up(now);
    }

    /// A frame of the echo baseline's (the client's own frames, echoed).
    async fn on_echo_frame(&mut self, v: &Value) {
        let now = Instant::now();
        match v["type"].as_str() {
            Some("resume") => {
                self.attached = true;
                self.resuming = false;
                if let Some(st) = self.storm.as_mut()
                    && !st.resumed
                {
                    st.resumed = true;
                    self.shared.resumed.fetch_add(1, Ordering::Relaxed);
                    if let Some(t0) = st.started {
                        self.shared.samples().resumed_ns.push(nanos(now - t0));
                    }
                }
                self.after_attach().await;
            }
            Some("message") => {
                if let Some(n) = v["client_id"].as_str().and_then(|c| self.question_of(c)) {
                    self.acked(n, -1, now);
                    self.answered(n, now);
                }
            }
            Some("error") => self.on_error_frame(
                v["code"].as_str().unwrap_or("?"),
                v.get("reply_to").is_some(),
            ),
            _ => {}
        }
        self.check_caught_up(now);
    }

    fn on_error_frame(&mut self, code: &str, about_answer: bool) {
        self.shared.error_frames.fetch_add(1, Ordering::Relaxed);
        let phase = self.shared.phase();
        let what = if self.resuming {
            "answering resume"
        } else if about_answer {
            "answering a question"
        } else {
            "answering a message"
        };
        Shared::note(
            &self.shared.errors,
            format!("{phase}: error frame {code} ({what})"),
        );
        if self.resuming {
            self.resume_refused(format!("error frame {code}"));
        }
    }

    /// The server answered a `resume` with an error: counted; the client
    /// drops the socket and tries again, as an app would.
    fn resume_refused(&mut self, why: String) {
        self.shared.resume_failed.fetch_add(1, Ordering::Relaxed);
        Shared::note(&self.shared.reasons, format!("resume refused: {why}"));
        self.ws = None;
        self.attached = false;
        self.resuming = false;
        self.reconnect_at = Some(Instant::now() + RECONNECT_DELAY);
    }

    /// Gaps in the `seq`s held, and acked questions whose answer is not held.
    fn check(&self) -> (u64, u64) {
        let max = self.events.keys().next_back().copied().unwrap_or(0);
        let gaps = (1..=max).filter(|s| !self.events.contains_key(s)).count() as u64;
        let unanswered = self
            .questions
            .iter()
            .filter(|q| q.acked && !q.answered)
            .count() as u64;
        (gaps, unanswered)
    }

    /// Attached after a reconnection: resend what was never acked (same
    /// `client_id`), then what was asked while away.
    async fn after_attach(&mut self) {
        let unacked: Vec<usize> = (0..self.questions.len())
            .filter(|&n| self.questions[n].sent.is_some() && !self.questions[n].acked)
            .collect();
        for n in unacked {
            self.send_question(n).await;
        }
        for n in std::mem::take(&mut self.outbox) {
            self.send_question(n).await;
        }
    }

    fn acked(&mut self, n: usize, seq: i64, now: Instant) {
        let q = &mut self.questions[n];
        if let Some(old) = q.seq
            && old != seq
        {
            self.seq_mismatch += 1;
        }
        if q.seq.is_none() {
            q.seq = Some(seq);
        }
        if !q.acked {
            q.acked = true;
            if q.measured
                && let Some(sent) = q.sent
            {
                self.shared.samples().ack_ns.push(nanos(now - sent));
            }
        }
        if seq >= 0 {
            self.by_seq.insert(seq, n);
        }
    }

    fn answered(&mut self, n: usize, now: Instant) {
        let q = &mut self.questions[n];
        if q.answered {
            return;
        }
        q.answered = true;
        self.shared.outstanding.fetch_sub(1, Ordering::Relaxed);
        let mut s = self.shared.samples();
        s.answered_at.push(now);
        if q.measured
            && let Some(sent) = q.sent
        {
            s.answer_ns.push(nanos(now - sent));
            if self.kind.is_bwenge() && !q.delta {
                self.shared.no_delta.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A stored event (live `message` or replayed), kept once per `seq`.
    fn on_event(&mut self, e: &EventFrame<'_>, now: Instant) {
        let seq = e.seq;
        let hash = event_hash(e);
        if let Some(held) = self.events.get(&seq) {
            self.shared.duplicate_events.fetch_add(1, Ordering::Relaxed);
            if held.hash != hash {
                self.conflicts += 1;
            }
            return;
        }
        let role_user = e.role == EventRole::User;
        let client_id = e.client_id.as_deref().map(str::to_owned);
        let reply_to = e.reply_to;
        self.events.insert(
            seq,
            Event {
                hash,
                role_user,
                reply_to,
                client_id: client_id.clone(),
            },
        );
        while self.events.contains_key(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
        if role_user {
            // The question as stored: as good as its ack.
            if let Some(n) = client_id.as_deref().and_then(|c| self.question_of(c)) {
                self.acked(n, seq, now);
            }
        } else if let Some(&n) = reply_to.and_then(|r| self.by_seq.get(&r)) {
            self.answered(n, now);
        }
    }

    fn check_caught_up(&mut self, now: Instant) {
        let Some(st) = self.storm.as_ref() else {
            return;
        };
        if st.done || !st.resumed || !self.attached {
            return;
        }
        if self.kind.is_bwenge() && st.target.is_none_or(|t| self.contiguous < t) {
            return;
        }
        if self.questions.iter().any(|q| q.pre_drop && !q.answered) {
            return;
        }
        let started = st.started;
        if let Some(st) = self.storm.as_mut() {
            st.done = true;
        }
        self.shared.caught_up.fetch_add(1, Ordering::Relaxed);
        if let Some(t0) = started {
            self.shared.samples().caught_up_ns.push(nanos(now - t0));
        }
    }

    fn verify(&self) -> Verify {
        let mut v = Verify {
            clients: 1,
            questions: self.questions.len() as u64,
            seq_mismatch: self.seq_mismatch,
            conflicts: self.conflicts,
            events: self.events.len() as u64,
            ..Verify::default()
        };
        if self.kind == Kind::Echo {
            for q in &self.questions {
                if q.acked {
                    v.acked += 1;
                } else {
                    v.unacked += 1;
                }
                if q.answered {
                    v.answered_once += 1;
                } else {
                    v.unanswered += 1;
                }
            }
            return v;
        }
        let max = self.events.keys().next_back().copied().unwrap_or(0);
        v.gaps = (1..=max).filter(|s| !self.events.contains_key(s)).count() as u64;
        // Questions by `seq`, from their stored events.
        let mut question_seq: HashMap<usize, i64> = HashMap::new();
        let mut answers: HashMap<i64, u32> = HashMap::new();
        for (&seq, e) in &self.events {
            if e.role_user {
                if let Some(n) = e.client_id.as_deref().and_then(|c| self.question_of(c)) {
                    if question_seq.insert(n, seq).is_some() {
                        // One client_id stored twice.
                        v.seq_mismatch += 1;
                    }
                    if self.questions[n].seq.is_some_and(|s| s != seq) {
                        v.seq_mismatch += 1;
                    }
                }
            } else if let Some(r) = e.reply_to {
                *answers.entry(r).or_default() += 1;
            }
        }
        for (n, q) in self.questions.iter().enumerate() {
            let seq = question_seq.get(&n).copied().or(q.seq);
            match seq {
                Some(seq) if q.acked || question_seq.contains_key(&n) => {
                    v.acked += 1;
                    match answers.get(&seq).copied().unwrap_or(0) {
                        0 => v.unanswered += 1,
                        1 => v.answered_once += 1,
                        _ => v.multi_answered += 1,
                    }
                }
                _ => v.unacked += 1,
            }
        }
        let question_seqs: std::collections::HashSet<i64> = question_seq
            .values()
            .copied()
            .chain(self.questions.iter().filter_map(|q| q.seq))
            .collect();
        v.stray_answers = answers
            .keys()
            .filter(|r| !question_seqs.contains(r))
            .count() as u64;
        v.session = self
            .session_id
            .clone()
            .map(|s| (s, self.events.keys().copied().collect()));
        v
    }
}

fn close_code(c: Option<&tungstenite::protocol::CloseFrame>) -> String {
    c.map_or("no code".to_owned(), |c| {
        format!("close {}", u16::from(c.code))
    })
}

fn short_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(e) => format!("i/o {:?}", e.kind()),
        tungstenite::Error::Protocol(p) => format!("protocol: {p}"),
        e => e.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Driving a set of clients.

struct Fleet {
    shared: Arc<Shared>,
    clients: Vec<mpsc::Sender<Cmd>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    failed: usize,
    first_failure: Option<String>,
    took: Duration,
}

struct Target<'a> {
    kind: Kind,
    addr: SocketAddr,
    /// Path and query of the WebSocket URL.
    path: Arc<str>,
    persona: Arc<str>,
    sources: &'a [IpAddr],
}

/// Opens `n` sessions, `concurrency` at a time.
async fn establish(t: &Target<'_>, n: usize, concurrency: usize, offset: usize) -> Fleet {
    let shared = Arc::new(Shared::default());
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let idx = offset + i;
        let (tx, rx) = mpsc::channel::<Cmd>(64);
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let mut client = Client {
            idx,
            kind: t.kind,
            addr: t.addr,
            src: t.sources[idx % t.sources.len()],
            path: t.path.clone(),
            persona: t.persona.clone(),
            shared: shared.clone(),
            ws: None,
            attached: false,
            session_id: None,
            questions: Vec::new(),
            by_seq: HashMap::new(),
            events: BTreeMap::new(),
            contiguous: 0,
            outbox: Vec::new(),
            reconnect_at: None,
            resuming: false,
            storm: None,
            seq_mismatch: 0,
            conflicts: 0,
        };
        let sem = sem.clone();
        let task = tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let r = client.establish().await;
            drop(permit);
            let ok = r.is_ok();
            let _ = ready_tx.send(r);
            if ok {
                client.run(rx).await;
            }
        });
        pending.push((tx, ready_rx, task));
    }
    let mut fleet = Fleet {
        shared,
        clients: Vec::with_capacity(n),
        tasks: Vec::with_capacity(n),
        failed: 0,
        first_failure: None,
        took: Duration::ZERO,
    };
    let mut done = 0usize;
    let mut last_report = Instant::now();
    for (tx, ready, task) in pending {
        match ready.await {
            Ok(Ok(())) => {
                fleet.clients.push(tx);
                fleet.tasks.push(task);
            }
            Ok(Err(e)) => {
                fleet.failed += 1;
                fleet.first_failure.get_or_insert(e);
            }
            Err(_) => {
                fleet.failed += 1;
                fleet
                    .first_failure
                    .get_or_insert_with(|| "client task ended".to_owned());
            }
        }
        done += 1;
        if n >= 1000 && last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  {}: {done}/{n} sessions after {:.0?}",
                t.kind.label(),
                started.elapsed()
            );
        }
    }
    fleet.took = started.elapsed();
    fleet
}

impl Fleet {
    /// Sums every client's (gaps, acked questions without their answer).
    async fn check(&self) -> (u64, u64) {
        let mut waits = Vec::with_capacity(self.clients.len());
        for tx in &self.clients {
            let (ctx, crx) = oneshot::channel();
            if tx.send(Cmd::Check(ctx)).await.is_ok() {
                waits.push(crx);
            }
        }
        let mut total = (0, 0);
        for w in waits {
            if let Ok((g, u)) = w.await {
                total.0 += g;
                total.1 += u;
            }
        }
        total
    }

    /// Closes every client and collects what they checked, and each
    /// session's held `seq`s (for the HTTP cross-check).
    async fn finish(self) -> (Verify, Vec<(String, Vec<i64>)>) {
        let mut total = Verify::default();
        let mut waits = Vec::with_capacity(self.clients.len());
        for tx in &self.clients {
            let (vtx, vrx) = oneshot::channel();
            if tx.send(Cmd::Finish(vtx)).await.is_ok() {
                waits.push(vrx);
            }
        }
        let mut sessions = Vec::new();
        for w in waits {
            if let Ok(v) = w.await {
                total.add(&v);
                if let Some(s) = v.session {
                    sessions.push(s);
                }
            }
        }
        for t in self.tasks {
            let _ = t.await;
        }
        (total, sessions)
    }
}

/// Questions at `rate` for `total`, round-robin over the clients from
/// `*counter` on; those scheduled in `window` (offsets from the start) are
/// measured.
async fn dispatch(
    fleet: &Fleet,
    rate: f64,
    total: Duration,
    window: Option<(Duration, Duration)>,
    counter: &mut u64,
) -> (Instant, u64) {
    let n = fleet.clients.len() as u64;
    let start = Instant::now();
    let end = start + total;
    let mut sent: u64 = 0;
    if n == 0 || rate <= 0.0 {
        return (start, 0);
    }
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let due = ((now.min(end) - start).as_secs_f64() * rate) as u64;
        while sent < due {
            let scheduled = start + Duration::from_secs_f64(sent as f64 / rate);
            let k = (*counter % n) as usize;
            let round = (*counter / n) as usize;
            let text = QUESTIONS[(k + round) % QUESTIONS.len()];
            let measured = window
                .is_some_and(|(from, to)| scheduled >= start + from && scheduled < start + to);
            let ask = Cmd::Ask(Ask {
                text,
                scheduled,
                measured,
            });
            if fleet.clients[k].try_send(ask).is_err() {
                fleet.shared.backlog.fetch_add(1, Ordering::Relaxed);
            }
            sent += 1;
            *counter += 1;
        }
        if now >= end {
            break;
        }
    }
    (start, sent)
}

/// Waits until every question is answered, or `timeout`.
async fn drain(shared: &Shared, timeout: Duration) -> Duration {
    let start = Instant::now();
    while shared.outstanding.load(Ordering::Relaxed) > 0 && start.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------
// Setup over HTTP (Bwenge).

struct Setup {
    base: String,
    http: reqwest::Client,
    token: String,
    persona: String,
}

async fn http_json(req: reqwest::RequestBuilder, what: &str, expect: u16) -> Result<Value, String> {
    let res = req.send().await.map_err(|e| format!("{what}: {e}"))?;
    let status = res.status().as_u16();
    let body = res.text().await.map_err(|e| format!("{what}: {e}"))?;
    if status != expect {
        return Err(format!("{what}: HTTP {status} (expected {expect}): {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{what}: {e}: {body}"))
}

/// Uploads `file` (name, content type, bytes) as course material; answers
/// the source's id.
async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    (name, mime, bytes): (&str, &str, Vec<u8>),
    title: &str,
) -> Result<String, String> {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .map_err(|e| format!("multipart: {e}"))?;
    let form = reqwest::multipart::Form::new()
        .part("file", part)
        .text("title", title.to_owned());
    let source = http_json(
        http.post(format!("{base}/v1/knowledge"))
            .bearer_auth(token)
            .multipart(form),
        "upload",
        202,
    )
    .await?;
    Ok(source["id"].as_str().ok_or("upload: no id")?.to_owned())
}

/// Waits until the source `id` is ingested (`ready`), at most `limit`;
/// its chunk count.
async fn wait_ready(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    limit: Duration,
) -> Result<u64, String> {
    let until = Instant::now() + limit;
    loop {
        let s = http_json(
            http.get(format!("{base}/v1/knowledge/{id}"))
                .bearer_auth(token),
            "knowledge status",
            200,
        )
        .await?;
        match s["status"].as_str() {
            Some("ready") => return Ok(s["chunk_count"].as_u64().unwrap_or(0)),
            Some("failed") => return Err(format!("the material failed to ingest: {s}")),
            _ if Instant::now() > until => {
                return Err(format!(
                    "the material was not ready within {limit:.0?}: {s}"
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn setup_bwenge(addr: SocketAddr) -> Result<Setup, String> {
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let reg = http_json(
        http.post(format!("{base}/v1/auth/register")).json(&json!({
            "organization_name": "Bench School", "full_name": "Bench Teacher",
            "email": EMAIL, "password": PASSWORD})),
        "register",
        201,
    )
    .await?;
    let token = reg["tokens"]["access_token"]
        .as_str()
        .ok_or("register: no tokens.access_token")?
        .to_owned();
    let id = upload(
        &http,
        &base,
        &token,
        ("lesson.txt", "text/plain", LESSON.as_bytes().to_vec()),
        "Science and maths lesson",
    )
    .await?;
    wait_ready(&http, &base, &token, &id, Duration::from_secs(120)).await?;
    let persona = http_json(
        http.post(format!("{base}/v1/personas"))
            .bearer_auth(&token)
            .json(&json!({"name": "Bench Tutor"})),
        "create persona",
        201,
    )
    .await?;
    let persona = persona["id"]
        .as_str()
        .ok_or("create persona: no id")?
        .to_owned();
    Ok(Setup {
        base,
        http,
        token,
        persona,
    })
}

impl Setup {
    fn ws_path(&self) -> Arc<str> {
        Arc::from(format!("/v1/chat/ws?access_token={}", self.token))
    }

    /// A fresh access token for the same user (tokens live 15 minutes).
    async fn relogin(&mut self) -> Result<(), String> {
        let res = http_json(
            self.http
                .post(format!("{}/v1/auth/login", self.base))
                .json(&json!({"email": EMAIL, "password": PASSWORD})),
            "login",
            200,
        )
        .await?;
        self.token = res["tokens"]["access_token"]
            .as_str()
            .ok_or("login: no tokens.access_token")?
            .to_owned();
        Ok(())
    }

    /// Compares the stored history of a sample of sessions with what their
    /// clients hold.
    async fn cross_check(&self, sessions: &[(String, Vec<i64>)], sample: usize) -> CrossCheck {
        let step = (sessions.len() / sample.max(1)).max(1);
        let mut c = CrossCheck::default();
        for (id, held) in sessions.iter().step_by(step).take(sample) {
            c.checked += 1;
            let got = http_json(
                self.http
                    .get(format!("{}/v1/chat/sessions/{id}", self.base))
                    .bearer_auth(&self.token),
                "session history",
                200,
            )
            .await;
            let stored: Vec<i64> = match got {
                Ok(v) => v["events"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|e| e["seq"].as_i64()).collect())
                    .unwrap_or_default(),
                Err(e) => {
                    c.errors += 1;
                    c.first_problem.get_or_insert(e);
                    continue;
                }
            };
            let top = held.last().copied().unwrap_or(0);
            let holes = stored
                .iter()
                .any(|s| *s <= top && held.binary_search(s).is_err());
            let phantom = held.iter().any(|h| !stored.contains(h));
            let later = stored.iter().any(|s| *s > top);
            let describe =
                || format!("session {id}: stored seqs {stored:?}, client holds {held:?}");
            if holes || phantom {
                c.holes += usize::from(holes);
                c.phantom += usize::from(phantom);
                c.first_problem.get_or_insert_with(describe);
            } else if later {
                c.later += 1;
                c.first_later.get_or_insert_with(describe);
            }
        }
        c
    }
}

/// The HTTP cross-check of a sample of sessions.
#[derive(Default)]
struct CrossCheck {
    checked: usize,
    /// The client lacks a stored event below the highest `seq` it holds.
    holes: usize,
    /// The client holds a `seq` the server did not store.
    phantom: usize,
    errors: usize,
    /// Only events stored after the client's last one (answers that came
    /// after the wait): not a loss.
    later: usize,
    first_problem: Option<String>,
    first_later: Option<String>,
}

impl CrossCheck {
    fn problems(&self) -> usize {
        self.holes + self.phantom + self.errors
    }
}

/// One session, one question, before anything is measured: the chain works
/// (ack, deltas, answer) and the search index is loaded.
async fn sanity_check(t: &Target<'_>) -> Result<String, String> {
    let mut ws = connect(t.addr, t.sources[0], &t.path).await?;
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(json!({"type": "start", "persona_id": &*t.persona})))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let question = QUESTIONS[0];
    let mut asked = false;
    let (mut ack, mut delta) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .map_err(|_| format!("no answer within 60 s (ack {ack}, delta {delta})"))?;
        let v: Value = match msg {
            Some(Ok(Message::Text(t))) => {
                serde_json::from_str(t.as_str()).map_err(|e| format!("bad frame: {e}"))?
            }
            Some(Ok(Message::Close(c))) => {
                return Err(format!("closed: {}", close_code(c.as_ref())));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("closed".to_owned()),
        };
        match v["type"].as_str() {
            Some("session") if !asked => {
                asked = true;
                ws.send(send(json!({"type": "message", "client_id": "sanity",
                    "text": question})))
                    .await
                    .map_err(|e| format!("send: {e}"))?;
            }
            Some("ack") => ack = true,
            Some("delta") => delta = true,
            Some("message") if v["role"] == "assistant" => {
                let _ = ws.close(None).await;
                if !(ack && delta) {
                    return Err(format!(
                        "answer without ack ({ack}) or delta ({delta}): {v}"
                    ));
                }
                let text: String = v["text"].as_str().unwrap_or("").chars().take(90).collect();
                return Ok(format!(
                    "{question:?} -> grounded {}, provider {}, {text:?}...",
                    v["grounded"], v["provider"]
                ));
            }
            Some("error") => return Err(format!("error frame: {v}")),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// The phases, per server.

#[derive(Default)]
struct Report {
    kind: Option<Kind>,
    // Idle sessions.
    sessions: usize,
    failed: usize,
    first_failure: Option<String>,
    connect_secs: f64,
    rss_before: Option<u64>,
    rss_idle: Option<u64>,
    rss_held: Option<u64>,
    bench_rss: Option<u64>,
    held_secs: f64,
    hold: Counters,
    hold_cpu: Option<f64>,
    // Questions.
    asked: u64,
    measured: usize,
    answered_in_window: usize,
    ack: Vec<u64>,
    delta: Vec<u64>,
    answer: Vec<u64>,
    lag: Vec<u64>,
    load: Counters,
    unanswered_after_drain: i64,
    /// After the drain, before any resume: `seq`s never delivered live, and
    /// acked questions whose answer never arrived live.
    live_gaps: u64,
    live_unanswered: u64,
    drain_secs: f64,
    load_srv_cpu: Option<f64>,
    load_cli_cpu: Option<f64>,
    // Storm.
    storm_clients: usize,
    pre_drop_unacked: u64,
    pre_drop_unanswered: u64,
    resent: u64,
    resumed: u64,
    resume_failed: u64,
    caught_up: u64,
    storm_secs: f64,
    resumed_ns: Vec<u64>,
    caught_up_ns: Vec<u64>,
    storm: Counters,
    duplicate_events: u64,
    verify: Verify,
    cross_check: Option<CrossCheck>,
    disconnect_reasons: String,
    error_kinds: String,
    /// The server's first and last log lines, when something went wrong.
    server_output: Option<String>,
}

impl Report {
    fn kib_per_session(&self) -> Option<f64> {
        match (self.rss_before, self.rss_idle) {
            (Some(b), Some(a)) if self.sessions > 0 => {
                Some((a as f64 - b as f64) / self.sessions as f64)
            }
            _ => None,
        }
    }
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

async fn run_phases(
    args: &Args,
    server: &mut Server,
    t: Target<'_>,
    mut setup: Option<&mut Setup>,
    hold: Duration,
) -> Result<Report, String> {
    let pid = server.pid();
    let label = t.kind.label();
    let mut r = Report {
        kind: Some(t.kind),
        ..Report::default()
    };

    // First use of everything, then the "before" reading.
    let warm = establish(&t, WARM_SESSIONS, WARM_SESSIONS, args.sessions).await;
    if warm.failed > 0 {
        return Err(format!(
            "{label}: warm-up sessions failed: {}",
            warm.first_failure.unwrap_or_default()
        ));
    }
    let _ = warm.finish().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.check_alive()?;
    r.rss_before = rss_kib(Some(pid));

    // 1. Idle sessions.
    eprintln!("{label}: opening {} sessions", args.sessions);
    let fleet = establish(&t, args.sessions, args.connect_concurrency, 0).await;
    r.sessions = fleet.clients.len();
    r.failed = fleet.failed;
    r.first_failure = fleet.first_failure.clone();
    r.connect_secs = fleet.took.as_secs_f64();
    eprintln!(
        "{label}: {} sessions in {:.1} s ({} failed{})",
        r.sessions,
        r.connect_secs,
        r.failed,
        r.first_failure
            .as_ref()
            .map_or(String::new(), |e| format!(", first: {e}"))
    );
    tokio::time::sleep(SETTLE).await;
    server.check_alive()?;
    r.rss_idle = rss_kib(Some(pid));
    r.bench_rss = rss_kib(None);
    eprintln!(
        "{label}: RSS {} -> {} MiB; holding for {:.0?}",
        mib(r.rss_before),
        mib(r.rss_idle),
        hold
    );
    let shared = fleet.shared.clone();
    shared.set_phase("hold");
    let c0 = shared.counters();
    let meter = CpuMeter::start(pid);
    let hold_start = Instant::now();
    let hold_end = hold_start + hold;
    while Instant::now() < hold_end {
        let step = Duration::from_secs(30).min(hold_end - Instant::now());
        tokio::time::sleep(step).await;
        server.check_alive()?;
        eprintln!(
            "{label}: held {:.0?}, disconnects {}, RSS {} MiB",
            hold_start.elapsed(),
            shared.disconnects.load(Ordering::Relaxed),
            mib(rss_kib(Some(pid)))
        );
    }
    r.hold_cpu = meter.stop().0;
    r.held_secs = hold_start.elapsed().as_secs_f64();
    r.hold = shared.counters().since(c0);
    r.rss_held = rss_kib(Some(pid));

    // 2. Questions at a fixed rate.
    eprintln!(
        "{label}: {} questions/s for {:.0?} + {:.0?}",
        args.rate, args.warmup, args.duration
    );
    shared.set_phase("load");
    let c1 = shared.counters();
    let _ = shared.take_samples();
    let mut counter = 0u64;
    let meter = CpuMeter::start(pid);
    let window = (args.warmup, args.warmup + args.duration);
    let (start, asked) = dispatch(
        &fleet,
        args.rate,
        args.warmup + args.duration,
        Some(window),
        &mut counter,
    )
    .await;
    let (srv_cpu, cli_cpu) = meter.stop();
    r.load_srv_cpu = srv_cpu;
    r.load_cli_cpu = cli_cpu;
    r.asked = asked;
    r.drain_secs = drain(&shared, args.drain).await.as_secs_f64();
    r.unanswered_after_drain = shared.outstanding.load(Ordering::Relaxed);
    r.load = shared.counters().since(c1);
    (r.live_gaps, r.live_unanswered) = fleet.check().await;
    let s = shared.take_samples();
    let (w0, w1) = (start + window.0, start + window.1);
    r.answered_in_window = s
        .answered_at
        .iter()
        .filter(|t| **t >= w0 && **t < w1)
        .count();
    r.measured = s.lag_ns.len();
    r.ack = sorted(s.ack_ns);
    r.delta = sorted(s.delta_ns);
    r.answer = sorted(s.answer_ns);
    r.lag = sorted(s.lag_ns);
    eprintln!(
        "{label}: {asked} asked; ack p99 {:.2} ms, delta p99 {:.2} ms; drained in {:.1} s, \
         {} unanswered",
        percentile_ms(&r.ack, 0.99),
        percentile_ms(&r.delta, 0.99),
        r.drain_secs,
        r.unanswered_after_drain
    );
    server.check_alive()?;

    // 3. Reconnect storm.
    let path = match setup.as_mut() {
        Some(s) => {
            s.relogin().await?;
            s.ws_path()
        }
        None => t.path.clone(),
    };
    eprintln!(
        "{label}: storm: {:.0?} of questions, then every client drops and resumes within {:.0?}",
        args.storm_lead, args.storm_window
    );
    shared.set_phase("storm");
    let c2 = shared.counters();
    dispatch(&fleet, args.rate, args.storm_lead, None, &mut counter).await;
    let drop_at = Instant::now();
    let n = fleet.clients.len();
    for (i, tx) in fleet.clients.iter().enumerate() {
        // Evenly spread over the window, in a scrambled order.
        let frac = ((i as u64).wrapping_mul(2_654_435_761) % 1_000_003) as f64 / 1_000_003.0;
        let at = drop_at + args.storm_window.mul_f64(frac);
        let _ = tx
            .send(Cmd::Drop {
                at,
                path: path.clone(),
            })
            .await;
    }
    let deadline = drop_at + args.storm_timeout;
    while (shared.caught_up.load(Ordering::Relaxed) as usize) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.storm_secs = drop_at.elapsed().as_secs_f64();
    let left = deadline.saturating_duration_since(Instant::now());
    drain(&shared, left.max(Duration::from_secs(5))).await;
    r.storm_clients = n;
    r.storm = shared.counters().since(c2);
    r.pre_drop_unacked = shared.pre_drop_unacked.load(Ordering::Relaxed);
    r.pre_drop_unanswered = shared.pre_drop_unanswered.load(Ordering::Relaxed);
    r.resent = shared.resent.load(Ordering::Relaxed);
    r.resumed = shared.resumed.load(Ordering::Relaxed);
    r.resume_failed = shared.resume_failed.load(Ordering::Relaxed);
    r.caught_up = shared.caught_up.load(Ordering::Relaxed);
    let s = shared.take_samples();
    r.resumed_ns = sorted(s.resumed_ns);
    r.caught_up_ns = sorted(s.caught_up_ns);
    eprintln!(
        "{label}: storm: {}/{n} resumed, {}/{n} caught up after {:.1} s; caught-up p99 {:.0} ms",
        r.resumed,
        r.caught_up,
        r.storm_secs,
        percentile_ms(&r.caught_up_ns, 0.99)
    );
    server.check_alive()?;

    // 4. Check what every client holds.
    r.duplicate_events = shared.duplicate_events.load(Ordering::Relaxed);
    let (verify, sessions) = fleet.finish().await;
    r.verify = verify;
    if let Some(s) = setup.as_ref() {
        r.cross_check = Some(s.cross_check(&sessions, args.verify_sample).await);
    }
    r.disconnect_reasons = Shared::describe(&shared.reasons);
    r.error_kinds = Shared::describe(&shared.errors);
    let troubled = r.failed > 0
        || r.hold.errors() > 0
        || r.load.errors() > 0
        || r.storm.errors() > 0
        || r.unanswered_after_drain != 0
        || r.verify.lost() > 0
        || r.verify.unacked > 0;
    if troubled {
        r.server_output = Some(server.output());
    }
    Ok(r)
}

// ---------------------------------------------------------------------------
// The run.

async fn run(args: &Args) -> Result<(), String> {
    if args.sessions == 0 {
        return Err("--sessions: expected at least 1".to_owned());
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate: expected a positive number".to_owned());
    }
    if args.duration.is_zero() {
        return Err("--duration: expected a positive number of seconds".to_owned());
    }
    let (nofile_before, nofile) = raise_nofile()?;
    let needed = args.sessions.max(args.schools * args.per_school) + WARM_SESSIONS + 256;
    if (nofile as u128) < needed as u128 {
        return Err(format!(
            "RLIMIT_NOFILE is {nofile} (hard limit) but {} sessions need about {needed} \
             descriptors in this process and in the server: raise the hard limit \
             (`ulimit -Hn`) or use --sessions",
            args.sessions
        ));
    }
    let port_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").map_or_else(
        |_| "?".to_owned(),
        |s| s.split_whitespace().collect::<Vec<_>>().join("-"),
    );
    let sources: Vec<IpAddr> = (0..args.source_addrs)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i)))
        .collect();

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
    if args.schools > 0 {
        return ws_schools::run(args, &bwenge_bin, &sources).await;
    }
    let baseline_hold = args
        .baseline_hold
        .unwrap_or_else(|| args.hold.min(Duration::from_secs(60)));

    println!("bwenge-bench ws");
    println!(
        "  {} sessions; hold {:.0?} (echo baseline {:.0?}); {} questions/s, warm-up {:.0?} + \
         window {:.0?}; storm: {:.0?} of questions, every client drops, resumes within {:.0?}",
        args.sessions,
        args.hold,
        baseline_hold,
        args.rate,
        args.warmup,
        args.duration,
        args.storm_lead,
        args.storm_window
    );
    println!(
        "  {} CPUs; client: tokio multi-thread, one task per session, source addresses \
         127.0.0.2-{}; RLIMIT_NOFILE {nofile_before} -> {nofile}; ephemeral ports {port_range}; \
         bench built {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        1 + args.source_addrs,
        if cfg!(debug_assertions) {
            "debug (use --release for real figures)"
        } else {
            "release"
        }
    );
    println!(
        "  bwenge: {} (SQLite, hashing embedder, default chain = extractive; \
         chat.messages_burst and chat.messages_per_sec raised to {RAISED_CHAT_LIMIT}: one user \
         owns every session)",
        bwenge_bin.display()
    );
    println!("  load average at start: {}", loadavg());
    println!();

    let mut reports: Vec<Report> = Vec::new();

    // The echo baseline first; its sockets are all closed before Bwenge's
    // open, so neither sees the other's load.
    if !args.no_baseline {
        let mut cmd = Command::new(&exe);
        cmd.arg("--echo-server").stdin(Stdio::piped());
        let mut server = spawn_server("echo baseline", cmd, Vec::new()).await?;
        eprintln!("echo baseline: listening on {}", server.addr);
        let t = Target {
            kind: Kind::Echo,
            addr: server.addr,
            path: Arc::from("/ws"),
            persona: Arc::from("echo"),
            sources: &sources,
        };
        let r = run_phases(args, &mut server, t, None, baseline_hold).await?;
        reports.push(r);
        drop(server);
    }

    let mut kinds = vec![Kind::Bwenge];
    if args.analytics_off {
        kinds.push(Kind::BwengeNoAnalytics);
    }
    if args.sync_normal {
        kinds.push(Kind::BwengeSyncNormal);
    }
    let runs: Vec<Kind> = (0..args.repeat)
        .flat_map(|_| kinds.iter().copied())
        .collect();
    for kind in runs {
        let mut server = start_bwenge(&bwenge_bin, kind).await?;
        eprintln!("{}: listening on {}", kind.label(), server.addr);
        let mut setup = setup_bwenge(server.addr).await?;
        let t = Target {
            kind,
            addr: server.addr,
            path: setup.ws_path(),
            persona: Arc::from(setup.persona.as_str()),
            sources: &sources,
        };
        let sample = sanity_check(&t).await?;
        println!("  sanity check ({}): {sample}", kind.label());
        println!();
        let r = run_phases(args, &mut server, t, Some(&mut setup), args.hold).await?;
        reports.push(r);
        drop(server);
    }

    print_report(args, &reports);
    println!("load average at end: {}", loadavg());
    Ok(())
}

/// Bwenge on a fresh SQLite database, configured as `kind` says.
async fn start_bwenge(bin: &Path, kind: Kind) -> Result<Server, String> {
    let dir = temp_dir("ws", "sqlite")?;
    let cleanup = vec![Cleanup::Dir(dir.clone())];
    let db = dir.join("bench.db");
    std::fs::File::create(&db).map_err(|e| format!("create {}: {e}", db.display()))?;
    let url = format!("sqlite://{}", db.display());
    let mut cmd = bwenge_command(bin, &dir, &url);
    raise_chat_limits(&mut cmd);
    cmd.env("BWENGE_EMBEDDINGS__PROVIDER", "hashing")
        .env(
            "BWENGE_ANALYTICS__RECORD",
            (kind != Kind::BwengeNoAnalytics).to_string(),
        )
        .env(
            "BWENGE_DATABASE__SQLITE_SYNCHRONOUS",
            if kind == Kind::BwengeSyncNormal {
                "normal"
            } else {
                "full"
            },
        );
    spawn_server("bwenge", cmd, cleanup).await
}

// ---------------------------------------------------------------------------
// Output.

fn ms(v: &[u64], p: f64) -> String {
    let x = percentile_ms(v, p);
    if x.is_nan() {
        "-".to_owned()
    } else {
        format!("{x:.2}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".to_owned()
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |c| format!("{c:.0}%"))
}

fn print_report(args: &Args, reports: &[Report]) {
    let echo = reports.iter().find(|r| r.kind == Some(Kind::Echo));
    let label = |r: &Report| r.kind.map_or("?", Kind::label);

    println!("idle sessions (server RSS from /proc/<pid>/status VmRSS)");
    println!(
        "{:<14} {:>8} {:>6} {:>9} {:>7} {:>10} {:>9} {:>8} {:>7} {:>6} {:>9} {:>8}  ratio_vs_echo",
        "target",
        "sessions",
        "failed",
        "connect s",
        "sess/s",
        "before MiB",
        "idle MiB",
        "KiB/sess",
        "held s",
        "disc",
        "end MiB",
        "srv cpu"
    );
    for r in reports {
        let kib = r.kib_per_session();
        let rat = match (kib, echo.and_then(Report::kib_per_session)) {
            (Some(a), Some(b)) if r.kind != Some(Kind::Echo) => ratio(a, b),
            _ => String::new(),
        };
        println!(
            "{:<14} {:>8} {:>6} {:>9.1} {:>7.0} {:>10} {:>9} {:>8} {:>7.0} {:>6} {:>9} {:>8}  {}",
            label(r),
            r.sessions,
            r.failed,
            r.connect_secs,
            r.sessions as f64 / r.connect_secs.max(1e-9),
            mib(r.rss_before),
            mib(r.rss_idle),
            fmt_opt(kib, 2),
            r.held_secs,
            r.hold.disconnects,
            mib(r.rss_held),
            pct(r.hold_cpu),
            rat
        );
    }
    if let Some(r) = reports.iter().find(|r| r.kind == Some(Kind::Bwenge)) {
        println!(
            "(bench client RSS with {} sessions open: {} MiB; Python aiohttp holding the same \
             sessions, storing nothing: about {AIOHTTP_KIB:.0} KiB/session on this machine, \
             context only)",
            r.sessions,
            mib(r.bench_rss)
        );
    }
    println!();

    println!(
        "questions ({} q/s round-robin over the sessions; window {:.0?} after {:.0?} warm-up; \
         latency from the client's send; echo: ack = the echo)",
        args.rate, args.duration, args.warmup
    );
    println!(
        "{:<14} {:>7} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7} {:>8} {:>8}",
        "target",
        "asked",
        "measured",
        "answers/s",
        "ack p50",
        "ack p99",
        "delta p50",
        "delta p99",
        "answr p50",
        "answr p99",
        "lag p99",
        "errors",
        "unansw",
        "srv cpu",
        "cli cpu"
    );
    for r in reports {
        let errors = r.load.errors();
        let is_echo = r.kind == Some(Kind::Echo);
        let dash = |s: String| if is_echo { "-".to_owned() } else { s };
        println!(
            "{:<14} {:>7} {:>8} {:>9.0} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7} {:>8} {:>8}",
            label(r),
            r.asked,
            r.measured,
            r.answered_in_window as f64 / args.duration.as_secs_f64(),
            ms(&r.ack, 0.5),
            ms(&r.ack, 0.99),
            dash(ms(&r.delta, 0.5)),
            dash(ms(&r.delta, 0.99)),
            dash(ms(&r.answer, 0.5)),
            dash(ms(&r.answer, 0.99)),
            ms(&r.lag, 0.99),
            errors,
            r.unanswered_after_drain,
            pct(r.load_srv_cpu),
            pct(r.load_cli_cpu)
        );
    }
    if let (Some(e), Some(b)) = (echo, reports.iter().find(|r| r.kind == Some(Kind::Bwenge))) {
        let e99 = percentile_ms(&e.ack, 0.99);
        let e50 = percentile_ms(&e.ack, 0.5);
        println!(
            "ratios to the echo round trip: ack p50 {} p99 {}; first delta p50 {} p99 {}",
            ratio(percentile_ms(&b.ack, 0.5), e50),
            ratio(percentile_ms(&b.ack, 0.99), e99),
            ratio(percentile_ms(&b.delta, 0.5), e50),
            ratio(percentile_ms(&b.delta, 0.99), e99)
        );
    }
    // Same-run ratios, of the medians over `--repeat` runs of each kind.
    let median = |kind: Kind, f: &dyn Fn(&Report) -> f64| -> Option<f64> {
        let mut v: Vec<f64> = reports
            .iter()
            .filter(|r| r.kind == Some(kind))
            .map(f)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let ack50 = |r: &Report| percentile_ms(&r.ack, 0.5);
    let ack99 = |r: &Report| percentile_ms(&r.ack, 0.99);
    let delta99 = |r: &Report| percentile_ms(&r.delta, 0.99);
    let compare = |what: &str, a: Kind, b: Kind| {
        let m = |k: Kind, f: &dyn Fn(&Report) -> f64| median(k, f).unwrap_or(f64::NAN);
        if median(a, &ack50).is_none() || median(b, &ack50).is_none() {
            return;
        }
        let runs = reports.iter().filter(|r| r.kind == Some(a)).count();
        let of = if runs > 1 {
            format!(", medians of {runs} alternating runs each")
        } else {
            String::new()
        };
        println!(
            "{what} (same run{of}): ack p50 {} ({:.2} / {:.2} ms) p99 {} ({:.2} / {:.2} ms); first delta p99 {}",
            ratio(m(a, &ack50), m(b, &ack50)),
            m(a, &ack50),
            m(b, &ack50),
            ratio(m(a, &ack99), m(b, &ack99)),
            m(a, &ack99),
            m(b, &ack99),
            ratio(m(a, &delta99), m(b, &delta99)),
        );
    };
    compare("analytics on / off", Kind::Bwenge, Kind::BwengeNoAnalytics);
    compare(
        "sqlite synchronous FULL / NORMAL",
        Kind::Bwenge,
        Kind::BwengeSyncNormal,
    );
    println!(
        "(answers/s: answers arriving inside the window; lag: scheduled -> sent, the client's \
         own delay; unansw: still unanswered {:.0?} after the load ended)",
        args.drain
    );
    for r in reports
        .iter()
        .filter(|r| r.kind.is_some_and(Kind::is_bwenge))
    {
        println!(
            "after the drain, before any resume: {} seqs never delivered live (gaps in what the \
             clients hold), {} acked questions whose answer never arrived live",
            r.live_gaps, r.live_unanswered
        );
    }
    println!();

    println!(
        "reconnect storm (after {:.0?} of questions every client drops its socket at once and \
         reconnects evenly spread over {:.0?}, resumes with its last contiguous seq, resends \
         unacked questions)",
        args.storm_lead, args.storm_window
    );
    println!(
        "{:<14} {:>7} {:>9} {:>10} {:>7} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>6} {:>6}",
        "target",
        "clients",
        "in flight",
        "unacked",
        "resent",
        "resumed",
        "caught up",
        "resum p50",
        "resum p99",
        "caught p50",
        "caught p99",
        "disc",
        "errors"
    );
    for r in reports {
        println!(
            "{:<14} {:>7} {:>9} {:>10} {:>7} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>6} {:>6}",
            label(r),
            r.storm_clients,
            r.pre_drop_unanswered,
            r.pre_drop_unacked,
            r.resent,
            r.resumed,
            r.caught_up,
            ms(&r.resumed_ns, 0.5),
            ms(&r.resumed_ns, 0.99),
            ms(&r.caught_up_ns, 0.5),
            ms(&r.caught_up_ns, 0.99),
            r.storm.disconnects,
            r.storm.errors() - r.storm.disconnects
        );
    }
    println!(
        "(times in ms from the client's reconnect start; in flight: sent and not answered at the \
         drop, of which unacked)"
    );
    println!();

    println!("whole run, as the clients hold it (bwenge: de-duplicated by seq)");
    for r in reports {
        let v = &r.verify;
        println!(
            "  {:<14} {} questions: {} acked, {} answered once, {} unanswered, {} answered \
             twice or more, {} unacked; {} events held, {} gaps, {} duplicates received \
             (dropped), {} conflicting, {} seq mismatches, {} stray answers",
            label(r),
            v.questions,
            v.acked,
            v.answered_once,
            v.unanswered,
            v.multi_answered,
            v.unacked,
            v.events,
            v.gaps,
            r.duplicate_events,
            v.conflicts,
            v.seq_mismatch,
            v.stray_answers
        );
        if let Some(c) = &r.cross_check {
            println!(
                "  {:<14} stored history (GET /v1/chat/sessions/{{id}}) of {} sessions: {} with \
                 a stored event missing below the client's last seq, {} with a seq the server \
                 lacks, {} unreadable; {} only have events stored after the client's last one",
                "", c.checked, c.holes, c.phantom, c.errors, c.later
            );
            if let Some(f) = &c.first_problem {
                println!("  {:<14}   first problem: {f}", "");
            }
            if let Some(f) = &c.first_later {
                println!("  {:<14}   first stored later: {f}", "");
            }
        }
        if !r.disconnect_reasons.is_empty() {
            println!(
                "  {:<14} unexpected disconnects / reconnect failures: {}",
                "", r.disconnect_reasons
            );
        }
        if !r.error_kinds.is_empty() {
            println!("  {:<14} errors: {}", "", r.error_kinds);
        }
        if let Some(f) = &r.first_failure {
            println!("  {:<14} first failed session: {f}", "");
        }
    }
    println!();

    print_verdict(args, reports, echo);
    for r in reports {
        if let Some(out) = &r.server_output {
            println!();
            println!(
                "{} server output (first and last lines; something went wrong above):",
                label(r)
            );
            print!("{out}");
        }
    }
}

fn print_verdict(args: &Args, reports: &[Report], echo: Option<&Report>) {
    println!("verdict");
    let Some(b) = reports.iter().find(|r| r.kind == Some(Kind::Bwenge)) else {
        println!("  (no bwenge run)");
        return;
    };
    let full_hold = args.hold >= Duration::from_secs(300);
    let held_ok = b.sessions >= SESSIONS_TARGET && b.failed == 0 && b.hold.disconnects == 0;
    println!(
        "  idle sessions          {}  {} sessions held {:.0} s{}, {} failed to open, {} \
         disconnects (target >= {SESSIONS_TARGET} for 300 s, 0 disconnects)",
        pass(held_ok && full_hold),
        b.sessions,
        b.held_secs,
        if full_hold {
            ""
        } else {
            " (SHORTER than the target's 300 s: not a full measurement)"
        },
        b.failed,
        b.hold.disconnects
    );
    let kib = b.kib_per_session();
    let echo_kib = echo.and_then(Report::kib_per_session);
    println!(
        "  RSS per idle session   {}  {} KiB (target <= {RSS_TARGET_KIB:.0} KiB; echo baseline \
         {} KiB, ratio {}; aiohttp ~{AIOHTTP_KIB:.0} KiB, context only)",
        pass(kib.is_some_and(|k| k <= RSS_TARGET_KIB)),
        fmt_opt(kib, 2),
        fmt_opt(echo_kib, 2),
        match (kib, echo_kib) {
            (Some(a), Some(e)) => ratio(a, e),
            _ => "-".to_owned(),
        }
    );
    let rate_ok = args.rate >= RATE_TARGET && b.sessions >= SESSIONS_TARGET;
    let rate_note = if rate_ok {
        String::new()
    } else {
        format!(
            " (at {} q/s over {} sessions, not the target's {RATE_TARGET:.0} over \
             {SESSIONS_TARGET})",
            args.rate, b.sessions
        )
    };
    let ack99 = percentile_ms(&b.ack, 0.99);
    let e99 = echo.map(|e| percentile_ms(&e.ack, 0.99));
    println!(
        "  ack p99                {}  {ack99:.2} ms (target <= {ACK_P99_TARGET_MS:.0} ms; echo \
         {} ms, ratio {}){rate_note}",
        pass(rate_ok && ack99 <= ACK_P99_TARGET_MS),
        fmt_opt(e99, 2),
        e99.map_or("-".to_owned(), |e| ratio(ack99, e))
    );
    let d99 = percentile_ms(&b.delta, 0.99);
    println!(
        "  first delta p99        {}  {d99:.2} ms (target <= {DELTA_P99_TARGET_MS:.0} ms; ratio \
         to the echo round trip {}){rate_note}",
        pass(rate_ok && d99 <= DELTA_P99_TARGET_MS),
        e99.map_or("-".to_owned(), |e| ratio(d99, e))
    );
    let errors = b.load.errors() + b.unanswered_after_drain.max(0) as u64;
    println!(
        "  errors under load      {}  {} (target 0: {} error frames, {} disconnects, {} bad \
         frames, {} not dispatched, {} unanswered after the drain; answers without a delta: {})",
        pass(errors == 0),
        errors,
        b.load.error_frames,
        b.load.disconnects,
        b.load.bad_frames,
        b.load.backlog,
        b.unanswered_after_drain,
        b.load.no_delta
    );
    let n = b.storm_clients as u64;
    let window_ok = args.storm_window <= STORM_WINDOW_TARGET;
    println!(
        "  storm: all resumed     {}  {}/{n} resumed, {} refused (target: all){}",
        pass(n > 0 && b.resumed == n && b.resume_failed == 0 && window_ok),
        b.resumed,
        b.resume_failed,
        if window_ok {
            String::new()
        } else {
            format!(
                " (window {:.0?}, longer than the target's 10 s)",
                args.storm_window
            )
        }
    );
    let v = &b.verify;
    let cross_bad = b.cross_check.as_ref().map_or(0, CrossCheck::problems);
    println!(
        "  storm: nothing lost    {}  {} problems over {} acked questions ({} unanswered, {} \
         answered twice+, {} gaps, {} conflicting duplicates, {} seq mismatches, {} stray \
         answers; {} sampled stored histories with a hole or a phantom) (target 0; {} of {} questions never acked: \
         refused with an error frame, or sent on a socket that never resumed)",
        pass(v.lost() == 0 && cross_bad == 0 && b.caught_up == n),
        v.lost() + cross_bad as u64,
        v.acked,
        v.unanswered,
        v.multi_answered,
        v.gaps,
        v.conflicts,
        v.seq_mismatch,
        v.stray_answers,
        cross_bad,
        v.unacked,
        v.questions
    );
    println!(
        "  storm: caught up       {}/{n} clients; p50 {} ms, p99 {} ms from reconnect start \
         (reported; echo baseline p99 {} ms, ratio {})",
        b.caught_up,
        ms(&b.caught_up_ns, 0.5),
        ms(&b.caught_up_ns, 0.99),
        echo.map_or("-".to_owned(), |e| ms(&e.caught_up_ns, 0.99)),
        echo.map_or("-".to_owned(), |e| ratio(
            percentile_ms(&b.caught_up_ns, 0.99),
            percentile_ms(&e.caught_up_ns, 0.99)
        ))
    );
}
