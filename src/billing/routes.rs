//! HTTP routes of plans, the subscription, payments and the providers'
//! webhooks.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::model::Plan;
use super::service::SubscriptionView;
use crate::auth::AuthUser;
use crate::auth::routes::ip;
use crate::error::ApiResult;
use crate::http::RouteDef;
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
