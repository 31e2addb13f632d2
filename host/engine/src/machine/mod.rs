//! The workflow state machine: pure, no IO, no clock.
//!
//! [`Machine::handle`] takes an [`Event`] (a step finished, a timer fired, a
//! user resumed) and the current time, updates the node graph, and returns the
//! [`Action`]s the runtime must carry out (start a step, arm a timer, look up
//! the memo cache, take a lock). Changed nodes are collected with
//! [`Machine::take_changes`] so the runtime can commit them *before* acting.
//!
//! Semantics follow Argo's controller: steps run group by group, DAG tasks when
//! their `dependencies`/`depends` hold, loops expand into children, retries
//! wrap attempts, exit handlers run after their node, and node names and ids
//! match Argo's so clients and UIs that parse them keep working.

pub mod artifacts;
mod exec;
mod node;
mod scope;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use node::*;

use crate::model::{Phase, Workflow, WorkflowSpec};
use crate::runtime::{MemoEntry, StepOutcome};

/// Errors that stop a workflow from being created at all.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("spec.entrypoint is not set")]
    NoEntrypoint,
    #[error("entrypoint template {0:?} not found")]
    UnknownEntrypoint(String),
    #[error("{0}")]
    Invalid(String),
}

/// Workflow-level state (the workflow row's `status`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowState {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// The workflow as submitted, with `workflowTemplateRef` already merged in.
    /// Stored once in the workflow row's `workflow` column, not in `status`.
    #[serde(skip)]
    pub workflow: Workflow,
    /// (Cluster)WorkflowTemplates reachable through `templateRef`, by scope key
    /// (`namespaced/<name>` or `cluster/<name>`).
    #[serde(default)]
    pub stored_templates: BTreeMap<String, WorkflowSpec>,
    pub phase: Phase,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub started_ms: Option<i64>,
    #[serde(default)]
    pub finished_ms: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    /// Global outputs (`globalName`): `workflow.outputs.parameters.<name>`.
    #[serde(default)]
    pub global_outputs: BTreeMap<String, String>,
    #[serde(default)]
    pub global_artifacts: Vec<Value>,
    /// Workflow deadline, ms since epoch.
    #[serde(default)]
    pub deadline_ms: Option<i64>,
    /// `Stop` (run exit handlers) or `Terminate` (don't) once requested.
    #[serde(default)]
    pub shutdown: Option<String>,
    /// Counter for node creation order.
    #[serde(default)]
    pub next_seq: u64,
    /// The root node finished and the exit handler (if any) was started.
    #[serde(default)]
    pub exit_node: Option<NodeId>,
    #[serde(default)]
    pub entrypoint: String,
    /// The repository of key-only artifacts (`spec.artifactRepositoryRef`
    /// resolved at submission); `None` (also every workflow stored before
    /// it existed): the default repository, Argo's default key format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_repository: Option<artifacts::WorkflowRepository>,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Begin (or, after a restart, continue) the workflow.
    Start,
    /// A driver accepted or polled a step and it is still running.
    StepPending { node: NodeId, state: Vec<u8> },
    /// A step attempt finished.
    StepDone { node: NodeId, outcome: StepOutcome },
    /// A node's timer (retry backoff, suspend duration, deadline) fired.
    Timer { node: NodeId },
    /// The workflow's deadline timer fired.
    WorkflowTimer,
    /// Result of a memo-cache lookup for a node.
    MemoResult {
        node: NodeId,
        hit: Option<MemoEntry>,
    },
    /// Every lock a node asked for is now held.
    LocksAcquired { node: NodeId },
    /// Resume suspended nodes (all when `node` is None), optionally supplying
    /// output parameters (`valueFrom.supplied`).
    Resume {
        node: Option<String>,
        parameters: Vec<(String, String)>,
    },
    /// `Stop`: cancel running steps, then run exit handlers. `Terminate`: cancel, no exit handlers.
    Shutdown { terminate: bool, message: String },
}

