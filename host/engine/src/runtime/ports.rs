//! The ports of the engine: traits the other layers implement.
//!
//! The engine never names SQLite, wasmtime or a process. It talks to
//! - a [`StepDriver`] (the drivers layer) to start, poll and cancel a step;
//! - a [`StateStore`] (the persistence layer) to commit workflow and node rows;
//! - a [`LogSink`] (also persistence) where drivers append a step's log lines.
//!
//! Every type that crosses a port is plain data (serde), so each layer can be
//! tested alone with an in-memory fake of the others.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Everything a driver needs to run one attempt of one step.
///
/// `template` is the Argo template with every `{{…}}` already substituted
/// (inputs resolved, `{{inputs.parameters.x}}` replaced), in Argo's JSON shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRequest {
    /// Workflow name (unique in its namespace).
    pub workflow: String,
    pub namespace: String,
    /// Workflow uid: stable across restarts, unique across re-submissions.
    pub workflow_uid: String,
    /// Argo node id (`<wf>-<fnv32a(node name)>`); with `attempt` the idempotency key.
    pub node_id: String,
    /// Full node name, e.g. `hello[0].step-a`.
    pub node_name: String,
    /// 0 for the first try; retries count up.
    pub attempt: u32,
    /// The resolved template (Argo JSON shape).
    pub template: serde_json::Value,
    /// Which driver the engine routed this step to ("local", "http", "wasm-step", …).
    pub driver: String,
}

/// What a driver says after `start` or `poll`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum DriverPoll {
    /// Still running. `state` is opaque to the engine and persisted with the node,
    /// so a restarted engine can poll again. The driver asks to be polled again
    /// after `wake_after`, or when `event_key` is notified, whichever first.
    Pending {
        state: Vec<u8>,
        wake_after: Option<Duration>,
        event_key: Option<String>,
    },
    /// Finished (successfully or not).
    Done(StepOutcome),
}

/// Final phase of one attempt as a driver reports it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OutcomePhase {
    Succeeded,
    /// The step ran and failed (non-zero exit, failed successCondition).
    Failed,
    /// The step could not run (bad image, sandbox failure, plugin trap).
    Error,
}

/// Result of one attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepOutcome {
    pub phase: OutcomePhase,
    pub message: Option<String>,
    pub exit_code: Option<i32>,
    /// `outputs.result`: stdout (last 256 KiB) for container/script steps,
    /// the return value for Wasm steps, the body for http steps.
    pub result: Option<String>,
    /// Output parameters by name (already read from `valueFrom.path` etc.).
    pub parameters: Vec<(String, String)>,
    /// Output artifacts (for the artifact layer); Argo JSON shape.
    pub artifacts: Vec<serde_json::Value>,
}

impl StepOutcome {
    pub fn error(message: impl Into<String>) -> Self {
        StepOutcome {
            phase: OutcomePhase::Error,
            message: Some(message.into()),
            exit_code: None,
            result: None,
            parameters: Vec::new(),
            artifacts: Vec::new(),
        }
    }
}

/// A driver failure that is not the step's fault (plugin trapped, host bug).
/// The engine marks the attempt `Error` with this message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    pub message: String,
}

impl DriverError {
    pub fn new(message: impl Into<String>) -> Self {
        DriverError {
            message: message.into(),
        }
    }
}

/// Runs steps. Implemented by the drivers layer (Wasm plugins behind a registry).
#[async_trait]
pub trait StepDriver: Send + Sync {
    /// Start an attempt. Idempotent by (node_id, attempt): a repeated start adopts
    /// what already exists.
    async fn start(&self, req: &StepRequest) -> Result<DriverPoll, DriverError>;
    /// Poll a pending attempt with the state the last call returned.
    async fn poll(&self, req: &StepRequest, state: &[u8]) -> Result<DriverPoll, DriverError>;
    /// Stop a pending attempt (workflow stopped, deadline, failFast).
    async fn cancel(&self, req: &StepRequest, state: &[u8]) -> Result<(), DriverError>;
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line of a step's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub workflow_uid: String,
    pub node_id: String,
    pub attempt: u32,
    pub stream: LogStream,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub line: String,
}

/// Where drivers append log lines. Must be cheap and non-blocking: the
/// persistence layer batches lines and commits them in groups.
pub trait LogSink: Send + Sync {
    fn append(&self, line: LogLine);
}

/// Handed to drivers so they can wake the engine when an event key fires
/// (a local process exited, a Kubernetes watch saw the pod change). The engine
/// then polls every pending step that asked to be woken on that key.
pub trait EventNotifier: Send + Sync {
    fn notify(&self, event_key: &str);
}
