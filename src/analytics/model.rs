//! Analytics' types: the events the server records, the period a report
//! covers, and the reports themselves as clients receive them.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ids::{EventId, OrgId, PersonaId, SessionId, SourceId, UserId};
use crate::validation::Invalid;

/// What happened. The first six are recorded by the server only; the last
/// three are the only ones clients may add (for themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Login,
    SessionStarted,
    SessionResumed,
    Question,
    SourceReady,
    SourceFailed,
    AvatarViewed,
    CitationOpened,
    AnswerRated,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::SessionStarted => "session_started",
            Kind::SessionResumed => "session_resumed",
            Kind::Question => "question",
            Kind::SourceReady => "source_ready",
            Kind::SourceFailed => "source_failed",
            Kind::AvatarViewed => "avatar_viewed",
            Kind::CitationOpened => "citation_opened",
            Kind::AnswerRated => "answer_rated",
        }
    }

    /// The kinds a client may post.
    pub fn from_client(s: &str) -> Option<Kind> {
        match s {
            "avatar_viewed" => Some(Kind::AvatarViewed),
            "citation_opened" => Some(Kind::CitationOpened),
            "answer_rated" => Some(Kind::AnswerRated),
            _ => None,
        }
    }
}

/// Refusal reasons that are flags (a teacher should look).
pub const FLAG_REASONS: [&str; 2] = ["safety", "blocked_topic"];
/// The refusal reason of a question the material did not cover.
pub const NOT_COVERED: &str = "not_covered";

/// One recorded event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub org: OrgId,
    pub kind: Kind,
    pub user: Option<UserId>,
    pub persona: Option<PersonaId>,
    pub session: Option<SessionId>,
    pub seq: Option<i64>,
    pub text: Option<String>,
    pub grounded: Option<bool>,
    pub refusal: Option<String>,
    pub first_token_ms: Option<i64>,
    pub total_ms: Option<i64>,
    pub provider: Option<String>,
    /// Anything else, as JSON (a source's id and error, a rating, a
    /// question's citation count).
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl Event {
    /// An event of `kind` at `at`. Its id is a version 7 UUID of `at`, so
    /// events are stored (and keyed) in the order they happened.
    pub fn new(org: OrgId, kind: Kind, at: DateTime<Utc>) -> Self {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            at.timestamp().max(0) as u64,
            at.timestamp_subsec_nanos(),
        );
        Self {
            id: EventId(uuid::Uuid::new_v7(ts)),
            org,
            kind,
            user: None,
            persona: None,
            session: None,
            seq: None,
            text: None,
            grounded: None,
            refusal: None,
            first_token_ms: None,
            total_ms: None,
            provider: None,
            detail: serde_json::Value::Object(Default::default()),
            at,
        }
    }

    pub fn login(org: OrgId, user: UserId, at: DateTime<Utc>) -> Self {
        Self {
            user: Some(user),
            ..Self::new(org, Kind::Login, at)
        }
    }

    pub fn session(
        org: OrgId,
        user: UserId,
        persona: PersonaId,
        session: SessionId,
        resumed: bool,
        at: DateTime<Utc>,
    ) -> Self {
        let kind = if resumed {
            Kind::SessionResumed
        } else {
            Kind::SessionStarted
        };
        Self {
            user: Some(user),
            persona: Some(persona),
            session: Some(session),
            ..Self::new(org, kind, at)
        }
    }

    pub fn source(
        org: OrgId,
        source: SourceId,
        ready: bool,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Self {
        let kind = if ready {
            Kind::SourceReady
        } else {
            Kind::SourceFailed
        };
        Self {
            detail: serde_json::json!({ "source_id": source, "error": error }),
            ..Self::new(org, kind, at)
        }
    }

    /// The UTC date of the event, as stored (`YYYY-MM-DD`).
    pub fn day(&self) -> String {
        self.at.date_naive().format("%Y-%m-%d").to_string()
    }
}

/// The most days one report may cover.
pub const MAX_DAYS: i64 = 366;
/// Days covered when `from` and `to` are not given.
pub const DEFAULT_DAYS: u64 = 7;

/// The dates a report covers, both inclusive (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

fn parse_date(field: &str, s: &str) -> Result<NaiveDate, Invalid> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .filter(|_| s.trim().len() == 10)
        .ok_or_else(|| Invalid::new(field, format!("{field} must be a date as YYYY-MM-DD.")))
}

