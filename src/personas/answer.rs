//! The answer pipeline, behind the persona actor's port: safety → greeting
//! → cache → hybrid retrieval within the persona's scope → grounding check
//! → the language-model chain (streamed) → citation check (one re-ask when
//! no marker holds) → animation → cache.
//!
//! Knows nothing of HTTP or WebSocket: the `ask` handler and chat sessions
//! both send [`Question`]s to the persona actor and get [`Answer`]s back;
//! streamed pieces go to the question's `deltas` channel when there is one.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use bwenge_actors::persona::{PersonaKey, PersonaPort};
use bwenge_actors::ports::Cache;
use bwenge_llm::{
    Animation, AnswerRequest, Emotion, Gesture, LanguageModel, LlmError, Passage, StreamEvent,
    Turn, Usage, i18n,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::citations::{self, Citation};
use super::grounding::{self, QuestionTerms};
use super::safety::{self, Refusal};
use super::store::{self, PersonaRow};
use crate::config::Settings;
use crate::db::Db;
use crate::ids::{OrgId, PersonaId, SourceId, UserId};
use crate::knowledge::index::SearchService;
use crate::knowledge::{SearchHit, SearchMode};
use crate::metrics::{ANSWER_STAGE_SECONDS, stage};
use crate::personas::error::PersonaError;

pub const CACHE_HITS_TOTAL: &str = "bwenge_answer_cache_hits_total";
pub const CACHE_MISSES_TOTAL: &str = "bwenge_answer_cache_misses_total";
pub const ANSWERS_TOTAL: &str = "bwenge_answers_total";

/// A loaded persona: its row and its knowledge scope.
#[derive(Debug, Clone)]
pub struct PersonaConfig {
    pub row: PersonaRow,
    /// `None`: every source of the organisation.
    pub scope: Option<HashSet<SourceId>>,
    pub blocked_topics: Vec<String>,
}

/// A question for a persona.
#[derive(Debug)]
pub struct Question {
    pub org: OrgId,
    pub user: UserId,
    pub text: String,
    /// Earlier turns of the conversation, oldest first.
    pub history: Vec<Turn>,
    /// Where to stream the answer's pieces as they come.
    pub deltas: Option<mpsc::Sender<Delta>>,
}

/// What retrieval found relevant, and how sure the decision was.
struct Retrieved {
    passages: Vec<SearchHit>,
    confidence: f64,
    /// When declining: the closest passage, if it is close enough to be
    /// worth pointing at.
    nearest: Option<SearchHit>,
}

/// A declined question is pointed at the closest passage when that
/// passage's confidence reaches this (far below the 0.5 of answering: a
/// neighbouring topic, not an answer).
const NEAREST_MIN_CONFIDENCE: f64 = 0.1;

/// A streamed piece of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Text(String),
    /// Discard the pieces sent so far: a provider failed midway and the
    /// next one starts over.
    Restart,
}

/// `answer` as API.md defines it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Answer {
    pub text: String,
    pub citations: Vec<Citation>,
    #[schema(value_type = Object)]
    pub animation: Animation,
    /// False when the material did not support an answer (the text says
    /// so), or the question was declined.
    pub grounded: bool,
    /// Which provider answered: `extractive`, `openai:<model>`,
    /// `anthropic:<model>`, or `none` when no model was asked (refusals,
    /// greetings, questions the material does not cover).
    pub provider: String,
    pub usage: AnswerUsage,
    /// Served from the answer cache.
    #[serde(default)]
    pub cached: bool,
    /// Why the question was declined, when it was: a safety category
    /// (`self_harm`, `sexual`, `weapons`, `drugs`, `hate`), `blocked_topic`
    /// (one of the persona's blocked topics), `off_subject` or
    /// `not_covered` (the material does not cover it). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The number (0–1) the grounding decision was taken on: how strongly
    /// the best passage is about the question (lexical coverage or meaning,
    /// whichever is stronger; 0.5 is the line between answering and saying
    /// the material does not cover it). 1 for safety refusals and greetings,
    /// which are decided without the material.
    #[serde(default)]
    pub confidence: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Default)]
