//! Storage: one pool, SQLite (the embedded default) or PostgreSQL.
//!
//! Queries are written once in portable SQL with `$1`-style parameters (SQLite
//! accepts them too) and run on either pool through [`on_db!`], which expands
//! the same code for both drivers. Migrations live in `migrations/sqlite` and
//! `migrations/postgres`, are compiled into the binary, and define the same
//! schema (a test compares them).

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::Settings;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// `$first, $first+1, …` for `n` values: the placeholder list of an
/// `IN (…)` clause (the same syntax works on both drivers).
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The database pool.
#[derive(Clone, Debug)]
pub enum Db {
    /// Readers, and the [`WriteGate`]: SQLite has one writer at a time, so
    /// this process's writers queue there, in order, for its one writing
    /// connection instead of colliding on the file lock.
    Sqlite(SqlitePool, WriteGate),
    Postgres(PgPool),
}

/// Serialises this process's SQLite writes.
///
/// SQLite lets one connection write at a time; a second writer gets
/// `SQLITE_BUSY` and its busy handler *sleeps* (1, 2, 5, … up to 100 ms per
/// try) until the lock is free. Under load (a classroom asking at once)
/// that turns microsecond commits into seconds of waiting and, past the
/// busy timeout, into errors. Writers that go through [`on_db_write!`]
/// queue here instead, first come first served, and each finds the lock
/// free and its connection idle (the gate owns one connection for writing,
/// so a writer never waits behind readers for a connection while others
/// wait for it). Readers never wait (WAL mode). PostgreSQL needs no gate.
#[derive(Clone, Debug)]
pub struct WriteGate {
    turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    writer: SqlitePool,
    group: tokio::sync::mpsc::Sender<GroupWrite>,
}

/// Told, once the group's transaction has committed (`Ok`) or failed, how
/// it ended. Its write must not be reported as done before that.
pub type Committed = Box<dyn FnOnce(Result<(), String>) + Send>;

/// One write of a group commit: runs on the writing connection inside the
/// group's transaction and returns what to do once the group's outcome is
/// known. A statement that fails (say on a unique index) is undone alone,
/// SQLite's default, and the write may go on (look up what is there) on
/// the same connection. Dropped unrun if the group could not start.
pub type GroupWrite = Box<
    dyn for<'c> FnOnce(
            &'c mut sqlx::SqliteConnection,
        ) -> futures_util::future::BoxFuture<'c, Committed>
        + Send,
>;

/// Boxes a closure as a [`GroupWrite`] (a function, so that the closure's
/// signature is inferred from the bound).
pub fn group_write<F>(f: F) -> GroupWrite
where
    F: for<'c> FnOnce(
            &'c mut sqlx::SqliteConnection,
        ) -> futures_util::future::BoxFuture<'c, Committed>
        + Send
        + 'static,
{
    Box::new(f)
}

/// Writes waiting beyond this many are joined to the next group.
const MAX_GROUP: usize = 128;
/// Group writes queued before [`WriteGate::join`] waits.
const GROUP_QUEUE: usize = 4096;

impl WriteGate {
    fn new(writer: SqlitePool) -> anyhow::Result<WriteGate> {
        let turn = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        let (group, queue) = tokio::sync::mpsc::channel(GROUP_QUEUE);
        let committer = GroupCommitter {
            turn: turn.clone(),
            writer: writer.clone(),
            queue,
        };
        std::thread::Builder::new()
            .name("bwenge-db-writer".into())
            .spawn(move || committer.run())
            .context("could not start the database writer thread")?;
        Ok(WriteGate {
            turn,
            writer,
            group,
        })
    }

    /// Queues `write` for the next group commit: many small writes (chat
    /// events) share one transaction, and so one commit, and the writer
    /// that runs them is a thread of its own, never slowed by the
    /// callers' busy executors while it holds the turn. Returns once the
    /// write is queued; its [`Committed`] says how it ended.
    pub async fn join(&self, write: GroupWrite) -> Result<(), StoreError> {
        self.group
            .send(write)
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))
    }

    /// Runs `work` on the writing connection inside the next group commit
    /// and returns its result once the group has committed: what it wrote
    /// is on disk, and shares that commit with the other writes of the
    /// group. A `work` that must be undone alone on failure opens a
    /// savepoint of its own (`conn.begin()`).
    pub async fn in_group<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut sqlx::SqliteConnection,
            )
                -> futures_util::future::BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        let (reply, outcome) = tokio::sync::oneshot::channel::<Result<T, String>>();
        self.join(group_write(move |conn| {
            Box::pin(async move {
                let result = work(conn).await.map_err(|e| e.to_string());
                let committed: Committed = Box::new(move |group: Result<(), String>| {
                    let _ = reply.send(group.and(result));
                });
                committed
            })
        }))
        .await?;
        match outcome.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(StoreError::Other(anyhow::anyhow!(
                "a grouped write failed: {message}"
            ))),
            // Dropped unrun: the group could not start.
            Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolClosed)),
        }
    }

    /// Waits for this process's turn to write. The wait and the time the
    /// turn is held are in `bwenge_db_write_wait_seconds` and
    /// `bwenge_db_write_held_seconds`.
    pub async fn enter(&self) -> WriteTurn<'_> {
        let asked = std::time::Instant::now();
        let guard = self.turn.lock().await;
        let entered = std::time::Instant::now();
        metrics::histogram!("bwenge_db_write_wait_seconds")
            .record(entered.duration_since(asked).as_secs_f64());
        WriteTurn {
            _guard: guard,
            pool: &self.writer,
            entered,
        }
    }
}