/// Something the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Hand a step to a driver.
    StartStep {
        node: NodeId,
        attempt: u32,
        driver: String,
        template: Value,
    },
    /// Stop a running step.
    CancelStep { node: NodeId },
    /// Deliver `Event::Timer{node}` (or `WorkflowTimer` when `node` is None) at `at_ms`.
    SetTimer { node: Option<NodeId>, at_ms: i64 },
    /// Look up the memo cache and deliver `Event::MemoResult`.
    MemoLookup {
        node: NodeId,
        cache: String,
        key: String,
        max_age_s: Option<i64>,
    },
    /// Save outputs in the memo cache.
    MemoSave {
        cache: String,
        key: String,
        outputs: Value,
    },
    /// Take every listed lock (key, limit) for `node`, then deliver `Event::LocksAcquired`.
    Acquire {
        node: NodeId,
        locks: Vec<(String, u32)>,
    },
    /// Give the listed locks back.
    Release { node: NodeId, locks: Vec<String> },
    /// The workflow reached its final phase.
    Finished { phase: Phase },
}

/// Work the machine still has to do inside one `handle` call.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    /// (Re-)evaluate a node: start it, or advance a composite.
    Advance(NodeId),
    /// A child of `parent` settled.
    ChildDone { parent: NodeId, child: NodeId },
}

/// The state machine of one workflow.
pub struct Machine {
    pub(crate) wf: WorkflowState,
    pub(crate) nodes: HashMap<NodeId, Node>,
    /// Derived: children of each node in creation order.
    pub(crate) children: HashMap<NodeId, Vec<NodeId>>,
    /// Derived: variable scopes of composite nodes (inputs + outputs of finished children).
    pub(crate) scopes: HashMap<NodeId, weft_expr::Vars>,
    /// Derived: nodes waiting for a parallelism slot, per limiting node ("" = workflow).
    pub(crate) waiters: HashMap<NodeId, VecDeque<NodeId>>,
    /// Derived: number of leaves currently running.
    pub(crate) running_leaves: usize,
    /// Derived: per DAG node, the incremental index of its tasks.
    pub(crate) dags: HashMap<NodeId, exec::DagIndex>,
    queue: VecDeque<Work>,
    actions: Vec<Action>,
    dirty: HashSet<NodeId>,
    wf_dirty: bool,
    now: i64,
    /// Derived: resolved templates (defaults merged) by (scope, name), so that
    /// a node's template is looked up and merged once, not cloned per event
    /// (a DAG of n tasks would otherwise cost O(n) per finished task).
    pub(crate) resolved:
        std::sync::Mutex<HashMap<(String, String), std::sync::Arc<crate::model::Template>>>,
}

impl Machine {
    /// A new workflow. `stored` holds the (Cluster)WorkflowTemplates it references.
    pub fn new(
        workflow: Workflow,
        uid: String,
        stored: BTreeMap<String, WorkflowSpec>,
        now_ms: i64,
    ) -> Result<Machine, MachineError> {
        let entrypoint = workflow
            .spec
            .entrypoint
            .clone()
            .ok_or(MachineError::NoEntrypoint)?;
        if workflow.spec.template(&entrypoint).is_none() {
            return Err(MachineError::UnknownEntrypoint(entrypoint));
        }
        let wf = WorkflowState {
            uid,
            name: workflow.name().to_string(),
            namespace: workflow.namespace().to_string(),
            workflow,
            stored_templates: stored,
            phase: Phase::Pending,
            created_ms: now_ms,
            started_ms: None,
            finished_ms: None,
            message: None,
            global_outputs: BTreeMap::new(),
            global_artifacts: Vec::new(),
            deadline_ms: None,
            shutdown: None,
            next_seq: 0,
            exit_node: None,
            entrypoint,
            artifact_repository: None,
        };
        Ok(Self::restore(wf, Vec::new()))
    }

    /// Rebuild a machine from stored rows (`wf.workflow` must be set by the caller:
    /// it lives in its own column).
    pub fn restore(wf: WorkflowState, nodes: Vec<Node>) -> Machine {
        let mut m = Machine {
            wf,
            nodes: HashMap::with_capacity(nodes.len()),
            children: HashMap::new(),
            scopes: HashMap::new(),
            waiters: HashMap::new(),
            running_leaves: 0,
            dags: HashMap::new(),
            queue: VecDeque::new(),
            actions: Vec::new(),
            dirty: HashSet::new(),
            wf_dirty: false,
            now: 0,
            resolved: Default::default(),
        };
        let mut sorted = nodes;
        sorted.sort_by_key(|n| n.seq);
        for n in sorted {
            if let Some(p) = &n.parent {
                m.children.entry(p.clone()).or_default().push(n.id.clone());
            }
            if n.started && !n.phase.is_done() && n.driver.is_some() {
                m.running_leaves += 1;
            }
            m.nodes.insert(n.id.clone(), n);
        }
        m
    }

