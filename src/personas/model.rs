//! What a persona is, as clients send and see it: the view, the input of
//! create and update, and their validation.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::error::PersonaError;
use super::store::{self, PersonaRow};
use crate::db::Db;
use crate::ids::{ModelId, OrgId, PersonaId, SourceId};
use crate::validation::Invalid;

const MAX_NAME: usize = 100;
const MAX_SUBJECT: usize = 100;
const MAX_DESCRIPTION: usize = 2000;
const MAX_GRADE: usize = 50;
const MAX_SYSTEM_PROMPT: usize = 8000;
const MAX_TOPICS: usize = 50;
const MAX_TOPIC: usize = 100;
const MAX_SOURCES: usize = 500;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
pub struct Safety {
    /// Topics the persona declines (matched on word stems).
    #[serde(default)]
    pub blocked_topics: Vec<String>,
    /// Decline questions outside the persona's subject and material.
    #[serde(default)]
    pub stay_on_subject: bool,
}

/// `persona` as API.md defines it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonaView {
    pub id: PersonaId,
    pub name: String,
    pub subject: Option<String>,
    pub description: Option<String>,
    /// BCP 47 tag of the language the persona answers in (`en`, `fr`, `sw`, `rw`, …).
    pub language: String,
    pub grade_level: Option<String>,
    /// `system_prompt` and `safety`: teachers and admins only (absent from
    /// what students see).
    #[serde(flatten)]
    pub staff: Option<StaffFields>,
    /// Empty: every source of the organisation.
    pub knowledge_source_ids: Vec<SourceId>,
    pub avatar_model_id: Option<ModelId>,
    /// The teacher's gesture → clip overrides (the full map, matched from
    /// the model's clips, is at `GET /v1/personas/{id}/avatar`).
    pub gestures: BTreeMap<String, Option<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The part of a persona only teachers and admins see: how it is told to
/// behave.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffFields {
    pub system_prompt: Option<String>,
    pub safety: Safety,
}

impl PersonaView {
    /// The view as a student may see it: without the persona's
    /// instructions and safety configuration.
    pub fn for_student(mut self) -> Self {
        self.staff = None;
        self
    }

    /// The view as `caller` may see it.
    pub fn for_caller(self, caller: &crate::auth::AuthUser) -> Self {
        if caller.role.is_staff() {
            self
        } else {
            self.for_student()
        }
    }
}

