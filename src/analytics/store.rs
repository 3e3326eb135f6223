//! Analytics' SQL, the same on SQLite and PostgreSQL (but for the JSON of
//! [`questions_page`]). Every read is scoped to one organisation
//! (`organization_id = $1`). Days are `YYYY-MM-DD`
//! text, so ranges compare as strings on both databases.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::model::{Event, Period};
use crate::db::{Db, StoreError, placeholders};
use crate::ids::{EventId, OrgId, PersonaId, SessionId, UserId};
use crate::{on_db, on_db_write};

/// The persona or member of a total that has none (or was erased).
pub fn nil_persona() -> PersonaId {
    PersonaId(uuid::Uuid::nil())
}

pub fn nil_user() -> UserId {
    UserId(uuid::Uuid::nil())
}

/// An event as written, with its day and (declined questions) vector.
pub struct StoredEvent {
    pub event: Event,
    pub day: String,
    pub embedding: Option<Vec<u8>>,
}

/// What one batch adds to one row of daily totals.
#[derive(Debug, Clone)]
pub struct DailyDelta {
    pub org: OrgId,
    pub day: String,
    pub persona: PersonaId,
    pub user: UserId,
    pub student: bool,
    pub questions: i64,
    pub grounded: i64,
    pub refusals: i64,
    pub flagged: i64,
    pub not_covered: i64,
    pub sessions: i64,
    pub resumes: i64,
    pub logins: i64,
    pub last_at: DateTime<Utc>,
}

impl Default for DailyDelta {
    fn default() -> Self {
        Self {
            org: OrgId(uuid::Uuid::nil()),
            day: String::new(),
            persona: nil_persona(),
            user: nil_user(),
            student: false,
            questions: 0,
            grounded: 0,
            refusals: 0,
            flagged: 0,
            not_covered: 0,
            sessions: 0,
            resumes: 0,
            logins: 0,
            last_at: DateTime::<Utc>::MIN_UTC,
        }
    }
}

/// What one batch adds to one bucket of the first-token histogram of an
/// organisation, day and persona (see [`latency_bucket`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyDelta {
    pub org: OrgId,
    pub day: String,
    pub persona: PersonaId,
    pub bucket: i32,
    pub count: i64,
}

/// Latencies below this many milliseconds have a bucket each.
const EXACT_BELOW: i64 = 128;
/// Sub-buckets per power of two above [`EXACT_BELOW`]: a bucket's floor is
/// within 1/64 of every value in it.
const PER_OCTAVE: i64 = 64;
/// The largest latency told apart (about 25 days); longer ones share its
/// bucket.
const LATENCY_MAX_MS: i64 = (1 << 31) - 1;

/// The histogram bucket of a first-token latency: `ms` itself below 128,
/// then 64 buckets per power of two. Migration 0009 builds the same
/// buckets in SQL for events recorded before it.
pub fn latency_bucket(ms: i64) -> i32 {
    let ms = ms.clamp(0, LATENCY_MAX_MS);
    if ms < EXACT_BELOW {
        return ms as i32;
    }
    let octave = 63 - i64::from(ms.leading_zeros()); // 7..=30
    let shift = octave - 6;
    (EXACT_BELOW + (octave - 7) * PER_OCTAVE + ((ms >> shift) - PER_OCTAVE)) as i32
}

/// The smallest latency of a bucket (what a percentile reports).
pub fn bucket_floor(bucket: i32) -> i64 {
    let b = i64::from(bucket.max(0));
    if b < EXACT_BELOW {
        return b;
    }
    let octave = 7 + (b - EXACT_BELOW) / PER_OCTAVE;
    let k = (b - EXACT_BELOW) % PER_OCTAVE;
    (PER_OCTAVE + k) << (octave - 6)
}

/// One batch as written: the events, and what they add to the daily totals
/// and the latency histogram. Built by [`Batch::new`], the one place events
/// are counted (the recorder and the analytics bench both use it).
#[derive(Default)]
pub struct Batch {
    pub events: Vec<StoredEvent>,
    pub totals: Vec<DailyDelta>,
    pub latency: Vec<LatencyDelta>,
}

