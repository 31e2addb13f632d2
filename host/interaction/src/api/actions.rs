//! `PUT /api/v1/workflows/{namespace}/{name}/{action}`: retry, resubmit,
//! resume, suspend, stop, terminate, set.
//!
//! weft's semantics, where they differ from Argo's:
//! - `retry` runs a Failed/Error workflow again from the start under the same
//!   name (a new uid); Argo keeps the nodes that succeeded. Partial retry
//!   needs a state-machine event for it.
//! - `suspend` holds the steps the workflow would start (running ones go on)
//!   until `resume`; it is not kept across a server restart.
//! - `set` supplies output parameters to suspend nodes and resumes them
//!   (`phase: Succeeded`, the way Argo's approval flows use it).

use axum::extract::{Path, State};
use axum::routing::put;
use axum::{Json, Router};
use serde_json::{Value, json};
use tracing::{Instrument, info_span};
use weft_engine::machine::Event;
use weft_engine::runtime::StateStore;

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult};
use super::render::load;
use super::workflows::{delete_workflow, set_parameters, submit_value};
use super::{ApiState, JsonBody, Located, key_values, text};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/workflows/{ns}/{name}/{action}", put(act))
}

async fn act(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, name, action)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    caller.allow(&ns, Role::Submit)?;
    let span = info_span!("api.action", workflow = %name, namespace = %ns, action = %action);
    dispatch(&state, &ns, &name, &action, &body)
        .instrument(span)
        .await
        .map(Json)
}

/// Carry out one action (the caller's permission is already checked); the workflow after it.
pub async fn dispatch(
    state: &ApiState,
    ns: &str,
    name: &str,
    action: &str,
    body: &Value,
) -> ApiResult<Value> {
    match action {
        "retry" => retry(state, ns, name, body).await,
        "resubmit" => resubmit(state, ns, name, body).await,
        "resume" => resume(state, ns, name, body).await,
        "suspend" => suspend(state, ns, name).await,
        "stop" => {
            let message = text(body, "message")
                .unwrap_or("Stopped by user")
                .to_string();
            let ev = Event::Shutdown {
                terminate: false,
                message,
            };
            control(state, ns, name, ev, json!({"action": "stop"})).await
        }
        "terminate" => {
            let ev = Event::Shutdown {
                terminate: true,
                message: "Terminated by user".into(),
            };
            control(state, ns, name, ev, json!({"action": "terminate"})).await
        }
        "set" => set(state, ns, name, body).await,
        other => Err(ApiError::NotFound(format!(
            "unknown workflow action {other:?}"
        ))),
    }
}

/// Send a control event to a running workflow wherever it runs; the workflow after it.
async fn control(
    state: &ApiState,
    ns: &str,
    name: &str,
    event: Event,
    remote: Value,
) -> ApiResult<Value> {
    match state.locate(ns, name).await? {
        Located::Here(_) => state.engine.control(ns, name, event).await?,
        Located::Elsewhere(uid) => crate::app::send_control(&state.store, ns, name, &uid, remote)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        Located::Finished(phase, _) => {
            return Err(ApiError::Precondition(format!(
                "workflow {name:?} has already finished ({phase})"
            )));
        }
    }
    load(&state.store, ns, name).await
}

/// Node selector of `nodeFieldSelector` (`displayName=x`, `name=x`, `id=x`).
fn node_of(body: &Value) -> Option<String> {
    let sel = text(body, "nodeFieldSelector")?;
    sel.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        matches!(k.trim(), "displayName" | "name" | "id").then(|| v.trim().to_string())
    })
}

async fn resume(state: &ApiState, ns: &str, name: &str, body: &Value) -> ApiResult<Value> {
    let node = node_of(body);
    if let Ok(Located::Here(_)) = state.locate(ns, name).await {
        state.engine.hold(ns, name, false).await?;
    }
    let event = Event::Resume {
        node: node.clone(),
        parameters: Vec::new(),
    };
    control(
        state,
        ns,
        name,
        event,
        json!({"action": "resume", "node": node}),
    )
    .await
}

