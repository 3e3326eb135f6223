//! Analytics' use cases: [`AnalyticsService`] records the client events,
//! reads the reports (from daily totals; latency percentiles, flags, gaps
//! and recent questions from raw events), streams exports page by page,
//! applies retention, erases members, and mails the weekly digest.

use std::collections::BTreeSet;
use std::sync::Arc;

use bwenge_search::Embedder;
use chrono::{DateTime, NaiveDate, Utc};

use super::error::AnalyticsError;
use super::model::{
    DayCount, Event, Flag, Gap, Gaps, Kind, Overview, Percentiles, Period, PeriodFigures,
    PersonaCount, RecentQuestion, StudentPage, StudentRow, Trend,
};
use super::recorder::EventRecorder;
use super::store::{self, Scope, StudentAgg};
use crate::auth::model::Role;
use crate::auth::{AuthUser, Forbidden};
use crate::clock::Clock;
use crate::config::AnalyticsSettings;
use crate::db::Db;
use crate::ids::{EventId, OrgId, PersonaId, SessionId, UserId};
use crate::mail::Mailer;
use crate::pagination::{Cursor, List, Page, page_of};

type Result<T, E = AnalyticsError> = std::result::Result<T, E>;

pub const REPORT_SECONDS: &str = "bwenge_analytics_report_seconds";
/// Questions shown on a student's page.
const RECENT_QUESTIONS: i64 = 20;
/// Examples shown per gap.
const GAP_EXAMPLES: usize = 5;
/// The retention job deletes this many events per statement.
const RETENTION_CHUNK: i64 = 5000;

/// Analytics: recording, reports and the jobs.
#[derive(Clone)]
pub struct AnalyticsService {
    db: Db,
    recorder: EventRecorder,
    embedder: Arc<dyn Embedder>,
    settings: AnalyticsSettings,
    clock: Clock,
}

/// A client event as posted.
#[derive(Debug, Clone, Default)]
pub struct ClientEvent {
    pub kind: String,
    pub persona: Option<PersonaId>,
    pub session: Option<SessionId>,
    pub seq: Option<i64>,
    pub rating: Option<String>,
}

/// Which report `export` streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Questions,
    Students,
    Daily,
}

impl ExportKind {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "questions" => Ok(Self::Questions),
            "students" => Ok(Self::Students),
            "daily" => Ok(Self::Daily),
            _ => Err(AnalyticsError::invalid(
                "report",
                "report must be questions, students or daily.",
            )),
        }
    }
}

/// Where an export stands between pages.
#[derive(Debug, Clone)]
pub enum ExportCursor {
    Start,
    Questions(DateTime<Utc>, EventId),
    Students(DateTime<Utc>, UserId),
    Daily(i64),
    Done,
}

fn staff_only(user: &AuthUser) -> Result<()> {
    user.require_staff()?;
    Ok(())
}

