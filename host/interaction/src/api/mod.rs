//! The Argo Server REST API (`weft server`), under `/api/v1`, as in Argo's
//! swagger: Argo's own clients (the `argo` CLI, Hera, the `argo-workflows`
//! Python client, the UI's fetches) talk to weft unchanged.
//!
//! One file per resource group, each with a `routes()` that [`router`] merges:
//! [`workflows`] (create, list, get, delete, lint, submit), [`actions`] (retry,
//! resubmit, resume, suspend, stop, terminate, set), [`stream`] (watch and
//! logs, streamed), [`templates`] (workflow templates, cluster workflow
//! templates, cron workflows), [`archive`] (finished workflows), [`events`]
//! (the events webhook and WorkflowEventBindings), [`sync`] (semaphore
//! limits), [`info`] (version, info, userinfo, `/metrics`), [`artifacts`]
//! (Argo's `/artifacts/…` and `/artifact-files/…` downloads, streamed).
//!
//! Errors are [`ApiError`]s: Argo's `{"code", "message"}` body with the
//! matching HTTP status. Auth is in [`auth`]. The server runs the engine in
//! process; this layer only translates, so everything it does the CLI can do
//! on the embedded store as well.

pub mod actions;
pub mod archive;
pub mod artifacts;
pub mod auth;
pub mod error;
pub mod events;
pub mod info;
pub mod metrics;
pub mod render;
pub mod stream;
pub mod sync;
pub mod templates;
pub mod workflows;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;
use weft_engine::model::Phase;
use weft_engine::runtime::{Engine, StateStore};
use weft_store::Store;

pub use error::{ApiError, ApiResult};

use crate::app::{App, Running};

/// Largest request body accepted (bytes); larger ones get 413 with an Argo error body.
pub const MAX_BODY: usize = 10 << 20;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub store: Store,
    pub tokens: Arc<auth::Tokens>,
    pub hub: stream::Hub,
    pub metrics: Arc<metrics::Metrics>,
    /// Cancelled when the server shuts down: open watches and log streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Semaphore limits from the configuration (what a deleted sync limit falls back to).
    pub semaphore_defaults: Arc<HashMap<String, u32>>,
    running: Arc<Running>,
}

impl ApiState {
    /// State for a started engine. Starts the watch fan-out task.
    pub fn new(
        app: &App,
        running: Arc<Running>,
        tokens: auth::Tokens,
        metrics: Arc<metrics::Metrics>,
    ) -> ApiState {
        let hub = stream::Hub::start(running.engine.clone(), app.store.clone());
        let shutdown = tokio_util::sync::CancellationToken::new();
        // Finished workflows whose completion GC did not go through (this or a
        // dead replica, a repository that was down) are caught up every minute.
        running
            .gc
            .spawn_sweeper(std::time::Duration::from_secs(60), shutdown.clone());
        ApiState {
            engine: running.engine.clone(),
            store: app.store.clone(),
            tokens: Arc::new(tokens),
            hub,
            metrics,
            shutdown,
            semaphore_defaults: Arc::new(app.config.semaphores.clone()),
            running,
        }
    }

    /// Take the ownership lock of a workflow this server runs.
    pub async fn own(&self, uid: &str) -> ApiResult<bool> {
        self.running
            .own(uid)
            .await
            .map_err(|e| ApiError::Internal(format!("ownership lock of {uid}: {e}")))
    }

    /// Where a workflow lives, adopting it when it is unfinished and nobody runs it.
    pub async fn locate(&self, ns: &str, name: &str) -> ApiResult<Located> {
        let (rec, _) = self
            .store
            .load_workflow(ns, name)
            .await?
            .ok_or_else(|| render::not_found(ns, name))?;
        let phase = Phase::parse(&rec.phase).unwrap_or(Phase::Error);
        if phase.is_done() {
            return Ok(Located::Finished(phase, rec.uid));
        }
        if self.engine.live_status(ns, name).await.is_some() {
            return Ok(Located::Here(rec.uid));
        }
        if self.own(&rec.uid).await? {
            self.engine.adopt(ns, name).await?;
            return Ok(Located::Here(rec.uid));
        }
        Ok(Located::Elsewhere(rec.uid))
    }
}

/// Where a workflow is run.
#[derive(Debug, Clone, PartialEq)]
pub enum Located {
    /// By this server's engine (uid).
    Here(String),
    /// By another weft process sharing the store (uid): control goes through the store.
    Elsewhere(String),
    /// Nowhere: it finished in this phase (uid).
    Finished(Phase, String),
}

/// The whole API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(workflows::routes())
        .merge(actions::routes())
        .merge(stream::routes())
        .merge(templates::routes())
        .merge(archive::routes())
        .merge(events::routes())
        .merge(sync::routes())
        .merge(info::routes())
        .merge(artifacts::routes())
        .fallback(|| async { ApiError::NotFound("Not Found: no such API route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A JSON request body: too large → 413, malformed → 400, both as Argo errors.
/// An empty body reads as `{}` (Argo's action calls may send none).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(format!(
                    "request body is larger than the limit of {MAX_BODY} bytes"
                ))
            } else {
                ApiError::Invalid(format!("cannot read the request body: {e}"))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::Invalid(format!("malformed JSON body: {e}")))
    }
}

/// A string field of a JSON object.
pub fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `k=v` strings (Argo's `parameters: ["a=b"]`) as pairs.
pub fn key_values(v: Option<&Value>) -> ApiResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for p in v.and_then(Value::as_array).into_iter().flatten() {
        let s = p
            .as_str()
            .ok_or_else(|| ApiError::Invalid("parameters must be strings \"name=value\"".into()))?;
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| ApiError::Invalid(format!("parameter {s:?}: expected name=value")))?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
