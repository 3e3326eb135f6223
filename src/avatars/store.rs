//! 3D model storage: models and every version of their file, within the
//! organisation.

use chrono::{DateTime, Utc};

use crate::db::Db;
use crate::db::StoreError;
use crate::ids::{ModelId, OrgId, PersonaId, UserId};
use crate::pagination::Page;
use crate::{on_db, on_db_write};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModelRow {
    pub id: ModelId,
    pub organization_id: OrgId,
    pub name: String,
    pub current_version: i64,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub model_id: ModelId,
    pub version: i64,
    pub organization_id: OrgId,
    pub storage_key: String,
    pub media_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    /// JSON `{"min": [x, y, z], "max": [x, y, z]}`.
    pub bounding_box: String,
    /// JSON array of clip names.
    pub animations: String,
    pub triangle_count: i64,
    pub vertex_count: i64,
    pub created_at: DateTime<Utc>,
}

impl VersionRow {
    pub fn animations(&self) -> Vec<String> {
        serde_json::from_str(&self.animations).unwrap_or_default()
    }
}

const MODEL_COLUMNS: &str =
    "id, organization_id, name, current_version, created_by, created_at, updated_at";
const VERSION_COLUMNS: &str = "model_id, version, organization_id, storage_key, media_type, \
     size_bytes, sha256, bounding_box, animations, triangle_count, vertex_count, created_at";

/// One statement shared by both dialects' transactions (`on_db!` expands
/// the caller for each pool type, so this is a macro, not a function).
macro_rules! insert_version {
    ($exec:expr, $v:expr) => {
        sqlx::query(
            "INSERT INTO avatar_model_versions (model_id, version, organization_id, storage_key, \
             media_type, size_bytes, sha256, bounding_box, animations, triangle_count, vertex_count, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind($v.model_id)
        .bind($v.version)
        .bind($v.organization_id)
        .bind(&$v.storage_key)
        .bind(&$v.media_type)
        .bind($v.size_bytes)
        .bind(&$v.sha256)
        .bind(&$v.bounding_box)
        .bind(&$v.animations)
        .bind($v.triangle_count)
        .bind($v.vertex_count)
        .bind($v.created_at)
        .execute($exec)
        .await?
    };
}

macro_rules! attach {
    ($exec:expr, $org:expr, $persona:expr, $model:expr, $at:expr) => {
        sqlx::query(
            "UPDATE personas SET avatar_model_id = $1, updated_at = $2 \
             WHERE id = $3 AND organization_id = $4",
        )
        .bind($model)
        .bind($at)
        .bind($persona)
        .bind($org)
        .execute($exec)
        .await?
    };
}

/// Rewrites personas' gesture overrides (after their model's clips changed).
macro_rules! set_gestures {
    ($exec:expr, $org:expr, $updates:expr, $at:expr) => {
        for (persona, gestures) in $updates {
            sqlx::query(
                "UPDATE personas SET gestures = $1, updated_at = $2 \
                 WHERE id = $3 AND organization_id = $4",
            )
            .bind(gestures)
            .bind($at)
            .bind(*persona)
            .bind($org)
            .execute(&mut *$exec)
            .await?;
        }
    };
}

/// Creates a model with its first version, and attaches it to `persona`
/// when given (which must be of the same organisation: checked by the
/// caller); `gestures` rewrites personas' overrides. One transaction.
pub async fn create(
    db: &Db,
    m: &ModelRow,
    v: &VersionRow,
    persona: Option<PersonaId>,
    gestures: &[(PersonaId, String)],
) -> Result<(), StoreError> {
    on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO avatar_models (id, organization_id, name, current_version, created_by, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(m.id)
        .bind(m.organization_id)
        .bind(&m.name)
        .bind(m.current_version)
        .bind(m.created_by)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(&mut *tx)
        .await?;
        insert_version!(&mut *tx, v);
        if let Some(p) = persona {
            attach!(&mut *tx, m.organization_id, p, m.id, m.updated_at);
        }
        set_gestures!(tx, m.organization_id, gestures, m.updated_at);
        tx.commit().await?;
    });
    Ok(())
}

