//! Analytics reports over a synthetic year: p99 of the overview, students
//! and gaps reports for one organisation over 30 days, and CSV export
//! rows/s with the process's RSS growth, on SQLite and (with
//! `--postgres-url`) PostgreSQL.
//!
//! ```sh
//! cargo run --release -p bwenge-bench --bin analytics -- \
//!     [--orgs 200 --students 20000 --events 10000000] [--postgres-url postgres://…/db] \
//!     [--sqlite-path year.db]
//! ```
//! A year made in a database named by `--sqlite-path` or `--postgres-url`
//! stays there (with its dimensions, in `bench_year`), and a later run
//! with the same dimensions measures it without making it again.
//! The year is made here, with a fixed seed: `--orgs` organisations, each
//! with `students / orgs` students and five personas; `--events` question
//! events, the same number each day of the last 365, written in time order
//! as a live server records them; `--export-rows` of them (default 1
//! million, at most half) belong to the first organisation, whose year the
//! export reads, the rest are spread evenly over the others, and the
//! reports read the second; each event's student and persona are uniform
//! within its organisation; 70% grounded,
//! 15% declined as not covered (from 40 question templates, their vectors
//! from the hashing embedder, as the writer stores them), 10% off subject,
//! 2.5% safety, 2.5% blocked topic; first-token latency uniform 50–2,050 ms.
//! They are counted and written by the server's own code
//! (`analytics::store::Batch` and `write_batch`: events, daily totals and
//! the latency histogram in one transaction per batch). The reports'
//! baseline, measured in the same run, is a `SELECT 1` round trip on the
//! same pool; the export's is the same pages read one driver row at a
//! time (as every other query reads), alternating with the export's own
//! reads, three rounds each. This process uses the server's allocator
//! (jemalloc): the reports and the export run the server's code here. Targets (issue 18): p99 ≤ 50 ms
//! per report; export ≥ 100k rows/s with RSS growth ≤ 50 MB.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bwenge::analytics::model::{Event, Kind, Period};
use bwenge::analytics::routes::csv_row;
use bwenge::analytics::service::{ExportCursor, ExportKind};
use bwenge::analytics::store::{Batch, Scope, StoredEvent, write_batch};
use bwenge::analytics::{AnalyticsService, EventRecorder};
use bwenge::auth::AuthUser;
use bwenge::auth::model::Role;
use bwenge::config::{LoadOptions, Settings};
use bwenge::db::Db;
use bwenge::ids::{EventId, OrgId, PersonaId, SessionId, UserId};
use bwenge::pagination::Page;
use bwenge_bench::{Rng, pass, percentile_ms};
use bwenge_search::{Embedder, HashingEmbedder};
use chrono::{Duration as Days, Utc};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Analytics report latency and CSV export over a synthetic year")]
struct Args {
    #[arg(long, default_value_t = 200)]
    orgs: usize,
    #[arg(long, default_value_t = 20_000)]
    students: usize,
    #[arg(long, default_value_t = 10_000_000)]
    events: usize,
    /// Calls of each report.
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// Question events of the organisation whose year is exported (part
    /// of `--events`; at most half of them).
    #[arg(long, default_value_t = 1_000_000)]
    export_rows: usize,
    /// A PostgreSQL database to fill (its analytics tables should be empty).
    #[arg(long, env = "BWENGE_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Measure PostgreSQL only (with `--postgres-url`), not SQLite first.
    #[arg(long, requires = "postgres_url")]
    skip_sqlite: bool,
    /// Keep the SQLite database in this file (it is otherwise made in a
    /// temporary directory and removed). A database that already holds a
    /// year made with the same `--orgs`, `--students`, `--events` and
    /// `--export-rows` is measured as it is, without making it again; the
    /// same holds for `--postgres-url`.
    #[arg(long)]
    sqlite_path: Option<std::path::PathBuf>,
}

/// The year a database holds, recorded in it once made (`bench_year`).
struct Year {
    /// The organisation whose year is exported.
    heavy_org: OrgId,
    /// The organisation whose month the reports read.
    org: OrgId,
    /// The last day of the year.
    today: chrono::NaiveDate,
}