    /// Fix the repository of the workflow's key-only artifacts (at submission,
    /// before the first event; see [`artifacts::ArtifactRepositories::resolve`]).
    pub fn set_artifact_repository(&mut self, repo: artifacts::WorkflowRepository) {
        self.wf.artifact_repository = Some(repo);
        self.wf_dirty = true;
    }

    pub fn state(&self) -> &WorkflowState {
        &self.wf
    }

    pub fn phase(&self) -> Phase {
        self.wf.phase
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn children_of(&self, id: &str) -> &[NodeId] {
        self.children.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Handle one event at time `now_ms`; returns the actions to carry out.
    pub fn handle(&mut self, event: Event, now_ms: i64) -> Vec<Action> {
        self.now = now_ms;
        self.apply(event);
        self.run_queue();
        std::mem::take(&mut self.actions)
    }

    /// After [`Machine::restore`]: the actions that re-establish what was in flight
    /// (timers, polls of running steps are the runtime's) and continue the workflow.
    pub fn recover(&mut self, now_ms: i64) -> Vec<Action> {
        self.now = now_ms;
        self.rebuild_derived();
        self.handle(Event::Start, now_ms)
    }

    /// Node rows and whether the workflow row changed since the last call.
    pub fn take_changes(&mut self) -> (bool, Vec<&Node>) {
        let wf = std::mem::take(&mut self.wf_dirty);
        let ids: Vec<NodeId> = self.dirty.drain().collect();
        (wf, ids.iter().filter_map(|id| self.nodes.get(id)).collect())
    }

    /// Argo's `status` object: phase, times, message, nodes (with children), outputs.
    pub fn argo_status(&self) -> Value {
        let mut nodes = serde_json::Map::new();
        let mut all: Vec<&Node> = self.nodes.values().collect();
        all.sort_by_key(|n| n.seq);
        for n in all {
            nodes.insert(n.id.clone(), n.to_argo(self.children_of(&n.id)));
        }
        let mut status = serde_json::Map::new();
        status.insert("phase".into(), Value::from(self.wf.phase.as_str()));
        if let Some(t) = self.wf.started_ms {
            status.insert("startedAt".into(), Value::from(rfc3339(t)));
        }
        if let Some(t) = self.wf.finished_ms {
            status.insert("finishedAt".into(), Value::from(rfc3339(t)));
        }
        if let Some(m) = &self.wf.message {
            status.insert("message".into(), Value::from(m.clone()));
        }
        status.insert("nodes".into(), Value::Object(nodes));
        if !self.wf.global_outputs.is_empty() || !self.wf.global_artifacts.is_empty() {
            let params: Vec<Value> = self
                .wf
                .global_outputs
                .iter()
                .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
                .collect();
            let mut outputs = serde_json::Map::new();
            if !params.is_empty() {
                outputs.insert("parameters".into(), Value::Array(params));
            }
            if !self.wf.global_artifacts.is_empty() {
                outputs.insert(
                    "artifacts".into(),
                    Value::Array(self.wf.global_artifacts.clone()),
                );
            }
            status.insert("outputs".into(), Value::Object(outputs));
        }
        let done = self
            .nodes
            .values()
            .filter(|n| n.driver.is_some() && n.phase.is_done())
            .count();
        let total = self.nodes.values().filter(|n| n.driver.is_some()).count();
        status.insert("progress".into(), Value::from(format!("{done}/{total}")));
        Value::Object(status)
    }

    fn run_queue(&mut self) {
        while let Some(w) = self.queue.pop_front() {
            match w {
                Work::Advance(id) => self.advance(&id),
                Work::ChildDone { parent, child } => self.child_done(&parent, &child),
            }
        }
    }

    pub(crate) fn mark(&mut self, id: &str) {
        if !self.dirty.contains(id) {
            self.dirty.insert(id.to_string());
        }
    }

    pub(crate) fn mark_wf(&mut self) {
        self.wf_dirty = true;
    }

    pub(crate) fn push(&mut self, w: Work) {
        self.queue.push_back(w);
    }

    pub(crate) fn act(&mut self, a: Action) {
        self.actions.push(a);
    }
}