pub struct AnswerUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl From<Usage> for AnswerUsage {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

/// The persona actor's port: loads personas and answers with them.
#[derive(Clone)]
pub struct PersonaService {
    pub db: Db,
    pub search: Arc<SearchService>,
    pub model: Arc<dyn LanguageModel>,
    pub cache: Arc<dyn Cache>,
    pub settings: Arc<Settings>,
}

#[async_trait]
impl PersonaPort for PersonaService {
    type Config = PersonaConfig;
    type Request = Question;
    type Reply = Answer;
    type Error = PersonaError;

    async fn load(&self, id: PersonaKey) -> Result<Option<PersonaConfig>, PersonaError> {
        let Some(row) = store::get_any(&self.db, PersonaId(id)).await? else {
            return Ok(None);
        };
        let scope = if row.scope_all {
            None
        } else {
            Some(
                store::sources(&self.db, row.organization_id, row.id)
                    .await?
                    .into_iter()
                    .collect(),
            )
        };
        let blocked_topics = serde_json::from_str(&row.blocked_topics).unwrap_or_default();
        Ok(Some(PersonaConfig {
            row,
            scope,
            blocked_topics,
        }))
    }

    async fn answer(
        &self,
        config: Arc<PersonaConfig>,
        q: Question,
    ) -> Result<Answer, PersonaError> {
        if config.row.organization_id != q.org {
            return Err(PersonaError::NotFound);
        }
        // The pipeline runs on the answering pool, not on the persona
        // actor's thread: one persona answers a whole school at once.
        let this = self.clone();
        let answer = crate::work::spawn(async move { this.pipeline(&config, &q).await })
            .await
            .map_err(|e| anyhow::Error::new(e).context("answering a question failed"))??;
        metrics::counter!(ANSWERS_TOTAL, "provider" => provider_label(&answer.provider),
            "grounded" => if answer.grounded { "true" } else { "false" })
        .increment(1);
        Ok(answer)
    }
}

fn provider_label(p: &str) -> &'static str {
    match p.split(':').next().unwrap_or("") {
        "extractive" => "extractive",
        "openai" => "openai",
        "anthropic" => "anthropic",
        _ => "none",
    }
}

