//! The one place where errors become HTTP answers.
//!
//! Every domain has its own `thiserror` enum with no HTTP in it; each maps
//! into [`ApiError`] with an exhaustive `match`. [`ErrorCode`] is the single
//! table of stable codes and their statuses. Every error answer is
//! `application/problem+json`:
//! `{"type","title","status","detail","code","request_id"}`, with
//! `Retry-After` on 429 and 503. Unexpected errors are logged with their whole
//! chain and reach the client only as `internal`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::StoreError;

use crate::analytics::AnalyticsError;
use crate::auth::{AuthError, Forbidden};
use crate::avatars::service::AvatarError;
use crate::billing::BillingError;
use crate::classroom::ClassroomError;
use crate::knowledge::KnowledgeError;
use crate::orgs::OrgError;
use crate::personas::PersonaError;
use crate::validation::Invalid;
use bwenge_avatars::signing::SignatureError;

tokio::task_local! {
    /// The id of the request being served, so error bodies built deep in a
    /// handler can carry it. Set by the request middleware.
    pub static REQUEST_ID: String;
}

/// The current request's id, when called while serving a request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// Stable error codes clients switch on. Never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    ValidationFailed,
    InvalidCredentials,
    InvalidToken,
    Unauthorized,
    Forbidden,
    AccountLocked,
    NotFound,
    MethodNotAllowed,
    Conflict,
    EmailTaken,
    LastAdmin,
    PayloadTooLarge,
    UnsupportedMediaType,
    RangeNotSatisfiable,
    QuotaExceeded,
    RateLimited,
    /// A payment provider (MTN MoMo, Airtel Money, Stripe) did not answer.
    PaymentProviderUnavailable,
    /// A webhook whose signature, timestamp or body does not hold.
    InvalidSignature,
    Internal,
    ServiceUnavailable,
    LlmUnavailable,
    /// More questions wait to be answered on this node than it lets wait
    /// (`chat.answer_queue`): not stored; ask again after Retry-After.
    Overloaded,
    /// Chat frames (WebSocket only): malformed, of an unknown type, too
    /// large, or a question before a session.
    BadFrame,
    UnknownType,
    FrameTooLarge,
    NoSession,
}

impl ErrorCode {
    /// The table: code → (status, title).
    pub const fn spec(self) -> (StatusCode, &'static str) {
        use ErrorCode::*;
        match self {
            BadRequest => (StatusCode::BAD_REQUEST, "Bad request"),
            ValidationFailed => (StatusCode::UNPROCESSABLE_ENTITY, "Validation failed"),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "Invalid credentials"),
            InvalidToken => (StatusCode::BAD_REQUEST, "Invalid or expired token"),
            Unauthorized => (StatusCode::UNAUTHORIZED, "Not authenticated"),
            Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
            AccountLocked => (StatusCode::LOCKED, "Account locked"),
            NotFound => (StatusCode::NOT_FOUND, "Not found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            Conflict => (StatusCode::CONFLICT, "Conflict"),
            EmailTaken => (StatusCode::CONFLICT, "Email already registered"),
            LastAdmin => (StatusCode::CONFLICT, "Last admin"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type"),
            RangeNotSatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, "Range not satisfiable"),
            QuotaExceeded => (StatusCode::PAYMENT_REQUIRED, "Quota exceeded"),
            RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
            PaymentProviderUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Payment provider unavailable",
            ),
            InvalidSignature => (StatusCode::BAD_REQUEST, "Invalid signature"),
            Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
            ServiceUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
            LlmUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Language model unavailable",
            ),
            Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many questions waiting",
            ),
            BadFrame => (StatusCode::BAD_REQUEST, "Malformed frame"),
            UnknownType => (StatusCode::BAD_REQUEST, "Unknown frame type"),
            FrameTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Frame too large"),
            NoSession => (StatusCode::CONFLICT, "No session"),
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "bad_request",
            ValidationFailed => "validation_failed",
            InvalidCredentials => "invalid_credentials",
            InvalidToken => "invalid_token",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            AccountLocked => "account_locked",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Conflict => "conflict",
            EmailTaken => "email_taken",
            LastAdmin => "last_admin",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            RangeNotSatisfiable => "range_not_satisfiable",
            QuotaExceeded => "quota_exceeded",
            RateLimited => "rate_limited",
            PaymentProviderUnavailable => "payment_provider_unavailable",
            InvalidSignature => "invalid_signature",
            Internal => "internal",
            ServiceUnavailable => "service_unavailable",
            LlmUnavailable => "llm_unavailable",
            Overloaded => "overloaded",
            BadFrame => "bad_frame",
            UnknownType => "unknown_type",
            FrameTooLarge => "frame_too_large",
            NoSession => "no_session",
        }
    }

    /// The code for a bare status, for errors produced outside our handlers
    /// (the framework's own answers).
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::BadRequest,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            409 => Self::Conflict,
            413 => Self::PayloadTooLarge,
            415 => Self::UnsupportedMediaType,
            416 => Self::RangeNotSatisfiable,
            422 => Self::ValidationFailed,
            423 => Self::AccountLocked,
            429 => Self::RateLimited,
            503 => Self::ServiceUnavailable,
            s if s < 500 => Self::BadRequest,
            _ => Self::Internal,
        }
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    /// Shown to the client: a sentence about what was wrong, never internals.
    pub detail: String,
    /// For `validation_failed`: the offending field.
    pub field: Option<String>,
    pub retry_after: Option<Duration>,
    /// The cause, logged and never sent.
    pub source: Option<anyhow::Error>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            field: None,
            retry_after: None,
            source: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "The resource does not exist.")
    }

    pub fn forbidden() -> Self {
        Self::new(
            ErrorCode::Forbidden,
            "Your role does not allow this action.",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "A valid access token is required.")
    }

    pub fn validation(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::ValidationFailed, detail);
        e.field = Some(field.into());
        e
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, detail)
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        Self::new(
            ErrorCode::RateLimited,
            "Too many requests; try again later.",
        )
        .with_retry_after(retry_after)
    }

    pub fn unavailable(detail: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(ErrorCode::ServiceUnavailable, detail).with_retry_after(retry_after)
    }

    /// An unexpected failure: logged with its chain, answered as `internal`.
    pub fn internal(source: anyhow::Error) -> Self {
        let mut e = Self::new(
            ErrorCode::Internal,
            "Something went wrong on our side; it has been logged.",
        );
        e.source = Some(source);
        e
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.spec().0
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(e)
    }
}

