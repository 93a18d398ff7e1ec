//! The suite's routes, served on kiada's port beside kiada's own (the lab page shows them):
//!
//! - `GET /lab/pods`: every pod at a glance (text, or JSON with `Accept: application/json`);
//! - `DELETE /lab/pods/NAME`: deletes a pod; its Deployment replaces it;
//! - `POST /lab/rollout?service=quote|quiz|kiada`: replaces a Service's pods one by one.
//!
//! They change only the suite's own instances, by name or Service, never anything a client
//! names otherwise; one rollout per Service at a time; and a browser may ask for a change only
//! from kiada's own pages (no other site's page can restart the suite's pods for it).

use std::sync::{Arc, OnceLock, Weak};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use kit::negotiate::WantsJson;
use serde::Deserialize;

use crate::cluster::{Cluster, ControlError, Service};
use crate::pods;

/// The cluster, once it is built (the routes are made before it, for kiada's instances).
pub(crate) type Registry = Arc<OnceLock<Weak<Cluster>>>;

pub(crate) fn router(registry: Registry) -> Router {
    Router::new()
        .route("/lab/pods", get(list))
        .route("/lab/pods/{name}", delete(delete_pod))
        .route("/lab/rollout", post(rollout))
        .with_state(registry)
}

/// Why a request to the suite's routes is answered with an error.
#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(
        "the suite's pods are changed only from kiada's own pages or a terminal, not from another site"
    )]
    CrossSite,
    #[error("the suite is starting or stopping; try again")]
    Unavailable,
}

impl IntoResponse for RouteError {
    fn into_response(self) -> Response {
        let status = match &self {
            RouteError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RouteError::Control(ControlError::NoSuchPod(_)) => StatusCode::NOT_FOUND,
            RouteError::Control(ControlError::ShuttingDown) | RouteError::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RouteError::Control(_) => StatusCode::CONFLICT,
            RouteError::CrossSite => StatusCode::FORBIDDEN,
        };
        (status, format!("{self}\n")).into_response()
    }
}

fn cluster(registry: &Registry) -> Result<Arc<Cluster>, RouteError> {
    registry
        .get()
        .and_then(Weak::upgrade)
        .ok_or(RouteError::Unavailable)
}

/// A change asked by a page of another site is refused: only a request without `Origin` (curl),
/// or from kiada's own origin, and with `Sec-Fetch-Site` absent, `none` or `same-origin`.
fn same_origin(headers: &HeaderMap) -> Result<(), RouteError> {
    let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = value("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(RouteError::CrossSite);
    }
    if let Some(origin) = value("origin") {
        let host = value(header::HOST.as_str()).unwrap_or_default();
        let own = [format!("http://{host}"), format!("https://{host}")];
        if host.is_empty() || !own.iter().any(|o| o == origin) {
            return Err(RouteError::CrossSite);
        }
    }
    Ok(())
}

async fn list(
    State(registry): State<Registry>,
    WantsJson(json): WantsJson,
) -> Result<Response, RouteError> {
    let cluster = cluster(&registry)?;
    let view = pods::view(&cluster).await;
    if json {
        return Ok(Json(view).into_response());
    }
    Ok(pods::text(&view).into_response())
}

async fn delete_pod(
    State(registry): State<Registry>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, RouteError> {
    same_origin(&headers)?;
    let cluster = cluster(&registry)?;
    let instance = cluster
        .instance(&name)
        .ok_or_else(|| ControlError::NoSuchPod(name.chars().take(64).collect()))?;
    let replacement = cluster.deployment(instance.service).delete(&name)?;
    let text = format!(
        "{name} deleted: SIGTERM, it serves through its shutdown delay and drains; its \
         Deployment starts {replacement} in its place.\n"
    );
    Ok((StatusCode::ACCEPTED, text).into_response())
}

#[derive(Deserialize)]
struct RolloutQuery {
    service: Option<String>,
}

async fn rollout(
    State(registry): State<Registry>,
    Query(query): Query<RolloutQuery>,
    headers: HeaderMap,
) -> Result<Response, RouteError> {
    same_origin(&headers)?;
    let usage = "Usage: POST /lab/rollout?service=quote|quiz|kiada";
    let name = query
        .service
        .ok_or_else(|| RouteError::BadRequest(format!("say which Service. {usage}")))?;
    let service = Service::parse(&name).ok_or_else(|| {
        let shown: String = name.chars().take(40).collect();
        RouteError::BadRequest(format!("no Service '{shown}'. {usage}"))
    })?;
    let cluster = cluster(&registry)?;
    let count = cluster.deployment(service).rollout()?;
    let text = format!(
        "Rolling out {}: {count} pod(s) replaced one by one, as a Deployment's RollingUpdate \
         with maxSurge 1 and maxUnavailable 0 (a new pod starts and becomes ready, then an old \
         one gets SIGTERM). GET /lab/pods shows the progress.\n",
        service.name()
    );
    Ok((StatusCode::ACCEPTED, text).into_response())
}