impl PersonaService {
    async fn pipeline(&self, cfg: &PersonaConfig, q: &Question) -> Result<Answer, PersonaError> {
        let p = &cfg.row;
        let lang = p.language.as_str();
        let question = q.text.trim();

        let started = Instant::now();
        let refusal = safety::check(question, &cfg.blocked_topics);
        stage(ANSWER_STAGE_SECONDS, "safety", started.elapsed());
        if let Some(refusal) = refusal {
            let (text, reason) = match &refusal {
                Refusal::Unsafe(category) => {
                    tracing::info!(persona_id = %p.id, category = category.as_str(), "question refused");
                    (i18n::refusal_unsafe(lang), category.as_str())
                }
                Refusal::Blocked(_) => (i18n::refusal_blocked(lang), "blocked_topic"),
            };
            let mut answer = self
                .fixed(q, text, Gesture::ShakingHead, Emotion::Concerned, 1.0)
                .await;
            answer.refusal = Some(reason.to_owned());
            return Ok(answer);
        }
        if safety::is_greeting(question, &p.name) {
            let text = i18n::greeting(lang, &p.name);
            return Ok(self
                .fixed(q, text, Gesture::Waving, Emotion::Happy, 1.0)
                .await);
        }

        let started = Instant::now();
        let cache_key = if q.history.is_empty() {
            Some(self.cache_key(cfg, question).await?)
        } else {
            None
        };
        if let Some(key) = &cache_key {
            let hit = self.cached(key).await;
            stage(ANSWER_STAGE_SECONDS, "cache", started.elapsed());
            if let Some(mut hit) = hit {
                metrics::counter!(CACHE_HITS_TOTAL).increment(1);
                hit.cached = true;
                if let Some(tx) = &q.deltas {
                    let _ = tx.send(Delta::Text(hit.text.clone())).await;
                }
                return Ok(hit);
            }
            metrics::counter!(CACHE_MISSES_TOTAL).increment(1);
        }

        let Retrieved {
            passages,
            confidence,
            nearest,
        } = self.retrieve(cfg, question).await?;
        let answer =
            if let (true, false, Some(near)) = (passages.is_empty(), p.stay_on_subject, nearest) {
                let mut answer = self
                    .not_covered_nearest(q, lang, question, near, confidence)
                    .await;
                answer.refusal = Some("not_covered".to_owned());
                answer
            } else if passages.is_empty() {
                let (text, gesture, reason) = if p.stay_on_subject {
                    (
                        i18n::refusal_off_subject(lang, p.subject.as_deref().unwrap_or(&p.name)),
                        Gesture::ShakingHead,
                        "off_subject",
                    )
                } else {
                    (
                        i18n::not_covered(lang, p.subject.as_deref()),
                        Gesture::Thinking,
                        "not_covered",
                    )
                };
                let mut answer = self
                    .fixed(q, text, gesture, Emotion::Concerned, confidence)
                    .await;
                answer.refusal = Some(reason.to_owned());
                answer
            } else {
                let started = Instant::now();
                let mut answer = self.generate(cfg, q, question, &passages).await?;
                stage(ANSWER_STAGE_SECONDS, "generate", started.elapsed());
                answer.confidence = confidence;
                answer
            };
        if let Some(key) = &cache_key {
            let started = Instant::now();
            self.store(key, &answer).await;
            stage(ANSWER_STAGE_SECONDS, "cache_store", started.elapsed());
        }
        Ok(answer)
    }

    /// An answer that needs no model (refusals, greetings, "not covered").
    async fn fixed(
        &self,
        q: &Question,
        text: String,
        gesture: Gesture,
        emotion: Emotion,
        confidence: f64,
    ) -> Answer {
        if let Some(tx) = &q.deltas {
            let _ = tx.send(Delta::Text(text.clone())).await;
        }
        Answer {
            text,
            citations: Vec::new(),
            animation: Animation { gesture, emotion },
            grounded: false,
            provider: "none".to_owned(),
            usage: AnswerUsage::default(),
            cached: false,
            refusal: None,
            confidence,
        }
    }