impl Batch {
    /// Counts `events`; `student(user)` says whether a member is a student.
    /// Events without a member count in no member's totals (but a question's
    /// latency counts all the same).
    pub fn new(events: Vec<StoredEvent>, student: impl Fn(UserId) -> bool) -> Self {
        use super::model::{FLAG_REASONS, Kind, NOT_COVERED};
        let mut totals: HashMap<(OrgId, &str, PersonaId, UserId), DailyDelta> = HashMap::new();
        let mut latency: HashMap<(OrgId, &str, PersonaId, i32), i64> = HashMap::new();
        for s in &events {
            let e = &s.event;
            let persona = e.persona.unwrap_or_else(nil_persona);
            if let (Kind::Question, Some(ms)) = (e.kind, e.first_token_ms) {
                *latency
                    .entry((e.org, s.day.as_str(), persona, latency_bucket(ms)))
                    .or_default() += 1;
            }
            let Some(user) = e.user else { continue };
            let d = totals
                .entry((e.org, s.day.as_str(), persona, user))
                .or_insert_with(|| DailyDelta {
                    org: e.org,
                    day: s.day.clone(),
                    persona,
                    user,
                    student: student(user),
                    last_at: e.at,
                    ..DailyDelta::default()
                });
            d.last_at = d.last_at.max(e.at);
            match e.kind {
                Kind::Question => {
                    d.questions += 1;
                    d.grounded += i64::from(e.grounded == Some(true));
                    if let Some(r) = &e.refusal {
                        d.refusals += 1;
                        d.flagged += i64::from(FLAG_REASONS.contains(&r.as_str()));
                        d.not_covered += i64::from(r == NOT_COVERED);
                    }
                }
                Kind::SessionStarted => d.sessions += 1,
                Kind::SessionResumed => d.resumes += 1,
                Kind::Login => d.logins += 1,
                _ => {}
            }
        }
        // In key order: batches from several nodes then lock the rows they
        // share in the same order and cannot deadlock.
        let mut totals: Vec<_> = totals.into_iter().collect();
        totals.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let totals = totals.into_iter().map(|(_, d)| d).collect();
        let mut latency: Vec<_> = latency.into_iter().collect();
        latency.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let latency = latency
            .into_iter()
            .map(|((org, day, persona, bucket), count)| LatencyDelta {
                org,
                day: day.to_owned(),
                persona,
                bucket,
                count,
            })
            .collect();
        Self {
            events,
            totals,
            latency,
        }
    }
}

/// Of `users`, those that exist, and whether each is a student.
pub async fn student_flags(db: &Db, users: &[UserId]) -> Result<HashMap<UserId, bool>, StoreError> {
    let mut out = HashMap::new();
    for chunk in users.chunks(500) {
        let sql = format!(
            "SELECT id, role FROM users WHERE id IN ({})",
            placeholders(1, chunk.len())
        );
        let rows: Vec<(UserId, String)> = on_db!(db, |pool| {
            let mut q = sqlx::query_as(&sql);
            for u in chunk {
                q = q.bind(*u);
            }
            q.fetch_all(pool).await?
        });
        out.extend(rows.into_iter().map(|(id, role)| (id, role == "student")));
    }
    Ok(out)
}

const INSERT_EVENT: &str = "INSERT INTO analytics_events (id, organization_id, kind, user_id, \
     persona_id, session_id, seq, text, grounded, refusal, first_token_ms, total_ms, provider, \
     detail, embedding, day, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

/// What adding a batch's totals to the stored ones means, shared by the
/// row-at-a-time (SQLite) and the unnested (PostgreSQL) inserts.
macro_rules! daily_conflict {
    () => {
        " ON CONFLICT (organization_id, day, persona_id, user_id) DO UPDATE SET \
         student = excluded.student, \
         questions = analytics_daily.questions + excluded.questions, \
         grounded = analytics_daily.grounded + excluded.grounded, \
         refusals = analytics_daily.refusals + excluded.refusals, \
         flagged = analytics_daily.flagged + excluded.flagged, \
         not_covered = analytics_daily.not_covered + excluded.not_covered, \
         sessions = analytics_daily.sessions + excluded.sessions, \
         resumes = analytics_daily.resumes + excluded.resumes, \
         logins = analytics_daily.logins + excluded.logins, \
         last_at = CASE WHEN excluded.last_at > analytics_daily.last_at \
                   THEN excluded.last_at ELSE analytics_daily.last_at END"
    };
}

macro_rules! latency_conflict {
    () => {
        " ON CONFLICT (organization_id, day, persona_id, bucket) DO UPDATE SET \
         count = analytics_latency.count + excluded.count"
    };
}

const UPSERT_DAILY: &str = concat!(
    "INSERT INTO analytics_daily (organization_id, day, persona_id, user_id, student, \
     questions, grounded, refusals, flagged, not_covered, sessions, resumes, logins, last_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    daily_conflict!()
);

const UPSERT_LATENCY: &str = concat!(
    "INSERT INTO analytics_latency (organization_id, day, persona_id, bucket, count) \
     VALUES ($1, $2, $3, $4, $5)",
    latency_conflict!()
);

