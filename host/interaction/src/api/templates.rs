//! WorkflowTemplates (`/api/v1/workflow-templates/{namespace}`),
//! ClusterWorkflowTemplates (`/api/v1/cluster-workflow-templates`) and
//! CronWorkflows (`/api/v1/cron-workflows/{namespace}`, with suspend and
//! resume): create, list, get, update, delete, lint — kept in the store.
//! (Scheduling cron workflows is the engine's cron loop, not this file's.)

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use weft_engine::runtime::{
    CLUSTER_WORKFLOW_TEMPLATE, CRON_WORKFLOW, StateStore, TemplateRecord, WORKFLOW_TEMPLATE,
    new_uid, random_suffix,
};

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult};
use super::render::{label_selector, labels_match};
use super::workflows::lint_object;
use super::{ApiState, JsonBody, text};

/// One stored kind and how Argo's API names it.
#[derive(Clone, Copy)]
struct Kind {
    kind: &'static str,
    /// The request body's key holding the object.
    key: &'static str,
    cluster: bool,
    plural: &'static str,
}

const WFT: Kind = Kind {
    kind: WORKFLOW_TEMPLATE,
    key: "template",
    cluster: false,
    plural: "workflowtemplates",
};
const CWFT: Kind = Kind {
    kind: CLUSTER_WORKFLOW_TEMPLATE,
    key: "template",
    cluster: true,
    plural: "clusterworkflowtemplates",
};
const CRON: Kind = Kind {
    kind: CRON_WORKFLOW,
    key: "cronWorkflow",
    cluster: false,
    plural: "cronworkflows",
};

type Q = Query<HashMap<String, String>>;

pub fn routes() -> Router<ApiState> {
    let router = namespaced(Router::new(), "/api/v1/workflow-templates", WFT);
    namespaced(router, "/api/v1/cron-workflows", CRON)
        // ClusterWorkflowTemplates
        .route(
            "/api/v1/cluster-workflow-templates",
            post(|s, c, b| create(s, c, CWFT, String::new(), b))
                .get(|s, c, q| list(s, c, CWFT, String::new(), q)),
        )
        .route(
            "/api/v1/cluster-workflow-templates/lint",
            post(|s, c, b| lint(s, c, CWFT, String::new(), b)),
        )
        .route(
            "/api/v1/cluster-workflow-templates/{name}",
            get(|s, c, Path(n)| get_one(s, c, CWFT, String::new(), n))
                .put(|s, c, Path(n), b| update(s, c, CWFT, String::new(), n, b))
                .delete(|s, c, Path(n)| delete(s, c, CWFT, String::new(), n)),
        )
        // CronWorkflows' own actions
        .route(
            "/api/v1/cron-workflows/{ns}/{name}/suspend",
            put(|s, c, Path((ns, n))| set_suspend(s, c, ns, n, true)),
        )
        .route(
            "/api/v1/cron-workflows/{ns}/{name}/resume",
            put(|s, c, Path((ns, n))| set_suspend(s, c, ns, n, false)),
        )
}

/// `base/{ns}` (create, list), `base/{ns}/lint` and `base/{ns}/{name}` (get,
/// update, delete) of a namespaced kind.
fn namespaced(router: Router<ApiState>, base: &str, k: Kind) -> Router<ApiState> {
    router
        .route(
            &format!("{base}/{{ns}}"),
            post(move |s, c, Path(ns), b| create(s, c, k, ns, b))
                .get(move |s, c, Path(ns), q| list(s, c, k, ns, q)),
        )
        .route(
            &format!("{base}/{{ns}}/lint"),
            post(move |s, c, Path(ns), b| lint(s, c, k, ns, b)),
        )
        .route(
            &format!("{base}/{{ns}}/{{name}}"),
            get(move |s, c, Path((ns, n))| get_one(s, c, k, ns, n))
                .put(move |s, c, Path((ns, n)), b| update(s, c, k, ns, n, b))
                .delete(move |s, c, Path((ns, n))| delete(s, c, k, ns, n)),
        )
}

/// The stored object, or Argo's not-found error.
async fn stored(state: &ApiState, k: Kind, ns: &str, name: &str) -> ApiResult<TemplateRecord> {
    state
        .store
        .get_template(k.kind, ns, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{}.argoproj.io \"{name}\" not found", k.plural)))
}