/// Adds a version and makes it current (renaming the model when `rename`
/// is given); optionally attaches the model to a persona; `gestures`
/// rewrites personas' overrides. `place` is called inside the transaction
/// with the new version number, puts the file in place and returns its
/// storage key (an error rolls everything back). Returns the new version
/// number, or `None` when the model is not the organisation's.
#[allow(clippy::too_many_arguments)]
pub async fn add_version(
    db: &Db,
    org: OrgId,
    model: ModelId,
    mut v: VersionRow,
    rename: Option<&str>,
    persona: Option<PersonaId>,
    gestures: &[(PersonaId, String)],
    place: impl FnOnce(i64) -> anyhow::Result<String>,
) -> Result<Option<i64>, StoreError> {
    let at = v.created_at;
    let version = on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        let next: Option<i64> = sqlx::query_scalar(
            "UPDATE avatar_models SET current_version = current_version + 1, updated_at = $1, \
             name = COALESCE($4, name) WHERE id = $2 AND organization_id = $3 \
             RETURNING current_version",
        )
        .bind(at)
        .bind(model)
        .bind(org)
        .bind(rename)
        .fetch_optional(&mut *tx)
        .await?;
        match next {
            None => None,
            Some(n) => {
                v.version = n;
                v.storage_key = place(n)?;
                insert_version!(&mut *tx, v);
                if let Some(p) = persona {
                    attach!(&mut *tx, org, p, model, at);
                }
                set_gestures!(tx, org, gestures, at);
                tx.commit().await?;
                Some(n)
            }
        }
    });
    Ok(version)
}

pub async fn model(db: &Db, org: OrgId, id: ModelId) -> Result<Option<ModelRow>, StoreError> {
    let sql =
        format!("SELECT {MODEL_COLUMNS} FROM avatar_models WHERE id = $1 AND organization_id = $2");
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await?))
}

/// The model's current version.
pub async fn current(db: &Db, org: OrgId, id: ModelId) -> Result<Option<VersionRow>, StoreError> {
    let sql = format!(
        "SELECT v.{} FROM avatar_model_versions v JOIN avatar_models m ON m.id = v.model_id \
         AND m.current_version = v.version WHERE m.id = $1 AND m.organization_id = $2",
        VERSION_COLUMNS.replace(", ", ", v.")
    );
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await?))
}

/// Every version of the models given, oldest first.
pub async fn versions_of(
    db: &Db,
    org: OrgId,
    ids: &[ModelId],
) -> Result<Vec<VersionRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM avatar_model_versions WHERE organization_id = $1 \
         AND model_id IN ({}) ORDER BY model_id, version",
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

pub async fn list(db: &Db, org: OrgId, page: Page) -> Result<Vec<ModelRow>, StoreError> {
    let (t, id) = match page.after {
        Some(c) => (Some(c.t), Some(ModelId(c.id))),
        None => (None, None),
    };
    let sql = format!(
        "SELECT {MODEL_COLUMNS} FROM avatar_models WHERE organization_id = $1 \
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

/// The personas using each model (the first one is the model's `persona_id`).
pub async fn personas_using(
    db: &Db,
    org: OrgId,
    ids: &[ModelId],
) -> Result<Vec<(ModelId, PersonaId)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT avatar_model_id, id FROM personas WHERE organization_id = $1 \
         AND avatar_model_id IN ({}) ORDER BY created_at, id",
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

/// Deletes a model with its versions; returns their storage keys. The
/// personas using it lose it (`avatar_model_id` null, by the foreign key)
/// and their gesture overrides, which named its clips.
pub async fn delete(db: &Db, org: OrgId, id: ModelId) -> Result<Option<Vec<String>>, StoreError> {
    let at = chrono::Utc::now();
    let keys = on_db_write!(db, |pool| {
        let mut tx = pool.begin().await?;
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT storage_key FROM avatar_model_versions WHERE model_id = $1 \
             AND organization_id = $2",
        )
        .bind(id)
        .bind(org)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE personas SET gestures = '{}', updated_at = $1 \
             WHERE avatar_model_id = $2 AND organization_id = $3",
        )
        .bind(at)
        .bind(id)
        .bind(org)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query("DELETE FROM avatar_models WHERE id = $1 AND organization_id = $2")
            .bind(id)
            .bind(org)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            tx.commit().await?;
        }
        (n > 0).then_some(keys)
    });
    Ok(keys)
}

/// The gesture overrides (JSON) of the personas using `model` and of
/// `persona`, within the organisation.
pub async fn overrides(
    db: &Db,
    org: OrgId,
    model: Option<ModelId>,
    persona: Option<PersonaId>,
) -> Result<Vec<(PersonaId, String)>, StoreError> {
    if model.is_none() && persona.is_none() {
        return Ok(Vec::new());
    }
    Ok(on_db!(db, |pool| sqlx::query_as(
        "SELECT id, gestures FROM personas WHERE organization_id = $1 \
         AND (avatar_model_id = $2 OR id = $3) ORDER BY created_at, id",
    )
    .bind(org)
    .bind(model)
    .bind(persona)
    .fetch_all(pool)
    .await?))
}

/// The version stored under an asset key (the signed URL is the authority:
/// no organisation is known here).
pub async fn by_storage_key(db: &Db, key: &str) -> Result<Option<VersionRow>, StoreError> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM avatar_model_versions WHERE storage_key = $1");
    Ok(on_db!(db, |pool| sqlx::query_as(&sql)
        .bind(key)
        .fetch_optional(pool)
        .await?))
}