/// The problem+json body.
#[derive(Debug, Serialize)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'a str,
    pub status: u16,
    pub detail: &'a str,
    pub code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Builds a problem+json answer. The one function that writes error bodies.
pub fn problem_response(
    code: ErrorCode,
    detail: &str,
    field: Option<&str>,
    retry_after: Option<Duration>,
    request_id: Option<String>,
) -> HttpResponse {
    let (status, title) = code.spec();
    let body = Problem {
        kind: format!("https://bwenge.dev/problems/{}", code.as_str()),
        title,
        status: status.as_u16(),
        detail,
        code: code.as_str(),
        field,
        request_id,
    };
    let mut res = HttpResponse::build(status);
    res.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    ));
    let retry_after = retry_after.or(match status {
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
            Some(Duration::from_secs(1))
        }
        _ => None,
    });
    if let Some(after) = retry_after {
        // Whole seconds, rounded up: a client waiting this long will succeed.
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        res.insert_header((header::RETRY_AFTER, secs.max(1).to_string()));
    }
    match serde_json::to_vec(&body) {
        Ok(bytes) => res.body(bytes),
        Err(_) => res.finish(),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(source) = &self.source {
            tracing::error!(error = ?source, code = self.code.as_str(), "request failed");
        }
        problem_response(
            self.code,
            &self.detail,
            self.field.as_deref(),
            self.retry_after,
            current_request_id(),
        )
    }
}

/// `Result` of handlers and services that answer HTTP.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::Conflict(_) => ApiError::new(
                ErrorCode::Conflict,
                "The request conflicts with existing data.",
            ),
            StoreError::Unavailable(source) => {
                tracing::error!(error = ?source, "database unavailable");
                ApiError::unavailable(
                    "The database is not answering; try again shortly.",
                    Duration::from_secs(2),
                )
            }
            StoreError::Other(source) => ApiError::internal(source),
        }
    }
}

// ---------------------------------------------------------------------------
// Domain errors → answers. One function per domain, each an exhaustive
// `match` with no `_` arm: a new variant does not compile until it has its
// status and code here.

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::validation(e.field, e.detail)
    }
}