// The server's allocator: the export and the reports run the server's
// code in this process.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SEED: u64 = 0x00a1_a1f7_1c55_2026;
const BATCH: usize = 5_000;
const TEMPLATES: &[&str] = &[
    "How do rockets reach outer space",
    "What is the stock market",
    "Who painted the Mona Lisa",
    "How does a computer store data",
    "What causes earthquakes under the sea",
    "Why is the sky blue",
    "How do vaccines work",
    "What is a black hole",
    "How do bees make honey",
    "Who invented the telephone",
    "What is inflation in economics",
    "How do airplanes fly",
    "What is climate change",
    "How do magnets work",
    "Why do cats purr",
    "What is the speed of light",
    "How is glass made",
    "Who built the pyramids",
    "What is artificial intelligence",
    "How do submarines dive",
    "What are the rules of chess",
    "How does the internet work",
    "What is democracy",
    "How do plants drink water",
    "What is DNA",
    "How are rainbows formed",
    "What is the largest ocean",
    "How do solar panels work",
    "What causes the seasons",
    "How do fish breathe",
    "What is a volcano made of",
    "Who wrote Hamlet",
    "How do batteries store energy",
    "What is gravity",
    "How does sound travel",
    "What is a tsunami",
    "How do clouds float",
    "What is the human heart made of",
    "How do birds migrate",
    "What is an atom",
];

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("analytics: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("analytics: {e}");
            ExitCode::FAILURE
        }
    }
}

fn rss_bytes() -> u64 {
    bwenge_bench::rss_kib(None).unwrap_or(0) * 1024
}

