//! Artifact garbage collection: Argo's `artifactGC` (3.4+).
//!
//! Strategy: an output artifact's own `artifactGC.strategy`, else the
//! workflow's `spec.artifactGC.strategy`, else `Never` (Argo's default).
//! `OnWorkflowCompletion` artifacts are deleted when the workflow finishes in
//! any final phase (Succeeded, Failed, Error); `OnWorkflowDeletion` ones (and
//! completion ones not yet collected) when it is deleted, *before* its rows go.
//!
//! The hook lives here, in the interaction layer, not in the engine (which does
//! no IO): [`Collector::spawn_listener`] watches the engine's updates and
//! collects a workflow as soon as it is committed final; `weft run` collects
//! its workflow itself before printing it; `weft server` also sweeps finished
//! workflows not yet collected (at start, every minute, and when the update
//! channel lagged), so a replica that died between completion and GC, or a
//! repository that was down, is caught up.
//!
//! What was collected is recorded where Argo records it: `deleted: true` on
//! the artifact in the node's outputs (committed in the node row), so a retry
//! of GC, a second replica or a sweep skips it; a missing object is no error.
//! Only the workflow's own outputs are touched: outputs of its leaf (pod) nodes
//! that were produced by this run (memoized outputs come from another
//! workflow) — never inputs, nor Steps/DAG outputs re-exporting a child's.
//! An `archive: none` directory is many objects: [`Repository::delete_all`].
//!
//! A failure names the artifact, node, key and repository; it is recorded as
//! Argo's `ArtifactGCError` condition in `status.conditions` (the workflow
//! row's status), and a deletion is refused unless forced
//! (`spec.artifactGC.forceFinalizerRemoval`, `?force=true`, `weft delete --force`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tracing::{Instrument, info, info_span, warn};
use weft_drivers::artifacts::{ArtifactError, Repositories, RepositoryOptions};
use weft_engine::model::Phase;
use weft_engine::runtime::{
    CommitBatch, Engine, NodeRecord, StateStore, StoreError, WorkflowFilter, WorkflowRecord,
};
use weft_store::Store;

/// The condition type Argo sets when artifact GC fails.
pub const GC_ERROR: &str = "ArtifactGCError";
const ON_COMPLETION: &str = "OnWorkflowCompletion";
const ON_DELETION: &str = "OnWorkflowDeletion";

/// Why artifacts are being collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The workflow reached a final phase: `OnWorkflowCompletion` artifacts.
    Completion,
    /// The workflow is being deleted: `OnWorkflowDeletion` and `OnWorkflowCompletion` ones.
    Deletion,
}

/// Errors of artifact GC itself (a failing artifact is a [`Report::failures`] entry).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("artifact repositories: {0}")]
    Repository(#[from] ArtifactError),
    #[error("artifact GC task failed: {0}")]
    Task(String),
}

/// What one collection did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// Artifacts deleted now (not counting those collected before).
    pub collected: usize,
    /// One message per artifact that could not be deleted.
    pub failures: Vec<String>,
    /// `spec.artifactGC.forceFinalizerRemoval`.
    pub force: bool,
}

impl Report {
    pub fn message(&self) -> String {
        self.failures.join("; ")
    }
}

/// Deletes the artifacts of finished and deleted workflows. Cheap to share.
pub struct Collector {
    store: Store,
    repos: Arc<Repositories>,
    /// One collection at a time per workflow (listener, sweep, `weft run`, delete).
    busy: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An artifact to delete, found in a node row.
struct Job {
    node: usize,
    index: usize,
    node_id: String,
    artifact: Value,
}

impl Collector {
    pub fn new(store: Store, repos: Arc<Repositories>) -> Arc<Collector> {
        Arc::new(Collector {
            store,
            repos,
            busy: Mutex::default(),
        })
    }

    /// A collector over the default repository `opts` describe (S3 clients run
    /// on the current runtime).
    pub fn from_options(store: Store, opts: &RepositoryOptions) -> Result<Arc<Collector>, GcError> {
        let repos = Repositories::from_options(opts, tokio::runtime::Handle::current())?;
        Ok(Collector::new(store, Arc::new(repos)))
    }

    pub fn repositories(&self) -> &Arc<Repositories> {
        &self.repos
    }

