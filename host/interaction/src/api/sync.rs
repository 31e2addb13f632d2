//! Sync limits, `/api/v1/sync/{namespace}[/{key}]`: create, get, update and
//! delete semaphore limits. They are kept in the store (kind `weft.sync`) and
//! applied to the running engine at once; `weft server` applies the stored
//! ones at start-up. A ConfigMap semaphore `configMapKeyRef {name, key}`
//! reads the limit stored for `cmName` + `key`; a database semaphore
//! (`type: DATABASE`) the one stored for `key`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use weft_engine::runtime::{StateStore, TemplateRecord};

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult};
use super::{ApiState, JsonBody, text};

/// Store kind of sync limits.
pub const SYNC_KIND: &str = "weft.sync";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/sync/{ns}", post(create))
        .route(
            "/api/v1/sync/{ns}/{key}",
            get(get_one).put(update).delete(delete),
        )
}

/// A limit's identity: (store name, engine semaphore key without `semaphore/`).
fn ident(ns: &str, key: &str, cm: Option<&str>, kind: &str) -> ApiResult<(String, String)> {
    if key.is_empty() {
        return Err(ApiError::Invalid("key is required".into()));
    }
    if kind.eq_ignore_ascii_case("DATABASE") {
        return Ok((format!("db/{key}"), format!("{ns}/db/{key}")));
    }
    let cm =
        cm.ok_or_else(|| ApiError::Invalid("cmName is required for a CONFIGMAP limit".into()))?;
    Ok((format!("{cm}/{key}"), format!("{ns}/{cm}/{key}")))
}

fn limit_of(body: &Value) -> ApiResult<u32> {
    body.get("limit")
        .and_then(|l| {
            l.as_u64()
                .or_else(|| l.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|l| u32::try_from(l).ok())
        .ok_or_else(|| ApiError::Invalid("limit must be a non-negative integer".into()))
}

fn response(ns: &str, key: &str, cm: Option<&str>, kind: &str, limit: u32) -> Value {
    json!({"namespace": ns, "key": key, "cmName": cm.unwrap_or(""), "type": kind, "limit": limit})
}

async fn save(
    state: &ApiState,
    ns: &str,
    name: &str,
    engine_key: &str,
    body: Value,
    limit: u32,
) -> ApiResult<()> {
    state
        .store
        .put_template(&TemplateRecord {
            kind: SYNC_KIND.into(),
            namespace: ns.into(),
            name: name.into(),
            body,
        })
        .await?;
    state.engine.set_semaphore_limit(engine_key, limit).await?;
    Ok(())
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Admin)?;
    let key = text(&body, "key").unwrap_or_default();
    let kind = text(&body, "type").unwrap_or("CONFIGMAP");
    let cm = text(&body, "cmName");
    let (name, engine_key) = ident(&ns, key, cm, kind)?;
    let limit = limit_of(&body)?;
    if state
        .store
        .get_template(SYNC_KIND, &ns, &name)
        .await?
        .is_some()
    {
        return Err(ApiError::AlreadyExists(format!(
            "sync limit {name:?} already exists"
        )));
    }
    let out = response(&ns, key, cm, kind, limit);
    save(&state, &ns, &name, &engine_key, out.clone(), limit).await?;
    Ok(Json(out))
}

async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Read)?;
    let kind = q.get("type").map_or("CONFIGMAP", String::as_str);
    let (name, _) = ident(&ns, &key, q.get("cmName").map(String::as_str), kind)?;
    let t = state
        .store
        .get_template(SYNC_KIND, &ns, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("sync limit {name:?} not found")))?;
    Ok(Json(t.body))
}

async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, key)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Admin)?;
    let kind = text(&body, "type").unwrap_or("CONFIGMAP");
    let cm = text(&body, "cmName");
    let (name, engine_key) = ident(&ns, &key, cm, kind)?;
    let limit = limit_of(&body)?;
    if state
        .store
        .get_template(SYNC_KIND, &ns, &name)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!("sync limit {name:?} not found")));
    }
    let out = response(&ns, &key, cm, kind, limit);
    save(&state, &ns, &name, &engine_key, out.clone(), limit).await?;
    Ok(Json(out))
}

async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Admin)?;
    let kind = q.get("type").map_or("CONFIGMAP", String::as_str);
    let (name, engine_key) = ident(&ns, &key, q.get("cmName").map(String::as_str), kind)?;
    state.store.delete_template(SYNC_KIND, &ns, &name).await?;
    // Back to the configured limit (or 1, the engine's default).
    let fallback = state
        .semaphore_defaults
        .get(&engine_key)
        .copied()
        .unwrap_or(1);
    state
        .engine
        .set_semaphore_limit(&engine_key, fallback)
        .await?;
    Ok(Json(json!({})))
}

/// Apply every stored limit to a freshly started engine.
pub async fn apply_stored(state: &ApiState) -> ApiResult<usize> {
    let all = state.store.list_templates(SYNC_KIND, None).await?;
    for t in &all {
        let key = text(&t.body, "key").unwrap_or_default();
        let kind = text(&t.body, "type").unwrap_or("CONFIGMAP");
        let (_, engine_key) = ident(&t.namespace, key, text(&t.body, "cmName"), kind)?;
        state
            .engine
            .set_semaphore_limit(&engine_key, limit_of(&t.body)?)
            .await?;
    }
    Ok(all.len())
}
