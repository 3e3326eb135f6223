//! Personas: the tutors teachers configure (subject, language, safety,
//! knowledge scope, avatar), and answering through them (see [`answer`]).
//! Each persona is a [`bwenge_actors::persona::Persona`] actor in the
//! persona registry; a change here (or announced by another node on
//! [`PERSONA_TOPIC`]) makes the actor reload.

pub mod answer;
pub mod citations;
pub mod grounding;
pub mod safety;
pub mod store;

use std::collections::{BTreeMap, HashSet};

use actix::Addr;
use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use bwenge_actors::messages::persona::{Ask, AskError};
use bwenge_actors::persona::{Persona, PersonaKey};
use bwenge_actors::registry::{Lookup, Registry, Remove};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::http::RouteDef;
use crate::ids::{ModelId, OrgId, PersonaId, SourceId};
use crate::pagination::{Cursor, List, PageQuery, page_of};
use crate::state::AppState;
pub use answer::{Answer, Delta, PersonaConfig, PersonaService, Question};
use store::PersonaRow;

/// Bus topic on which a node announces that a persona changed (payload:
/// [`crate::infra::bus::messages::PersonaChanged`]); other nodes drop their
/// loaded copy.
pub const PERSONA_TOPIC: &str = "persona.changed";

/// The persona registry's address.
pub type PersonaRegistry = Addr<Registry<PersonaKey, Persona<PersonaService>>>;

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::POST, "/v1/personas", || web::post().to(create)),
        RouteDef::new(Method::GET, "/v1/personas", || web::get().to(list)),
        RouteDef::new(Method::GET, "/v1/personas/{id}", || web::get().to(get)),
        RouteDef::new(Method::PATCH, "/v1/personas/{id}", || {
            web::patch().to(update)
        }),
        RouteDef::new(Method::DELETE, "/v1/personas/{id}", || {
            web::delete().to(delete)
        }),
        RouteDef::new(Method::POST, "/v1/personas/{id}/ask", || {
            web::post().to(ask)
        }),
    ]
}

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
    pub system_prompt: Option<String>,
    /// Empty: every source of the organisation.
    pub knowledge_source_ids: Vec<SourceId>,
    pub safety: Safety,
    pub avatar_model_id: Option<ModelId>,
    /// The teacher's gesture → clip overrides (the full map, matched from
    /// the model's clips, is at `GET /v1/personas/{id}/avatar`).
    pub gestures: BTreeMap<String, Option<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(row: PersonaRow, sources: Vec<SourceId>) -> PersonaView {
    PersonaView {
        id: row.id,
        name: row.name,
        subject: row.subject,
        description: row.description,
        language: row.language,
        grade_level: row.grade_level,
        system_prompt: row.system_prompt,
        knowledge_source_ids: if row.scope_all { Vec::new() } else { sources },
        safety: Safety {
            blocked_topics: serde_json::from_str(&row.blocked_topics).unwrap_or_default(),
            stay_on_subject: row.stay_on_subject,
        },
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

fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value.map(|v| v.trim().to_owned()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > max => Err(ApiError::validation(
            field,
            format!("{field} must be at most {max} characters."),
        )),
        Some(v) => Ok(Some(v)),
    }
}

/// A BCP 47-shaped language tag (`en`, `fr`, `rw`, `en-GB`), lower-cased
/// primary subtag.
fn language(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    let mut parts = v.split(['-', '_']);
    let primary = parts.next().unwrap_or("");
    let ok = (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !ok {
        return Err(ApiError::validation(
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
    async fn apply(
        self,
        state: &AppState,
        org: OrgId,
        row: &mut PersonaRow,
    ) -> Result<Option<Vec<SourceId>>, ApiError> {
        if let Some(name) = self.name {
            row.name = text("name", Some(name), MAX_NAME)?
                .ok_or_else(|| ApiError::validation("name", "name must not be empty."))?;
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
                    return Err(ApiError::validation(
                        "safety.blocked_topics",
                        format!("At most {MAX_TOPICS} blocked topics."),
                    ));
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
                && crate::avatars::store::current(&state.db, org, id)
                    .await?
                    .is_none()
            {
                return Err(ApiError::validation(
                    "avatar_model_id",
                    "avatar_model_id names no 3D model of your organisation.",
                ));
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
                Some(id) => crate::avatars::store::current(&state.db, org, id)
                    .await?
                    .map(|v| v.animations())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            bwenge_avatars::gestures::validate_overrides(&overrides, &clips)
                .map_err(|e| ApiError::validation("gestures", e.to_string()))?;
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
            return Err(ApiError::validation(
                "knowledge_source_ids",
                format!("At most {MAX_SOURCES} sources."),
            ));
        }
        let own: HashSet<SourceId> = store::own_sources(&state.db, org, &unique)
            .await?
            .into_iter()
            .collect();
        if let Some(missing) = unique.iter().find(|id| !own.contains(id)) {
            return Err(ApiError::validation(
                "knowledge_source_ids",
                format!("knowledge_source_ids: {missing} is not a source of your organisation."),
            ));
        }
        row.scope_all = unique.is_empty();
        Ok(Some(unique))
    }
}

/// Creates a persona (teachers, admins).
#[utoipa::path(post, path = "/v1/personas", tag = "personas", request_body = PersonaInput,
    responses((status = 201, body = PersonaView), (status = 422, description = "`validation_failed` naming the field"),
        (status = 403)), security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<PersonaInput>,
) -> ApiResult<HttpResponse> {
    user.require_staff()?;
    let body = body.into_inner();
    if body.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(ApiError::validation("name", "name is required."));
    }
    let now = Utc::now();
    let mut row = PersonaRow {
        id: PersonaId::new(),
        organization_id: user.org_id,
        name: String::new(),
        subject: None,
        description: None,
        language: "en".to_owned(),
        grade_level: None,
        system_prompt: None,
        scope_all: true,
        blocked_topics: "[]".to_owned(),
        stay_on_subject: false,
        avatar_model_id: None,
        gestures: "{}".to_owned(),
        created_by: Some(user.user_id),
        created_at: now,
        updated_at: now,
    };
    let sources = body
        .apply(&state, user.org_id, &mut row)
        .await?
        .unwrap_or_default();
    store::save(&state.db, &row, &sources, true).await?;
    Ok(HttpResponse::Created().json(view(row, sources)))
}

/// The organisation's personas, oldest first.
#[utoipa::path(get, path = "/v1/personas", tag = "personas", params(PageQuery),
    responses((status = 200, body = List<PersonaView>)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let page = q.parse()?;
    let rows = store::list(&state.db, user.org_id, page).await?;
    let ids: Vec<PersonaId> = rows.iter().map(|r| r.id).collect();
    let mut scopes: BTreeMap<PersonaId, Vec<SourceId>> = BTreeMap::new();
    for (p, s) in store::sources_of(&state.db, user.org_id, &ids).await? {
        scopes.entry(p).or_default().push(s);
    }
    Ok(HttpResponse::Ok().json(page_of(
        rows,
        page.limit,
        |r| Cursor {
            t: r.created_at,
            id: r.id.0,
        },
        |r| {
            let s = scopes.get(&r.id).cloned().unwrap_or_default();
            view(r, s)
        },
    )))
}

async fn load_view(state: &AppState, org: OrgId, id: PersonaId) -> ApiResult<PersonaView> {
    let row = store::get(&state.db, org, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let sources = store::sources(&state.db, org, id).await?;
    Ok(view(row, sources))
}

/// One persona.
#[utoipa::path(get, path = "/v1/personas/{id}", tag = "personas",
    params(("id" = String, Path, description = "The persona's id")),
    responses((status = 200, body = PersonaView), (status = 404)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(load_view(&state, user.org_id, path.into_inner()).await?))
}

/// Changes a persona (teachers, admins): only the fields sent change;
/// `null` clears an optional one.
#[utoipa::path(patch, path = "/v1/personas/{id}", tag = "personas", request_body = PersonaInput,
    params(("id" = String, Path, description = "The persona's id")),
    responses((status = 200, body = PersonaView), (status = 404), (status = 422)), security(("bearer" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
    body: web::Json<PersonaInput>,
) -> ApiResult<HttpResponse> {
    user.require_staff()?;
    let id = path.into_inner();
    let mut row = store::get(&state.db, user.org_id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let scope = body
        .into_inner()
        .apply(&state, user.org_id, &mut row)
        .await?;
    let sources = match scope {
        Some(s) => s,
        None => store::sources(&state.db, user.org_id, id).await?,
    };
    row.updated_at = Utc::now().max(row.updated_at + chrono::Duration::microseconds(1));
    store::save(&state.db, &row, &sources, false).await?;
    changed(&state, id).await;
    Ok(HttpResponse::Ok().json(view(row, sources)))
}

/// Deletes a persona and its chat sessions (teachers, admins).
#[utoipa::path(delete, path = "/v1/personas/{id}", tag = "personas",
    params(("id" = String, Path, description = "The persona's id")),
    responses((status = 204), (status = 404)), security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
) -> ApiResult<HttpResponse> {
    user.require_staff()?;
    let id = path.into_inner();
    if !store::delete(&state.db, user.org_id, id).await? {
        return Err(ApiError::not_found());
    }
    changed(&state, id).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Drops this node's loaded copy of the persona and tells the other nodes.
pub async fn changed(state: &AppState, id: PersonaId) {
    state.personas.do_send(Remove(id.0));
    let msg = crate::infra::bus::messages::PersonaChanged {
        node: state.node_id.clone(),
        persona_id: id,
    };
    if let Err(e) = crate::infra::bus::publish_json(state.bus.as_ref(), PERSONA_TOPIC, &msg).await {
        tracing::warn!(error = %e, "could not announce a persona change");
    }
}

/// Reacts to another node's announcement (see [`PERSONA_TOPIC`]).
pub fn reload_on_announcement(personas: &PersonaRegistry, me: &str, payload: &[u8]) {
    if let Ok(msg) = serde_json::from_slice::<crate::infra::bus::messages::PersonaChanged>(payload)
        && msg.node != me
    {
        personas.do_send(Remove(msg.persona_id.0));
    }
}

/// Body of `POST /v1/personas/{id}/ask`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AskBody {
    pub question: String,
    /// A chat session of this persona to take the conversation from (and
    /// to record the exchange in).
    pub session_id: Option<crate::ids::SessionId>,
}

/// Validates a question's length (422 otherwise).
pub fn check_question(state: &AppState, question: &str) -> Result<String, ApiError> {
    check_question_len(question, state.settings.personas.max_question_chars)
}

/// [`check_question`] with its limit given.
pub fn check_question_len(question: &str, max: usize) -> Result<String, ApiError> {
    let q = question.trim();
    if q.is_empty() {
        return Err(ApiError::validation(
            "question",
            "question must not be empty.",
        ));
    }
    if q.chars().count() > max {
        return Err(ApiError::validation(
            "question",
            format!("question must be at most {max} characters."),
        ));
    }
    Ok(q.to_owned())
}

/// Sends a question to the persona's actor.
pub async fn ask_persona(
    state: &AppState,
    persona: PersonaId,
    question: Question,
) -> Result<Answer, ApiError> {
    ask_with(&state.personas, persona, question).await
}

/// [`ask_persona`] with only the registry (for chat sessions).
pub async fn ask_with(
    personas: &PersonaRegistry,
    persona: PersonaId,
    question: Question,
) -> Result<Answer, ApiError> {
    let addr = personas
        .send(Lookup::new(persona.0))
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("persona registry: {e}")))?;
    match addr.send(Ask::new(question)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(AskError::NotFound)) => {
            personas.do_send(Remove(persona.0));
            Err(ApiError::not_found())
        }
        Ok(Err(AskError::Failed(e))) => Err(e),
        Err(e) => Err(ApiError::internal(anyhow::anyhow!("persona actor: {e}"))),
    }
}

/// Asks a persona a question and returns the finished answer (students,
/// teachers and admins of the organisation).
#[utoipa::path(post, path = "/v1/personas/{id}/ask", tag = "personas", request_body = AskBody,
    params(("id" = String, Path, description = "The persona's id")),
    responses((status = 200, body = Answer), (status = 404), (status = 422, description = "empty or over-long question"),
        (status = 503, description = "`llm_unavailable`: no provider of the chain could answer; see `Retry-After`")),
    security(("bearer" = [])))]
pub async fn ask(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PersonaId>,
    body: web::Json<AskBody>,
) -> ApiResult<HttpResponse> {
    let persona = path.into_inner();
    let body = body.into_inner();
    let text = check_question(&state, &body.question)?;
    let history = match body.session_id {
        Some(session) => crate::chat::history_for_ask(&state, &user, persona, session).await?,
        None => Vec::new(),
    };
    let answer = ask_persona(
        &state,
        persona,
        Question {
            org: user.org_id,
            user: user.user_id,
            text: text.clone(),
            history,
            deltas: None,
        },
    )
    .await?;
    if let Some(session) = body.session_id {
        crate::chat::record_exchange(&state, &user, session, &text, &answer).await?;
    }
    Ok(HttpResponse::Ok().json(answer))
}