    /// Collect the artifacts of workflow `ns/name` that `trigger` is due for.
    /// A workflow that does not exist (already deleted) is an empty report;
    /// `Completion` of an unfinished workflow does nothing.
    pub async fn collect(&self, ns: &str, name: &str, trigger: Trigger) -> Result<Report, GcError> {
        let lock = {
            let mut busy = self.busy.lock().expect("gc map");
            busy.entry(format!("{ns}/{name}")).or_default().clone()
        };
        let _held = lock.lock().await;
        let span = info_span!("artifact_gc", workflow = %name, namespace = %ns, trigger = ?trigger);
        let r = self
            .collect_locked(ns, name, trigger)
            .instrument(span)
            .await;
        self.busy
            .lock()
            .expect("gc map")
            .retain(|_, l| Arc::strong_count(l) > 1);
        r
    }

    async fn collect_locked(
        &self,
        ns: &str,
        name: &str,
        trigger: Trigger,
    ) -> Result<Report, GcError> {
        // Decide from the row alone whether there is anything to do, before
        // loading every node (O(nodes) of memory and time): most completions
        // have nothing to collect.
        let Some(row) = self.store.get_workflow(ns, name).await? else {
            return Ok(Report::default());
        };
        let mut report = Report {
            force: row.workflow["spec"]["artifactGC"]["forceFinalizerRemoval"].as_bool()
                == Some(true),
            ..Report::default()
        };
        // Not finished, or nothing names OnWorkflowCompletion: nothing to
        // collect, nothing to mark (the sweeper skips such workflows too).
        if trigger == Trigger::Completion
            && !(Phase::parse(&row.phase).is_some_and(Phase::is_done) && pending_completion(&row))
        {
            return Ok(report);
        }
        let Some((mut rec, mut nodes)) = self.store.load_workflow(ns, name).await? else {
            return Ok(report);
        };
        let spec_gc = &rec.workflow["spec"]["artifactGC"];
        let default = strategy_of(spec_gc).unwrap_or("Never").to_string();
        let jobs = due(&nodes, &default, trigger);
        let first_run = rec.status["artifactGC"]["completion"] != json!("done");
        if jobs.is_empty() && !(trigger == Trigger::Completion && first_run) {
            return Ok(report);
        }
        let repos = self.repos.clone();
        let wanted: Vec<(String, Value)> = jobs
            .iter()
            .map(|j| (j.node_id.clone(), j.artifact.clone()))
            .collect();
        let results = tokio::task::spawn_blocking(move || {
            wanted
                .iter()
                .map(|(node, a)| delete_artifact(&repos, node, a))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| GcError::Task(e.to_string()))?;
        let mut changed = vec![false; nodes.len()];
        for (job, result) in jobs.iter().zip(results) {
            match result {
                Ok(n) => {
                    info!(node = %job.node_id, artifact = %job.artifact["name"], objects = n, "artifact deleted");
                    let a = &mut nodes[job.node].data["outputs"]["artifacts"][job.index];
                    a["deleted"] = json!(true);
                    changed[job.node] = true;
                    report.collected += 1;
                }
                Err(e) => {
                    warn!(node = %job.node_id, error = %e, "artifact GC failed");
                    report.failures.push(e);
                }
            }
        }
        set_outcome(&mut rec, trigger, &report);
        let uid = rec.uid.clone();
        // The workflow row goes with the nodes: if it was deleted meanwhile the
        // whole batch fails (NotFound) instead of leaving orphan node rows.
        let batch = CommitBatch {
            owner: None,
            workflows: vec![rec],
            nodes: nodes
                .into_iter()
                .zip(changed)
                .filter(|(_, c)| *c)
                .map(|(n, _)| (uid.clone(), n))
                .collect(),
        };
        match self.store.commit(batch).await {
            Ok(()) => Ok(report),
            // Deleted meanwhile (another process's `weft delete`): nothing to record.
            Err(StoreError::NotFound { .. }) => Ok(report),
            Err(e) => Err(e.into()),
        }
    }

    /// Collect every workflow whose completion the engine publishes, as soon as
    /// it is committed. A lagging receiver triggers a [`sweep`](Self::sweep).
    pub fn spawn_listener(self: &Arc<Self>, engine: &Engine) {
        let mut rx = engine.subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(u) if u.phase.is_done() => {
                        let me = me.clone();
                        tokio::spawn(async move {
                            if let Err(e) =
                                me.collect(&u.namespace, &u.name, Trigger::Completion).await
                            {
                                warn!(workflow = %u.name, error = %e, "artifact GC failed");
                            }
                        });
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        warn!(missed = n, "artifact GC missed updates; sweeping");
                        let me = me.clone();
                        tokio::spawn(async move { me.sweep().await });
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    /// Sweep now and every `every` until `stop` is cancelled.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.sweep().await;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => break,
                }
            }
        });
    }

    /// Collect finished workflows that use `OnWorkflowCompletion` and were not
    /// collected yet (or failed). Returns how many were looked at.
    pub async fn sweep(&self) -> usize {
        let filter = WorkflowFilter {
            phases: vec!["Succeeded".into(), "Failed".into(), "Error".into()],
            ..Default::default()
        };
        let rows = match self.store.list_workflows(&filter).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "artifact GC sweep: listing workflows");
                return 0;
            }
        };
        let mut n = 0;
        for rec in rows.iter().filter(|r| pending_completion(r)) {
            n += 1;
            if let Err(e) = self
                .collect(&rec.namespace, &rec.name, Trigger::Completion)
                .await
            {
                warn!(workflow = %rec.name, error = %e, "artifact GC sweep");
            }
        }
        n
    }
}

