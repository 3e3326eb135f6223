//! HTTP routes of analytics: the client events and the reports.

use actix_web::http::Method;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::model::{Flag, Gaps, Overview, Period, StudentPage, StudentRow};
use super::service::{AnalyticsService, ClientEvent, ExportCursor, ExportKind};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::http::RouteDef;
use crate::ids::{PersonaId, SessionId, UserId};
use crate::pagination::{List, PageQuery};
use crate::state::AppState;

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::POST, "/v1/analytics/events", || {
            web::post().to(post_event)
        }),
        RouteDef::new(Method::GET, "/v1/analytics/overview", || {
            web::get().to(overview)
        }),
        RouteDef::new(Method::GET, "/v1/analytics/students", || {
            web::get().to(students)
        }),
        RouteDef::new(Method::GET, "/v1/analytics/students/{user_id}", || {
            web::get().to(student)
        }),
        RouteDef::new(Method::GET, "/v1/analytics/gaps", || web::get().to(gaps)),
        RouteDef::new(Method::GET, "/v1/analytics/flags", || web::get().to(flags)),
        RouteDef::new(Method::GET, "/v1/analytics/export", || {
            web::get().to(export)
        }),
    ]
}

/// A client event. `type` is one of `avatar_viewed`, `citation_opened`,
/// `answer_rated` (with `rating` `up` or `down`); anything else,
/// including the server's own events (`question`, `login`, …), is refused
/// with `422 validation_failed`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EventBody {
    #[serde(rename = "type")]
    kind: String,
    persona_id: Option<PersonaId>,
    /// One of the caller's own sessions.
    session_id: Option<SessionId>,
    seq: Option<i64>,
    rating: Option<String>,
}

/// The period and filter of a report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReportQuery {
    /// First day, `YYYY-MM-DD` (UTC, inclusive); default six days before `to`.
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC, inclusive); default today.
    pub to: Option<String>,
    /// Only this persona's activity.
    pub persona_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl ReportQuery {
    fn parse(&self, svc: &AnalyticsService) -> ApiResult<(Period, Option<PersonaId>)> {
        let period = svc.period(self.from.as_deref(), self.to.as_deref())?;
        let persona = match self.persona_id.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                s.parse::<PersonaId>()
                    .map_err(|_| ApiError::validation("persona_id", "persona_id must be an id."))?,
            ),
        };
        Ok((period, persona))
    }

    fn page(&self) -> ApiResult<crate::pagination::Page> {
        Ok(PageQuery {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
        .parse()?)
    }
}

/// Records a client event for the caller.
#[utoipa::path(post, path = "/v1/analytics/events", tag = "analytics", request_body = EventBody,
    responses((status = 202, description = "Recorded (in the background)"),
        (status = 422, description = "`validation_failed`: a type clients may not post, a bad rating, or a persona or session that is not the caller's")),
    security(("bearer" = [])))]
pub async fn post_event(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<EventBody>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    state
        .analytics
        .record_client_event(
            &user,
            ClientEvent {
                kind: b.kind,
                persona: b.persona_id,
                session: b.session_id,
                seq: b.seq,
                rating: b.rating,
            },
        )
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

/// The organisation's activity over a period and the period of the same
/// length before it (teachers, admins). `active_students`: students who
/// asked or started a session; `sessions`: sessions started;
/// `grounded_rate`: grounded answers per question (`null` without
/// questions); `refusals`: questions declined for any reason;
/// `first_token_ms`: percentiles of the time from a question to the
/// answer's first piece.
#[utoipa::path(get, path = "/v1/analytics/overview", tag = "analytics", params(ReportQuery),
    responses((status = 200, body = Overview), (status = 403), (status = 422, description = "bad `from`, `to` or `persona_id`")),
    security(("bearer" = [])))]
pub async fn overview(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    let (period, persona) = q.parse(&state.analytics)?;
    Ok(HttpResponse::Ok().json(state.analytics.overview(&user, period, persona).await?))
}

/// The organisation's students (oldest account first, paginated) with
/// their activity in the period (teachers, admins). `trend` compares the
/// questions per day of the period's second half with its first half (the
/// first half is the shorter when the days are odd): `improving` at least
/// 25% more, `declining` at least 20% fewer, `stable` in between,
/// `insufficient_data` under 4 questions or for a one-day period.
#[utoipa::path(get, path = "/v1/analytics/students", tag = "analytics", params(ReportQuery),
    responses((status = 200, body = List<StudentRow>), (status = 403), (status = 422)),
    security(("bearer" = [])))]
pub async fn students(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    let (period, persona) = q.parse(&state.analytics)?;
    let page = q.page()?;
    Ok(HttpResponse::Ok().json(
        state
            .analytics
            .students(&user, period, persona, page)
            .await?,
    ))
}

/// One member's activity: teachers and admins for any member of their
/// organisation; a student for themself only (`403` for anyone else).
#[utoipa::path(get, path = "/v1/analytics/students/{user_id}", tag = "analytics", params(("user_id" = String, Path, description = "The member's id"), ReportQuery),
    responses((status = 200, body = StudentPage), (status = 403), (status = 404), (status = 422)),
    security(("bearer" = [])))]