impl From<Forbidden> for ApiError {
    fn from(e: Forbidden) -> Self {
        ApiError::new(ErrorCode::Forbidden, e.0)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(e) => e.into(),
            AuthError::InvalidCredentials => ApiError::new(
                ErrorCode::InvalidCredentials,
                "The email or password is not right.",
            ),
            AuthError::Locked { retry_after } => ApiError::new(
                ErrorCode::AccountLocked,
                "Too many failed sign-ins: this account is locked for a while. Try again later or reset the password.",
            )
            .with_retry_after(retry_after),
            AuthError::EmailTaken => {
                let mut e = ApiError::new(
                    ErrorCode::EmailTaken,
                    "An account with this email address already exists.",
                );
                e.field = Some("email".into());
                e
            }
            AuthError::InvalidLink => ApiError::new(
                ErrorCode::InvalidToken,
                "This link is invalid, already used or expired; ask for a new one.",
            ),
            AuthError::InvalidRefresh => ApiError::new(
                ErrorCode::Unauthorized,
                "The refresh token is not valid; sign in again.",
            ),
            AuthError::Unauthenticated => ApiError::unauthorized(),
            AuthError::Forbidden(e) => e.into(),
            AuthError::RateLimited { retry_after } => ApiError::rate_limited(retry_after),
            AuthError::Busy { retry_after } => ApiError::unavailable(
                "The server is busy signing people in; try again in a moment.",
                retry_after,
            ),
            AuthError::Store(e) => e.into(),
            AuthError::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<OrgError> for ApiError {
    fn from(e: OrgError) -> Self {
        match e {
            OrgError::Invalid(e) => e.into(),
            OrgError::Forbidden(e) => e.into(),
            OrgError::NotFound | OrgError::InvitationNotFound => ApiError::not_found(),
            OrgError::LastAdmin => ApiError::new(
                ErrorCode::LastAdmin,
                "An organisation needs at least one admin: promote someone else first.",
            ),
            OrgError::QuotaExceeded(detail) => ApiError::new(ErrorCode::QuotaExceeded, detail),
            OrgError::InvalidInvitation => ApiError::new(
                ErrorCode::InvalidToken,
                "This invitation is invalid, already used or expired; ask for a new one.",
            ),
            OrgError::Auth(e) => e.into(),
            OrgError::Store(e) => e.into(),
            OrgError::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<AvatarError> for ApiError {
    fn from(e: AvatarError) -> Self {
        match e {
            AvatarError::NotFound => ApiError::not_found(),
            AvatarError::Refused(m) if m.is_unsupported_type() => {
                ApiError::new(ErrorCode::UnsupportedMediaType, m.message())
            }
            AvatarError::Refused(m) => ApiError::validation("file", m.message()),
            AvatarError::Invalid { field, detail } => ApiError::validation(field, detail),
            AvatarError::Link(SignatureError::Expired) => ApiError::new(
                ErrorCode::Forbidden,
                "This link has expired; fetch the model again for a fresh one.",
            ),
            AvatarError::Link(SignatureError::Invalid) => {
                ApiError::new(ErrorCode::Forbidden, "This link is not valid.")
            }
            AvatarError::QuotaExceeded(detail) => ApiError::new(ErrorCode::QuotaExceeded, detail),
            AvatarError::Store(e) => e.into(),
            AvatarError::Other(e) => ApiError::internal(e),
        }
    }
}

impl From<KnowledgeError> for ApiError {
    fn from(e: KnowledgeError) -> Self {
        match e {
            KnowledgeError::Invalid(e) => e.into(),
            KnowledgeError::Forbidden(e) => e.into(),
            KnowledgeError::NotFound => ApiError::not_found(),
            KnowledgeError::Unsupported(detail) => {
                ApiError::new(ErrorCode::UnsupportedMediaType, detail)
            }
            KnowledgeError::QuotaExceeded(detail) => {
                ApiError::new(ErrorCode::QuotaExceeded, detail)
            }
            KnowledgeError::Store(e) => e.into(),
            KnowledgeError::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<PersonaError> for ApiError {
    fn from(e: PersonaError) -> Self {
        match e {
            PersonaError::Invalid(e) => e.into(),
            PersonaError::Forbidden(e) => e.into(),
            PersonaError::NotFound => ApiError::not_found(),
            PersonaError::LlmUnavailable { retry_after } => ApiError::new(
                ErrorCode::LlmUnavailable,
                "No language model can answer right now; try again shortly.",
            )
            .with_retry_after(retry_after),
            PersonaError::Store(e) => e.into(),
            PersonaError::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<ClassroomError> for ApiError {
    fn from(e: ClassroomError) -> Self {
        match e {
            ClassroomError::StaffOnly => ApiError::new(
                ErrorCode::Forbidden,
                "Only teachers and admins can watch the live classroom.",
            ),
            ClassroomError::PersonaNotFound => ApiError::not_found(),
            ClassroomError::Unavailable(detail) => {
                tracing::warn!(%detail, "the live classroom is unavailable");
                ApiError::unavailable(
                    "The live classroom is unavailable right now; try again shortly.",
                    Duration::from_secs(5),
                )
            }
            ClassroomError::Store(e) => e.into(),
        }
    }
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Invalid(e) => e.into(),
            BillingError::Forbidden(e) => e.into(),
            BillingError::NotFound => ApiError::not_found(),
            BillingError::QuotaExceeded(detail) => ApiError::new(ErrorCode::QuotaExceeded, detail),
            BillingError::Conflict(detail) => ApiError::new(ErrorCode::Conflict, detail),
            BillingError::MethodUnavailable(detail) => ApiError::validation("method", detail),
            BillingError::Provider(source) => {
                let mut e = ApiError::new(
                    ErrorCode::PaymentProviderUnavailable,
                    "The payment provider did not answer; nothing was charged by this request. \
                     Try again shortly.",
                )
                .with_retry_after(Duration::from_secs(5));
                tracing::warn!(error = ?source, "payment provider failed");
                e.source = None;
                e
            }
            BillingError::BadWebhook(detail) => ApiError::new(ErrorCode::InvalidSignature, detail),
            BillingError::Store(e) => e.into(),
            BillingError::Internal(e) => ApiError::internal(e),
        }
    }
}

/// Chat's row of the table: each [`ChatError`] with its code, for HTTP
/// answers and the WebSocket's `error` frames alike.
///
/// [`ChatError`]: crate::chat::ChatError
pub fn chat_code(e: &crate::chat::ChatError) -> ErrorCode {
    use crate::chat::{BadFrame, ChatError};
    match e {
        // Another user's session reads as one that does not exist.
        ChatError::SessionNotFound | ChatError::PersonaNotFound | ChatError::NotYourSession => {
            ErrorCode::NotFound
        }
        ChatError::InvalidQuestion(_) => ErrorCode::ValidationFailed,
        ChatError::NotSessionOwner => ErrorCode::Forbidden,
        ChatError::NoSession => ErrorCode::NoSession,
        ChatError::RateLimited { .. } => ErrorCode::RateLimited,
        ChatError::InvalidFrame(b) => match b {
            BadFrame::NotJson
            | BadFrame::NoType
            | BadFrame::Start
            | BadFrame::Resume
            | BadFrame::Message
            | BadFrame::Auth
            | BadFrame::NotText => ErrorCode::BadFrame,
            BadFrame::UnknownType(_) => ErrorCode::UnknownType,
            BadFrame::TooLarge { .. } => ErrorCode::FrameTooLarge,
        },
        ChatError::ModelUnavailable { .. } => ErrorCode::LlmUnavailable,
        ChatError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
        ChatError::Unavailable { .. } => ErrorCode::ServiceUnavailable,
        ChatError::Overloaded { .. } => ErrorCode::Overloaded,
        ChatError::Store(s) => match s {
            StoreError::NotFound => ErrorCode::NotFound,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            StoreError::Other(_) => ErrorCode::Internal,
        },
        ChatError::Internal(_) => ErrorCode::Internal,
    }
}

/// [`chat_code`] as status and code string.
pub fn chat(e: &crate::chat::ChatError) -> (StatusCode, &'static str) {
    let code = chat_code(e);
    (code.spec().0, code.as_str())
}

impl From<crate::chat::ChatError> for ApiError {
    fn from(e: crate::chat::ChatError) -> Self {
        use crate::chat::ChatError;
        let code = chat_code(&e);
        let mut api = ApiError::new(code, e.client_message());
        api.retry_after = e.retry_after();
        match e {
            ChatError::NotYourSession => api.field = Some("session_id".into()),
            ChatError::InvalidQuestion(_) => api.field = Some("question".into()),
            ChatError::Store(s) => return ApiError::from(s),
            ChatError::Internal(source) => api.source = Some(source),
            ChatError::SessionNotFound
            | ChatError::PersonaNotFound
            | ChatError::NotSessionOwner
            | ChatError::NoSession
            | ChatError::RateLimited { .. }
            | ChatError::InvalidFrame(_)
            | ChatError::ModelUnavailable { .. }
            | ChatError::QuotaExceeded(_)
            | ChatError::Unavailable { .. }
            | ChatError::Overloaded { .. } => {}
        }
        api
    }
}

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> Self {
        match e {
            AnalyticsError::Invalid(e) => e.into(),
            AnalyticsError::Forbidden(e) => e.into(),
            AnalyticsError::NotFound => ApiError::not_found(),
            AnalyticsError::Store(e) => e.into(),
            AnalyticsError::Internal(e) => ApiError::internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes_are_snake_case_and_match_serde() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::ValidationFailed,
            ErrorCode::EmailTaken,
            ErrorCode::LlmUnavailable,
            ErrorCode::RangeNotSatisfiable,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().into()));
        }
    }

    #[test]
    fn statuses_round_trip_through_for_status() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::RateLimited,
            ErrorCode::Internal,
        ] {
            assert_eq!(ErrorCode::for_status(code.spec().0), code);
        }
    }
}