/// The statements of one batch on SQLite, on `conn` (a savepoint): events,
/// daily totals, latency histogram, a row at a time (statements are
/// prepared once per connection and a row costs no round trip in process).
async fn write_rows_sqlite(
    conn: &mut sqlx::SqliteConnection,
    batch: &Batch,
) -> Result<(), sqlx::Error> {
    for s in &batch.events {
        let e = &s.event;
        sqlx::query(INSERT_EVENT)
            .bind(e.id)
            .bind(e.org)
            .bind(e.kind.as_str())
            .bind(e.user)
            .bind(e.persona)
            .bind(e.session)
            .bind(e.seq)
            .bind(e.text.as_deref())
            .bind(e.grounded)
            .bind(e.refusal.as_deref())
            .bind(e.first_token_ms)
            .bind(e.total_ms)
            .bind(e.provider.as_deref())
            .bind(e.detail.to_string())
            .bind(s.embedding.as_deref())
            .bind(&s.day)
            .bind(e.at)
            .execute(&mut *conn)
            .await?;
    }
    for d in &batch.totals {
        sqlx::query(UPSERT_DAILY)
            .bind(d.org)
            .bind(&d.day)
            .bind(d.persona)
            .bind(d.user)
            .bind(d.student)
            .bind(d.questions)
            .bind(d.grounded)
            .bind(d.refusals)
            .bind(d.flagged)
            .bind(d.not_covered)
            .bind(d.sessions)
            .bind(d.resumes)
            .bind(d.logins)
            .bind(d.last_at)
            .execute(&mut *conn)
            .await?;
    }
    for l in &batch.latency {
        sqlx::query(UPSERT_LATENCY)
            .bind(l.org)
            .bind(&l.day)
            .bind(l.persona)
            .bind(l.bucket)
            .bind(l.count)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The statements of one batch on PostgreSQL, on `conn` (a transaction):
/// one statement per table, its rows sent as arrays and unnested by the
/// server, so a batch of a few hundred events costs three round trips, not
/// one per row. The totals of a batch have one row per key ([`Batch::new`]
/// sums them), as `ON CONFLICT DO UPDATE` needs within one statement.
async fn write_rows_pg(conn: &mut sqlx::PgConnection, batch: &Batch) -> Result<(), sqlx::Error> {
    let events = &batch.events;
    if !events.is_empty() {
        let ev = |f: fn(&Event) -> Option<uuid::Uuid>| {
            events.iter().map(|s| f(&s.event)).collect::<Vec<_>>()
        };
        sqlx::query(
            "INSERT INTO analytics_events (id, organization_id, kind, user_id, persona_id, \
             session_id, seq, text, grounded, refusal, first_token_ms, total_ms, provider, detail, \
             embedding, day, at) SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], \
             $4::uuid[], $5::uuid[], $6::uuid[], $7::int8[], $8::text[], $9::bool[], $10::text[], \
             $11::int8[], $12::int8[], $13::text[], $14::text[], $15::bytea[], $16::text[], \
             $17::timestamptz[])",
        )
        .bind(ev(|e| Some(e.id.0)))
        .bind(ev(|e| Some(e.org.0)))
        .bind(
            events
                .iter()
                .map(|s| s.event.kind.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(ev(|e| e.user.map(|u| u.0)))
        .bind(ev(|e| e.persona.map(|p| p.0)))
        .bind(ev(|e| e.session.map(|s| s.0)))
        .bind(events.iter().map(|s| s.event.seq).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|s| s.event.text.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|s| s.event.grounded).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|s| s.event.refusal.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|s| s.event.first_token_ms)
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|s| s.event.total_ms).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|s| s.event.provider.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|s| s.event.detail.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|s| s.embedding.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|s| s.day.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|s| s.event.at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let totals = &batch.totals;
    if !totals.is_empty() {
        let col = |f: fn(&DailyDelta) -> i64| totals.iter().map(f).collect::<Vec<_>>();
        sqlx::query(concat!(
            "INSERT INTO analytics_daily (organization_id, day, persona_id, user_id, student, \
             questions, grounded, refusals, flagged, not_covered, sessions, resumes, logins, \
             last_at) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], \
             $5::bool[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], \
             $11::int8[], $12::int8[], $13::int8[], $14::timestamptz[])",
            daily_conflict!()
        ))
        .bind(totals.iter().map(|d| d.org.0).collect::<Vec<_>>())
        .bind(totals.iter().map(|d| d.day.as_str()).collect::<Vec<_>>())
        .bind(totals.iter().map(|d| d.persona.0).collect::<Vec<_>>())
        .bind(totals.iter().map(|d| d.user.0).collect::<Vec<_>>())
        .bind(totals.iter().map(|d| d.student).collect::<Vec<_>>())
        .bind(col(|d| d.questions))
        .bind(col(|d| d.grounded))
        .bind(col(|d| d.refusals))
        .bind(col(|d| d.flagged))
        .bind(col(|d| d.not_covered))
        .bind(col(|d| d.sessions))
        .bind(col(|d| d.resumes))
        .bind(col(|d| d.logins))
        .bind(totals.iter().map(|d| d.last_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let latency = &batch.latency;
    if !latency.is_empty() {
        sqlx::query(concat!(
            "INSERT INTO analytics_latency (organization_id, day, persona_id, bucket, count) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::int4[], $5::int8[])",
            latency_conflict!()
        ))
        .bind(latency.iter().map(|l| l.org.0).collect::<Vec<_>>())
        .bind(latency.iter().map(|l| l.day.as_str()).collect::<Vec<_>>())
        .bind(latency.iter().map(|l| l.persona.0).collect::<Vec<_>>())
        .bind(latency.iter().map(|l| l.bucket).collect::<Vec<_>>())
        .bind(latency.iter().map(|l| l.count).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Writes a batch of events with the totals they change, all or nothing:
/// totals never count an event that is not stored.
///
/// On SQLite the batch joins the writer's next group commit (in a
/// savepoint of its own) instead of taking a turn and a commit of its own:
/// a chat write queued meanwhile waits for a few hundred inserts, never for
/// a second transaction's sync to disk. On PostgreSQL it is a transaction.
pub async fn write_batch(db: &Db, batch: std::sync::Arc<Batch>) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(_, gate) => {
            gate.in_group(move |conn| {
                Box::pin(async move {
                    use sqlx::Connection;
                    // A savepoint: a failure undoes this batch only.
                    let mut sp = conn.begin().await?;
                    write_rows_sqlite(&mut sp, &batch).await?;
                    sp.commit().await
                })
            })
            .await
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            write_rows_pg(&mut tx, &batch).await?;
            tx.commit().await?;
            Ok(())
        }
    }
}

/// A report's scope: organisation, days (inclusive), optional persona.
#[derive(Debug, Clone)]
pub struct Scope {
    pub org: OrgId,
    pub from: String,
    pub to: String,
    pub persona: Option<PersonaId>,
    /// The days as times ([`Period::times`]): reads of raw events bound
    /// `at` by these as well as `day` by the days, so that a walk in time
    /// order starts and stops at the period's edges.
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Scope {
    pub fn new(org: OrgId, p: &Period, persona: Option<PersonaId>) -> Self {
        let (since, until) = p.times();
        Scope {
            org,
            from: p.from_str(),
            to: p.to_str(),
            persona,
            since,
            until,
        }
    }
}

/// The filter every totals read shares: `$1` org, `$2`/`$3` days, `$4`
/// persona or NULL.
const TOTALS_WHERE: &str = "organization_id = $1 AND day >= $2 AND day <= $3 \
     AND ($4 IS NULL OR persona_id = $4)";

#[derive(Debug, Default, sqlx::FromRow)]
pub struct Sums {
    pub questions: i64,
    pub grounded: i64,
    pub refusals: i64,
    pub sessions: i64,
    pub active_students: i64,
}

pub async fn sums(db: &Db, s: &Scope) -> Result<Sums, StoreError> {
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(questions), 0) AS BIGINT) AS questions, \
         CAST(COALESCE(SUM(grounded), 0) AS BIGINT) AS grounded, \
         CAST(COALESCE(SUM(refusals), 0) AS BIGINT) AS refusals, \
         CAST(COALESCE(SUM(sessions), 0) AS BIGINT) AS sessions, \
         COUNT(DISTINCT CASE WHEN student = TRUE AND (questions > 0 OR sessions > 0) \
               THEN user_id END) AS active_students \
         FROM analytics_daily WHERE {TOTALS_WHERE}"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(s.org)
        .bind(&s.from)
        .bind(&s.to)
        .bind(s.persona)
        .fetch_one(pool)
        .await?))
}

/// `(day, questions, active students)` of the days with any activity.
pub async fn by_day(
    db: &Db,
    s: &Scope,
    user: Option<UserId>,
) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let sql = format!(
        "SELECT day, CAST(COALESCE(SUM(questions), 0) AS BIGINT), \
         COUNT(DISTINCT CASE WHEN student = TRUE AND (questions > 0 OR sessions > 0) \
               THEN user_id END) \
         FROM analytics_daily WHERE {TOTALS_WHERE} AND ($5 IS NULL OR user_id = $5) \
         GROUP BY day ORDER BY day"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(s.org)
        .bind(&s.from)
        .bind(&s.to)
        .bind(s.persona)
        .bind(user)
        .fetch_all(pool)
        .await?))
}

/// Personas by questions, most first (of one user when given).
pub async fn top_personas(
    db: &Db,
    s: &Scope,
    user: Option<UserId>,
    limit: i64,
) -> Result<Vec<(PersonaId, Option<String>, i64)>, StoreError> {
    let sql = "SELECT d.persona_id, p.name, CAST(SUM(d.questions) AS BIGINT) AS q \
         FROM analytics_daily d \
         LEFT JOIN personas p ON p.id = d.persona_id AND p.organization_id = d.organization_id \
         WHERE d.organization_id = $1 AND d.day >= $2 AND d.day <= $3 \
         AND ($4 IS NULL OR d.persona_id = $4) AND ($5 IS NULL OR d.user_id = $5) \
         AND d.persona_id <> $6 \
         GROUP BY d.persona_id, p.name HAVING SUM(d.questions) > 0 \
         ORDER BY q DESC, d.persona_id LIMIT $7";
    Ok(on_db!(db, |pool| sqlx::query_as(sql)
        .bind(s.org)
        .bind(&s.from)
        .bind(&s.to)
        .bind(s.persona)
        .bind(user)
        .bind(nil_persona())
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

const QUESTIONS_WHERE: &str = "organization_id = $1 AND kind = 'question' AND day >= $2 \
     AND day <= $3 AND ($4 IS NULL OR persona_id = $4)";

/// The first-token latencies at the given fractions (nearest rank), read
/// from the latency histogram of the scope: exact below 128 ms, the floor of
/// a bucket 1/64 wide above.
pub async fn first_token_percentiles(
    db: &Db,
    s: &Scope,
    fractions: &[f64],
) -> Result<Vec<Option<i64>>, StoreError> {
    let sql = format!(
        "SELECT bucket, CAST(SUM(count) AS BIGINT) FROM analytics_latency \
         WHERE {TOTALS_WHERE} GROUP BY bucket ORDER BY bucket"
    );
    let buckets: Vec<(i32, i64)> = on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(s.org)
        .bind(&s.from)
        .bind(&s.to)
        .bind(s.persona)
        .fetch_all(pool)
        .await?);
    Ok(percentiles_of(&buckets, fractions))
}

/// Nearest-rank percentiles of a histogram given as `(bucket, count)` in
/// bucket order.
fn percentiles_of(buckets: &[(i32, i64)], fractions: &[f64]) -> Vec<Option<i64>> {
    let n: i64 = buckets.iter().map(|(_, c)| *c).sum();
    fractions
        .iter()
        .map(|f| {
            if n <= 0 {
                return None;
            }
            let rank = ((f * n as f64).ceil() as i64).clamp(1, n);
            let mut seen = 0;
            buckets.iter().find_map(|(b, c)| {
                seen += c;
                (seen >= rank).then(|| bucket_floor(*b))
            })
        })
        .collect()
}

/// A member's activity in a scope, split at `middle` for the trend.
#[derive(Debug, sqlx::FromRow)]
pub struct StudentAgg {
    pub user_id: UserId,
    pub full_name: String,
    pub created_at: DateTime<Utc>,
    pub questions: i64,
    pub sessions: i64,
    pub active_days: i64,
    pub last_active_at: Option<DateTime<Utc>>,
    pub first_half: i64,
    pub second_half: i64,
}

/// Members with their totals over the scope. The organisation's totals
/// of the period are read once, in key order, and summed per member
/// (`totals`: a filter on them, e.g. one member), then joined to the
/// members `filter` picks; joining each member to the totals instead
/// (`users LEFT JOIN analytics_daily`) let SQLite walk the organisation's
/// whole period once per member.
fn student_agg_sql(filter: &str, totals: &str) -> String {
    format!(
        "SELECT u.id AS user_id, u.full_name, u.created_at, \
         CAST(COALESCE(t.questions, 0) AS BIGINT) AS questions, \
         CAST(COALESCE(t.sessions, 0) AS BIGINT) AS sessions, \
         CAST(COALESCE(t.active_days, 0) AS BIGINT) AS active_days, \
         t.last_active_at, \
         CAST(COALESCE(t.first_half, 0) AS BIGINT) AS first_half, \
         CAST(COALESCE(t.second_half, 0) AS BIGINT) AS second_half \
         FROM users u LEFT JOIN ( \
           SELECT user_id, SUM(questions) AS questions, SUM(sessions) AS sessions, \
           COUNT(DISTINCT CASE WHEN questions > 0 OR sessions > 0 THEN day END) AS active_days, \
           MAX(last_at) AS last_active_at, \
           SUM(CASE WHEN day < $5 THEN questions ELSE 0 END) AS first_half, \
           SUM(CASE WHEN day >= $5 THEN questions ELSE 0 END) AS second_half \
           FROM analytics_daily \
           WHERE organization_id = $1 AND day >= $2 AND day <= $3 \
           AND ($4 IS NULL OR persona_id = $4) AND {totals} \
           GROUP BY user_id \
         ) t ON t.user_id = u.id \
         WHERE u.organization_id = $1 AND {filter}"
    )
}

/// The organisation's students (oldest account first), a page after
/// `after` (created_at, id).
pub async fn students(
    db: &Db,
    s: &Scope,
    middle: &str,
    after: Option<(DateTime<Utc>, UserId)>,
    limit: i64,
) -> Result<Vec<StudentAgg>, StoreError> {
    let sql = format!(
        "{} ORDER BY u.created_at, u.id LIMIT $8",
        student_agg_sql(
            "u.role = 'student' AND ($6 IS NULL OR u.created_at > $6 \
             OR (u.created_at = $6 AND u.id > $7))",
            "1 = 1"
        )
    );
    let (t, id) = match after {
        Some((t, id)) => (Some(t), Some(id)),
        None => (None, None),
    };
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(s.org)
        .bind(&s.from)
        .bind(&s.to)
        .bind(s.persona)
        .bind(middle)
        .bind(t)
        .bind(id)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// One member of the organisation (any role), or `None`.
pub async fn student(
    db: &Db,
    s: &Scope,
    middle: &str,
    user: UserId,
) -> Result<Option<StudentAgg>, StoreError> {
    let sql = student_agg_sql("u.id = $6", "user_id = $6");
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(s.org)
        .bind(&s.from)
        .bind(&s.to)
        .bind(s.persona)
        .bind(middle)
        .bind(user)
        .fetch_optional(pool)
        .await?))
}

#[derive(Debug, sqlx::FromRow)]
pub struct QuestionRow {
    pub id: EventId,
    pub at: DateTime<Utc>,
    pub user_id: Option<UserId>,
    pub full_name: Option<String>,
    pub persona_id: Option<PersonaId>,
    pub session_id: Option<SessionId>,
    pub seq: Option<i64>,
    pub text: Option<String>,
    pub grounded: Option<bool>,
    pub refusal: Option<String>,
    pub first_token_ms: Option<i64>,
    pub total_ms: Option<i64>,
    pub provider: Option<String>,
}

const QUESTION_COLUMNS: &str = "e.id, e.at, e.user_id, u.full_name, e.persona_id, e.session_id, \
     e.seq, e.text, e.grounded, e.refusal, e.first_token_ms, e.total_ms, e.provider";

/// Binds a scope (`$1`–`$4`: organisation, first and last day, persona),
/// a keyset cursor (`$5`, `$6`: at, id) and a page size (`$7`), the
/// parameters of every paged question query here.
macro_rules! bind_page {
    ($query:expr, $s:expr, $at:expr, $id:expr, $limit:expr) => {
        $query
            .bind($s.org)
            .bind(&$s.from)
            .bind(&$s.to)
            .bind($s.persona)
            .bind($at)
            .bind($id)
            .bind($limit)
    };
}

/// A member's newest questions of the scope.
pub async fn recent_questions(
    db: &Db,
    s: &Scope,
    user: UserId,
    limit: i64,
) -> Result<Vec<QuestionRow>, StoreError> {
    let sql = format!(
        "SELECT {QUESTION_COLUMNS} FROM analytics_events e \
         LEFT JOIN users u ON u.id = e.user_id AND u.organization_id = e.organization_id \
         WHERE e.organization_id = $1 AND e.kind = 'question' AND e.day >= $2 AND e.day <= $3 \
         AND ($4 IS NULL OR e.persona_id = $4) AND e.user_id = $5 \
         AND e.at >= $7 AND e.at < $8 ORDER BY e.at DESC, e.id DESC LIMIT $6"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(s.org)
        .bind(&s.from)
        .bind(&s.to)
        .bind(s.persona)
        .bind(user)
        .bind(limit)
        .bind(s.since)
        .bind(s.until)
        .fetch_all(pool)
        .await?))
}

/// Flagged questions (safety, blocked topic), newest first, a page after
/// `after` (at, id).
pub async fn flags(
    db: &Db,
    s: &Scope,
    after: Option<(DateTime<Utc>, EventId)>,
    limit: i64,
) -> Result<Vec<QuestionRow>, StoreError> {
    let sql = format!(
        "SELECT {QUESTION_COLUMNS} FROM analytics_events e \
         LEFT JOIN users u ON u.id = e.user_id AND u.organization_id = e.organization_id \
         WHERE e.organization_id = $1 AND e.kind = 'question' AND e.day >= $2 AND e.day <= $3 \
         AND ($4 IS NULL OR e.persona_id = $4) AND e.refusal IN ('safety', 'blocked_topic') \
         AND ($5 IS NULL OR e.at < $5 OR (e.at = $5 AND e.id < $6)) \
         AND e.at >= $8 AND e.at < $9 ORDER BY e.at DESC, e.id DESC LIMIT $7"
    );
    let (t, id) = match after {
        Some((t, id)) => (Some(t), Some(id)),
        None => (None, None),
    };
    Ok(on_db!(db, |pool| bind_page!(
        sqlx::query_as(&sql),
        s,
        t,
        id,
        limit
    )
    .bind(s.since)
    .bind(s.until)
    .fetch_all(pool)
    .await?))
}

/// The rows of a page of [`questions_page`], before they are aggregated
/// (public for `bench/analytics`, which reads them row by row as its
/// baseline).
pub const QUESTIONS_PAGE: &str = "SELECT e.id, e.at, e.user_id, u.full_name, e.persona_id, \
     e.session_id, e.seq, e.text, e.grounded, e.refusal, e.first_token_ms, e.total_ms, \
     e.provider FROM analytics_events e \
     LEFT JOIN users u ON u.id = e.user_id AND u.organization_id = e.organization_id \
     WHERE e.organization_id = $1 AND e.kind = 'question' AND e.day >= $2 AND e.day <= $3 \
     AND ($4 IS NULL OR e.persona_id = $4) AND (e.at, e.id) > ($5, $6) \
     ORDER BY e.at, e.id LIMIT $7";

/// Every question of the scope, oldest first, a page after `after` (at,
/// id): a range search of the `(organization_id, kind, at, id)` index.
///
/// On SQLite the rows leave the database as one JSON array per page
/// instead of one driver row each. Profiled (`bench/analytics`), a page
/// read row by row spent most of its time outside SQLite: handing each row
/// from the driver's worker thread to the task (a futex wake per row) and
/// copying each of its 13 values into an allocation of its own. As one
/// value per page, the rows cost SQLite's JSON functions and one parse
/// here (1.44× the rows per second). SQLite stores ids as 16-byte blobs,
/// sent as hex.
///
/// PostgreSQL's driver reads rows off the socket in the task, with no
/// hand-off, and its `json_build_array` costs more than it saves: over a
/// million rows, rows read one by one came at 131k rows/s against 75k as
/// JSON. So there the page is read as rows.
pub async fn questions_page(
    db: &Db,
    s: &Scope,
    after: Option<(DateTime<Utc>, EventId)>,
    limit: i64,
) -> Result<Vec<QuestionRow>, StoreError> {
    // The first page starts where the period does (no event has the nil
    // id), not at the organisation's oldest question.
    let (t, id) = after.unwrap_or((s.since, EventId(uuid::Uuid::nil())));
    // Unprepared: planned with its values every time. Cached, PostgreSQL
    // soon settles on a generic plan that reads the organisation's whole
    // year by day and sorts it for every page (0.4 s a page at 500k
    // questions) instead of walking the `at` order and stopping at `limit`.
    macro_rules! page {
        ($query:expr) => {
            bind_page!($query.persistent(false), s, t, id, limit)
        };
    }
    let json: Option<String> = match db {
        Db::Sqlite(pool, _) => {
            page!(sqlx::query_scalar(SQLITE_QUESTIONS_PAGE.as_str()))
                .fetch_one(pool)
                .await?
        }
        Db::Postgres(pool) => {
            return Ok(page!(sqlx::query_as(QUESTIONS_PAGE))
                .fetch_all(pool)
                .await?);
        }
    };
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    serde_json::from_str::<Vec<JsonQuestion<'_>>>(&json)
        .map_err(anyhow::Error::new)
        .and_then(|rows| rows.into_iter().map(JsonQuestion::into_row).collect())
        .map_err(|e| StoreError::Other(e.context("decoding a page of the questions export")))
}

/// [`QUESTIONS_PAGE`] aggregated on SQLite (built once).
static SQLITE_QUESTIONS_PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT json_group_array(json_array(q.at, hex(q.id), nullif(hex(q.user_id), ''), \
         q.full_name, nullif(hex(q.persona_id), ''), nullif(hex(q.session_id), ''), \
         q.seq, q.text, q.grounded, q.refusal, q.first_token_ms, q.total_ms, q.provider) \
         ORDER BY q.at, q.id) FROM ({QUESTIONS_PAGE}) q"
    )
});

