//! Chat storage: sessions and their sequenced events. The database is the
//! source of truth for replay.
//!
//! # Appending an event (the one algorithm, both dialects)
//!
//! [`append`] stores an event with the next `seq` of its session:
//!
//! 1. `seq` is the session row's `last_seq + 1`, and the row's `last_seq`
//!    (and `updated_at`) advance to it in the same atomic step as the
//!    event's insert: any node, or the HTTP `ask` route, appends without
//!    coordination, and concurrent appends to one session queue on its row.
//! 2. No look-up first: the unique indexes on `(session_id, client_id)` and
//!    `(session_id, reply_to)` refuse a repeated question or a second answer
//!    to one question; the refused step is undone (with its `last_seq`
//!    advance) and the stored event's `seq` is read and reported as
//!    [`Appended::Existing`]. A new event, the common case, costs one
//!    round of writes.
//! 3. A session that is not the organisation's stores nothing (`None`).
//! 4. The caller hears of the event only once it is durable.
//!
//! How each dialect makes step 1 atomic is its own business, behind this
//! module: on PostgreSQL a transaction whose `UPDATE … RETURNING last_seq`
//! locks the row, then the `INSERT` ([`append_locked`]); on SQLite one
//! `INSERT … SELECT last_seq + 1` statement whose trigger (migration 0004,
//! `chat_events_advance_session`) advances the row, joined to the next
//! group commit of the database's writer thread so a classroom asking at
//! once shares commits ([`append_grouped`]).

use chrono::{DateTime, Utc};

use super::frames::EventRole;
use crate::db::StoreError;
use crate::db::{Db, WriteGate};
use crate::ids::{OrgId, PersonaId, SessionId, UserId};
use crate::pagination::Page;
use crate::{on_db, on_db_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: SessionId,
    pub organization_id: OrgId,
    pub persona_id: PersonaId,
    pub user_id: UserId,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub session_id: SessionId,
    pub seq: i64,
    pub organization_id: OrgId,
    pub role: EventRole,
    pub client_id: Option<String>,
    pub reply_to: Option<i64>,
    pub text: String,
    /// JSON: for answers `{citations, animation, grounded, provider, usage}`.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

const SESSION_COLUMNS: &str =
    "id, organization_id, persona_id, user_id, last_seq, created_at, updated_at";
const EVENT_COLUMNS: &str =
    "session_id, seq, organization_id, role, client_id, reply_to, text, payload, created_at";

pub async fn create_session(db: &Db, s: &SessionRow) -> Result<(), StoreError> {
    on_db_write!(db, |pool| sqlx::query(
        "INSERT INTO chat_sessions (id, organization_id, persona_id, user_id, last_seq, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    .bind(s.id)
    .bind(s.organization_id)
    .bind(s.persona_id)
    .bind(s.user_id)
    .bind(s.last_seq)
    .bind(s.created_at)
    .bind(s.updated_at)
    .execute(pool)
    .await
    .map(|_| ())?);
    Ok(())
}

pub async fn session(db: &Db, org: OrgId, id: SessionId) -> Result<Option<SessionRow>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM chat_sessions WHERE id = $1 AND organization_id = $2"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await?))
}

/// Sessions of the organisation, optionally of one user and/or persona,
/// newest first.
pub async fn list_sessions(
    db: &Db,
    org: OrgId,
    user: Option<UserId>,
    persona: Option<PersonaId>,
    page: Page,
) -> Result<Vec<SessionRow>, StoreError> {
    let (t, id) = match page.after {
        Some(c) => (Some(c.t), Some(SessionId(c.id))),
        None => (None, None),
    };
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM chat_sessions WHERE organization_id = $1 \
         AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR persona_id = $3) \
         AND ($4 IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
         ORDER BY created_at DESC, id DESC LIMIT $6"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(org)
        .bind(user)
        .bind(persona)
        .bind(t)
        .bind(id)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await?))
}

/// What [`append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored now with this `seq`.
    New(i64),
    /// Already stored (same `client_id`, or an answer to the same question)
    /// with this `seq`.
    Existing(i64),
}

impl Appended {
    pub fn seq(self) -> i64 {
        match self {
            Appended::New(s) | Appended::Existing(s) => s,
        }
    }
}

