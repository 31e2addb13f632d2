//! `/api/v1/archived-workflows`: finished workflows stay queryable. weft
//! keeps every workflow in its store, so the archive is a view of the
//! finished ones (by uid, as Argo addresses archived workflows).

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, Query, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use weft_engine::runtime::{StateStore, WorkflowFilter, WorkflowRecord};

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult};
use super::render::{field_selector, fields_match, label_selector, labels_match, load, summary};
use super::workflows::{delete_workflow, is_done, list_page};
use super::{ApiState, JsonBody};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/archived-workflows", get(list))
        .route("/api/v1/archived-workflows-label-keys", get(label_keys))
        .route("/api/v1/archived-workflows-label-values", get(label_values))
        .route(
            "/api/v1/archived-workflows/{uid}",
            get(get_one).delete(delete),
        )
        .route("/api/v1/archived-workflows/{uid}/{action}", put(act))
}

/// Finished workflows in a namespace ("" = all).
async fn finished(state: &ApiState, ns: &str) -> ApiResult<Vec<WorkflowRecord>> {
    let filter = WorkflowFilter {
        namespace: (!ns.is_empty()).then(|| ns.to_string()),
        phases: vec!["Succeeded".into(), "Failed".into(), "Error".into()],
        ..Default::default()
    };
    Ok(state.store.list_workflows(&filter).await?)
}

fn namespace_of(q: &HashMap<String, String>) -> ApiResult<String> {
    if let Some(ns) = q.get("namespace").filter(|n| !n.is_empty()) {
        return Ok(ns.clone());
    }
    let fields = field_selector(q)?;
    Ok(fields
        .iter()
        .find(|(k, eq, _)| k == "metadata.namespace" && *eq)
        .map(|(_, _, v)| v.clone())
        .unwrap_or_default())
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let ns = namespace_of(&q)?;
    caller.allow(&ns, Role::Read)?;
    let labels = label_selector(&q)?;
    let fields: Vec<_> = field_selector(&q)?
        .into_iter()
        .filter(|(k, _, _)| k != "metadata.namespace")
        .collect();
    let limit: usize = q
        .get("listOptions.limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let offset: usize = q
        .get("listOptions.continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let all: Vec<Value> = finished(&state, &ns)
        .await?
        .iter()
        .map(summary)
        .filter(|o| labels_match(&labels, &o["metadata"]["labels"]) && fields_match(&fields, o))
        .collect();
    let total = all.len();
    let items: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
    Ok(Json(list_page(items, offset, limit, total)))
}

async fn by_uid(state: &ApiState, caller: &Caller, uid: &str) -> ApiResult<WorkflowRecord> {
    let rec = finished(state, "")
        .await?
        .into_iter()
        .find(|r| r.uid == uid)
        .ok_or_else(|| ApiError::NotFound(format!("archived workflow {uid:?} not found")))?;
    caller.allow(&rec.namespace, Role::Read)?;
    Ok(rec)
}

async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(uid): Path<String>,
) -> ApiResult<Json<Value>> {
    let rec = by_uid(&state, &caller, &uid).await?;
    Ok(Json(load(&state.store, &rec.namespace, &rec.name).await?))
}

async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(uid): Path<String>,
) -> ApiResult<Json<Value>> {
    let rec = by_uid(&state, &caller, &uid).await?;
    caller.allow(&rec.namespace, Role::Admin)?;
    delete_workflow(&state, &rec.namespace, &rec.name).await?;
    Ok(Json(json!({})))
}

/// `retry` and `resubmit` of an archived workflow: as for a live one.
async fn act(
    State(state): State<ApiState>,
    caller: Caller,
    Path((uid, action)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let rec = by_uid(&state, &caller, &uid).await?;
    if !matches!(action.as_str(), "retry" | "resubmit") || !is_done(&rec.phase) {
        return Err(ApiError::NotFound(format!(
            "unknown archived-workflow action {action:?}"
        )));
    }
    let uri = format!(
        "/api/v1/workflows/{}/{}/{}",
        rec.namespace, rec.name, action
    );
    caller.allow(&rec.namespace, Role::Submit)?;
    super::actions::dispatch(&state, &rec.namespace, &rec.name, &action, &body)
        .await
        .map(Json)
        .map_err(|e| match e {
            ApiError::NotFound(m) => ApiError::NotFound(format!("{uri}: {m}")),
            other => other,
        })
}

async fn label_keys(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let ns = namespace_of(&q)?;
    caller.allow(&ns, Role::Read)?;
    let mut keys = BTreeSet::new();
    for r in finished(&state, &ns).await? {
        keys.extend(
            summary(&r)["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys().cloned()),
        );
    }
    Ok(Json(json!({"items": keys})))
}

async fn label_values(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let ns = namespace_of(&q)?;
    caller.allow(&ns, Role::Read)?;
    let key = q
        .get("listOptions.labelSelector")
        .cloned()
        .unwrap_or_default();
    let mut values = BTreeSet::new();
    for r in finished(&state, &ns).await? {
        if let Some(v) = summary(&r)["metadata"]["labels"][&key].as_str() {
            values.insert(v.to_string());
        }
    }
    Ok(Json(json!({"items": values})))
}