/// A row of [`questions_page`] as SQLite wrote it.
#[derive(serde::Deserialize)]
struct JsonQuestion<'a>(
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] Option<std::borrow::Cow<'a, str>>,
    Option<String>,
    #[serde(borrow)] Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)] Option<std::borrow::Cow<'a, str>>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

impl JsonQuestion<'_> {
    fn into_row(self) -> anyhow::Result<QuestionRow> {
        use anyhow::Context;
        let uuid = |s: &str| uuid::Uuid::parse_str(s).with_context(|| format!("the id {s:?}"));
        let JsonQuestion(
            at,
            id,
            user_id,
            full_name,
            persona_id,
            session_id,
            seq,
            text,
            grounded,
            refusal,
            first_token_ms,
            total_ms,
            provider,
        ) = self;
        Ok(QuestionRow {
            id: EventId(uuid(&id)?),
            at: parse_time(&at)?,
            user_id: user_id.as_deref().map(uuid).transpose()?.map(UserId),
            full_name,
            persona_id: persona_id.as_deref().map(uuid).transpose()?.map(PersonaId),
            session_id: session_id.as_deref().map(uuid).transpose()?.map(SessionId),
            seq,
            text,
            grounded: grounded.map(|g| g != 0),
            refusal,
            first_token_ms,
            total_ms,
            provider,
        })
    }
}