/// A new event for [`append`].
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub role: EventRole,
    pub client_id: Option<&'a str>,
    pub reply_to: Option<i64>,
    pub text: &'a str,
    pub payload: &'a str,
    /// Its `created_at` (and the session's `updated_at`).
    pub at: DateTime<Utc>,
}

async fn existing(
    db: &Db,
    session: SessionId,
    e: &NewEvent<'_>,
) -> Result<Option<i64>, StoreError> {
    let found: Option<i64> = match (e.client_id, e.reply_to, e.role) {
        (Some(client), _, _) => on_db!(db, |pool| sqlx::query_scalar(
            "SELECT seq FROM chat_events WHERE session_id = $1 AND client_id = $2"
        )
        .bind(session)
        .bind(client)
        .fetch_optional(pool)
        .await?),
        (None, Some(reply_to), EventRole::Assistant) => on_db!(db, |pool| sqlx::query_scalar(
            "SELECT seq FROM chat_events WHERE session_id = $1 AND reply_to = $2"
        )
        .bind(session)
        .bind(reply_to)
        .fetch_optional(pool)
        .await?),
        _ => None,
    };
    Ok(found)
}

/// Stores an event durably with the next `seq` of its session, unless the
/// same question (by `client_id`) or an answer to the same question is
/// already stored. `None` when the session is not the organisation's. The
/// algorithm is the module's (see its documentation).
pub async fn append(
    db: &Db,
    org: OrgId,
    session: SessionId,
    e: &NewEvent<'_>,
) -> Result<Option<Appended>, StoreError> {
    let result = match db {
        Db::Sqlite(_, gate) => return append_grouped(db, gate, org, session, e).await,
        Db::Postgres(_) => append_locked(db, org, session, e).await,
    };
    match result {
        Ok(Some(seq)) => Ok(Some(Appended::New(seq))),
        Ok(None) => Ok(None),
        // A concurrent append of the same question or answer won the
        // unique index: report the stored one.
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            match existing(db, session, e).await? {
                Some(seq) => Ok(Some(Appended::Existing(seq))),
                None => Err(StoreError::from(sqlx::Error::Database(d))),
            }
        }
        Err(other) => Err(other.into()),
    }
}

/// Events after `after_seq`, in order (at most `limit`).
pub async fn events_after(
    db: &Db,
    org: OrgId,
    session: SessionId,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM chat_events WHERE session_id = $1 AND organization_id = $2 \
         AND seq > $3 ORDER BY seq LIMIT $4"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(session)
        .bind(org)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// The last `n` events, oldest first.
pub async fn recent_events(
    db: &Db,
    org: OrgId,
    session: SessionId,
    n: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM chat_events WHERE session_id = $1 AND organization_id = $2 \
         ORDER BY seq DESC LIMIT $3"
    );
    let mut rows: Vec<EventRow> = on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(session)
        .bind(org)
        .bind(n)
        .fetch_all(pool)
        .await?);
    rows.reverse();
    Ok(rows)
}

/// Questions of the session that have no answer yet (a node died while
/// answering), oldest first.
pub async fn unanswered(
    db: &Db,
    org: OrgId,
    session: SessionId,
) -> Result<Vec<EventRow>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM chat_events q WHERE q.session_id = $1 \
         AND q.organization_id = $2 AND q.role = 'user' AND NOT EXISTS \
         (SELECT 1 FROM chat_events a WHERE a.session_id = q.session_id AND a.reply_to = q.seq) \
         ORDER BY q.seq"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(session)
        .bind(org)
        .fetch_all(pool)
        .await?))
}

/// A question of the organisation, with its session's persona and asker
/// (for the live classroom's `recent`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QuestionRow {
    pub session_id: SessionId,
    pub seq: i64,
    pub persona_id: PersonaId,
    pub user_id: UserId,
    pub full_name: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// The organisation's last `n` questions (of one persona, if given),
/// newest first (index `chat_events_org_questions_idx`).
pub async fn recent_questions(
    db: &Db,
    org: OrgId,
    persona: Option<PersonaId>,
    n: i64,
) -> Result<Vec<QuestionRow>, StoreError> {
    let sql = "SELECT e.session_id, e.seq, s.persona_id, s.user_id, u.full_name, e.text, \
         e.created_at FROM chat_events e \
         JOIN chat_sessions s ON s.id = e.session_id AND s.organization_id = $1 \
         JOIN users u ON u.id = s.user_id AND u.organization_id = $1 \
         WHERE e.organization_id = $1 AND e.role = 'user' AND ($2 IS NULL OR s.persona_id = $2) \
         ORDER BY e.created_at DESC, e.seq DESC LIMIT $3";
    Ok(on_db!(db, |pool| sqlx::query_as(sql)
        .bind(org)
        .bind(persona)
        .bind(n)
        .fetch_all(pool)
        .await?))
}

