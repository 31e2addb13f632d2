//! Streams: `GET /api/v1/workflow-events/{namespace}` (watch) and the step
//! logs `GET /api/v1/workflows/{namespace}/{name}/log`.
//!
//! Watch comes in both framings Argo clients use: one JSON object per line
//! (`{"result": {"type": "MODIFIED", "object": <Workflow>}}`, the gRPC
//! gateway's), or server-sent events (`data: {…}\n\n`) when the client sends
//! `Accept: text/event-stream`. One fan-out task ([`Hub`]) turns the engine's
//! updates into workflow objects once, whatever the number of watchers; each
//! watcher filters them. A watcher that falls more than [`HUB_CAPACITY`]
//! events behind is ended (as a Kubernetes watch is), and re-lists.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use weft_engine::runtime::{Engine, StateStore, WorkflowFilter, WorkflowRecord};
use weft_store::Store;

use super::ApiState;
use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult};
use super::render::{
    Requirement, field_selector, fields_match, label_selector, labels_match, load, project, summary,
};
use super::workflows::is_done;

/// Events a watcher may fall behind before its watch is ended.
pub const HUB_CAPACITY: usize = 4096;

/// One change, rendered once for every watcher.
#[derive(Debug)]
pub struct WatchEvent {
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub object: Value,
}

/// The watch fan-out: engine updates in, rendered workflow events out.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

