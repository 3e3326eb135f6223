//! Persona storage. Every query filters on the organisation; the knowledge
//! scope lives in `persona_sources` (rows vanish with their source), and
//! `scope_all` tells "every source" apart from "a list that became empty".

use chrono::{DateTime, Utc};

use crate::db::Db;
use crate::db::StoreError;
use crate::ids::{ModelId, OrgId, PersonaId, SourceId, UserId};
use crate::pagination::Page;
use crate::{on_db, on_db_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PersonaRow {
    pub id: PersonaId,
    pub organization_id: OrgId,
    pub name: String,
    pub subject: Option<String>,
    pub description: Option<String>,
    pub language: String,
    pub grade_level: Option<String>,
    pub system_prompt: Option<String>,
    pub scope_all: bool,
    /// JSON array of strings.
    pub blocked_topics: String,
    pub stay_on_subject: bool,
    pub avatar_model_id: Option<ModelId>,
    /// JSON object: gesture → clip name or null (the teacher's overrides).
    pub gestures: String,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, organization_id, name, subject, description, language, grade_level, \
     system_prompt, scope_all, blocked_topics, stay_on_subject, avatar_model_id, gestures, \
     created_by, created_at, updated_at";

/// Inserts or replaces a persona and its scope in one transaction.
pub async fn save(
    db: &Db,
    p: &PersonaRow,
    sources: &[SourceId],
    insert: bool,
) -> Result<(), StoreError> {
    let sql = if insert {
        "INSERT INTO personas (id, organization_id, name, subject, description, language, \
         grade_level, system_prompt, scope_all, blocked_topics, stay_on_subject, avatar_model_id, \
         gestures, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    } else {
        "UPDATE personas SET name = $3, subject = $4, description = $5, language = $6, \
         grade_level = $7, system_prompt = $8, scope_all = $9, blocked_topics = $10, \
         stay_on_subject = $11, avatar_model_id = $12, gestures = $13, created_by = $14, \
         created_at = $15, updated_at = $16 WHERE id = $1 AND organization_id = $2"
    };
    on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(sql)
            .bind(p.id)
            .bind(p.organization_id)
            .bind(&p.name)
            .bind(&p.subject)
            .bind(&p.description)
            .bind(&p.language)
            .bind(&p.grade_level)
            .bind(&p.system_prompt)
            .bind(p.scope_all)
            .bind(&p.blocked_topics)
            .bind(p.stay_on_subject)
            .bind(p.avatar_model_id)
            .bind(&p.gestures)
            .bind(p.created_by)
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM persona_sources WHERE persona_id = $1 AND organization_id = $2")
            .bind(p.id)
            .bind(p.organization_id)
            .execute(&mut *tx)
            .await?;
        for s in sources {
            sqlx::query(
                "INSERT INTO persona_sources (persona_id, source_id, organization_id) \
                 VALUES ($1, $2, $3)",
            )
            .bind(p.id)
            .bind(*s)
            .bind(p.organization_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

pub async fn get(db: &Db, org: OrgId, id: PersonaId) -> Result<Option<PersonaRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM personas WHERE id = $1 AND organization_id = $2");
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await?))
}

/// For the persona actor, which is keyed by persona id only; the caller
/// checks the organisation on every request.
pub async fn get_any(db: &Db, id: PersonaId) -> Result<Option<PersonaRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM personas WHERE id = $1");
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

pub async fn list(db: &Db, org: OrgId, page: Page) -> Result<Vec<PersonaRow>, StoreError> {
    let (t, id) = match page.after {
        Some(c) => (Some(c.t), Some(PersonaId(c.id))),
        None => (None, None),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM personas WHERE organization_id = $1 \
         AND ($2 IS NULL OR created_at > $2 OR (created_at = $2 AND id > $3)) \
         ORDER BY created_at, id LIMIT $4"
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(org)
        .bind(t)
        .bind(id)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await?))
}

/// The persona's explicit sources (meaningless when `scope_all`).
pub async fn sources(db: &Db, org: OrgId, id: PersonaId) -> Result<Vec<SourceId>, StoreError> {
    Ok(on_db!(db, |pool| sqlx::query_scalar(
        "SELECT source_id FROM persona_sources WHERE persona_id = $1 AND organization_id = $2 \
         ORDER BY source_id"
    )
    .bind(id)
    .bind(org)
    .fetch_all(pool)
    .await?))
}

/// Scopes of many personas at once (lists).
pub async fn sources_of(
    db: &Db,
    org: OrgId,
    ids: &[PersonaId],
) -> Result<Vec<(PersonaId, SourceId)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT persona_id, source_id FROM persona_sources WHERE organization_id = $1 \
         AND persona_id IN ({}) ORDER BY persona_id, source_id",
        crate::db::placeholders(2, ids.len())
    );
    Ok(on_db!(db, |pool| {
        let mut q = sqlx::query_as(&sql).bind(org);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(pool).await?
    }))
}

/// Which of `ids` are sources of the organisation.
pub async fn own_sources(
    db: &Db,
    org: OrgId,
    ids: &[SourceId],
) -> Result<Vec<SourceId>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id FROM knowledge_sources WHERE organization_id = $1 AND id IN ({})",
        crate::db::placeholders(2, ids.len())
    );
    Ok(on_db!(db, |pool| {
        let mut q = sqlx::query_scalar(&sql).bind(org);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(pool).await?
    }))
}

pub async fn delete(db: &Db, org: OrgId, id: PersonaId) -> Result<bool, StoreError> {
    let n = on_db_write!(db, |pool| sqlx::query(
        "DELETE FROM personas WHERE id = $1 AND organization_id = $2"
    )
    .bind(id)
    .bind(org)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n > 0)
}

/// A fingerprint of the organisation's ready material: changes whenever a
/// source becomes ready, is reprocessed or is deleted. Part of every answer
/// cache key, so a change to the material retires cached answers.
pub async fn knowledge_version(db: &Db, org: OrgId) -> Result<String, StoreError> {
    let (n, latest): (i64, Option<DateTime<Utc>>) = on_db!(db, |pool| sqlx::query_as(
        "SELECT COUNT(*), MAX(updated_at) FROM knowledge_sources \
         WHERE organization_id = $1 AND status = 'ready'"
    )
    .bind(org)
    .fetch_one(pool)
    .await?);
    Ok(format!(
        "{n}.{}",
        latest.map_or(0, |t| t.timestamp_nanos_opt().unwrap_or_default())
    ))
}
