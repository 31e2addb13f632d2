//! `/api/v1/workflows/{namespace}`: create, list, get, delete, lint, and
//! submit from a WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tracing::{Instrument, info_span};
use weft_engine::lint::{KnownTemplates, Severity, lint_sources};
use weft_engine::machine::Event;
use weft_engine::model::{Phase, Workflow};
use weft_engine::runtime::{
    CLUSTER_WORKFLOW_TEMPLATE, CRON_WORKFLOW, StateStore, WORKFLOW_TEMPLATE, WorkflowFilter,
};

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult};
use super::render::{
    field_selector, fields_match, label_selector, labels_match, load, needs_nodes, project,
    query_str, summary,
};
use super::{ApiState, JsonBody, Located, key_values, text};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/workflows/{ns}", post(create).get(list))
        .route("/api/v1/workflows/{ns}/lint", post(lint))
        .route("/api/v1/workflows/{ns}/submit", post(submit_from))
        .route("/api/v1/workflows/{ns}/{name}", get(get_one).delete(delete))
}

type Params = Query<HashMap<String, String>>;

/// Lint one object (Workflow or a template kind) against the stored templates;
/// errors become 400 with every diagnostic in the message.
pub async fn lint_object(state: &ApiState, obj: &Value) -> ApiResult<()> {
    let text = serde_json::to_string_pretty(obj).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut known = KnownTemplates::default();
    // Stored templates matter only to objects that reference them.
    if text.contains("emplateRef\"") {
        for kind in [WORKFLOW_TEMPLATE, CLUSTER_WORKFLOW_TEMPLATE] {
            for t in state.store.list_templates(kind, None).await? {
                known.add(kind, &t.name, t.body.get("spec").unwrap_or(&Value::Null));
            }
        }
    }
    let errors: Vec<String> = lint_sources(&[("request", &text)], &known)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors.join("; ")))
    }
}

/// The `workflow` of a request body, checked: a JSON object of kind Workflow.
fn workflow_of(body: &Value, ns: &str) -> ApiResult<Value> {
    let mut wf = body
        .get("workflow")
        .cloned()
        .filter(Value::is_object)
        .ok_or_else(|| ApiError::Invalid("the body has no \"workflow\" object".into()))?;
    match wf.get("kind").and_then(Value::as_str) {
        None | Some("") => wf["kind"] = json!("Workflow"),
        Some("Workflow") => {}
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "unknown kind {other:?}: this endpoint takes a Workflow"
            )));
        }
    }
    if wf.get("apiVersion").is_none() {
        wf["apiVersion"] = json!(weft_engine::model::API_VERSION);
    }
    if !wf["metadata"].is_object() {
        wf["metadata"] = json!({});
    }
    wf["metadata"]["namespace"] = json!(ns);
    if let Some(m) = wf["metadata"].as_object_mut() {
        for k in ["uid", "resourceVersion", "creationTimestamp"] {
            m.remove(k);
        }
    }
    if let Some(o) = wf.as_object_mut() {
        o.remove("status");
    }
    Ok(wf)
}