fn day_str(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

impl AnalyticsService {
    pub fn new(
        db: Db,
        recorder: EventRecorder,
        embedder: Arc<dyn Embedder>,
        settings: AnalyticsSettings,
        clock: Clock,
    ) -> Self {
        Self {
            db,
            recorder,
            embedder,
            settings,
            clock,
        }
    }

    pub fn recorder(&self) -> &EventRecorder {
        &self.recorder
    }

    pub fn settings(&self) -> &AnalyticsSettings {
        &self.settings
    }

    /// The period of `from`/`to` (default: the last 7 days, today UTC).
    pub fn period(&self, from: Option<&str>, to: Option<&str>) -> Result<Period> {
        Ok(Period::parse(from, to, self.clock.now().date_naive())?)
    }

    /// Records a client event for the caller: only `avatar_viewed`,
    /// `citation_opened` and `answer_rated`; a persona and session must be
    /// the organisation's (the session the caller's own).
    pub async fn record_client_event(&self, user: &AuthUser, e: ClientEvent) -> Result<()> {
        let kind = Kind::from_client(&e.kind).ok_or_else(|| {
            AnalyticsError::invalid(
                "type",
                "type must be avatar_viewed, citation_opened or answer_rated.",
            )
        })?;
        let rating = match (kind, e.rating.as_deref()) {
            (Kind::AnswerRated, Some(r @ ("up" | "down"))) => Some(r.to_owned()),
            (Kind::AnswerRated, _) => {
                return Err(AnalyticsError::invalid(
                    "rating",
                    "answer_rated needs a rating of up or down.",
                ));
            }
            (_, None) => None,
            (_, Some(_)) => {
                return Err(AnalyticsError::invalid(
                    "rating",
                    "Only answer_rated takes a rating.",
                ));
            }
        };
        if e.seq.is_some_and(|s| s < 1) {
            return Err(AnalyticsError::invalid("seq", "seq must be 1 or more."));
        }
        let mut persona = e.persona;
        if let Some(id) = e.session {
            let s = crate::chat::store::session(&self.db, user.org_id, id)
                .await?
                .filter(|s| s.user_id == user.user_id)
                .ok_or_else(|| {
                    AnalyticsError::invalid("session_id", "No such session of yours.")
                })?;
            if persona.is_some_and(|p| p != s.persona_id) {
                return Err(AnalyticsError::invalid(
                    "persona_id",
                    "The session is with another persona.",
                ));
            }
            persona = Some(s.persona_id);
        }
        if let Some(p) = persona
            && crate::personas::store::get(&self.db, user.org_id, p)
                .await?
                .is_none()
        {
            return Err(AnalyticsError::invalid("persona_id", "No such persona."));
        }
        let mut event = Event::new(user.org_id, kind, self.clock.now());
        event.user = Some(user.user_id);
        event.persona = persona;
        event.session = e.session;
        event.seq = e.seq;
        event.detail = serde_json::json!({ "rating": rating });
        self.recorder.record(event);
        Ok(())
    }

    async fn figures(
        &self,
        org: OrgId,
        p: &Period,
        persona: Option<PersonaId>,
    ) -> Result<PeriodFigures> {
        let scope = Scope::new(org, p, persona);
        // Four reads, side by side on the pool's connections.
        let (sums, days, top, pct) = futures_util::future::try_join4(
            store::sums(&self.db, &scope),
            store::by_day(&self.db, &scope, None),
            store::top_personas(&self.db, &scope, None, 5),
            store::first_token_percentiles(&self.db, &scope, &[0.5, 0.95]),
        )
        .await?;
        Ok(PeriodFigures {
            from: scope.from.clone(),
            to: scope.to.clone(),
            active_students: sums.active_students,
            sessions: sums.sessions,
            questions: sums.questions,
            grounded_rate: (sums.questions > 0)
                .then(|| sums.grounded as f64 / sums.questions as f64),
            refusals: sums.refusals,
            first_token_ms: Percentiles {
                p50: pct.first().copied().flatten(),
                p95: pct.get(1).copied().flatten(),
            },
            by_day: fill_days(p, &days),
            top_personas: top
                .into_iter()
                .map(|(persona_id, name, questions)| PersonaCount {
                    persona_id,
                    name,
                    questions,
                })
                .collect(),
        })
    }

    pub async fn overview(
        &self,
        user: &AuthUser,
        p: Period,
        persona: Option<PersonaId>,
    ) -> Result<Overview> {
        staff_only(user)?;
        let _t = Timer::new("overview");
        let previous = p.previous();
        let (current, previous) = futures_util::future::try_join(
            self.figures(user.org_id, &p, persona),
            self.figures(user.org_id, &previous, persona),
        )
        .await?;
        Ok(Overview { current, previous })
    }

    pub async fn students(
        &self,
        user: &AuthUser,
        p: Period,
        persona: Option<PersonaId>,
        page: Page,
    ) -> Result<List<StudentRow>> {
        staff_only(user)?;
        let _t = Timer::new("students");
        let scope = Scope::new(user.org_id, &p, persona);
        let after = page.after.map(|c| (c.t, UserId(c.id)));
        let rows = store::students(
            &self.db,
            &scope,
            &day_str(p.middle()),
            after,
            i64::from(page.limit) + 1,
        )
        .await?;
        Ok(page_of(
            rows,
            page.limit,
            |r| Cursor {
                t: r.created_at,
                id: r.user_id.0,
            },
            |r| student_row(&p, r),
        ))
    }

    /// One member's page: staff for any member of the organisation, a
    /// student for themself only.
    pub async fn student(
        &self,
        user: &AuthUser,
        id: UserId,
        p: Period,
        persona: Option<PersonaId>,
    ) -> Result<StudentPage> {
        if user.role == Role::Student && user.user_id != id {
            return Err(Forbidden("Students see only their own analytics.").into());
        }
        let _t = Timer::new("student");
        let scope = Scope::new(user.org_id, &p, persona);
        let agg = store::student(&self.db, &scope, &day_str(p.middle()), id)
            .await?
            .ok_or(AnalyticsError::NotFound)?;
        let days = store::by_day(&self.db, &scope, Some(id)).await?;
        let personas = store::top_personas(&self.db, &scope, Some(id), 100).await?;
        let recent = store::recent_questions(&self.db, &scope, id, RECENT_QUESTIONS).await?;
        let row = student_row(&p, agg);
        Ok(StudentPage {
            user_id: row.user_id,
            full_name: row.full_name,
            questions: row.questions,
            sessions: row.sessions,
            active_days: row.active_days,
            trend: row.trend,
            by_day: fill_days(&p, &days),
            by_persona: personas
                .into_iter()
                .map(|(persona_id, name, questions)| PersonaCount {
                    persona_id,
                    name,
                    questions,
                })
                .collect(),
            recent_questions: recent
                .into_iter()
                .map(|q| RecentQuestion {
                    at: q.at,
                    persona_id: q.persona_id,
                    session_id: q.session_id,
                    text: q.text.unwrap_or_default(),
                    grounded: q.grounded,
                })
                .collect(),
        })
    }

    pub async fn flags(
        &self,
        user: &AuthUser,
        p: Period,
        persona: Option<PersonaId>,
        page: Page,
    ) -> Result<List<Flag>> {
        staff_only(user)?;
        let _t = Timer::new("flags");
        let scope = Scope::new(user.org_id, &p, persona);
        let after = page.after.map(|c| (c.t, EventId(c.id)));
        let rows = store::flags(&self.db, &scope, after, i64::from(page.limit) + 1).await?;
        Ok(page_of(
            rows,
            page.limit,
            |r| Cursor {
                t: r.at,
                id: r.id.0,
            },
            |r| Flag {
                at: r.at,
                user_id: r.user_id,
                full_name: r.full_name,
                persona_id: r.persona_id,
                session_id: r.session_id,
                seq: r.seq,
                reason: r.refusal.unwrap_or_default(),
                text: r.text.unwrap_or_default(),
            },
        ))
    }

    /// Questions declined as not covered, grouped by meaning: each joins
    /// the first group whose centre it is at least `gap_similarity` like
    /// (cosine), newest questions first; a group's label is its member
    /// most like the others; largest group first.
    pub async fn gaps(
        &self,
        user: &AuthUser,
        p: Period,
        persona: Option<PersonaId>,
    ) -> Result<Gaps> {
        staff_only(user)?;
        let _t = Timer::new("gaps");
        let scope = Scope::new(user.org_id, &p, persona);
        let rows =
            store::declined(&self.db, &scope, self.settings.gap_max_questions as i64).await?;
        let mut items: Vec<Declined> = rows
            .into_iter()
            .filter_map(|r| {
                let text = r.text?;
                Some(Declined {
                    vector: r
                        .embedding
                        .map(|b| crate::knowledge::index::bytes_to_vector(&b)),
                    text,
                    persona: r.persona_id,
                    at: r.at,
                })
            })
            .collect();
        // Vectors the writer could not make (or another embedder made).
        let dim = self.embedder.dim();
        let missing: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].vector.as_ref().is_none_or(|v| v.len() != dim))
            .collect();
        if !missing.is_empty() {
            let texts: Vec<String> = missing.iter().map(|&i| items[i].text.clone()).collect();
            let vectors = self
                .embedder
                .embed(&texts)
                .await
                .map_err(|e| anyhow::Error::new(e).context("embedding declined questions"))?;
            for (i, v) in missing.into_iter().zip(vectors) {
                items[i].vector = Some(v);
            }
        }
        let threshold = self.settings.gap_similarity;
        let groups = crate::work::blocking(move || group(items, threshold))
            .await
            .map_err(|e| anyhow::Error::new(e).context("grouping gaps"))?;
        Ok(Gaps { items: groups })
    }

    /// One page of an export as CSV rows (without the header), and where
    /// the next page starts.
    pub async fn export_page(
        &self,
        user: &AuthUser,
        kind: ExportKind,
        p: &Period,
        persona: Option<PersonaId>,
        at: ExportCursor,
        page: i64,
    ) -> Result<(Vec<Vec<String>>, ExportCursor)> {
        staff_only(user)?;
        let scope = Scope::new(user.org_id, p, persona);
        match (kind, at) {
            (_, ExportCursor::Done) => Ok((Vec::new(), ExportCursor::Done)),
            (ExportKind::Questions, at) => {
                let after = match at {
                    ExportCursor::Questions(t, id) => Some((t, id)),
                    _ => None,
                };
                let rows = store::questions_page(&self.db, &scope, after, page).await?;
                let next = match rows.last() {
                    Some(l) if rows.len() as i64 == page => ExportCursor::Questions(l.at, l.id),
                    _ => ExportCursor::Done,
                };
                let out = rows
                    .into_iter()
                    .map(|r| {
                        vec![
                            r.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                            opt(r.user_id),
                            r.full_name.unwrap_or_default(),
                            opt(r.persona_id),
                            opt(r.session_id),
                            opt(r.seq),
                            r.text.unwrap_or_default(),
                            opt(r.grounded),
                            r.refusal.unwrap_or_default(),
                            opt(r.first_token_ms),
                            opt(r.total_ms),
                            r.provider.unwrap_or_default(),
                        ]
                    })
                    .collect();
                Ok((out, next))
            }
            (ExportKind::Students, at) => {
                let after = match at {
                    ExportCursor::Students(t, id) => Some((t, id)),
                    _ => None,
                };
                let rows =
                    store::students(&self.db, &scope, &day_str(p.middle()), after, page).await?;
                let next = match rows.last() {
                    Some(l) if rows.len() as i64 == page => {
                        ExportCursor::Students(l.created_at, l.user_id)
                    }
                    _ => ExportCursor::Done,
                };
                let out = rows
                    .into_iter()
                    .map(|r| {
                        let s = student_row(p, r);
                        vec![
                            s.user_id.to_string(),
                            s.full_name,
                            s.questions.to_string(),
                            s.sessions.to_string(),
                            s.active_days.to_string(),
                            s.last_active_at
                                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                                .unwrap_or_default(),
                            s.trend.as_str().to_owned(),
                        ]
                    })
                    .collect();
                Ok((out, next))
            }
            (ExportKind::Daily, at) => {
                let offset = match at {
                    ExportCursor::Daily(o) => o,
                    _ => 0,
                };
                let rows = store::daily(&self.db, &scope, offset, page).await?;
                let next = if rows.len() as i64 == page {
                    ExportCursor::Daily(offset + page)
                } else {
                    ExportCursor::Done
                };
                let nil = store::nil_persona();
                let out = rows
                    .into_iter()
                    .map(|r| {
                        vec![
                            r.day,
                            if r.persona_id == nil {
                                String::new()
                            } else {
                                r.persona_id.to_string()
                            },
                            r.questions.to_string(),
                            r.grounded.to_string(),
                            r.refusals.to_string(),
                            r.flagged.to_string(),
                            r.sessions.to_string(),
                            r.logins.to_string(),
                            r.active_students.to_string(),
                        ]
                    })
                    .collect();
                Ok((out, next))
            }
        }
    }

    /// Checks the caller may export (before the stream starts).
    pub fn check_export(&self, user: &AuthUser) -> Result<()> {
        staff_only(user)
    }

    /// Deletes raw events older than the retention (daily totals stay);
    /// returns how many. Idempotent: a run cut short by a restart is
    /// finished by the next.
    pub async fn apply_retention(&self, now: DateTime<Utc>) -> Result<u64> {
        let cutoff = now - chrono::Duration::days(i64::from(self.settings.retention_days));
        let mut total = 0;
        loop {
            let n = store::delete_events_before(&self.db, cutoff, RETENTION_CHUNK).await?;
            total += n;
            if n < RETENTION_CHUNK as u64 {
                break;
            }
        }
        store::set_job_run(&self.db, RETENTION_JOB, now).await?;
        if total > 0 {
            tracing::info!(deleted = total, "analytics retention applied");
        }
        Ok(total)
    }

    /// Erases a member's analytics events (their totals stay, without
    /// them). Events queued for them are flushed first.
    pub async fn erase_member(&self, org: OrgId, user: UserId) -> Result<()> {
        self.recorder.flush().await;
        store::erase_user(&self.db, org, user).await?;
        Ok(())
    }

    /// Sends the weekly digest when a week has passed since the last one
    /// (kept in the database: a restart neither skips nor repeats one).
    /// Returns how many mails were sent.
    pub async fn digest_if_due(&self, mailer: &dyn Mailer, now: DateTime<Utc>) -> Result<usize> {
        // Claimed first, in one statement (of several nodes only one
        // sends): a crash midway skips this week's remaining mails rather
        // than sending anyone the digest twice.
        if !store::claim_job(&self.db, DIGEST_JOB, now, now - chrono::Duration::days(7)).await? {
            return Ok(0);
        }
        let recipients = store::digest_recipients(&self.db).await?;
        let to = now.date_naive() - chrono::Duration::days(1);
        let p = Period {
            from: to - chrono::Duration::days(6),
            to,
        };
        let mut sent = 0;
        let mut cached: Option<(OrgId, super::digest::Digest)> = None;
        for (org, email, name) in recipients {
            let digest = match &cached {
                Some((o, d)) if *o == org => d.clone(),
                _ => {
                    let d = self.digest_for(org, &p).await?;
                    cached = Some((org, d.clone()));
                    d
                }
            };
            let mail = digest.mail(&email, &name);
            match mailer.send(mail).await {
                Ok(()) => sent += 1,
                Err(e) => tracing::warn!(error = %e, "a weekly digest could not be sent"),
            }
        }
        Ok(sent)
    }

    async fn digest_for(&self, org: OrgId, p: &Period) -> Result<super::digest::Digest> {
        let staff = AuthUser {
            user_id: store::nil_user(),
            org_id: org,
            role: Role::Admin,
        };
        let overview = self.overview(&staff, *p, None).await?;
        let gaps = self.gaps(&staff, *p, None).await?;
        let flags = self
            .flags(
                &staff,
                *p,
                None,
                Page {
                    limit: 20,
                    after: None,
                },
            )
            .await?;
        Ok(super::digest::Digest {
            overview,
            gaps: gaps.items.into_iter().take(5).collect(),
            flags: flags.items,
        })
    }
}

