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
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool, whichever it is.
/// The body is compiled once per driver.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
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
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_millis(db.busy_timeout_ms));
            if let Some(dir) = std::path::Path::new(opts.get_filename()).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("could not create the database directory {}", dir.display())
                })?;
            }
            // An in-memory database exists once per connection: keep one.
            let max = if opts.get_filename().as_os_str() == ":memory:" {
                1
            } else {
                db.max_connections
            };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire)
                .connect_with(opts)
                .await
                .context("could not open the SQLite database")?;
            Ok(Db::Sqlite(pool))
        } else {
            anyhow::bail!(
                "BWENGE_DATABASE_URL must start with sqlite:// or postgres:// (got another scheme)"
            )
        }
    }

    /// Applies the pending migrations of this dialect.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
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
        on_db!(self, |pool| pool.close().await)
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}