    /// The relevant passages within the persona's scope, best first, and
    /// the confidence the decision was taken on (see [`super::grounding`]).
    async fn retrieve(
        &self,
        cfg: &PersonaConfig,
        question: &str,
    ) -> Result<Retrieved, PersonaError> {
        let s = &self.settings.personas;
        let none = Retrieved {
            passages: Vec::new(),
            confidence: 0.0,
            nearest: None,
        };
        if cfg.scope.as_ref().is_some_and(HashSet::is_empty) {
            return Ok(none);
        }
        let org = cfg.row.organization_id;
        let started = Instant::now();
        let hits = crate::knowledge::search_passages(
            &self.db,
            &self.search,
            org,
            question,
            s.top_k,
            cfg.scope.clone(),
            SearchMode::Hybrid,
        )
        .await?;
        stage(ANSWER_STAGE_SECONDS, "retrieve", started.elapsed());
        if hits.is_empty() {
            return Ok(none);
        }
        let started = Instant::now();
        let stats = self.search.term_stats(org, question).await?;
        let terms = QuestionTerms::new(&stats);
        let scored: Vec<(f64, SearchHit)> = hits
            .into_iter()
            .map(|h| {
                let coverage = terms.coverage(&format!("{} {}", h.source_title, h.text));
                let c = grounding::confidence(
                    coverage,
                    h.similarity,
                    grounding::Thresholds {
                        min_coverage: s.min_coverage,
                        min_similarity: s.min_similarity,
                        similarity_floor: s.similarity_floor,
                    },
                );
                (c, h)
            })
            .collect();
        let best = scored.iter().map(|(c, _)| *c).fold(0.0, f64::max);
        stage(ANSWER_STAGE_SECONDS, "grounding", started.elapsed());
        tracing::debug!(confidence = best, "grounding");
        if best < 0.5 {
            let nearest = scored
                .into_iter()
                .filter(|(c, _)| *c >= NEAREST_MIN_CONFIDENCE)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, h)| h);
            return Ok(Retrieved {
                passages: Vec::new(),
                confidence: best,
                nearest,
            });
        }
        // Keep the passages with fair evidence of their own; rank order.
        Ok(Retrieved {
            passages: scored
                .into_iter()
                .filter(|(c, _)| *c >= 0.25)
                .map(|(_, h)| h)
                .collect(),
            confidence: best,
            nearest: None,
        })
    }

    /// "Not covered", citing the closest passage so the student sees what
    /// the material does explain.
    async fn not_covered_nearest(
        &self,
        q: &Question,
        lang: &str,
        question: &str,
        near: SearchHit,
        confidence: f64,
    ) -> Answer {
        let text = i18n::not_covered_nearest(lang, &near.source_title, near.page);
        let mut answer = self
            .fixed(q, text, Gesture::Thinking, Emotion::Concerned, confidence)
            .await;
        answer.citations = vec![Citation {
            n: 1,
            source_id: near.source_id,
            source_title: near.source_title.clone(),
            page: near.page,
            chunk_id: near.chunk_id,
            quote: citations::best_quote(&near.text, question),
        }];
        answer
    }

    async fn generate(
        &self,
        cfg: &PersonaConfig,
        q: &Question,
        question: &str,
        passages: &[SearchHit],
    ) -> Result<Answer, PersonaError> {
        let p = &cfg.row;
        let mut rules = Vec::new();
        if p.stay_on_subject
            && let Some(subject) = &p.subject
        {
            rules.push(format!(
                "Only discuss {subject}; politely decline anything else."
            ));
        }
        if !cfg.blocked_topics.is_empty() {
            rules.push(format!(
                "Never discuss these topics: {}.",
                cfg.blocked_topics.join(", ")
            ));
        }
        rules.push(
            "You are talking with a school student: keep the language suitable for children \
             and never give harmful, sexual or violent content."
                .to_owned(),
        );
        let mut request = AnswerRequest {
            persona_name: p.name.clone(),
            subject: p.subject.clone(),
            language: p.language.clone(),
            grade_level: p.grade_level.clone(),
            instructions: p.system_prompt.clone(),
            rules,
            passages: passages
                .iter()
                .enumerate()
                .map(|(i, h)| Passage {
                    relevance: h.similarity,
                    n: i + 1,
                    source_title: h.source_title.clone(),
                    page: h.page,
                    text: h.text.clone(),
                })
                .collect(),
            history: q.history.clone(),
            question: question.to_owned(),
            max_answer_tokens: self.settings.llm.max_answer_tokens,
        };
        let in_scope = |s: SourceId| cfg.scope.as_ref().is_none_or(|scope| scope.contains(&s));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let generated = self.run(&request, q.deltas.as_ref()).await?;
            let (text, cites) = citations::verify(&generated.text, passages, in_scope);
            if !cites.is_empty() || attempt >= 2 {
                let grounded = !cites.is_empty();
                let animation = generated
                    .animation
                    .unwrap_or_else(|| derive_animation(grounded, &cites));
                return Ok(Answer {
                    text,
                    citations: cites,
                    animation,
                    grounded,
                    provider: generated.provider,
                    usage: generated.usage.into(),
                    cached: false,
                    refusal: None,
                    confidence: 0.0,
                });
            }
            // Not one marker held: ask once more, insisting on them.
            tracing::info!(persona_id = %p.id, "answer without valid citations; asking again");
            if let Some(tx) = &q.deltas {
                let _ = tx.send(Delta::Restart).await;
            }
            request.rules.push(format!(
                "Your previous answer cited no passage. Cite every claim with a marker from [1] \
                 to [{}]; if the passages do not answer the question, say so.",
                passages.len()
            ));
        }
    }

    /// Runs the chain, forwarding pieces, and collects the finished answer.
    async fn run(
        &self,
        request: &AnswerRequest,
        deltas: Option<&mpsc::Sender<Delta>>,
    ) -> Result<Generated, PersonaError> {
        let started = Instant::now();
        let mut first = true;
        let mut stream = self.model.stream(request).await.map_err(llm_error)?;
        let mut text = String::new();
        while let Some(event) = stream.next().await {
            match event.map_err(llm_error)? {
                StreamEvent::Delta(piece) => {
                    if std::mem::take(&mut first) {
                        stage(ANSWER_STAGE_SECONDS, "first_delta", started.elapsed());
                    }
                    if let Some(tx) = deltas {
                        let _ = tx.send(Delta::Text(piece.clone())).await;
                    }
                    text.push_str(&piece);
                }
                StreamEvent::Restart { provider, reason } => {
                    tracing::warn!(%provider, %reason, "provider failed midway; the next one answers");
                    text.clear();
                    if let Some(tx) = deltas {
                        let _ = tx.send(Delta::Restart).await;
                    }
                }
                StreamEvent::Done {
                    provider,
                    usage,
                    animation,
                } => {
                    return Ok(Generated {
                        text,
                        provider,
                        usage,
                        animation,
                    });
                }
            }
        }
        // The stream ended without `Done`: never a half answer marked complete.
        Err(llm_error(LlmError::BadResponse(
            "the answer stream ended early".to_owned(),
        )))
    }

    async fn cache_key(&self, cfg: &PersonaConfig, question: &str) -> Result<String, PersonaError> {
        let version = store::knowledge_version(&self.db, cfg.row.organization_id).await?;
        let normalised = safety::words(question).join(" ");
        let mut h = Sha256::new();
        h.update(cfg.row.id.0.as_bytes());
        h.update(cfg.row.updated_at.to_rfc3339().as_bytes());
        h.update(version.as_bytes());
        h.update(self.model.name().as_bytes());
        h.update(normalised.as_bytes());
        Ok(format!("answer:{}", hex::encode(h.finalize())))
    }

    async fn cached(&self, key: &str) -> Option<Answer> {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "answer cache unavailable");
                None
            }
        }
    }

    async fn store(&self, key: &str, answer: &Answer) {
        let ttl = Duration::from_secs(self.settings.personas.cache_ttl_secs);
        if ttl.is_zero() {
            return;
        }
        match serde_json::to_vec(answer).context("encoding an answer") {
            Ok(bytes) => {
                if let Err(e) = self.cache.set(key, &bytes, ttl).await {
                    tracing::warn!(error = %e, "could not cache an answer");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not cache an answer"),
        }
    }
}

struct Generated {
    text: String,
    provider: String,
    usage: Usage,
    animation: Option<Animation>,
}

/// The animation for an answer whose provider gave none: from what the
/// answer does, not from its words.
fn derive_animation(grounded: bool, cites: &[Citation]) -> Animation {
    if !grounded {
        return Animation {
            gesture: Gesture::Thinking,
            emotion: Emotion::Concerned,
        };
    }
    let figure = cites.iter().any(|c| {
        let q = c.quote.to_lowercase();
        ["figure", "fig.", "table", "diagram", "graph", "chart"]
            .iter()
            .any(|w| q.contains(w))
    });
    Animation {
        gesture: if figure {
            Gesture::Pointing
        } else {
            Gesture::Explaining
        },
        emotion: Emotion::Neutral,
    }
}

/// Every provider failed: `503 llm_unavailable` with a `Retry-After`.
fn llm_error(e: LlmError) -> PersonaError {
    let retry_after = e.retry_after().unwrap_or(Duration::from_secs(30));
    tracing::warn!(error = %e, "no language model could answer");
    PersonaError::LlmUnavailable { retry_after }
}

/// Gesture overrides as stored.
pub type Gestures = BTreeMap<String, Option<String>>;