/// The PostgreSQL append: the session row is locked by the increment of
/// its `last_seq`, so concurrent appends (other nodes) queue on it.
async fn append_locked(
    db: &Db,
    org: OrgId,
    session: SessionId,
    e: &NewEvent<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    let now = e.at;
    on_db_write!(db, |pool| {
        async {
            let mut tx = pool.begin().await?;
            let seq: Option<i64> = sqlx::query_scalar(
                "UPDATE chat_sessions SET last_seq = last_seq + 1, updated_at = $1 \
                 WHERE id = $2 AND organization_id = $3 RETURNING last_seq",
            )
            .bind(now)
            .bind(session)
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(seq) = seq else {
                return Ok(None);
            };
            sqlx::query(
                "INSERT INTO chat_events (session_id, seq, organization_id, role, client_id, \
                 reply_to, text, payload, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(session)
            .bind(seq)
            .bind(org)
            .bind(e.role)
            .bind(e.client_id)
            .bind(e.reply_to)
            .bind(e.text)
            .bind(e.payload)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(seq))
        }
        .await
    })
}

/// [`NewEvent`], owned, for the group-commit thread.
struct OwnedEvent {
    role: EventRole,
    client_id: Option<String>,
    reply_to: Option<i64>,
    text: String,
    payload: String,
    at: DateTime<Utc>,
}

/// The SQLite append: one statement (the `seq` comes from the session row,
/// and the trigger of migration 0004 advances the row in the same
/// statement) joined to the next group commit, so a classroom's questions
/// and answers share commits. Reported once the group has committed.
async fn append_grouped(
    db: &Db,
    gate: &WriteGate,
    org: OrgId,
    session: SessionId,
    e: &NewEvent<'_>,
) -> Result<Option<Appended>, StoreError> {
    let ev = OwnedEvent {
        role: e.role,
        client_id: e.client_id.map(str::to_owned),
        reply_to: e.reply_to,
        text: e.text.to_owned(),
        payload: e.payload.to_owned(),
        at: e.at,
    };
    // `None`: not the organisation's session; `Err(Repeat)`: a repeat, looked
    // up once the group has committed. A repeat is undone alone (this
    // statement only).
    struct Repeat;
    let stored = gate
        .in_group(move |conn| {
            Box::pin(async move {
                let inserted: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
                    "INSERT INTO chat_events (session_id, seq, organization_id, role, client_id, \
                     reply_to, text, payload, created_at) \
                     SELECT id, last_seq + 1, organization_id, $3, $4, $5, $6, $7, $8 \
                     FROM chat_sessions WHERE id = $1 AND organization_id = $2 RETURNING seq",
                )
                .bind(session)
                .bind(org)
                .bind(ev.role)
                .bind(&ev.client_id)
                .bind(ev.reply_to)
                .bind(&ev.text)
                .bind(&ev.payload)
                .bind(ev.at)
                .fetch_optional(&mut *conn)
                .await;
                match inserted {
                    Ok(seq) => Ok(Ok(seq)),
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(Err(Repeat)),
                    Err(e) => Err(e),
                }
            })
        })
        .await?;
    match stored {
        Ok(seq) => Ok(seq.map(Appended::New)),
        Err(Repeat) => match existing(db, session, e).await? {
            Some(seq) => Ok(Some(Appended::Existing(seq))),
            None => Err(StoreError::Other(anyhow::anyhow!(
                "a chat event was refused as a repeat, but no original is stored"
            ))),
        },
    }
}

// The role is stored as its name (`TEXT` with a `CHECK` in both dialects):
// one parse, one failure mode (a decode error naming the role).
impl<DB: sqlx::Database> sqlx::Type<DB> for EventRole
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

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for EventRole
where
    &'q str: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&'q str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for EventRole
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(<&'r str as sqlx::Decode<'r, DB>>::decode(value)?.parse()?)
    }
}