/// A time as SQLite holds it: the driver's RFC 3339 text (or the same
/// with a space for the `T`, as SQLite's own date functions write it).
fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    use anyhow::Context;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")
        .map(|t| t.to_utc())
        .with_context(|| format!("the time {s:?}"))
}

#[derive(Debug, sqlx::FromRow)]
pub struct DeclinedRow {
    pub text: Option<String>,
    pub persona_id: Option<PersonaId>,
    pub at: DateTime<Utc>,
    pub embedding: Option<Vec<u8>>,
}

/// Questions declined as not covered, newest first. `day` is the UTC date
/// of `at`, so ordering by day first is the same order, and lets the
/// declined-questions index (0011) be read backwards and stop at `limit`.
pub async fn declined(db: &Db, s: &Scope, limit: i64) -> Result<Vec<DeclinedRow>, StoreError> {
    let sql = declined_sql();
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(s.org)
        .bind(&s.from)
        .bind(&s.to)
        .bind(s.persona)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

pub(crate) fn declined_sql() -> String {
    format!(
        "SELECT text, persona_id, at, embedding FROM analytics_events WHERE {QUESTIONS_WHERE} \
         AND refusal = 'not_covered' ORDER BY day DESC, at DESC, id DESC LIMIT $5"
    )
}

/// A row of the daily export: one day and persona.
#[derive(Debug, sqlx::FromRow)]
pub struct DailyRow {
    pub day: String,
    pub persona_id: PersonaId,
    pub questions: i64,
    pub grounded: i64,
    pub refusals: i64,
    pub flagged: i64,
    pub sessions: i64,
    pub logins: i64,
    pub active_students: i64,
}

/// Totals by day and persona, in order, a page at `offset`.
pub async fn daily(
    db: &Db,
    s: &Scope,
    offset: i64,
    limit: i64,
) -> Result<Vec<DailyRow>, StoreError> {
    let sql = format!(
        "SELECT day, persona_id, CAST(SUM(questions) AS BIGINT) AS questions, \
         CAST(SUM(grounded) AS BIGINT) AS grounded, CAST(SUM(refusals) AS BIGINT) AS refusals, \
         CAST(SUM(flagged) AS BIGINT) AS flagged, CAST(SUM(sessions) AS BIGINT) AS sessions, \
         CAST(SUM(logins) AS BIGINT) AS logins, \
         COUNT(DISTINCT CASE WHEN student = TRUE AND (questions > 0 OR sessions > 0) \
               THEN user_id END) AS active_students \
         FROM analytics_daily WHERE {TOTALS_WHERE} \
         GROUP BY day, persona_id ORDER BY day, persona_id LIMIT $5 OFFSET $6"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(s.org)
        .bind(&s.from)
        .bind(&s.to)
        .bind(s.persona)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?))
}