/// A turn at the [`WriteGate`]; the next writer goes when it is dropped.
pub struct WriteTurn<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
    pool: &'a SqlitePool,
    entered: std::time::Instant,
}

impl WriteTurn<'_> {
    /// The writing connection's pool (one connection).
    pub fn pool(&self) -> &SqlitePool {
        self.pool
    }
}

/// The group-commit thread: takes what is queued (up to [`MAX_GROUP`]),
/// runs it in one transaction in its turn at the gate, commits, and tells
/// each write how it ended. Ends when every [`WriteGate`] is dropped.
struct GroupCommitter {
    turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    writer: SqlitePool,
    queue: tokio::sync::mpsc::Receiver<GroupWrite>,
}

impl GroupCommitter {
    fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "the database writer thread could not start");
                return;
            }
        };
        runtime.block_on(async move {
            let mut batch = Vec::with_capacity(MAX_GROUP);
            while self.queue.recv_many(&mut batch, MAX_GROUP).await > 0 {
                let size = batch.len();
                let started = std::time::Instant::now();
                let result = self.commit(std::mem::take(&mut batch)).await;
                metrics::histogram!("bwenge_db_group_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("bwenge_group_commit_writes").record(size as f64);
                if let Err(e) = result {
                    tracing::error!(error = %e, writes = size, "a group commit failed");
                }
                batch = Vec::with_capacity(MAX_GROUP);
            }
        });
    }

    async fn commit(&self, batch: Vec<GroupWrite>) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        let _turn = self.turn.lock().await;
        // On an early error the writes are dropped unrun, which their
        // callers see as a failure.
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin().await?;
        let mut done = Vec::with_capacity(batch.len());
        for write in batch {
            done.push(write(&mut tx).await);
        }
        let outcome = tx.commit().await;
        let told = match &outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        for committed in done {
            committed(told.clone());
        }
        outcome
    }
}

impl Drop for WriteTurn<'_> {
    fn drop(&mut self) {
        metrics::histogram!("bwenge_db_write_held_seconds")
            .record(self.entered.elapsed().as_secs_f64());
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool, whichever it is.
/// The body is compiled once per driver.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool, _) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// [`on_db!`] for a body that writes: on SQLite it runs in this process's
/// turn at the [`WriteGate`]. The body must not itself wait for another
/// write through the gate (it is not re-entrant).
#[macro_export]
macro_rules! on_db_write {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(_, gate) => {
                let turn = gate.enter().await;
                let $pool = turn.pool();
                $body
            }
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

impl Db {
    /// Connects to the database the settings name; SQLite files (and their
    /// directory) are created when missing.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Db> {
        let url = settings.database_url();
        let db = &settings.database;
        let acquire = Duration::from_millis(db.acquire_timeout_ms);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(&url)
                .context("BWENGE_DATABASE_URL is not a valid PostgreSQL URL")?;
            let pool = PgPoolOptions::new()
                .max_connections(db.max_connections)
                .acquire_timeout(acquire)
                .connect_with(opts)
                .await
                .context("could not connect to PostgreSQL")?;
            Ok(Db::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(&url)
                .context("BWENGE_DATABASE_URL is not a valid SQLite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk (the WAL synced) before it
                // returns. Chat acknowledges a question only once it is
                // stored, and promises that the ack means durable; NORMAL
                // could lose the last commits to a power cut.
                .synchronous(match db.sqlite_synchronous {
                    crate::config::SqliteSync::Full => SqliteSynchronous::Full,
                    crate::config::SqliteSync::Normal => SqliteSynchronous::Normal,
                })
                .foreign_keys(true)
                .busy_timeout(Duration::from_millis(db.busy_timeout_ms));
            if let Some(dir) = std::path::Path::new(opts.get_filename()).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("could not create the database directory {}", dir.display())
                })?;
            }
            // An in-memory database exists once per connection: keep one,
            // and write through it too.
            let memory = opts.get_filename().as_os_str() == ":memory:";
            let max = if memory { 1 } else { db.max_connections };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire)
                .connect_with(opts.clone())
                .await
                .context("could not open the SQLite database")?;
            let writer = if memory {
                pool.clone()
            } else {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .acquire_timeout(acquire)
                    .connect_with(opts)
                    .await
                    .context("could not open the SQLite database")?
            };
            Ok(Db::Sqlite(pool, WriteGate::new(writer)?))
        } else {
            anyhow::bail!(
                "BWENGE_DATABASE_URL must start with sqlite:// or postgres:// (got another scheme)"
            )
        }
    }

    /// Applies the pending migrations of this dialect.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(_, gate) => SQLITE_MIGRATIONS.run(gate.enter().await.pool()).await,
            Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        }
        .context("applying database migrations failed")
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_db!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))
    }

    pub async fn close(&self) {
        on_db!(self, |pool| pool.close().await);
        if let Db::Sqlite(_, gate) = self {
            gate.writer.close().await;
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(..) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.constraint().unwrap_or_default().to_owned())
            }
            _ => StoreError::Other(anyhow::Error::new(e).context("database query failed")),
        }
    }
}

