//! HTTP routes of plans, the subscription, payments and the providers'
//! webhooks.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::Plan;
use super::payments::{Checkout, PaymentView};
use super::service::SubscriptionView;
use crate::auth::AuthUser;
use crate::auth::routes::ip;
use crate::error::ApiResult;
use crate::http::RouteDef;
use crate::ids::PaymentId;
use crate::pagination::{List, PageQuery};
use crate::state::AppState;

pub fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(Method::GET, "/v1/plans", || web::get().to(list_plans)),
        RouteDef::new(Method::GET, "/v1/subscription", || {
            web::get().to(get_subscription)
        }),
        RouteDef::new(Method::POST, "/v1/subscription/cancel", || {
            web::post().to(cancel_subscription)
        }),
        RouteDef::new(Method::POST, "/v1/subscription/checkout", || {
            web::post().to(checkout)
        }),
        RouteDef::new(Method::GET, "/v1/payments", || web::get().to(list_payments)),
        RouteDef::new(Method::GET, "/v1/payments/{id}", || {
            web::get().to(get_payment)
        }),
        RouteDef::new(Method::POST, "/v1/webhooks/stripe", || {
            web::post().to(stripe_webhook)
        }),
        RouteDef::new(Method::POST, "/v1/webhooks/mtn-momo", || {
            web::post().to(momo_callback)
        }),
        RouteDef::new(Method::POST, "/v1/webhooks/airtel-money", || {
            web::post().to(airtel_callback)
        }),
    ]
}

#[derive(Serialize, ToSchema)]
pub struct PlanList {
    items: Vec<Plan>,
}

/// The plans on sale, with their monthly prices (integers in the
/// currency's minor unit: RWF has none, USD in cents) and allowances
/// (`null`: unlimited). No authentication.
#[utoipa::path(get, path = "/v1/plans", tag = "billing",
    responses((status = 200, body = PlanList)))]
pub async fn list_plans(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(PlanList {
        items: state.billing.plans().all().to_vec(),
    })
}

/// The organisation's subscription and its usage this month (admins and
/// teachers; students `403`).
#[utoipa::path(get, path = "/v1/subscription", tag = "billing",
    responses((status = 200, body = SubscriptionView), (status = 403)),
    security(("bearer" = [])))]
pub async fn get_subscription(
    state: web::Data<AppState>,
    user: AuthUser,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.billing.subscription(&user).await?))
}

/// Cancels at the end of the current period (admins): the plan runs until
/// `current_period_end`, then the organisation returns to `free`, keeping
/// its data. `409 conflict` on `free`.
#[utoipa::path(post, path = "/v1/subscription/cancel", tag = "billing",
    responses((status = 200, body = SubscriptionView), (status = 403), (status = 409)),
    security(("bearer" = [])))]
pub async fn cancel_subscription(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
) -> ApiResult<HttpResponse> {
    let view = state.billing.cancel(&user, &ip(&req, &state)).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize, ToSchema)]
pub struct CheckoutBody {
    /// `basic`, `pro` or `enterprise`.
    plan: String,
    /// `mtn_momo`, `airtel_money` or `stripe`.
    method: String,
    /// The payer's phone, E.164 (`+250788123456`): mobile money only.
    phone: Option<String>,
}

/// Starts paying for a plan (admins): `201 payment`, `pending`. Mobile
/// money prompts the payer's phone; Stripe answers with `checkout_url`.
/// The plan changes only once the provider confirms the payment (read it
/// back with `GET /v1/payments/{id}`). A method not enabled on this server
/// is `422` on `method`; a provider that refuses Stripe's session is `503
/// payment_provider_unavailable`.
#[utoipa::path(post, path = "/v1/subscription/checkout", tag = "billing", request_body = CheckoutBody,
    responses((status = 201, body = PaymentView), (status = 403), (status = 422),
        (status = 503, description = "`payment_provider_unavailable`")),
    security(("bearer" = [])))]
pub async fn checkout(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: web::Json<CheckoutBody>,
) -> ApiResult<HttpResponse> {
    let payment = state
        .billing
        .checkout(
            &user,
            &ip(&req, &state),
            Checkout {
                plan: &body.plan,
                method: &body.method,
                phone: body.phone.as_deref(),
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(payment))
}

/// The organisation's payments, newest first (admins).
#[utoipa::path(get, path = "/v1/payments", tag = "billing", params(PageQuery),
    responses((status = 200, body = List<PaymentView>), (status = 403)),
    security(("bearer" = [])))]
pub async fn list_payments(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let page = q.parse()?;
    Ok(HttpResponse::Ok().json(state.billing.payments(&user, page).await?))
}

/// One payment (admins). A pending one is first looked up at the provider.
#[utoipa::path(get, path = "/v1/payments/{id}", tag = "billing",
    params(("id" = String, Path, description = "The payment's id")),
    responses((status = 200, body = PaymentView), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn get_payment(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<PaymentId>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.billing.payment(&user, path.into_inner()).await?))
}

#[derive(Serialize, ToSchema)]
pub struct Received {
    received: bool,
}

/// Stripe's events (`checkout.session.completed`, `invoice.paid`,
/// `invoice.payment_failed`, `customer.subscription.updated`,
/// `customer.subscription.deleted`). `Stripe-Signature` is verified
/// (HMAC-SHA256, five minutes' tolerance); each event id is applied once.
/// A bad or stale signature is `400 invalid_signature`.
#[utoipa::path(post, path = "/v1/webhooks/stripe", tag = "billing",
    request_body(content = String, content_type = "application/json", description = "A Stripe event"),
    responses((status = 200, body = Received), (status = 400, description = "`invalid_signature`")))]
pub async fn stripe_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let signature = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    state.billing.stripe_webhook(&body, signature).await?;
    Ok(HttpResponse::Ok().json(Received { received: true }))
}

/// MTN MoMo's callback. It only names a payment: the payment changes
/// only after MTN's own status look-up confirms it.
#[utoipa::path(post, path = "/v1/webhooks/mtn-momo", tag = "billing",
    request_body(content = String, content_type = "application/json", description = "MoMo's callback"),
    responses((status = 200, body = Received), (status = 400, description = "`invalid_signature`: not MoMo's JSON")))]
pub async fn momo_callback(
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    state.billing.momo_callback(&body).await?;
    Ok(HttpResponse::Ok().json(Received { received: true }))
}

/// Airtel Money's callback. It only names a payment: the payment changes
/// only after Airtel's own status enquiry confirms it.
#[utoipa::path(post, path = "/v1/webhooks/airtel-money", tag = "billing",
    request_body(content = String, content_type = "application/json", description = "Airtel's callback"),
    responses((status = 200, body = Received), (status = 400, description = "`invalid_signature`: not Airtel's JSON")))]
pub async fn airtel_callback(
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    state.billing.airtel_callback(&body).await?;
    Ok(HttpResponse::Ok().json(Received { received: true }))
}