/// Whether the workflow `rec` describes may have `OnWorkflowCompletion`
/// artifacts left: its spec or stored templates name that strategy, and it was
/// not collected yet. A run changes neither, so the row `submit` returned
/// answers it as well as the finished row.
pub fn pending_completion(rec: &WorkflowRecord) -> bool {
    if rec.status["artifactGC"]["completion"] == json!("done") {
        return false;
    }
    let mentions = |v: &Value| v.to_string().contains(ON_COMPLETION);
    mentions(&rec.workflow["spec"]) || mentions(&rec.status["stored_templates"])
}

fn strategy_of(gc: &Value) -> Option<&str> {
    gc["strategy"].as_str().filter(|s| !s.is_empty())
}

/// The artifacts `trigger` is due for: outputs of leaf nodes, not memoized,
/// not yet deleted, whose effective strategy matches.
fn due(nodes: &[NodeRecord], default: &str, trigger: Trigger) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let d = &n.data;
        if d["driver"].is_null() || d["memoized"] == json!(true) {
            continue;
        }
        let Some(arts) = d["outputs"]["artifacts"].as_array() else {
            continue;
        };
        for (j, a) in arts.iter().enumerate() {
            if a["deleted"] == json!(true) {
                continue;
            }
            let s = strategy_of(&a["artifactGC"]).unwrap_or(default);
            let wanted = match trigger {
                Trigger::Completion => s == ON_COMPLETION,
                Trigger::Deletion => s == ON_COMPLETION || s == ON_DELETION,
            };
            if wanted {
                jobs.push(Job {
                    node: i,
                    index: j,
                    node_id: n.node_id.clone(),
                    artifact: a.clone(),
                });
            }
        }
    }
    jobs
}

/// Delete one artifact's objects (blocking); how many went. The error names
/// the artifact, node, key and repository.
fn delete_artifact(repos: &Repositories, node: &str, a: &Value) -> Result<usize, String> {
    let name = a["name"].as_str().unwrap_or("?");
    let located = repos
        .locate(a)
        .map_err(|e| format!("artifact '{name}' of node {node}: {e}"))?;
    let Some((repo, key)) = located else {
        return Ok(0); // no stored object (e.g. raw): nothing to delete
    };
    let fail = |e: ArtifactError| {
        let e = e.to_string();
        // Store errors name the repository already.
        let repo = repo.describe();
        if e.contains(&repo) {
            format!("deleting artifact '{name}' of node {node} (key {key}): {e}")
        } else {
            format!("deleting artifact '{name}' of node {node} (key {key}) from the {repo}: {e}")
        }
    };
    let none = a["archive"].get("none").is_some();
    // A tgz, or a single raw file, is one object; a raw directory is every object
    // below its key. Only then may `delete_all` run: a file's key is never a
    // prefix of someone else's objects.
    if !none || repo.open(&key).map_err(fail)?.is_some() {
        repo.delete(&key).map_err(fail)?;
        return Ok(1);
    }
    repo.delete_all(&key).map_err(fail)
}