/// Deletes up to `chunk` raw events older than `cutoff`; returns how many.
pub async fn delete_events_before(
    db: &Db,
    cutoff: DateTime<Utc>,
    chunk: i64,
) -> Result<u64, StoreError> {
    // Each row by its key: on SQLite the events are stored by (organisation,
    // kind, at, id) and `id` alone has no index (0012).
    let sql = match db {
        Db::Sqlite(..) => {
            "DELETE FROM analytics_events WHERE (organization_id, kind, at, id) IN \
             (SELECT organization_id, kind, at, id FROM analytics_events WHERE at < $1 LIMIT $2)"
        }
        Db::Postgres(_) => {
            "DELETE FROM analytics_events WHERE id IN \
             (SELECT id FROM analytics_events WHERE at < $1 LIMIT $2)"
        }
    };
    Ok(on_db_write!(db, |pool| sqlx::query(sql)
        .bind(cutoff)
        .bind(chunk)
        .execute(pool)
        .await?
        .rows_affected()))
}

/// Erases a member's analytics: their raw events go, and their daily
/// totals are folded into the organisation's anonymous row (the totals
/// stay, without them). One transaction.
pub async fn erase_user(db: &Db, org: OrgId, user: UserId) -> Result<(), StoreError> {
    on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM analytics_events WHERE organization_id = $1 AND user_id = $2")
            .bind(org)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO analytics_daily (organization_id, day, persona_id, user_id, student, \
             questions, grounded, refusals, flagged, not_covered, sessions, resumes, logins, last_at) \
             SELECT organization_id, day, persona_id, $3, FALSE, SUM(questions), SUM(grounded), \
             SUM(refusals), SUM(flagged), SUM(not_covered), SUM(sessions), SUM(resumes), \
             SUM(logins), MAX(last_at) FROM analytics_daily \
             WHERE organization_id = $1 AND user_id = $2 GROUP BY organization_id, day, persona_id \
             ON CONFLICT (organization_id, day, persona_id, user_id) DO UPDATE SET \
             questions = analytics_daily.questions + excluded.questions, \
             grounded = analytics_daily.grounded + excluded.grounded, \
             refusals = analytics_daily.refusals + excluded.refusals, \
             flagged = analytics_daily.flagged + excluded.flagged, \
             not_covered = analytics_daily.not_covered + excluded.not_covered, \
             sessions = analytics_daily.sessions + excluded.sessions, \
             resumes = analytics_daily.resumes + excluded.resumes, \
             logins = analytics_daily.logins + excluded.logins, \
             last_at = CASE WHEN excluded.last_at > analytics_daily.last_at \
                       THEN excluded.last_at ELSE analytics_daily.last_at END",
        )
        .bind(org)
        .bind(user)
        .bind(nil_user())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM analytics_daily WHERE organization_id = $1 AND user_id = $2")
            .bind(org)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    });
    Ok(())
}

