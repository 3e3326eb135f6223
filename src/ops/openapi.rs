//! The OpenAPI 3 document of every `/v1` route, served at
//! `/v1/openapi.json`. A test walks the route table and fails on any `/v1`
//! route missing here, so new routes must be listed in [`ApiDoc`].

use actix_web::HttpResponse;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bwenge API",
        version = "1",
        description = "Real-time AI tutoring for schools. Errors are application/problem+json \
            with a stable `code`; lists take `limit` (default 50, max 200) and `cursor` and \
            answer `{items, next_cursor}`; every answer carries `X-Request-Id`."
    ),
    paths(
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
        openapi_json,
        crate::auth::routes::register,
        crate::auth::routes::login,
        crate::auth::routes::refresh,
        crate::auth::routes::logout,
        crate::auth::routes::me,
        crate::auth::routes::update_me,
        crate::auth::routes::verify_email,
        crate::auth::routes::resend_verification,
        crate::auth::routes::password_reset,
        crate::auth::routes::password_reset_confirm,
        crate::orgs::routes::invite,
        crate::orgs::routes::accept,
        crate::orgs::routes::list_invitations,
        crate::orgs::routes::revoke_invitation,
        crate::orgs::routes::list_members,
        crate::orgs::routes::change_role,
        crate::orgs::routes::remove_member,
        crate::orgs::routes::list_audit,
        crate::knowledge::routes::upload_source,
        crate::knowledge::routes::list_sources,
        crate::knowledge::routes::get_source,
        crate::knowledge::file::source_file,
        crate::knowledge::file::file_link,
        crate::knowledge::routes::delete_source,
        crate::knowledge::routes::search,
        crate::personas::routes::create,
        crate::personas::routes::list,
        crate::personas::routes::get,
        crate::personas::routes::update,
        crate::personas::routes::delete,
        crate::chat::ask::ask,
        crate::chat::list_sessions,
        crate::chat::get_session,
        crate::chat::ws::chat_ws,
        crate::classroom::routes::classroom_ws,
        crate::avatars::upload_model,
        crate::avatars::list_models,
        crate::avatars::get_model,
        crate::avatars::add_version,
        crate::avatars::delete_model,
        crate::avatars::persona_avatar,
        crate::analytics::routes::post_event,
        crate::analytics::routes::overview,
        crate::analytics::routes::students,
        crate::analytics::routes::student,
        crate::analytics::routes::gaps,
        crate::analytics::routes::flags,
        crate::analytics::routes::export,
        crate::billing::routes::list_plans,
        crate::billing::routes::get_subscription,
        crate::billing::routes::cancel_subscription,
        crate::billing::routes::checkout,
        crate::billing::routes::list_payments,
        crate::billing::routes::get_payment,
        crate::billing::routes::stripe_webhook,
        crate::billing::routes::momo_callback,
        crate::billing::routes::airtel_callback,
    ),
    components(schemas(
        crate::ops::Health,
        crate::ops::Readiness,
        ProblemSchema,
        crate::classroom::frames::ClassroomFrame,
        crate::classroom::frames::ClassroomClientFrame,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "identity", description = "Accounts, tokens, verification, password reset"),
        (name = "organisation", description = "Members, invitations, audit log"),
        (name = "knowledge", description = "Course material and search"),
        (name = "classroom", description = "The live classroom: who is online, questions and answers as they happen"),
        (name = "analytics", description = "Activity recorded by the server: overview, students, knowledge gaps, flags, CSV export"),
        (name = "billing", description = "Plans, the subscription, payments, provider webhooks. \
            Past an allowance (questions a month, storage, members) calls answer \
            `402 quota_exceeded`, and the chat socket an `error` frame with that code."),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme (JWT access tokens).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The problem+json error body every failing call answers.
#[derive(utoipa::ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemSchema {
    /// A URI naming the problem type.
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable snake_case code clients switch on.
    code: String,
    /// For `validation_failed`: the offending field.
    field: Option<String>,
    /// The `X-Request-Id` of the call, to quote to support.
    request_id: Option<String>,
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
