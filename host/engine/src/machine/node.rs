//! A node: one row of workflow state. Argo's NodeStatus plus what the engine
//! needs to continue after a restart (the invocation that created it, the
//! driver's opaque state, armed timers).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::model::{
    Arguments, ContinueOn, LifecycleHook, NodeType, Outputs, Phase, Template, TemplateRef,
};

pub type NodeId = String;

/// Where a node's template comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TemplateSource {
    /// A template by name in `scope` ("" = the workflow, or a stored-template key).
    Name {
        scope: String,
        name: String,
    },
    Ref(TemplateRef),
    Inline(Box<Template>),
}

/// How a node was asked to run: enough to resume it after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    pub source: TemplateSource,
    /// Arguments, already rendered with the caller's variables.
    #[serde(default)]
    pub arguments: Arguments,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_on: Option<ContinueOn>,
    /// Step/task-level exit handler (`onExit` or `hooks.exit`): a template source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exit: Option<Box<LifecycleHook>>,
    /// Non-exit lifecycle hooks (`hooks.<name>` with an `expression`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hooks: BTreeMap<String, LifecycleHook>,
    /// Runs as (part of) an exit handler: still allowed after a `Stop`.
    #[serde(default)]
    pub in_exit: bool,
    /// This node is one attempt of a retried template: don't retry again.
    #[serde(default)]
    pub no_retry: bool,
    /// Attempt index (the `retries` variable).
    #[serde(default)]
    pub attempt: u32,
}

/// A node of the workflow graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: NodeId,
    pub name: String,
    pub display_name: String,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    /// Template scope for resolving names inside this node's template.
    #[serde(default)]
    pub template_scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary_id: Option<NodeId>,
    /// Structural parent (engine field; Argo derives `children` from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<NodeId>,
    /// Creation order, to list children in order.
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Arguments>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<Invocation>,
    /// Loop item of this node, as JSON (for `{{item}}` when re-rendering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
    // ---- engine bookkeeping ----
    /// The node started its work (composites: expanded; leaves: step sent to a driver).
    #[serde(default)]
    pub started: bool,
    /// Leaves: the driver that runs it and the resolved template sent to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_state: Option<Vec<u8>>,
    /// An armed timer (retry backoff, suspend duration, deadline), ms since epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_ms: Option<i64>,
    /// Deadline (template activeDeadlineSeconds / timeout), ms since epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// Waiting for a memo lookup, locks or a parallelism slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Locks this node holds (lock key, limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<(String, u32)>,
    /// The exit-handler child started for this node, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_node: Option<NodeId>,
    /// The node reached its own final phase; its exit handler may still run.
    #[serde(default)]
    pub finalised: bool,
    /// Hooks already fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks_fired: Vec<String>,
    /// Memoization: key looked up and whether the outputs came from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo_key: Option<String>,
    #[serde(default)]
    pub memoized: bool,
    /// Composite nodes: template-level `parallelism` over their children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Nesting depth (root = 0); bounded so runaway recursion fails cleanly.
    #[serde(default)]
    pub depth: u32,
}

/// Why a node that should run has not started yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Waiting {
    Memo,
    Locks,
    Parallelism,
}

impl Node {
    pub fn new(
        id: NodeId,
        name: String,
        display_name: String,
        node_type: NodeType,
        seq: u64,
    ) -> Node {
        Node {
            id,
            name,
            display_name,
            node_type,
            phase: Phase::Pending,
            template_name: None,
            template_ref: None,
            template_scope: String::new(),
            boundary_id: None,
            parent: None,
            seq,
            started_ms: None,
            finished_ms: None,
            message: None,
            inputs: None,
            outputs: None,
            invocation: None,
            item: None,
            started: false,
            driver: None,
            resolved: None,
            driver_state: None,
            wake_ms: None,
            deadline_ms: None,
            waiting: None,
            locks: Vec::new(),
            exit_node: None,
            finalised: false,
            hooks_fired: Vec::new(),
            memo_key: None,
            memoized: false,
            limit: None,
            depth: 0,
        }
    }

    /// Argo's NodeStatus JSON for this node (children filled in by the caller).
    pub fn to_argo(&self, children: &[NodeId]) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("name".into(), json!(self.name));
        m.insert("displayName".into(), json!(self.display_name));
        m.insert(
            "type".into(),
            serde_json::to_value(self.node_type).unwrap_or(Value::Null),
        );
        m.insert("phase".into(), json!(self.phase.as_str()));
        if let Some(t) = &self.template_name {
            m.insert("templateName".into(), json!(t));
        }
        if let Some(t) = &self.template_ref {
            m.insert(
                "templateRef".into(),
                serde_json::to_value(t).unwrap_or(Value::Null),
            );
        }
        m.insert(
            "templateScope".into(),
            json!(if self.template_scope.is_empty() {
                "local/".to_string()
            } else {
                self.template_scope.clone()
            }),
        );
        if let Some(b) = &self.boundary_id {
            m.insert("boundaryID".into(), json!(b));
        }
        if !children.is_empty() {
            m.insert("children".into(), json!(children));
        }
        if let Some(t) = self.started_ms {
            m.insert("startedAt".into(), json!(rfc3339(t)));
        }
        if let Some(t) = self.finished_ms {
            m.insert("finishedAt".into(), json!(rfc3339(t)));
        }
        if let Some(msg) = &self.message {
            m.insert("message".into(), json!(msg));
        }
        if let Some(i) = &self.inputs
            && !i.is_empty()
        {
            m.insert(
                "inputs".into(),
                serde_json::to_value(i).unwrap_or(Value::Null),
            );
        }
        if let Some(o) = &self.outputs
            && !o.is_empty()
        {
            m.insert(
                "outputs".into(),
                serde_json::to_value(o).unwrap_or(Value::Null),
            );
        }
        if self.memoized {
            m.insert(
                "memoizationStatus".into(),
                json!({"hit": true, "key": self.memo_key, "cacheName": ""}),
            );
        }
        Value::Object(m)
    }
}

/// Milliseconds since the epoch as RFC 3339 (Argo's `metav1.Time`, second precision).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Argo's node id: the workflow name for the root, else `<wf>-<fnv32a(name)>`.
pub fn node_id(workflow: &str, node_name: &str) -> NodeId {
    if node_name == workflow {
        return workflow.to_string();
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in node_name.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{workflow}-{h}")
}
