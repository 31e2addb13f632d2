//! The events webhook `POST /api/v1/events/{namespace}/{discriminator}` and
//! the WorkflowEventBindings it is matched against (stored as a kind).
//!
//! For each binding in the namespace, `spec.event.selector` is evaluated with
//! weft-expr's `eval` over `payload.*` (the JSON body, flattened; leaves as
//! strings), `metadata.*` (request headers, lower-case names, first value) and
//! `discriminator`; when it is true the binding's
//! `spec.submit.workflowTemplateRef` is submitted with `arguments.parameters`
//! whose `valueFrom.event` expressions are evaluated the same way.
//!
//! Argo creates bindings with kubectl; weft adds
//! `POST|GET|DELETE /api/v1/workflow-event-bindings/{namespace}[/{name}]`
//! (Argo's list route is the GET without a name).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};
use weft_engine::runtime::{StateStore, TemplateRecord, random_suffix};
use weft_expr::{Vars, eval, to_string_value};

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult};
use super::workflows::{from_resource, set_parameters, submit_value};
use super::{ApiState, JsonBody, text};

/// Store kind of WorkflowEventBindings.
pub const BINDING_KIND: &str = "WorkflowEventBinding";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/events/{ns}/{discriminator}", post(receive))
        .route(
            "/api/v1/workflow-event-bindings/{ns}",
            get(list_bindings).post(create_binding),
        )
        .route(
            "/api/v1/workflow-event-bindings/{ns}/{name}",
            get(get_binding).delete(delete_binding),
        )
}

/// Flatten a JSON value into dotted variables under `prefix`.
fn flatten(vars: &mut Vars, prefix: &str, v: &Value) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                flatten(vars, &format!("{prefix}.{k}"), c);
            }
        }
        other => vars.insert(prefix, to_string_value(other)),
    }
}

fn event_vars(discriminator: &str, payload: &Value, headers: &HeaderMap) -> Vars {
    let mut vars = Vars::new();
    vars.insert("discriminator", discriminator);
    flatten(&mut vars, "payload", payload);
    for (k, v) in headers {
        if let Ok(v) = v.to_str() {
            vars.insert(format!("metadata.{}", k.as_str().to_ascii_lowercase()), v);
        }
    }
    vars
}

async fn receive(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, discriminator)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(payload): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Submit)?;
    let span = info_span!("api.event", namespace = %ns, discriminator = %discriminator);
    async {
        let vars = event_vars(&discriminator, &payload, &headers);
        for b in state.store.list_templates(BINDING_KIND, Some(&ns)).await? {
            let name = b.name.clone();
            let selector = b.body.pointer("/spec/event/selector").and_then(Value::as_str);
            let Some(selector) = selector else { continue };
            match eval(selector, &vars) {
                Ok(Value::Bool(true)) => {}
                Ok(_) => continue,
                Err(e) => {
                    warn!(binding = %name, error = %e, "event selector failed");
                    continue;
                }
            }
            let wf = submission(&state, &ns, &b.body, &vars).await?;
            let wf = submit_value(&state, wf, false).await?;
            info!(binding = %name, workflow = %wf["metadata"]["name"], "event submitted a workflow");
        }
        Ok(Json(json!({})))
    }
    .instrument(span)
    .await
}

/// The Workflow a matching binding submits.
async fn submission(state: &ApiState, ns: &str, binding: &Value, vars: &Vars) -> ApiResult<Value> {
    let submit = binding
        .pointer("/spec/submit")
        .cloned()
        .unwrap_or(Value::Null);
    let r = &submit["workflowTemplateRef"];
    let tname = text(r, "name").ok_or_else(|| {
        ApiError::Invalid("binding: spec.submit.workflowTemplateRef.name is required".into())
    })?;
    let kind = if r["clusterScope"].as_bool() == Some(true) {
        "ClusterWorkflowTemplate"
    } else {
        "WorkflowTemplate"
    };
    let mut wf = from_resource(state, ns, kind, tname, &json!({})).await?;
    let mut params = Vec::new();
    for p in submit
        .pointer("/arguments/parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(pname) = text(p, "name") else {
            continue;
        };
        let value = match p.pointer("/valueFrom/event").and_then(Value::as_str) {
            Some(expr) => eval(expr, vars)
                .map(|v| to_string_value(&v))
                .map_err(|e| ApiError::Invalid(format!("parameter {pname:?}: {e}")))?,
            None => match p.get("value") {
                Some(v) => to_string_value(v),
                None => continue,
            },
        };
        params.push((pname.to_string(), value));
    }
    set_parameters(&mut wf, &params);
    for section in ["labels", "annotations"] {
        if let Some(m) = submit
            .pointer(&format!("/metadata/{section}"))
            .and_then(Value::as_object)
        {
            for (k, v) in m {
                wf["metadata"][section][k] = v.clone();
            }
        }
    }
    Ok(wf)
}

async fn list_bindings(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Read)?;
    let items: Vec<Value> = state
        .store
        .list_templates(BINDING_KIND, Some(&ns))
        .await?
        .into_iter()
        .map(|t| t.body)
        .collect();
    Ok(Json(json!({"metadata": {}, "items": items})))
}

async fn create_binding(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Admin)?;
    let mut obj = ["binding", "workflowEventBinding"]
        .iter()
        .find_map(|k| body.get(*k).cloned())
        .unwrap_or(body);
    match text(&obj, "kind") {
        None | Some(BINDING_KIND) => obj["kind"] = json!(BINDING_KIND),
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "unknown kind {other:?}: this endpoint takes a WorkflowEventBinding"
            )));
        }
    }
    if obj
        .pointer("/spec/event/selector")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(ApiError::Invalid("spec.event.selector is required".into()));
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let name = match text(&obj["metadata"], "name") {
        Some(n) => n.to_string(),
        None => format!(
            "{}{}",
            text(&obj["metadata"], "generateName").unwrap_or("binding-"),
            random_suffix(5)
        ),
    };
    obj["metadata"]["name"] = json!(name);
    obj["metadata"]["namespace"] = json!(ns);
    if state
        .store
        .get_template(BINDING_KIND, &ns, &name)
        .await?
        .is_some()
    {
        return Err(ApiError::AlreadyExists(format!(
            "workfloweventbindings.argoproj.io \"{name}\" already exists"
        )));
    }
    state
        .store
        .put_template(&TemplateRecord {
            kind: BINDING_KIND.into(),
            namespace: ns,
            name,
            body: obj.clone(),
        })
        .await?;
    Ok(Json(obj))
}

async fn get_binding(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Read)?;
    let t = state
        .store
        .get_template(BINDING_KIND, &ns, &name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "workfloweventbindings.argoproj.io \"{name}\" not found"
            ))
        })?;
    Ok(Json(t.body))
}

async fn delete_binding(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Admin)?;
    state
        .store
        .delete_template(BINDING_KIND, &ns, &name)
        .await?;
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_see_payload_metadata_and_discriminator() {
        let mut h = HeaderMap::new();
        h.insert("X-Event", "push".parse().unwrap());
        let vars = event_vars("gh", &json!({"repo": {"name": "weft"}, "n": 3}), &h);
        let sel =
            "discriminator == 'gh' && payload.repo.name == 'weft' && metadata['x-event'] == 'push'";
        assert_eq!(eval(sel, &vars).unwrap(), json!(true));
        assert_eq!(eval("payload.n", &vars).unwrap(), json!("3"));
    }
}