/// Lint, submit to the engine, take ownership; the stored workflow object.
pub async fn submit_value(state: &ApiState, wf: Value, dry_run: bool) -> ApiResult<Value> {
    lint_object(state, &wf).await?;
    let typed: Workflow = serde_json::from_value(wf.clone())
        .map_err(|e| ApiError::Invalid(format!("workflow: {e}")))?;
    if dry_run {
        let mut out = wf;
        out["status"] = json!({"phase": "Running"});
        return Ok(out);
    }
    let ns = typed.namespace().to_string();
    // The engine inserts the row already owned by this process (its replica
    // lease, or its owner id in lock-file mode).
    let rec = state.engine.submit(typed).await?;
    state.metrics.submitted.inc();
    load(&state.store, &ns, &rec.name).await
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Submit)?;
    let wf = workflow_of(&body, &ns)?;
    let name = text(&wf["metadata"], "name")
        .or(text(&wf["metadata"], "generateName"))
        .unwrap_or("")
        .to_string();
    let dry = body["serverDryRun"].as_bool() == Some(true)
        || body
            .pointer("/createOptions/dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    let span = info_span!("api.create", workflow = %name, namespace = %ns);
    submit_value(&state, wf, dry)
        .instrument(span)
        .await
        .map(Json)
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ns): Path<String>,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Read)?;
    let labels = label_selector(&q)?;
    let fields = field_selector(&q)?;
    let limit: usize = match q.get("listOptions.limit").map(String::as_str) {
        None | Some("") | Some("0") => usize::MAX,
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::Invalid(format!("listOptions.limit {l:?} is not a number")))?,
    };
    let offset: usize = match q.get("listOptions.continue").map(String::as_str) {
        None | Some("") => 0,
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::Invalid(format!("listOptions.continue {c:?} is not valid")))?,
    };
    let name_pattern = q.get("namePattern").cloned().unwrap_or_default();
    let mut filter = WorkflowFilter {
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    for r in &labels {
        if let super::render::Requirement::Eq(k, v) = r
            && !k.starts_with("workflows.argoproj.io/")
        {
            filter.labels.push((k.clone(), v.clone()));
        }
    }
    let rows = state.store.list_workflows(&filter).await?;
    let mut matching = Vec::new();
    for rec in rows {
        if !name_pattern.is_empty() && !rec.name.contains(&name_pattern) {
            continue;
        }
        let obj = summary(&rec);
        if labels_match(&labels, &obj["metadata"]["labels"]) && fields_match(&fields, &obj) {
            matching.push((rec, obj));
        }
    }
    let total = matching.len();
    let with_nodes = needs_nodes(q.get("fields").map(String::as_str));
    let mut items = Vec::new();
    for (rec, obj) in matching.into_iter().skip(offset).take(limit) {
        if with_nodes {
            match load(&state.store, &rec.namespace, &rec.name).await {
                Ok(full) => items.push(full),
                Err(ApiError::NotFound(_)) => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        } else {
            items.push(obj);
        }
    }
    let out = list_page(items, offset, limit, total);
    Ok(Json(project(out, query_str(&q, "fields"))))
}

/// A list answer: one page of `items` (from `offset`, at most `limit`, of
/// `total` matches) with the `continue` token of the next page ("" on the last).
pub fn list_page(items: Vec<Value>, offset: usize, limit: usize, total: usize) -> Value {
    let next = offset.saturating_add(limit);
    let cont = if next < total {
        next.to_string()
    } else {
        String::new()
    };
    json!({
        "metadata": {"continue": cont, "resourceVersion": resource_version()},
        "items": items,
    })
}

/// A resource version for list metadata (clients pass it back to `watch`; weft ignores it).
pub fn resource_version() -> String {
    weft_engine::runtime::now_ms().to_string()
}

async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Read)?;
    let wf = load(&state.store, &ns, &name)
        .instrument(info_span!("api.get", workflow = %name, namespace = %ns))
        .await?;
    Ok(Json(project(wf, query_str(&q, "fields"))))
}

async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Admin)?;
    // Argo's `force`: delete even when artifact GC fails (its finalizer removed).
    let force = q.get("force").is_some_and(|f| f == "true");
    let span = info_span!("api.delete", workflow = %name, namespace = %ns);
    async {
        delete_workflow_gc(&state, &ns, &name, force).await?;
        Ok(Json(json!({})))
    }
    .instrument(span)
    .await
}

/// Delete a workflow; a running one is terminated first (its steps are cancelled).
pub async fn delete_workflow(state: &ApiState, ns: &str, name: &str) -> ApiResult<()> {
    delete_workflow_gc(state, ns, name, false).await
}

/// [`delete_workflow`], collecting its `OnWorkflowDeletion` (and uncollected
/// `OnWorkflowCompletion`) artifacts first. If that fails the rows stay, with an
/// `ArtifactGCError` condition, and the call fails naming the artifact and
/// repository, unless `force` or `spec.artifactGC.forceFinalizerRemoval`.
pub async fn delete_workflow_gc(
    state: &ApiState,
    ns: &str,
    name: &str,
    force: bool,
) -> ApiResult<()> {
    let terminate = Event::Shutdown {
        terminate: true,
        message: "Terminated: workflow deleted".into(),
    };
    match state.locate(ns, name).await? {
        Located::Finished(..) => {}
        Located::Here(_) => {
            state.engine.control(ns, name, terminate).await?;
            wait_done(state, ns, name).await;
        }
        Located::Elsewhere(uid) => {
            crate::app::send_control(&state.store, ns, name, &uid, json!({"action": "terminate"}))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            wait_done(state, ns, name).await;
        }
    }
    let gc = state
        .running
        .gc
        .collect(ns, name, crate::gc::Trigger::Deletion)
        .await;
    let failed = match gc {
        Ok(r) if r.failures.is_empty() => None,
        Ok(r) => Some((r.message(), r.force)),
        Err(e) => Some((e.to_string(), false)),
    };
    if let Some((why, spec_force)) = failed {
        if !(force || spec_force) {
            return Err(ApiError::Internal(format!(
                "workflow {name:?} was not deleted: artifact GC failed ({why}); \
                 fix the repository and delete again, or delete with force=true"
            )));
        }
        tracing::warn!(workflow = %name, error = %why, "artifact GC failed; deleting anyway (forced)");
    }
    let old = state.store.load_workflow(ns, name).await?.map(|(r, _)| r);
    state.store.delete_workflow(ns, name).await?;
    if let Some(rec) = old {
        state.hub.deleted(&rec);
    }
    Ok(())
}