/// Record the outcome in the workflow row's status: `artifactGC.completion`
/// once completion GC went through, and the `ArtifactGCError` condition.
fn set_outcome(rec: &mut WorkflowRecord, trigger: Trigger, report: &Report) {
    if !rec.status.is_object() {
        rec.status = json!({});
    }
    if report.failures.is_empty() && trigger == Trigger::Completion {
        rec.status["artifactGC"]["completion"] = json!("done");
    }
    let mut conds: Vec<Value> = rec.status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != json!(GC_ERROR))
        .collect();
    if !report.failures.is_empty() {
        conds.push(json!({
            "type": GC_ERROR,
            "status": "True",
            "message": format!("artifact GC failed: {}", report.message()),
        }));
    }
    if conds.is_empty() {
        if let Some(o) = rec.status.as_object_mut() {
            o.remove("conditions");
        }
    } else {
        rec.status["conditions"] = Value::Array(conds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, data: Value) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            phase: "Succeeded".into(),
            data,
        }
    }

    #[test]
    fn effective_strategy_per_artifact_then_workflow_and_only_own_leaf_outputs() {
        let arts = json!([
            {"name": "a", "s3": {"key": "k/a.tgz"}},
            {"name": "b", "s3": {"key": "k/b.tgz"}, "artifactGC": {"strategy": "OnWorkflowDeletion"}},
            {"name": "c", "s3": {"key": "k/c.tgz"}, "artifactGC": {"strategy": "Never"}},
            {"name": "d", "s3": {"key": "k/d.tgz"}, "deleted": true},
        ]);
        let nodes = vec![
            node(
                "leaf",
                json!({"driver": "local", "outputs": {"artifacts": arts}}),
            ),
            // a Steps node re-exporting the child's artifact: never collected itself
            node("steps", json!({"outputs": {"artifacts": arts}})),
            // memoized: the outputs are another workflow's
            node(
                "memo",
                json!({"driver": "local", "memoized": true, "outputs": {"artifacts": arts}}),
            ),
        ];
        let names = |t, d| -> Vec<String> {
            due(&nodes, d, t)
                .iter()
                .map(|j| format!("{}:{}", j.node_id, j.artifact["name"].as_str().unwrap()))
                .collect()
        };
        assert_eq!(names(Trigger::Completion, ON_COMPLETION), ["leaf:a"]);
        assert_eq!(
            names(Trigger::Deletion, ON_COMPLETION),
            ["leaf:a", "leaf:b"]
        );
        assert_eq!(names(Trigger::Completion, "Never"), Vec::<String>::new());
        assert_eq!(names(Trigger::Deletion, "Never"), ["leaf:b"]);
    }

    #[test]
    fn outcome_sets_and_clears_the_condition() {
        let mut rec = WorkflowRecord {
            uid: "u".into(),
            namespace: "n".into(),
            name: "w".into(),
            phase: "Succeeded".into(),
            created_ms: 0,
            started_ms: None,
            finished_ms: None,
            message: None,
            labels: Default::default(),
            workflow: json!({}),
            status: json!({"phase": "Succeeded"}),
        };
        let bad = Report {
            failures: vec![
                "deleting artifact 'x' of node n from the S3 repository s3://b/: 403".into(),
            ],
            ..Report::default()
        };
        set_outcome(&mut rec, Trigger::Completion, &bad);
        assert_eq!(rec.status["conditions"][0]["type"], GC_ERROR);
        assert!(
            rec.status["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("artifact 'x'")
        );
        assert!(pending_completion(&WorkflowRecord {
            workflow: json!({"spec": {"artifactGC": {"strategy": ON_COMPLETION}}}),
            ..rec.clone()
        }));
        set_outcome(&mut rec, Trigger::Completion, &Report::default());
        assert!(rec.status.get("conditions").is_none());
        assert_eq!(rec.status["artifactGC"]["completion"], "done");
        assert!(!pending_completion(&WorkflowRecord {
            workflow: json!({"spec": {"artifactGC": {"strategy": ON_COMPLETION}}}),
            ..rec
        }));
    }
}