pub(crate) fn view(row: PersonaRow, sources: Vec<SourceId>) -> PersonaView {
    PersonaView {
        id: row.id,
        name: row.name,
        subject: row.subject,
        description: row.description,
        language: row.language,
        grade_level: row.grade_level,
        staff: Some(StaffFields {
            system_prompt: row.system_prompt,
            safety: Safety {
                blocked_topics: serde_json::from_str(&row.blocked_topics).unwrap_or_default(),
                stay_on_subject: row.stay_on_subject,
            },
        }),
        knowledge_source_ids: if row.scope_all { Vec::new() } else { sources },
        avatar_model_id: row.avatar_model_id,
        gestures: serde_json::from_str(&row.gestures).unwrap_or_default(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// A field that may be absent (leave as is), `null` (clear) or a value.
fn some<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `POST /v1/personas` and `PATCH /v1/personas/{id}` (on PATCH every
/// field is optional and `null` clears the optional ones).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PersonaInput {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub subject: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Default `en`.
    pub language: Option<String>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub grade_level: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Option<Option<String>>,
    /// `[]` (the default): every source of the organisation.
    pub knowledge_source_ids: Option<Vec<SourceId>>,
    pub safety: Option<SafetyInput>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub avatar_model_id: Option<Option<ModelId>>,
    /// Gesture → clip name (or null for none) overrides; clips must exist
    /// in the persona's avatar model.
    pub gestures: Option<BTreeMap<String, Option<String>>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SafetyInput {
    pub blocked_topics: Option<Vec<String>>,
    pub stay_on_subject: Option<bool>,
}

fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, Invalid> {
    match value.map(|v| v.trim().to_owned()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > max => Err(Invalid::new(
            field,
            format!("{field} must be at most {max} characters."),
        )),
        Some(v) => Ok(Some(v)),
    }
}

/// A BCP 47-shaped language tag (`en`, `fr`, `rw`, `en-GB`), lower-cased
/// primary subtag.
fn language(value: &str) -> Result<String, Invalid> {
    let v = value.trim();
    let mut parts = v.split(['-', '_']);
    let primary = parts.next().unwrap_or("");
    let ok = (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !ok {
        return Err(Invalid::new(
            "language",
            "language must be a language tag such as \"en\", \"fr\", \"sw\" or \"rw\".",
        ));
    }
    let mut out = primary.to_ascii_lowercase();
    for p in v.split(['-', '_']).skip(1) {
        out.push('-');
        out.push_str(p);
    }
    Ok(out)
}

impl PersonaInput {
    /// Applies the input onto `row` (a new row for create), validating
    /// every field; returns the new explicit scope when it changed.
    pub(crate) async fn apply(
        self,
        db: &Db,
        org: OrgId,
        row: &mut PersonaRow,
    ) -> Result<Option<Vec<SourceId>>, PersonaError> {
        if let Some(name) = self.name {
            row.name = text("name", Some(name), MAX_NAME)?
                .ok_or_else(|| Invalid::new("name", "name must not be empty."))?;
        }
        if let Some(v) = self.subject {
            row.subject = text("subject", v, MAX_SUBJECT)?;
        }
        if let Some(v) = self.description {
            row.description = text("description", v, MAX_DESCRIPTION)?;
        }
        if let Some(v) = self.language {
            row.language = language(&v)?;
        }
        if let Some(v) = self.grade_level {
            row.grade_level = text("grade_level", v, MAX_GRADE)?;
        }
        if let Some(v) = self.system_prompt {
            row.system_prompt = text("system_prompt", v, MAX_SYSTEM_PROMPT)?;
        }
        if let Some(s) = self.safety {
            if let Some(topics) = s.blocked_topics {
                if topics.len() > MAX_TOPICS {
                    return Err(Invalid::new(
                        "safety.blocked_topics",
                        format!("At most {MAX_TOPICS} blocked topics."),
                    )
                    .into());
                }
                let mut clean = Vec::new();
                for t in topics {
                    if let Some(t) = text("safety.blocked_topics", Some(t), MAX_TOPIC)?
                        && !clean.contains(&t)
                    {
                        clean.push(t);
                    }
                }
                row.blocked_topics = serde_json::to_string(&clean).unwrap_or_else(|_| "[]".into());
            }
            if let Some(v) = s.stay_on_subject {
                row.stay_on_subject = v;
            }
        }
        if let Some(model) = self.avatar_model_id {
            if let Some(id) = model
                && crate::avatars::store::current(db, org, id).await?.is_none()
            {
                return Err(Invalid::new(
                    "avatar_model_id",
                    "avatar_model_id names no 3D model of your organisation.",
                )
                .into());
            }
            row.avatar_model_id = model;
        }
        if let Some(g) = self.gestures {
            row.gestures = serde_json::to_string(&g).unwrap_or_else(|_| "{}".into());
        }
        // Overrides must name real gestures and clips of the model in use.
        let overrides: BTreeMap<String, Option<String>> =
            serde_json::from_str(&row.gestures).unwrap_or_default();
        if !overrides.is_empty() {
            let clips = match row.avatar_model_id {
                Some(id) => crate::avatars::store::current(db, org, id)
                    .await?
                    .map(|v| v.animations())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            bwenge_avatars::gestures::validate_overrides(&overrides, &clips)
                .map_err(|e| Invalid::new("gestures", e.to_string()))?;
        }
        let Some(ids) = self.knowledge_source_ids else {
            return Ok(None);
        };
        let mut unique: Vec<SourceId> = Vec::new();
        for id in ids {
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        if unique.len() > MAX_SOURCES {
            return Err(Invalid::new(
                "knowledge_source_ids",
                format!("At most {MAX_SOURCES} sources."),
            )
            .into());
        }
        let own: HashSet<SourceId> = store::own_sources(db, org, &unique)
            .await?
            .into_iter()
            .collect();
        if let Some(missing) = unique.iter().find(|id| !own.contains(id)) {
            return Err(Invalid::new(
                "knowledge_source_ids",
                format!("knowledge_source_ids: {missing} is not a source of your organisation."),
            )
            .into());
        }
        row.scope_all = unique.is_empty();
        Ok(Some(unique))
    }
}