pub async fn student(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<UserId>,
    q: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    let (period, persona) = q.parse(&state.analytics)?;
    Ok(HttpResponse::Ok().json(
        state
            .analytics
            .student(&user, path.into_inner(), period, persona)
            .await?,
    ))
}

/// Questions the material did not cover (declined as `not_covered`),
/// grouped by meaning with the embedder: a question joins the group whose
/// centre it resembles most, from `analytics.gap_similarity` (cosine);
/// `label` is the group's most central question. Largest group first: what
/// to upload next (teachers, admins).
#[utoipa::path(get, path = "/v1/analytics/gaps", tag = "analytics", params(ReportQuery),
    responses((status = 200, body = Gaps), (status = 403), (status = 422)),
    security(("bearer" = [])))]
pub async fn gaps(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    let (period, persona) = q.parse(&state.analytics)?;
    Ok(HttpResponse::Ok().json(state.analytics.gaps(&user, period, persona).await?))
}

/// Questions refused for safety (`reason: safety`) or a blocked topic
/// (`blocked_topic`), newest first, with the session and `seq` to open
/// (teachers, admins).
#[utoipa::path(get, path = "/v1/analytics/flags", tag = "analytics", params(ReportQuery),
    responses((status = 200, body = List<Flag>), (status = 403), (status = 422)),
    security(("bearer" = [])))]
pub async fn flags(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    let (period, persona) = q.parse(&state.analytics)?;
    let page = q.page()?;
    Ok(HttpResponse::Ok().json(state.analytics.flags(&user, period, persona, page).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// `questions` (one row per question), `students` (the students
    /// report) or `daily` (totals per day and persona).
    pub report: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub persona_id: Option<String>,
}

/// Rows read from the database per page of an export.
const EXPORT_PAGE: i64 = 1000;

const QUESTIONS_HEADER: &[&str] = &[
    "at",
    "user_id",
    "full_name",
    "persona_id",
    "session_id",
    "seq",
    "text",
    "grounded",
    "refusal",
    "first_token_ms",
    "total_ms",
    "provider",
];
const STUDENTS_HEADER: &[&str] = &[
    "user_id",
    "full_name",
    "questions",
    "sessions",
    "active_days",
    "last_active_at",
    "trend",
];
const DAILY_HEADER: &[&str] = &[
    "date",
    "persona_id",
    "questions",
    "grounded",
    "refusals",
    "flagged",
    "sessions",
    "logins",
    "active_students",
];

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote, CR or
/// LF, quotes doubled.
pub fn csv_field(out: &mut String, f: &str) {
    if f.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(f);
    }
}

/// One CSV record with its CRLF.
pub fn csv_row<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f.as_ref());
    }
    out.push_str("\r\n");
}

/// A report as `text/csv` (RFC 4180: a header row, CRLF, fields quoted
/// when needed), streamed page by page from the database: memory stays
/// flat whatever the size (teachers, admins).
#[utoipa::path(get, path = "/v1/analytics/export", tag = "analytics", params(ExportQuery),
    responses((status = 200, content_type = "text/csv", description = "questions: at,user_id,full_name,persona_id,session_id,seq,text,grounded,refusal,first_token_ms,total_ms,provider; students: user_id,full_name,questions,sessions,active_days,last_active_at,trend; daily: date,persona_id (empty: outside any persona, e.g. sign-ins),questions,grounded,refusals,flagged,sessions,logins,active_students"),
        (status = 403), (status = 422, description = "unknown `report`, bad dates")),
    security(("bearer" = [])))]
pub async fn export(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<ExportQuery>,
) -> ApiResult<HttpResponse> {
    let kind = ExportKind::parse(&q.report)?;
    let (period, persona) = ReportQuery {
        from: q.from.clone(),
        to: q.to.clone(),
        persona_id: q.persona_id.clone(),
        limit: None,
        cursor: None,
    }
    .parse(&state.analytics)?;
    state.analytics.check_export(&user)?;
    let header = match kind {
        ExportKind::Questions => QUESTIONS_HEADER,
        ExportKind::Students => STUDENTS_HEADER,
        ExportKind::Daily => DAILY_HEADER,
    };
    let mut first = String::new();
    csv_row(&mut first, header);
    let svc = state.analytics.clone();
    let head =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(first)) });
    let body = futures_util::stream::unfold(ExportCursor::Start, move |at| {
        let svc = svc.clone();
        async move {
            if matches!(at, ExportCursor::Done) {
                return None;
            }
            match svc
                .export_page(&user, kind, &period, persona, at, EXPORT_PAGE)
                .await
            {
                Ok((rows, next)) => {
                    let mut out = String::with_capacity(rows.len() * 96);
                    for r in &rows {
                        csv_row(&mut out, r);
                    }
                    Some((Ok(Bytes::from(out)), next))
                }
                Err(e) => {
                    // The status line is sent: the client sees the
                    // connection cut rather than a partial file as whole.
                    tracing::error!(error = %e, "an export stopped midway");
                    Some((
                        Err(std::io::Error::other("the export failed")),
                        ExportCursor::Done,
                    ))
                }
            }
        }
    });
    use futures_util::StreamExt;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"bwenge-{}.csv\"", q.report),
        ))
        .streaming(head.chain(body)))
}