async fn run(args: Args) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("bwenge-bench-analytics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut targets = Vec::new();
    if !args.skip_sqlite {
        let path = args
            .sqlite_path
            .clone()
            .unwrap_or_else(|| dir.join("bench.db"));
        targets.push(("sqlite", format!("sqlite://{}", path.display())));
    }
    if let Some(pg) = &args.postgres_url {
        targets.push(("postgres", pg.clone()));
    }
    println!(
        "synthetic year: {} organisations, {} students, {} question events",
        args.orgs, args.students, args.events
    );
    for (name, url) in targets {
        bench_one(&args, name, &url, &dir).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn bench_one(
    args: &Args,
    name: &str,
    url: &str,
    dir: &std::path::Path,
) -> Result<(), String> {
    let env: HashMap<String, String> = [
        ("BWENGE_ENV", "test"),
        ("BWENGE_DATABASE_URL", url),
        ("BWENGE_DATA_DIR", dir.to_str().unwrap_or(".")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let (settings, _) = Settings::load(&LoadOptions {
        env,
        ..LoadOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let db = Db::connect(&settings).await.map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(384));
    let year = match made_year(args, &db).await? {
        Some(year) => {
            println!("{name}: measuring the year already made in this database");
            year
        }
        None => make_year(args, name, &db, embedder.as_ref()).await?,
    };
    measure(args, name, &settings, db, embedder, year).await
}

/// Makes the year in `db`, and records it there (`bench_year`).
async fn make_year(
    args: &Args,
    name: &str,
    db: &Db,
    embedder: &dyn Embedder,
) -> Result<Year, String> {
    let vectors = embedder
        .embed(
            &TEMPLATES
                .iter()
                .map(|t| (*t).to_owned())
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let vectors: Vec<Vec<u8>> = vectors
        .iter()
        .map(|v| bwenge::knowledge::index::vector_to_bytes(v))
        .collect();

    // The organisations, their members and personas.
    let started = Instant::now();
    let mut rng = Rng(SEED);
    let per_org_students = (args.students / args.orgs).max(1);
    let now = Utc::now();
    let mut orgs: Vec<(OrgId, Vec<UserId>, Vec<PersonaId>)> = Vec::with_capacity(args.orgs);
    for o in 0..args.orgs {
        let org = OrgId::new();
        let admin = UserId::new();
        bwenge::auth::store::create_org_with_user(
            db,
            &bwenge::auth::store::OrgRow {
                id: org,
                name: format!("School {o}"),
                plan: "free".into(),
                created_at: now,
            },
            &bwenge::auth::store::NewUser {
                id: admin,
                org,
                email: &format!("admin{o}-{admin}@bench.test"),
                full_name: "Admin",
                role: Role::Admin,
                password_hash: "x",
                email_verified: true,
                now,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut students = Vec::with_capacity(per_org_students);
        for s in 0..per_org_students {
            let id = UserId::new();
            bwenge::auth::store::insert_user(
                db,
                &bwenge::auth::store::NewUser {
                    id,
                    org,
                    email: &format!("s{o}-{s}-{id}@bench.test"),
                    full_name: "Student",
                    role: Role::Student,
                    password_hash: "x",
                    email_verified: true,
                    now,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            students.push(id);
        }
        let personas: Vec<PersonaId> = (0..5).map(|_| PersonaId::new()).collect();
        orgs.push((org, students, personas));
    }
    println!(
        "{name}: {} organisations with their members in {:.1} s",
        orgs.len(),
        started.elapsed().as_secs_f64()
    );

    // The year, written day by day in time order as a live server records
    // it. Organisation 0 (the export's) gets `--export-rows` of the events,
    // the others share the rest evenly.
    let started = Instant::now();
    let heavy = args.export_rows.min(args.events / 2);
    let per_day = args.events.div_ceil(365);
    let mut written = 0usize;
    for day in (0..365i64).rev() {
        let start_of_day = (now - Days::days(day)).date_naive();
        let Some(midnight) = start_of_day.and_hms_opt(0, 0, 0) else {
            continue;
        };
        let midnight = midnight.and_utc();
        let n = per_day.min(args.events - written);
        written += n;
        let mut times: Vec<i64> = (0..n).map(|_| rng.below(86_400_000) as i64).collect();
        times.sort_unstable();
        for chunk in times.chunks(BATCH) {
            let mut events = Vec::with_capacity(chunk.len());
            for ms in chunk {
                let at = midnight + Days::milliseconds(*ms);
                let o = if heavy > 0 && rng.below(args.events) < heavy {
                    0
                } else {
                    1 + rng.below(orgs.len().saturating_sub(1).max(1))
                };
                let (org, students, personas) = &orgs[o.min(orgs.len() - 1)];
                let user = students[rng.below(students.len())];
                let persona = personas[rng.below(personas.len())];
                let roll = rng.below(1000);
                let (grounded, refusal) = match roll {
                    0..700 => (true, None),
                    700..850 => (false, Some("not_covered")),
                    850..950 => (false, Some("off_subject")),
                    950..975 => (false, Some("safety")),
                    _ => (false, Some("blocked_topic")),
                };
                let t = rng.below(TEMPLATES.len());
                let mut e = Event::new(*org, Kind::Question, at);
                e.user = Some(user);
                e.persona = Some(persona);
                e.session = Some(SessionId::new());
                e.seq = Some(1 + 2 * rng.below(20) as i64);
                e.text = Some(format!("{}? ({})", TEMPLATES[t], rng.below(100)));
                e.grounded = Some(grounded);
                e.refusal = refusal.map(str::to_owned);
                e.first_token_ms = Some(50 + rng.below(2000) as i64);
                e.total_ms = e.first_token_ms.map(|f| f + 500);
                e.provider = Some("extractive".into());
                events.push(StoredEvent {
                    embedding: (refusal == Some("not_covered")).then(|| vectors[t].clone()),
                    day: e.day(),
                    event: e,
                });
            }
            write_batch(db, Arc::new(Batch::new(events, |_| true)))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name}: made the year in {secs:.1} s ({:.0} events/s through write_batch)",
        written as f64 / secs
    );
    // A year-old PostgreSQL database has been vacuumed and analysed by
    // autovacuum many times (inserts alone trigger it); one filled a
    // minute ago has not: its planner, expecting no rows, sorts an
    // organisation's whole year for every page of the export, and with no
    // page marked all-visible an index-only scan still visits the heap.
    // Do what autovacuum would have done.
    if let Db::Postgres(pool) = &db {
        sqlx::query("VACUUM (ANALYZE)")
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
    }
    let (heavy_org, _, _) = orgs.first().ok_or("no organisation")?;
    let (org, _, _) = orgs.get(1).or(orgs.first()).ok_or("no organisation")?;
    let year = Year {
        heavy_org: *heavy_org,
        org: *org,
        today: now.date_naive(),
    };
    record_year(args, db, &year).await?;
    Ok(year)
}

/// The dimensions of the year, as recorded.
fn dimensions(args: &Args) -> [i64; 4] {
    [args.orgs, args.students, args.events, args.export_rows].map(|n| n as i64)
}

/// The year this database already holds, if it was made with these
/// dimensions.
async fn made_year(args: &Args, db: &Db) -> Result<Option<Year>, String> {
    let row: Option<(OrgId, OrgId, String, i64, i64, i64, i64)> =
        bwenge::on_db!(db, |pool| sqlx::query_as(
            "SELECT heavy_org, org, today, orgs, students, events, export_rows FROM bench_year"
        )
        .fetch_optional(pool)
        .await
        .ok()
        .flatten());
    let Some((heavy_org, org, today, orgs, students, events, export_rows)) = row else {
        return Ok(None);
    };
    if [orgs, students, events, export_rows] != dimensions(args) {
        return Err(format!(
            "this database holds a year of {orgs} organisations, {students} students, \
             {events} events ({export_rows} exported): give the same, or another database"
        ));
    }
    let today = today
        .parse()
        .map_err(|e| format!("bench_year.today: {e}"))?;
    Ok(Some(Year {
        heavy_org,
        org,
        today,
    }))
}

async fn record_year(args: &Args, db: &Db, year: &Year) -> Result<(), String> {
    let [orgs, students, events, export_rows] = dimensions(args);
    bwenge::on_db_write!(db, |pool| {
        sqlx::query(
            "CREATE TABLE bench_year (heavy_org UUID NOT NULL, org UUID NOT NULL, \
             today TEXT NOT NULL, orgs BIGINT NOT NULL, students BIGINT NOT NULL, \
             events BIGINT NOT NULL, export_rows BIGINT NOT NULL)",
        )
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
        sqlx::query("INSERT INTO bench_year VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(year.heavy_org)
            .bind(year.org)
            .bind(year.today.to_string())
            .bind(orgs)
            .bind(students)
            .bind(events)
            .bind(export_rows)
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
    });
    Ok(())
}

/// Measures the reports and the export on the year in `db`.
async fn measure(
    args: &Args,
    name: &str,
    settings: &Settings,
    db: Db,
    embedder: Arc<dyn Embedder>,
    Year {
        heavy_org,
        org,
        today,
    }: Year,
) -> Result<(), String> {
    let a = &settings.analytics;
    let recorder = EventRecorder::start(
        db.clone(),
        embedder.clone(),
        a.queue,
        a.batch,
        std::time::Duration::from_millis(a.linger_ms),
    );
    let svc = AnalyticsService::new(
        db.clone(),
        recorder,
        embedder,
        a.clone(),
        bwenge::clock::Clock::system(),
    );
    let staff = AuthUser {
        user_id: UserId::new(),
        org_id: org,
        role: Role::Admin,
    };
    let month = Period {
        from: today - Days::days(29),
        to: today,
    };

    let mut baseline = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let t = Instant::now();
        db.ping().await.map_err(|e| e.to_string())?;
        baseline.push(t.elapsed().as_nanos() as u64);
    }
    baseline.sort_unstable();
    println!(
        "  baseline SELECT 1: p50 {:.2} ms, p99 {:.2} ms",
        percentile_ms(&baseline, 0.5),
        percentile_ms(&baseline, 0.99)
    );
    for report in ["overview", "students", "gaps"] {
        let mut lat = Vec::with_capacity(args.rounds);
        for _ in 0..args.rounds {
            let t = Instant::now();
            match report {
                "overview" => svc.overview(&staff, month, None).await.map(|_| ()),
                "students" => svc
                    .students(
                        &staff,
                        month,
                        None,
                        Page {
                            limit: 50,
                            after: None,
                        },
                    )
                    .await
                    .map(|_| ()),
                _ => svc.gaps(&staff, month, None).await.map(|_| ()),
            }
            .map_err(|e| e.to_string())?;
            lat.push(t.elapsed().as_nanos() as u64);
        }
        lat.sort_unstable();
        let p99 = percentile_ms(&lat, 0.99);
        println!(
            "  {report:<9} 30 days, one organisation: p50 {:.2} ms, p99 {p99:.2} ms (target ≤ 50 ms) {}",
            percentile_ms(&lat, 0.5),
            pass(p99 <= 50.0)
        );
    }

    // Export: every question of the big organisation's year, as the route
    // does.
    let exporter = AuthUser {
        org_id: heavy_org,
        ..staff
    };
    let year = Period {
        from: today - Days::days(365),
        to: today,
    };
    let rss0 = rss_bytes();
    let mut peak = rss0;
    let t = Instant::now();
    let mut at = ExportCursor::Start;
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let (mut reading, mut writing) = (0.0f64, 0.0f64);
    loop {
        let t = Instant::now();
        let (page, next) = svc
            .export_page(&exporter, ExportKind::Questions, &year, None, at, 1000)
            .await
            .map_err(|e| e.to_string())?;
        reading += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut out = String::new();
        for r in &page {
            csv_row(&mut out, r);
        }
        writing += t.elapsed().as_secs_f64();
        rows += page.len();
        bytes += out.len();
        peak = peak.max(rss_bytes());
        if matches!(next, ExportCursor::Done) {
            break;
        }
        at = next;
    }
    let secs = t.elapsed().as_secs_f64();
    let rate = rows as f64 / secs;
    let growth = peak.saturating_sub(rss0) as f64 / 1e6;
    println!(
        "  export questions: {rows} rows ({:.1} MB) in {secs:.2} s = {rate:.0} rows/s (target ≥ 100k) {}; RSS growth {growth:.1} MB (target ≤ 50) {}",
        bytes as f64 / 1e6,
        pass(rate >= 100_000.0),
        pass(growth <= 50.0)
    );
    println!(
        "    of which reading pages (query, rows, fields as text) {reading:.2} s, CSV {writing:.2} s"
    );
    // The pages alone, as the export reads them (one JSON array each on
    // SQLite; rows on PostgreSQL, where the two ways are the same query)
    // against one driver row at a time (every other query's way): three
    // rounds each, alternating, medians.
    let scope = Scope::new(heavy_org, &year, None);
    let (mut export, mut one_by_one) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        one_by_one.push(read_pages(&db, &scope, PageRead::OneByOne).await?);
        export.push(read_pages(&db, &scope, PageRead::Export).await?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (export, one_by_one) = (median(&mut export), median(&mut one_by_one));
    println!(
        "  reading the {rows} rows' pages, median of 3: as the export does ({}) {:.0} rows/s; \
         baseline, one driver row at a time, {:.0} rows/s; ratio {:.2}",
        if name == "sqlite" { "JSON" } else { "rows" },
        rows as f64 / export,
        rows as f64 / one_by_one,
        one_by_one / export
    );
    db.close().await;
    Ok(())
}

#[derive(Clone, Copy)]
enum PageRead {
    /// `analytics::store::questions_page`, as the export reads.
    Export,
    /// `analytics::store::QUESTIONS_PAGE` (the same query without the
    /// aggregation), one driver row at a time, as every other query reads.
    OneByOne,
}

/// Reads every page of the scope's questions; seconds.
async fn read_pages(db: &Db, scope: &Scope, how: PageRead) -> Result<f64, String> {
    use bwenge::analytics::store::{QUESTIONS_PAGE, QuestionRow, questions_page};
    let mut after = None;
    let t = Instant::now();
    loop {
        let page: Vec<QuestionRow> = match how {
            PageRead::Export => questions_page(db, scope, after, 1000)
                .await
                .map_err(|e| e.to_string())?,
            PageRead::OneByOne => {
                let (at, id) = after.unwrap_or((
                    chrono::DateTime::<Utc>::UNIX_EPOCH,
                    EventId(uuid::Uuid::nil()),
                ));
                // Unprepared, as the export's own query runs (a cached
                // statement gets PostgreSQL's slow generic plan).
                bwenge::on_db!(db, |pool| sqlx::query_as(QUESTIONS_PAGE)
                    .persistent(false)
                    .bind(scope.org)
                    .bind(&scope.from)
                    .bind(&scope.to)
                    .bind(scope.persona)
                    .bind(at)
                    .bind(id)
                    .bind(1000i64)
                    .fetch_all(pool)
                    .await
                    .map_err(|e| e.to_string())?)
            }
        };
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some((last.at, last.id)),
            _ => break,
        }
    }
    Ok(t.elapsed().as_secs_f64())
}