async fn suspend(state: &ApiState, ns: &str, name: &str) -> ApiResult<Value> {
    match state.locate(ns, name).await? {
        Located::Here(_) => state.engine.hold(ns, name, true).await?,
        Located::Elsewhere(_) => {
            return Err(ApiError::Precondition(format!(
                "workflow {name:?} is run by another weft process; suspend it there"
            )));
        }
        Located::Finished(phase, _) => {
            return Err(ApiError::Precondition(format!(
                "workflow {name:?} has already finished ({phase})"
            )));
        }
    }
    let mut wf = load(&state.store, ns, name).await?;
    wf["spec"]["suspend"] = json!(true);
    Ok(wf)
}

async fn set(state: &ApiState, ns: &str, name: &str, body: &Value) -> ApiResult<Value> {
    let node = node_of(body).ok_or_else(|| {
        ApiError::Invalid("set needs nodeFieldSelector (displayName=…, name=… or id=…)".into())
    })?;
    match text(body, "phase") {
        None | Some("Succeeded") => {}
        Some(p) => {
            return Err(ApiError::Invalid(format!(
                "set: phase {p:?} is not supported; weft sets suspend nodes to Succeeded"
            )));
        }
    }
    let mut parameters = Vec::new();
    if let Some(s) = text(body, "outputParameters") {
        let map: serde_json::Map<String, Value> = serde_json::from_str(s).map_err(|e| {
            ApiError::Invalid(format!("outputParameters must be a JSON object: {e}"))
        })?;
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            parameters.push((k, v));
        }
    }
    let supplied: serde_json::Map<String, Value> = parameters
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let remote = json!({"action": "resume", "node": node, "parameters": supplied});
    let event = Event::Resume {
        node: Some(node),
        parameters,
    };
    control(state, ns, name, event, remote).await
}

/// The submitted workflow object of a stored workflow, ready to submit again.
async fn original(state: &ApiState, ns: &str, name: &str) -> ApiResult<(Value, String)> {
    let (rec, _) = state
        .store
        .load_workflow(ns, name)
        .await?
        .ok_or_else(|| super::render::not_found(ns, name))?;
    let mut wf = rec.workflow.clone();
    if let Some(m) = wf["metadata"].as_object_mut() {
        for k in ["uid", "creationTimestamp", "resourceVersion"] {
            m.remove(k);
        }
    }
    if let Some(o) = wf.as_object_mut() {
        o.remove("status");
    }
    Ok((wf, rec.phase))
}

async fn retry(state: &ApiState, ns: &str, name: &str, body: &Value) -> ApiResult<Value> {
    let (mut wf, phase) = original(state, ns, name).await?;
    if !matches!(phase.as_str(), "Failed" | "Error") {
        return Err(ApiError::Precondition(format!(
            "workflow must be Failed/Error to retry (it is {phase})"
        )));
    }
    set_parameters(&mut wf, &key_values(body.get("parameters"))?);
    delete_workflow(state, ns, name).await?;
    submit_value(state, wf, false).await
}

async fn resubmit(state: &ApiState, ns: &str, name: &str, body: &Value) -> ApiResult<Value> {
    let (mut wf, _) = original(state, ns, name).await?;
    if let Some(m) = wf["metadata"].as_object_mut() {
        m.remove("name");
        m.insert("generateName".into(), json!(format!("{name}-")));
        let labels = m.entry("labels").or_insert(json!({}));
        labels["workflows.argoproj.io/resubmitted-from-workflow"] = json!(name);
    }
    set_parameters(&mut wf, &key_values(body.get("parameters"))?);
    submit_value(state, wf, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_selectors() {
        assert_eq!(
            node_of(&json!({"nodeFieldSelector": "displayName=approve"})),
            Some("approve".into())
        );
        assert_eq!(node_of(&json!({})), None);
    }
}