/// Stores a string-valued enum as TEXT on both databases: one `as_str` to
/// write it and one `FromStr` to read it back, so a row with a value the
/// code does not know fails to decode in one place (an error naming the
/// column) instead of being parsed ad hoc at every use.
#[macro_export]
macro_rules! sql_text_enum {
    ($ty:ty) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $ty
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                let text: &'q str = self.as_str();
                <&'q str as sqlx::Encode<'q, DB>>::encode_by_ref(&text, buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
                Ok(text.parse::<$ty>()?)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use sqlx::Row;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::SQLITE_MIGRATIONS;

    /// An in-memory database with the repository's migrations before
    /// `version` applied.
    async fn migrated_before(version: &str) -> sqlx::SqlitePool {
        let before = tempfile::tempdir().unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if name.as_str() < version {
                std::fs::copy(&path, before.path().join(&name)).unwrap();
            }
        }
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")
            .unwrap()
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(before.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        pool
    }

    /// Two organisations, by id.
    async fn two_schools(pool: &sqlx::SqlitePool) -> (uuid::Uuid, uuid::Uuid) {
        let (org, other) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        for id in [org, other] {
            sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, 'S', $2)")
                .bind(id)
                .bind(chrono::Utc::now())
                .execute(pool)
                .await
                .unwrap();
        }
        (org, other)
    }

    /// A school's existing analytics survive the migration that stores the
    /// totals in key order (0010): same rows, no rowid left, the cascade
    /// from the organisation kept.
    #[tokio::test]
    async fn storing_the_totals_in_key_order_keeps_every_row() {
        let pool = migrated_before("0010").await;
        let (org, other) = two_schools(&pool).await;
        let persona = uuid::Uuid::now_v7();
        for (o, day, q) in [
            (org, "2026-11-02", 3_i64),
            (other, "2026-11-01", 5),
            (org, "2026-11-01", 7),
        ] {
            sqlx::query(
                "INSERT INTO analytics_daily (organization_id, day, persona_id, user_id, student, \
                 questions, grounded, refusals, flagged, not_covered, sessions, resumes, logins, \
                 last_at) VALUES ($1, $2, $3, $4, TRUE, $5, 1, 0, 0, 0, 1, 0, 0, $6)",
            )
            .bind(o)
            .bind(day)
            .bind(persona)
            .bind(uuid::Uuid::now_v7())
            .bind(q)
            .bind(chrono::Utc::now())
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO analytics_latency (organization_id, day, persona_id, bucket, count) \
                 VALUES ($1, $2, $3, 70, $4)",
            )
            .bind(o)
            .bind(day)
            .bind(persona)
            .bind(q)
            .execute(&pool)
            .await
            .unwrap();
        }

        SQLITE_MIGRATIONS.run(&pool).await.unwrap();

        // Every row, now in key order.
        let rows = sqlx::query(
            "SELECT d.day, d.questions, l.count FROM analytics_daily d JOIN analytics_latency l \
             USING (organization_id, day, persona_id) WHERE organization_id = $1",
        )
        .bind(org)
        .fetch_all(&pool)
        .await
        .unwrap();
        let got: Vec<(String, i64, i64)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(
            got,
            [
                ("2026-11-01".to_owned(), 7, 7),
                ("2026-11-02".to_owned(), 3, 3)
            ]
        );
        for table in ["analytics_daily", "analytics_latency"] {
            let rowid = sqlx::query(&format!("SELECT rowid FROM {table}"))
                .fetch_all(&pool)
                .await;
            assert!(rowid.is_err(), "{table} still has a rowid");
        }
        // Removing a school still removes its totals.
        sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(other)
            .execute(&pool)
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM analytics_daily")
            .fetch_one(&pool)
            .await
            .unwrap();
        let left_latency: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM analytics_latency")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((left, left_latency), (2, 2));
    }

    /// A school's raw events survive the migration that stores them in key
    /// order (0012): every column of every event, no rowid left, the
    /// cascade from the organisation kept, and retention still deletes by
    /// age.
    #[tokio::test]
    async fn storing_the_events_in_key_order_keeps_every_event() {
        let pool = migrated_before("0012").await;
        let (org, other) = two_schools(&pool).await;
        let old = chrono::Utc::now() - chrono::Duration::days(400);
        let mut ids = Vec::new();
        for (o, kind, refusal, days, vector) in [
            (
                org,
                "question",
                Some("not_covered"),
                1,
                Some(vec![7u8; 1536]),
            ),
            (org, "question", None, 2, None),
            (org, "login", None, 400, None),
            (other, "question", Some("safety"), 3, None),
        ] {
            let id = uuid::Uuid::new_v4();
            ids.push(id);
            let at = if days == 400 {
                old
            } else {
                chrono::Utc::now() - chrono::Duration::days(days)
            };
            sqlx::query(
                "INSERT INTO analytics_events (id, organization_id, kind, user_id, text, \
                 refusal, detail, embedding, day, at) VALUES ($1, $2, $3, $4, 'Why?', $5, '{}', \
                 $6, $7, $8)",
            )
            .bind(id)
            .bind(o)
            .bind(kind)
            .bind(uuid::Uuid::now_v7())
            .bind(refusal)
            .bind(vector)
            .bind(at.date_naive().to_string())
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
        }

        SQLITE_MIGRATIONS.run(&pool).await.unwrap();

        let rows = sqlx::query(
            "SELECT id, kind, refusal, length(embedding), text FROM analytics_events \
             WHERE organization_id = $1 ORDER BY kind, at",
        )
        .bind(org)
        .fetch_all(&pool)
        .await
        .unwrap();
        // id, kind, refusal, the vector's length, text.
        type Stored = (uuid::Uuid, String, Option<String>, Option<i64>, String);
        let got: Vec<Stored> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        assert_eq!(
            got,
            [
                (ids[2], "login".to_owned(), None, None, "Why?".to_owned()),
                (ids[1], "question".to_owned(), None, None, "Why?".to_owned()),
                (
                    ids[0],
                    "question".to_owned(),
                    Some("not_covered".to_owned()),
                    Some(1536),
                    "Why?".to_owned()
                ),
            ]
        );
        assert!(
            sqlx::query("SELECT rowid FROM analytics_events")
                .fetch_all(&pool)
                .await
                .is_err(),
            "analytics_events still has a rowid"
        );
        let count = |pool: sqlx::SqlitePool| async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM analytics_events")
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        // Removing a school removes its events, and only its.
        sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(other)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(count(pool.clone()).await, 3);
        // Retention's statement, by key, removes the year-old event only.
        let db = super::Db::Sqlite(pool.clone(), super::WriteGate::new(pool.clone()).unwrap());
        let gone = crate::analytics::store::delete_events_before(
            &db,
            chrono::Utc::now() - chrono::Duration::days(180),
            100,
        )
        .await
        .unwrap();
        assert_eq!((gone, count(pool).await), (1, 2));
    }

    /// The gaps report reads a period's declined questions through their
    /// own index (0011), newest first, without sorting: it stops at its
    /// limit instead of looking up every question of the period.
    #[tokio::test]
    async fn the_gaps_report_reads_only_declined_questions() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::from_str("sqlite::memory:").unwrap())
            .await
            .unwrap();
        SQLITE_MIGRATIONS.run(&pool).await.unwrap();
        let plan: Vec<String> = sqlx::query(&format!(
            "EXPLAIN QUERY PLAN {}",
            crate::analytics::store::declined_sql()
        ))
        .bind(uuid::Uuid::now_v7())
        .bind("2026-11-01")
        .bind("2026-11-30")
        .bind(None::<uuid::Uuid>)
        .bind(2000_i64)
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
        assert!(
            plan.iter()
                .any(|d| d.contains("USING INDEX analytics_events_declined_idx")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "{plan:?}");
    }
}
