//! The persistence port: what the engine needs from durable storage.
//!
//! The store keeps rows, not documents: one row per workflow and one row per
//! node, so a workflow has no size ceiling (Argo keeps a workflow in one 1 MiB
//! etcd object). Node and workflow bodies are JSON whose shape the engine owns;
//! the store indexes the few columns it filters on (name, namespace, phase,
//! labels, times).
//!
//! Contract: [`StateStore::commit`] is atomic, and the engine calls it *before*
//! carrying out the actions a transition caused (start a step, arm a timer), so
//! after a crash the store never claims less progress than the world saw.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::ports::LogLine;

/// Errors of the persistence layer, as the engine sees them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} already exists in namespace {namespace:?}")]
    AlreadyExists {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// This replica's lease on the workflow ended: another replica owns it now.
    #[error("lease on workflow {uid} lost: another replica owns it")]
    LeaseLost { uid: String },
    #[error("store: {0}")]
    Backend(String),
}

/// One workflow row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkflowRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// Argo phase: Pending, Running, Succeeded, Failed, Error.
    pub phase: String,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub message: Option<String>,
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// The Workflow object as submitted (metadata + spec, unknown fields kept).
    pub workflow: serde_json::Value,
    /// Workflow-level status the engine keeps besides nodes (outputs, stored
    /// templates, engine bookkeeping). Opaque to the store.
    pub status: serde_json::Value,
}

/// One node row. `data` is the engine's node (Argo NodeStatus plus engine fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    pub node_id: String,
    pub phase: String,
    pub data: serde_json::Value,
}

/// What one commit writes, atomically.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    /// Fencing: when set, every workflow row updated must still be leased to
    /// this replica, or the whole batch fails with `LeaseLost`.
    pub owner: Option<String>,
    /// Workflow rows to update (phase, times, message, status). Keyed by uid.
    pub workflows: Vec<WorkflowRecord>,
    /// Node rows to insert or replace, by (workflow uid, node id).
    pub nodes: Vec<(String, NodeRecord)>,
}

impl CommitBatch {
    pub fn is_empty(&self) -> bool {
        self.workflows.is_empty() && self.nodes.is_empty()
    }
}

/// Filter for listing workflows.
#[derive(Debug, Clone, Default)]
pub struct WorkflowFilter {
    pub namespace: Option<String>,
    /// Only these phases (empty: all).
    pub phases: Vec<String>,
    /// `key=value` label equality requirements, all must hold.
    pub labels: Vec<(String, String)>,
    pub limit: Option<usize>,
}

/// A stored (Cluster)WorkflowTemplate or CronWorkflow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemplateRecord {
    /// `WorkflowTemplate`, `ClusterWorkflowTemplate` or `CronWorkflow`.
    pub kind: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    pub body: serde_json::Value,
}

/// A memoization cache entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoEntry {
    pub outputs: serde_json::Value,
    pub created_ms: i64,
}

#[async_trait]
pub trait StateStore: Send + Sync {
    /// Insert a new workflow row. `AlreadyExists` if the name is taken.
    async fn create_workflow(&self, wf: &WorkflowRecord) -> Result<(), StoreError>;
    /// Insert a new workflow row already leased to `owner` until `until_ms`, in the
    /// same statement, so no other replica can claim it in between.
    async fn create_workflow_leased(
        &self,
        wf: &WorkflowRecord,
        owner: &str,
        until_ms: i64,
    ) -> Result<(), StoreError>;
    /// Apply one batch atomically.
    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError>;
    /// A workflow and all its nodes.
    async fn load_workflow(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(WorkflowRecord, Vec<NodeRecord>)>, StoreError>;
    /// A workflow's row without its nodes: O(1) where [`load_workflow`](Self::load_workflow)
    /// is O(nodes) (a 10,000-node workflow is ~240 MB of node JSON in memory).
    async fn get_workflow(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<WorkflowRecord>, StoreError> {
        Ok(self.load_workflow(namespace, name).await?.map(|(wf, _)| wf))
    }
    async fn list_workflows(
        &self,
        filter: &WorkflowFilter,
    ) -> Result<Vec<WorkflowRecord>, StoreError>;
    /// Delete a workflow with its nodes and logs. `NotFound` if absent.
    async fn delete_workflow(&self, namespace: &str, name: &str) -> Result<(), StoreError>;

    /// Create or replace a template (upsert by kind, namespace, name).
    async fn put_template(&self, t: &TemplateRecord) -> Result<(), StoreError>;
    async fn get_template(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<TemplateRecord>, StoreError>;
    async fn list_templates(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<TemplateRecord>, StoreError>;
    async fn delete_template(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), StoreError>;

    /// Memoization cache (`memoize.cache.configMap.name` is `cache`).
    async fn memo_get(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
    ) -> Result<Option<MemoEntry>, StoreError>;
    async fn memo_put(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
        entry: &MemoEntry,
    ) -> Result<(), StoreError>;

    /// Try to take one slot of a mutex (limit 1) or semaphore (limit n) for `holder`.
    /// Re-acquiring a slot the holder already has returns true. Limits may change
    /// between calls; the current one applies to new acquisitions.
    async fn try_acquire(&self, lock: &str, holder: &str, limit: u32) -> Result<bool, StoreError>;
    async fn release(&self, lock: &str, holder: &str) -> Result<(), StoreError>;

    /// Leases (several engine replicas on one database). Take or renew the lease of
    /// one unfinished workflow for `owner` until `until_ms`; true if `owner` holds it
    /// now (it was free, expired at `now_ms`, or already `owner`'s).
    async fn acquire_lease(
        &self,
        uid: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Extend every lease `owner` holds on unfinished workflows; returns their uids.
    async fn renew_leases(&self, owner: &str, until_ms: i64) -> Result<Vec<String>, StoreError>;
    /// Unfinished workflows with no live lease at `now_ms`, oldest first: (uid, namespace, name).
    async fn claimable(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError>;
    /// Give a lease back (workflow finished, replica shutting down).
    async fn release_lease(&self, uid: &str, owner: &str) -> Result<(), StoreError>;

    /// A node's log lines (all nodes when `node_id` is None), oldest first.
    async fn logs(
        &self,
        workflow_uid: &str,
        node_id: Option<&str>,
    ) -> Result<Vec<LogLine>, StoreError>;
    /// The lines stored after row `after` (0: from the first), in the order
    /// they were stored, each with its row id — a cursor for following a log.
    async fn logs_after(
        &self,
        workflow_uid: &str,
        node_id: Option<&str>,
        after: i64,
    ) -> Result<Vec<(i64, LogLine)>, StoreError>;
    /// Append log lines (the batched path behind a LogSink lands here).
    async fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError>;
}