/// Records that the job ran to completion at `at`.
pub async fn set_job_run(db: &Db, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "INSERT INTO analytics_jobs (name, last_run_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at"
    )
    .bind(name)
    .bind(at)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

/// Claims the job's run at `now` unless it last ran after `due_after`:
/// one statement, so of several nodes checking at once only one wins.
pub async fn claim_job(
    db: &Db,
    name: &str,
    now: DateTime<Utc>,
    due_after: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "INSERT INTO analytics_jobs (name, last_run_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at \
         WHERE analytics_jobs.last_run_at <= $3"
    )
    .bind(name)
    .bind(now)
    .bind(due_after)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Staff of every organisation who opted in to the weekly digest:
/// `(org, email, full_name)`.
pub async fn digest_recipients(db: &Db) -> Result<Vec<(OrgId, String, String)>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_as(
        "SELECT organization_id, email, full_name FROM users \
         WHERE weekly_digest = TRUE AND role IN ('admin', 'teacher') \
         ORDER BY organization_id, email"
    )
    .fetch_all(pool)
    .await?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn latency_buckets_are_exact_below_128_ms_and_within_a_64th_above() {
        for ms in 0..128 {
            assert_eq!(bucket_floor(latency_bucket(ms)), ms);
        }
        let mut last = latency_bucket(127);
        for ms in 128..200_000 {
            let b = latency_bucket(ms);
            assert!(b == last || b == last + 1, "buckets are contiguous at {ms}");
            last = b;
            let floor = bucket_floor(b);
            assert!(
                floor <= ms && (ms - floor) * 64 <= floor,
                "{ms} in bucket from {floor}"
            );
        }
        assert_eq!(latency_bucket(-5), 0);
        assert_eq!(latency_bucket(i64::MAX), latency_bucket(LATENCY_MAX_MS));
        assert_eq!(bucket_floor(latency_bucket(1 << 30)), 1 << 30);
    }

    #[test]
    fn a_scope_spans_from_its_first_midnight_to_the_midnight_after_its_last_day() {
        let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let p = Period {
            from: day("2026-11-01"),
            to: day("2026-11-30"),
        };
        let s = Scope::new(OrgId::new(), &p, None);
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        assert_eq!(
            (s.since, s.until),
            (at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))
        );
    }

    #[test]
    fn percentiles_take_the_nearest_rank_of_the_histogram() {
        // 10 ms × 50, 100 ms × 45, 1000 ms × 5.
        let h = [
            (latency_bucket(10), 50),
            (latency_bucket(100), 45),
            (latency_bucket(1000), 5),
        ];
        assert_eq!(
            percentiles_of(&h, &[0.5, 0.51, 0.95, 0.96, 1.0]),
            vec![Some(10), Some(100), Some(100), Some(1000), Some(1000)]
        );
        assert_eq!(percentiles_of(&[], &[0.5]), vec![None]);
    }
}