impl Hub {
    pub fn start(engine: Engine, store: Store) -> Hub {
        let (tx, _) = broadcast::channel(HUB_CAPACITY);
        let hub = Hub { tx: tx.clone() };
        tokio::spawn(async move {
            let mut rx = engine.subscribe();
            let mut seen: HashSet<String> = HashSet::new();
            loop {
                let first = match rx.recv().await {
                    Ok(u) => u,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                // Coalesce: one event per workflow for everything waiting now.
                let mut batch = HashMap::new();
                batch.insert(first.uid.clone(), first);
                while let Ok(u) = rx.try_recv() {
                    batch.insert(u.uid.clone(), u);
                }
                for (uid, u) in batch {
                    let kind = if seen.insert(uid.clone()) {
                        "ADDED"
                    } else {
                        "MODIFIED"
                    };
                    if u.phase.is_done() {
                        seen.remove(&uid);
                    }
                    if tx.receiver_count() == 0 {
                        continue;
                    }
                    if let Ok(object) = load(&store, &u.namespace, &u.name).await {
                        let _ = tx.send(Arc::new(WatchEvent {
                            namespace: u.namespace,
                            kind,
                            object,
                        }));
                    }
                }
            }
        });
        hub
    }

    /// Tell watchers a workflow was deleted.
    pub fn deleted(&self, rec: &WorkflowRecord) {
        let _ = self.tx.send(Arc::new(WatchEvent {
            namespace: rec.namespace.clone(),
            kind: "DELETED",
            object: summary(rec),
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.tx.subscribe()
    }

    /// Open watches.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/workflow-events/{ns}", get(watch))
        .route("/api/v1/workflows/{ns}/{name}/log", get(logs))
        .route("/api/v1/workflows/{ns}/{name}/{pod}/log", get(pod_logs))
}

fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"))
}

/// Frame one `{"result": …}` object as a line or as a server-sent event.
fn frame(v: &Value, sse: bool) -> Bytes {
    let text = v.to_string();
    if sse {
        Bytes::from(format!("data: {text}\n\n"))
    } else {
        Bytes::from(format!("{text}\n"))
    }
}

fn streaming(body: Body, sse: bool) -> Response {
    let ct = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    (
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

struct Watch {
    stop: tokio_util::sync::CancellationToken,
    initial: VecDeque<Value>,
    rx: broadcast::Receiver<Arc<WatchEvent>>,
    ns: String,
    labels: Vec<Requirement>,
    fields: Vec<(String, bool, String)>,
    projection: String,
    sse: bool,
}

async fn watch(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.allow(&ns, Role::Read)?;
    let labels = label_selector(&q)?;
    let fields = field_selector(&q)?;
    let projection = q.get("fields").cloned().unwrap_or_default();
    let sse = wants_sse(&headers);
    // Subscribe before listing, so nothing between the two is missed.
    let rx = state.hub.subscribe();
    state.metrics.watchers.set(state.hub.watchers() as i64);
    let name = fields
        .iter()
        .find(|(k, eq, _)| k == "metadata.name" && *eq)
        .map(|(_, _, v)| v.clone());
    let mut initial = VecDeque::new();
    let rows = match &name {
        Some(n) => state
            .store
            .load_workflow(&ns, n)
            .await?
            .map(|(r, _)| r)
            .into_iter()
            .collect(),
        None => {
            let filter = WorkflowFilter {
                namespace: Some(ns.clone()),
                ..Default::default()
            };
            state.store.list_workflows(&filter).await?
        }
    };
    for rec in rows {
        let obj = summary(&rec);
        if !(labels_match(&labels, &obj["metadata"]["labels"]) && fields_match(&fields, &obj)) {
            continue;
        }
        if let Ok(full) = load(&state.store, &rec.namespace, &rec.name).await {
            let ev = json!({"result": {"type": "ADDED", "object": full}});
            initial.push_back(project(ev, &projection));
        }
    }
    let w = Watch {
        stop: state.shutdown.clone(),
        initial,
        rx,
        ns,
        labels,
        fields,
        projection,
        sse,
    };
    let stream = futures::stream::unfold(w, |mut w| async move {
        if let Some(v) = w.initial.pop_front() {
            let b = frame(&v, w.sse);
            return Some((Ok::<_, Infallible>(b), w));
        }
        loop {
            let keepalive = Duration::from_secs(if w.sse { 15 } else { 3600 });
            let ev = tokio::select! {
                _ = w.stop.cancelled() => return None,
                r = tokio::time::timeout(keepalive, w.rx.recv()) => match r {
                    Ok(r) => r,
                    // keep-alive comment for proxies and dead-peer detection
                    Err(_) if w.sse => return Some((Ok(Bytes::from_static(b":\n\n")), w)),
                    Err(_) => continue,
                },
            };
            let ev = match ev {
                Ok(ev) => ev,
                // Too far behind (or shutting down): end the watch; the client re-lists.
                Err(_) => return None,
            };
            if (!w.ns.is_empty() && ev.namespace != w.ns)
                || !labels_match(&w.labels, &ev.object["metadata"]["labels"])
                || !fields_match(&w.fields, &ev.object)
            {
                continue;
            }
            let v = json!({"result": {"type": ev.kind, "object": ev.object}});
            let b = frame(&project(v, &w.projection), w.sse);
            return Some((Ok(b), w));
        }
    });
    Ok(streaming(Body::from_stream(stream), sse))
}

async fn logs(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let pod = q.get("podName").cloned().unwrap_or_default();
    stream_logs(state, caller, ns, name, pod, q, headers).await
}

async fn pod_logs(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ns, name, pod)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    stream_logs(state, caller, ns, name, pod, q, headers).await
}

struct Tail {
    stop: tokio_util::sync::CancellationToken,
    store: Store,
    ns: String,
    name: String,
    uid: String,
    node: Option<String>,
    names: HashMap<String, String>,
    /// Row id of the last line sent.
    after: i64,
    follow: bool,
    finished: bool,
    grep: Option<regex::Regex>,
    sse: bool,
}

async fn stream_logs(
    state: ApiState,
    caller: Caller,
    ns: String,
    name: String,
    pod: String,
    q: HashMap<String, String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.allow(&ns, Role::Read)?;
    // Lines this process's drivers wrote are batched: make them readable first.
    state.store.flush_logs().await;
    let (rec, nodes) = state
        .store
        .load_workflow(&ns, &name)
        .await?
        .ok_or_else(|| super::render::not_found(&ns, &name))?;
    // Pod names: weft's pods are its node ids (Argo's v1 pod names); v2 names
    // (`<workflow>-<template>-<hash>`) and node names are accepted too.
    let mut names = HashMap::new();
    let mut node = None;
    for n in &nodes {
        let tmpl = n.data["templateName"].as_str().unwrap_or_default();
        let suffix = n.node_id.rsplit('-').next().unwrap_or_default();
        let v2 = format!("{name}-{tmpl}-{suffix}");
        if !pod.is_empty()
            && (n.node_id == pod
                || v2 == pod
                || n.data["name"].as_str() == Some(&pod)
                || n.data["displayName"].as_str() == Some(&pod))
        {
            node = Some(n.node_id.clone());
        }
        names.insert(n.node_id.clone(), n.node_id.clone());
    }
    if !pod.is_empty() && node.is_none() {
        return Err(ApiError::NotFound(format!(
            "pod {pod:?} of workflow {name:?} not found"
        )));
    }
    let container = q.get("logOptions.container").map_or("main", String::as_str);
    let follow = q.get("logOptions.follow").map(String::as_str) == Some("true");
    let grep = match q.get("grep").filter(|g| !g.is_empty()) {
        Some(g) => {
            Some(regex::Regex::new(g).map_err(|e| ApiError::Invalid(format!("grep {g:?}: {e}")))?)
        }
        None => None,
    };
    let sse = wants_sse(&headers);
    let tail = Tail {
        stop: state.shutdown.clone(),
        store: state.store.clone(),
        ns,
        name,
        uid: rec.uid,
        node,
        names,
        after: 0,
        follow,
        // Steps only log from their main container.
        finished: container != "main",
        grep,
        sse,
    };
    let stream = futures::stream::unfold(tail, |mut t| async move {
        loop {
            if t.finished || t.stop.is_cancelled() {
                return None;
            }
            // Lines stored after the last one sent (a row-id cursor: nothing
            // lost or sent twice when lines arrive late, and a poll reads only
            // what is new).
            let lines = t
                .store
                .logs_after(&t.uid, t.node.as_deref(), t.after)
                .await
                .ok()?;
            if let Some((id, _)) = lines.last() {
                t.after = *id;
                let mut out = Vec::new();
                for (_, l) in &lines {
                    if t.grep.as_ref().is_some_and(|g| !g.is_match(&l.line)) {
                        continue;
                    }
                    let pod = t.names.get(&l.node_id).unwrap_or(&l.node_id);
                    let v = json!({"result": {"content": l.line, "podName": pod}});
                    out.extend_from_slice(&frame(&v, t.sse));
                }
                if !out.is_empty() {
                    return Some((Ok::<_, Infallible>(Bytes::from(out)), t));
                }
                continue;
            }
            if !t.follow {
                return None;
            }
            let done = t
                .store
                .get_workflow(&t.ns, &t.name)
                .await
                .ok()
                .flatten()
                .is_none_or(|r| is_done(&r.phase));
            if done {
                // one last read, after flushing the lines of the last steps
                t.follow = false;
                t.store.flush_logs().await;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    Ok(streaming(Body::from_stream(stream), sse))
}