impl Period {
    /// `from`/`to` as given (default: the last 7 days ending `today`).
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        today: NaiveDate,
    ) -> Result<Period, Invalid> {
        let from_given = from.filter(|s| !s.trim().is_empty());
        let to_given = to.filter(|s| !s.trim().is_empty());
        let to = match to_given {
            Some(s) => parse_date("to", s)?,
            None => today,
        };
        let from = match from_given {
            Some(s) => parse_date("from", s)?,
            None => to
                .checked_sub_days(Days::new(DEFAULT_DAYS - 1))
                .ok_or_else(|| Invalid::new("to", "to is out of range."))?,
        };
        if from > to {
            return Err(Invalid::new("from", "from must not be after to."));
        }
        let p = Period { from, to };
        if p.days() > MAX_DAYS {
            return Err(Invalid::new(
                "from",
                format!("A report covers at most {MAX_DAYS} days."),
            ));
        }
        Ok(p)
    }

    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// The period of the same length just before this one.
    pub fn previous(&self) -> Period {
        let n = self.days();
        let to = self.from - chrono::Duration::days(1);
        Period {
            from: to - chrono::Duration::days(n - 1),
            to,
        }
    }

    /// The first day of the second half (the first half is the shorter
    /// when the number of days is odd).
    pub fn middle(&self) -> NaiveDate {
        self.from + chrono::Duration::days(self.days() / 2)
    }

    /// The period as times: its first midnight (UTC) and the midnight
    /// after its last day.
    pub fn times(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let midnight = |d: NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
        let after = self.to.succ_opt().unwrap_or(NaiveDate::MAX);
        (midnight(self.from), midnight(after))
    }

    pub fn from_str(&self) -> String {
        self.from.format("%Y-%m-%d").to_string()
    }

    pub fn to_str(&self) -> String {
        self.to.format("%Y-%m-%d").to_string()
    }

    pub fn each_day(&self) -> impl Iterator<Item = NaiveDate> {
        let from = self.from;
        (0..self.days()).map(move |i| from + chrono::Duration::days(i))
    }
}

/// How a student's activity moves within the period: the questions per
/// day of its second half against its first half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// At least 25% more questions per day in the second half.
    Improving,
    Stable,
    /// At least 20% fewer questions per day in the second half.
    Declining,
    /// Fewer than 4 questions in the period, or a period of one day.
    InsufficientData,
}

/// Questions needed before a trend is told.
pub const TREND_MIN_QUESTIONS: i64 = 4;

impl Trend {
    /// `first` questions in the first half (`first_days` long), `second`
    /// in the second (`second_days` long).
    pub fn of(first: i64, first_days: i64, second: i64, second_days: i64) -> Trend {
        if first_days < 1 || second_days < 1 || first + second < TREND_MIN_QUESTIONS {
            return Trend::InsufficientData;
        }
        let r1 = first as f64 / first_days as f64;
        let r2 = second as f64 / second_days as f64;
        if r2 >= r1 * 1.25 && r2 > r1 {
            Trend::Improving
        } else if r2 <= r1 * 0.8 {
            Trend::Declining
        } else {
            Trend::Stable
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Improving => "improving",
            Trend::Stable => "stable",
            Trend::Declining => "declining",
            Trend::InsufficientData => "insufficient_data",
        }
    }
}

/// First-token latency percentiles of a period (nearest rank), read from a
/// latency histogram kept with the daily totals: exact below 128 ms, the
/// lower edge of a bucket 1/64 wide above (so within 1.6% of the true
/// value). Like the other totals it outlives the raw events' retention.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Percentiles {
    /// Median milliseconds from question to the answer's first piece,
    /// including any wait for a turn to be answered (`null` without
    /// questions).
    pub p50: Option<i64>,
    pub p95: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub questions: i64,
    pub active_students: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PersonaCount {
    pub persona_id: PersonaId,
    /// `null` when the persona has been deleted since.
    pub name: Option<String>,
    pub questions: i64,
}

/// The figures of one period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PeriodFigures {
    pub from: String,
    pub to: String,
    /// Students who asked a question or started a session.
    pub active_students: i64,
    /// Sessions started.
    pub sessions: i64,
    pub questions: i64,
    /// Grounded answers / questions (`null` without questions).
    pub grounded_rate: Option<f64>,
    /// Questions declined (safety, blocked topic, off subject, not covered).
    pub refusals: i64,
    pub first_token_ms: Percentiles,
    pub by_day: Vec<DayCount>,
    /// The five personas asked most, most first.
    pub top_personas: Vec<PersonaCount>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    #[serde(flatten)]
    pub current: PeriodFigures,
    /// The same figures for the period of the same length just before.
    pub previous: PeriodFigures,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StudentRow {
    pub user_id: UserId,
    pub full_name: String,
    pub questions: i64,
    pub sessions: i64,
    /// Days with a question or a session started.
    pub active_days: i64,
    pub last_active_at: Option<DateTime<Utc>>,
    pub trend: Trend,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecentQuestion {
    pub at: DateTime<Utc>,
    pub persona_id: Option<PersonaId>,
    pub session_id: Option<SessionId>,
    pub text: String,
    pub grounded: Option<bool>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StudentPage {
    pub user_id: UserId,
    pub full_name: String,
    pub questions: i64,
    pub sessions: i64,
    pub active_days: i64,
    pub trend: Trend,
    pub by_day: Vec<DayCount>,
    pub by_persona: Vec<PersonaCount>,
    /// The 20 newest questions of the period, newest first.
    pub recent_questions: Vec<RecentQuestion>,
}

/// Questions the material did not cover, alike in meaning.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Gap {
    /// The group's most central question.
    pub label: String,
    pub count: i64,
    /// Up to five distinct questions of the group.
    pub examples: Vec<String>,
    pub persona_ids: Vec<PersonaId>,
    pub last_asked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Gaps {
    pub items: Vec<Gap>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Flag {
    pub at: DateTime<Utc>,
    pub user_id: Option<UserId>,
    pub full_name: Option<String>,
    pub persona_id: Option<PersonaId>,
    pub session_id: Option<SessionId>,
    /// The question's `seq` in its session (`null` for an HTTP `ask`
    /// outside a session).
    pub seq: Option<i64>,
    /// `safety` or `blocked_topic`.
    pub reason: String,
    pub text: String,
}