pub const RETENTION_JOB: &str = "retention";
pub const DIGEST_JOB: &str = "weekly_digest";

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn student_row(p: &Period, r: StudentAgg) -> StudentRow {
    let first_days = (p.middle() - p.from).num_days();
    let second_days = p.days() - first_days;
    StudentRow {
        trend: Trend::of(r.first_half, first_days, r.second_half, second_days),
        user_id: r.user_id,
        full_name: r.full_name,
        questions: r.questions,
        sessions: r.sessions,
        active_days: r.active_days,
        last_active_at: r.last_active_at,
    }
}

/// Every day of the period, zero where nothing happened.
fn fill_days(p: &Period, days: &[(String, i64, i64)]) -> Vec<DayCount> {
    p.each_day()
        .map(|d| {
            let date = day_str(d);
            let (q, a) = days
                .iter()
                .find(|(day, _, _)| *day == date)
                .map_or((0, 0), |(_, q, a)| (*q, *a));
            DayCount {
                date,
                questions: q,
                active_students: a,
            }
        })
        .collect()
}

/// A declined question for grouping.
pub struct Declined {
    pub text: String,
    pub persona: Option<PersonaId>,
    pub at: DateTime<Utc>,
    pub vector: Option<Vec<f32>>,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Groups declined questions by meaning (see [`AnalyticsService::gaps`]).
pub fn group(items: Vec<Declined>, threshold: f32) -> Vec<Gap> {
    struct Group {
        centre: Vec<f32>,
        members: Vec<usize>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for (i, d) in items.iter().enumerate() {
        let Some(v) = &d.vector else { continue };
        let best = groups
            .iter()
            .enumerate()
            .map(|(g, grp)| (g, cosine(&grp.centre, v)))
            .filter(|(_, s)| *s >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((g, _)) => {
                let grp = &mut groups[g];
                let n = grp.members.len() as f32;
                for (c, x) in grp.centre.iter_mut().zip(v) {
                    *c = (*c * n + x) / (n + 1.0);
                }
                grp.members.push(i);
            }
            None => groups.push(Group {
                centre: v.clone(),
                members: vec![i],
            }),
        }
    }
    let mut out: Vec<Gap> = groups
        .into_iter()
        .map(|g| {
            // The label: the member most like the others.
            let label_idx = g
                .members
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    let score = |i: usize| -> f32 {
                        let vi = items[i].vector.as_deref().unwrap_or_default();
                        g.members
                            .iter()
                            .map(|&j| cosine(vi, items[j].vector.as_deref().unwrap_or_default()))
                            .sum()
                    };
                    score(a).total_cmp(&score(b)).then(b.cmp(&a))
                })
                .unwrap_or(g.members[0]);
            let mut examples: Vec<String> = Vec::new();
            for &i in &g.members {
                let t = &items[i].text;
                if examples.len() < GAP_EXAMPLES
                    && !examples.iter().any(|e| e.eq_ignore_ascii_case(t))
                {
                    examples.push(t.clone());
                }
            }
            let personas: BTreeSet<PersonaId> =
                g.members.iter().filter_map(|&i| items[i].persona).collect();
            Gap {
                label: items[label_idx].text.clone(),
                count: g.members.len() as i64,
                examples,
                persona_ids: personas.into_iter().collect(),
                last_asked_at: g
                    .members
                    .iter()
                    .map(|&i| items[i].at)
                    .max()
                    .unwrap_or(DateTime::<Utc>::MIN_UTC),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.last_asked_at.cmp(&a.last_asked_at))
    });
    out
}

/// Records a report's latency in `bwenge_analytics_report_seconds`.
struct Timer {
    report: &'static str,
    started: std::time::Instant,
}

impl Timer {
    fn new(report: &'static str) -> Self {
        Self {
            report,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        metrics::histogram!(REPORT_SECONDS, "report" => self.report)
            .record(self.started.elapsed().as_secs_f64());
    }
}