/// The object of a request body, checked and completed (kind, namespace, name).
async fn object_of(state: &ApiState, k: Kind, ns: &str, body: &Value) -> ApiResult<Value> {
    let mut obj = body
        .get(k.key)
        .cloned()
        .filter(Value::is_object)
        .ok_or_else(|| ApiError::Invalid(format!("the body has no {:?} object", k.key)))?;
    match text(&obj, "kind") {
        None => obj["kind"] = json!(k.kind),
        Some(kind) if kind == k.kind => {}
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "unknown kind {other:?}: this endpoint takes a {}",
                k.kind
            )));
        }
    }
    if text(&obj, "apiVersion").is_none() {
        obj["apiVersion"] = json!(weft_engine::model::API_VERSION);
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if text(&obj["metadata"], "name").is_none() {
        let g = text(&obj["metadata"], "generateName")
            .ok_or_else(|| ApiError::Invalid("metadata.name is required".into()))?;
        obj["metadata"]["name"] = json!(format!("{g}{}", random_suffix(5)));
    }
    if k.cluster {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
    } else {
        obj["metadata"]["namespace"] = json!(ns);
    }
    lint_object(state, &obj).await?;
    Ok(obj)
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    k: Kind,
    ns: String,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Admin)?;
    let mut obj = object_of(&state, k, &ns, &body).await?;
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if state
        .store
        .get_template(k.kind, &ns, &name)
        .await?
        .is_some()
    {
        return Err(ApiError::AlreadyExists(format!(
            "{}.argoproj.io \"{name}\" already exists",
            k.plural
        )));
    }
    obj["metadata"]["uid"] = json!(new_uid());
    obj["metadata"]["creationTimestamp"] =
        json!(weft_engine::machine::rfc3339(weft_engine::runtime::now_ms()));
    put_obj(&state, k, &ns, &name, &obj).await?;
    Ok(Json(obj))
}

async fn put_obj(state: &ApiState, k: Kind, ns: &str, name: &str, obj: &Value) -> ApiResult<()> {
    state
        .store
        .put_template(&TemplateRecord {
            kind: k.kind.into(),
            namespace: ns.into(),
            name: name.into(),
            body: obj.clone(),
        })
        .await?;
    Ok(())
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    k: Kind,
    ns: String,
    Query(q): Q,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Read)?;
    let labels = label_selector(&q)?;
    let items: Vec<Value> = state
        .store
        .list_templates(k.kind, if k.cluster { None } else { Some(&ns) })
        .await?
        .into_iter()
        .map(|t| t.body)
        .filter(|b| labels_match(&labels, &b["metadata"]["labels"]))
        .collect();
    Ok(Json(json!({"metadata": {}, "items": items})))
}

async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    k: Kind,
    ns: String,
    name: String,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Read)?;
    Ok(Json(stored(&state, k, &ns, &name).await?.body))
}

async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    k: Kind,
    ns: String,
    name: String,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Admin)?;
    let old = stored(&state, k, &ns, &name).await?;
    let mut obj = object_of(&state, k, &ns, &body).await?;
    if obj["metadata"]["name"] != json!(name) {
        return Err(ApiError::Invalid(format!(
            "metadata.name {} does not match the path's {name:?}",
            obj["metadata"]["name"]
        )));
    }
    for f in ["uid", "creationTimestamp"] {
        obj["metadata"][f] = old.body["metadata"][f].clone();
    }
    put_obj(&state, k, &ns, &name, &obj).await?;
    Ok(Json(obj))
}

async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    k: Kind,
    ns: String,
    name: String,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Admin)?;
    stored(&state, k, &ns, &name).await?;
    state.store.delete_template(k.kind, &ns, &name).await?;
    Ok(Json(json!({})))
}

async fn lint(
    State(state): State<ApiState>,
    caller: Caller,
    k: Kind,
    ns: String,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Read)?;
    Ok(Json(object_of(&state, k, &ns, &body).await?))
}

async fn set_suspend(
    State(state): State<ApiState>,
    caller: Caller,
    ns: String,
    name: String,
    suspend: bool,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Submit)?;
    let mut obj = stored(&state, CRON, &ns, &name).await?.body;
    obj["spec"]["suspend"] = json!(suspend);
    put_obj(&state, CRON, &ns, &name, &obj).await?;
    Ok(Json(obj))
}