/// Wait (at most 10 s) until a workflow reaches a final phase.
async fn wait_done(state: &ApiState, ns: &str, name: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(10), state.engine.wait(ns, name)).await;
}

async fn lint(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Read)?;
    let wf = workflow_of(&body, &ns)?;
    lint_object(&state, &wf).await?;
    Ok(Json(wf))
}

async fn submit_from(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Submit)?;
    let kind = text(&body, "resourceKind").unwrap_or_default().to_string();
    let name = text(&body, "resourceName")
        .ok_or_else(|| ApiError::Invalid("resourceName is required".into()))?
        .to_string();
    let opts = body.get("submitOptions").cloned().unwrap_or(json!({}));
    let span = info_span!("api.submit", template = %name, kind = %kind, namespace = %ns);
    async {
        let wf = from_resource(&state, &ns, &kind, &name, &opts).await?;
        let dry =
            opts["dryRun"].as_bool() == Some(true) || opts["serverDryRun"].as_bool() == Some(true);
        submit_value(&state, wf, dry).await.map(Json)
    }
    .instrument(span)
    .await
}

/// A Workflow that runs a stored WorkflowTemplate, ClusterWorkflowTemplate or
/// CronWorkflow, with Argo's `submitOptions` (parameters, labels, name, entryPoint).
pub async fn from_resource(
    state: &ApiState,
    ns: &str,
    kind: &str,
    name: &str,
    opts: &Value,
) -> ApiResult<Value> {
    let (store_kind, store_ns, label) = match kind.to_ascii_lowercase().as_str() {
        "workflowtemplate" => (WORKFLOW_TEMPLATE, ns, "workflow-template"),
        "clusterworkflowtemplate" => (CLUSTER_WORKFLOW_TEMPLATE, "", "cluster-workflow-template"),
        "cronworkflow" | "cronwf" => (CRON_WORKFLOW, ns, "cron-workflow"),
        other => {
            return Err(ApiError::Invalid(format!(
                "unknown resourceKind {other:?}: expected WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow"
            )));
        }
    };
    let t = state
        .store
        .get_template(store_kind, store_ns, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{store_kind} {name:?} not found")))?;
    let mut wf = if store_kind == CRON_WORKFLOW {
        let mut wf = json!({"metadata": t.body["spec"]["workflowMetadata"].clone(), "spec": t.body["spec"]["workflowSpec"].clone()});
        if !wf["metadata"].is_object() {
            wf["metadata"] = json!({});
        }
        wf
    } else {
        json!({"metadata": {}, "spec": {"workflowTemplateRef": {"name": name}}})
    };
    if store_kind == CLUSTER_WORKFLOW_TEMPLATE {
        wf["spec"]["workflowTemplateRef"]["clusterScope"] = json!(true);
    }
    wf["apiVersion"] = json!(weft_engine::model::API_VERSION);
    wf["kind"] = json!("Workflow");
    wf["metadata"]["namespace"] = json!(ns);
    wf["metadata"]["labels"][format!("workflows.argoproj.io/{label}")] = json!(name);
    match (text(opts, "name"), text(opts, "generateName")) {
        (Some(n), _) => wf["metadata"]["name"] = json!(n),
        (None, Some(g)) => wf["metadata"]["generateName"] = json!(g),
        (None, None) => wf["metadata"]["generateName"] = json!(format!("{name}-")),
    }
    if let Some(l) = text(opts, "labels") {
        for kv in l.split(',') {
            if let Some((k, v)) = kv.split_once('=') {
                wf["metadata"]["labels"][k.trim()] = json!(v.trim());
            }
        }
    }
    if let Some(e) = text(opts, "entryPoint") {
        wf["spec"]["entrypoint"] = json!(e);
    }
    set_parameters(&mut wf, &key_values(opts.get("parameters"))?);
    Ok(wf)
}

/// Set `spec.arguments.parameters` values by name (adding missing ones).
pub fn set_parameters(wf: &mut Value, params: &[(String, String)]) {
    if params.is_empty() {
        return;
    }
    if !wf["spec"]["arguments"]["parameters"].is_array() {
        wf["spec"]["arguments"]["parameters"] = json!([]);
    }
    let list = wf["spec"]["arguments"]["parameters"]
        .as_array_mut()
        .expect("array");
    for (k, v) in params {
        match list.iter_mut().find(|p| p["name"] == json!(k)) {
            Some(p) => {
                if let Some(o) = p.as_object_mut() {
                    o.remove("valueFrom");
                }
                p["value"] = json!(v);
            }
            None => list.push(json!({"name": k, "value": v})),
        }
    }
}

/// Is a stored phase final?
pub fn is_done(phase: &str) -> bool {
    Phase::parse(phase).is_some_and(Phase::is_done)
}
