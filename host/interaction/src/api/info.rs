//! `/api/v1/version`, `/api/v1/info`, `/api/v1/userinfo`, and Prometheus'
//! `/metrics` (unauthenticated, as Argo serves metrics on their own port).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ApiState;
use super::auth::Caller;

/// The Argo release whose API weft serves, with weft's version as build metadata.
pub const ARGO_VERSION: &str = "v3.6.0";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/version", get(version))
        .route("/api/v1/info", get(info))
        .route("/api/v1/userinfo", get(userinfo))
        .route("/metrics", get(metrics))
}

async fn version(_: Caller) -> Json<Value> {
    Json(json!({
        "version": format!("{ARGO_VERSION}+weft.{}", env!("CARGO_PKG_VERSION")),
        "buildDate": "",
        "gitCommit": "",
        "gitTag": "",
        "gitTreeState": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

async fn info(_: Caller) -> Json<Value> {
    Json(json!({
        "managedNamespace": "",
        "links": [],
        "columns": [],
        "navColor": "",
        "modals": {},
    }))
}

async fn userinfo(caller: Caller) -> Json<Value> {
    Json(json!({
        "issuer": "weft",
        "subject": caller.subject(),
        "serviceAccountName": "",
        "serviceAccountNamespace": "",
    }))
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let text = state.metrics.render(&state).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
