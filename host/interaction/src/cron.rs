//! The cron loop of `weft server`: schedules the stored CronWorkflows.
//!
//! Once a second it reads every CronWorkflow from the store and, for each:
//!
//! 1. reconciles `status.active` with the workflows labelled
//!    `workflows.argoproj.io/cron-workflow: <name>` (those that finished since
//!    the last look count towards `status.succeeded` / `status.failed`);
//! 2. deletes finished ones beyond the history limits;
//! 3. asks the pure [`weft_engine::cron::due`] what to do now, and carries it
//!    out: a run is submitted through the same path as `POST
//!    /api/v1/workflows` ([`submit_value`]: lint, `workflowTemplateRef`,
//!    engine), named `<cron-name>-<unix seconds of the scheduled time>`;
//!    `Replace` terminates the active workflows first;
//! 4. writes the CronWorkflow's `status` back into the stored object (only
//!    `status`, re-read just before, so an edit made meanwhile is kept).
//!
//! Several replicas on one database: the workflow name is deterministic, so
//! a replica that finds the name taken (before submitting, or as
//! `AlreadyExists` from the store) knows another one scheduled that time and
//! records it as done. No lock is needed; `Replace` never terminates the
//! workflow of the slot it is about to start.
//!
//! Nothing here ends the loop: a store error or a bad CronWorkflow is logged
//! (and, for a bad spec, set as a `SpecError` condition) and the next tick
//! tries again.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tracing::{Instrument, debug, info, info_span, warn};
use weft_engine::cron::{
    ANNOTATION_SCHEDULED_TIME, CONDITION_SPEC_ERROR, CONDITION_SUBMISSION_ERROR, CronStatus,
    Decision, Finished, LABEL_CRON_WORKFLOW, LABELS_TO_PROPAGATE, WorkflowRef, due,
    history_to_delete, rfc3339, workflow_name,
};
use weft_engine::model::{CronWorkflow, Phase};
use weft_engine::runtime::{
    CRON_WORKFLOW, StateStore, StoreError, TemplateRecord, WorkflowFilter, WorkflowRecord,
};

use crate::api::workflows::{delete_workflow, submit_value};
use crate::api::{ApiError, ApiState};

/// How often the loop looks at the CronWorkflows. Cron's finest unit is a
/// minute, so a run starts within about a second of its time.
pub const TICK: Duration = Duration::from_secs(1);

/// Why one CronWorkflow's turn failed (logged; the next tick tries again).
#[derive(Debug, thiserror::Error)]
pub enum CronLoopError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Start the loop; it ends when the server shuts down (`state.shutdown`).
pub fn spawn(state: ApiState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut looked = HashMap::new();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            if let Err(e) = tick(&state, &mut looked, Utc::now()).await {
                warn!(error = %e, "cron loop: cannot list CronWorkflows");
            }
        }
        debug!("cron loop stopped");
    })
}

/// When the loop last looked at each CronWorkflow, and its spec then.
type Looked = HashMap<(String, String), (DateTime<Utc>, Value)>;

/// One look at every CronWorkflow. A CronWorkflow whose spec changed since
/// the last look (edited, suspended, resumed) is looked at as if for the first
/// time, so a slot missed meanwhile runs if still within
/// `startingDeadlineSeconds` — as Argo re-checks missed runs on every update.
async fn tick(
    state: &ApiState,
    looked: &mut Looked,
    now: DateTime<Utc>,
) -> Result<(), CronLoopError> {
    let crons = state.store.list_templates(CRON_WORKFLOW, None).await?;
    let live: std::collections::HashSet<(String, String)> = crons
        .iter()
        .map(|c| (c.namespace.clone(), c.name.clone()))
        .collect();
    looked.retain(|k, _| live.contains(k));
    for rec in crons {
        let key = (rec.namespace.clone(), rec.name.clone());
        let spec = rec.body["spec"].clone();
        let last = looked
            .get(&key)
            .filter(|(_, seen)| *seen == spec)
            .map(|(t, _)| *t);
        let span = info_span!("cron", cron_workflow = %rec.name, namespace = %rec.namespace);
        if let Err(e) = one(state, &rec, last, now).instrument(span).await {
            warn!(cron_workflow = %rec.name, namespace = %rec.namespace, error = %e, "cron workflow turn failed");
        }
        looked.insert(key, (now, spec));
    }
    Ok(())
}

/// One CronWorkflow's turn.
async fn one(
    state: &ApiState,
    rec: &TemplateRecord,
    last_check: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), CronLoopError> {
    let (ns, name) = (rec.namespace.as_str(), rec.name.as_str());
    let old = CronStatus::from_value(&rec.body["status"]);
    let mut status = old.clone();
    let cron: CronWorkflow = match serde_json::from_value(rec.body.clone()) {
        Ok(c) => c,
        Err(e) => {
            status.set_condition(CONDITION_SPEC_ERROR, format!("cannot read: {e}"));
            return write_status(state, ns, name, &old, &status).await;
        }
    };

    // The workflows this cron created, and what became of the active ones.
    let filter = WorkflowFilter {
        namespace: Some(ns.to_string()),
        labels: vec![(LABEL_CRON_WORKFLOW.to_string(), name.to_string())],
        ..Default::default()
    };
    let children = state.store.list_workflows(&filter).await?;
    reconcile(&mut status, &children);
    let finished: Vec<Finished> = children
        .iter()
        .filter(|w| is_done(&w.phase))
        .map(|w| Finished {
            name: w.name.clone(),
            succeeded: w.phase == Phase::Succeeded.as_str(),
            finished_ms: w.finished_ms.unwrap_or(w.created_ms),
        })
        .collect();
    for old_wf in history_to_delete(&cron.spec, &finished) {
        match delete_workflow(state, ns, &old_wf).await {
            Ok(()) | Err(ApiError::NotFound(_)) => {
                info!(workflow = %old_wf, "deleted by the history limit")
            }
            Err(e) => warn!(workflow = %old_wf, error = %e, "cannot delete for the history limit"),
        }
    }

    match due(&cron, &status, last_check, now) {
        Decision::Idle => {}
        Decision::Invalid(e) => {
            if old
                .conditions
                .iter()
                .all(|c| c.kind != CONDITION_SPEC_ERROR)
            {
                warn!(error = %e, "invalid CronWorkflow: nothing is scheduled");
            }
            status.set_condition(CONDITION_SPEC_ERROR, e.to_string());
        }
        Decision::Skip { scheduled, reason } => {
            status.remove_condition(CONDITION_SPEC_ERROR);
            info!(scheduled = %rfc3339(scheduled), ?reason, "scheduled run skipped");
            if let weft_engine::cron::SkipReason::WhenError(m) = reason {
                status.set_condition(CONDITION_SUBMISSION_ERROR, m);
            }
        }
        Decision::Run {
            scheduled,
            missed,
            replace,
        } => {
            status.remove_condition(CONDITION_SPEC_ERROR);
            let wf_name = workflow_name(name, scheduled);
            if state.store.load_workflow(ns, &wf_name).await?.is_some() {
                // Another replica (or an earlier turn) scheduled this time.
                status.set_last_scheduled(scheduled);
            } else {
                for r in replace.iter().filter(|r| **r != wf_name) {
                    let none = json!({});
                    match crate::api::actions::dispatch(state, ns, r, "terminate", &none).await {
                        Ok(_) => info!(workflow = %r, "terminated (concurrencyPolicy: Replace)"),
                        // finished or gone meanwhile
                        Err(ApiError::NotFound(_) | ApiError::Precondition(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let wf = child_workflow(&rec.body, &cron, &wf_name, scheduled);
                match submit_value(state, wf, false).await {
                    Ok(obj) => {
                        info!(workflow = %wf_name, scheduled = %rfc3339(scheduled), missed, "scheduled");
                        status.active.push(WorkflowRef {
                            kind: "Workflow".into(),
                            api_version: weft_engine::model::API_VERSION.into(),
                            name: wf_name.clone(),
                            namespace: ns.to_string(),
                            uid: obj["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                        });
                        status.set_last_scheduled(scheduled);
                        status.phase = Some("Active".into());
                        status.remove_condition(CONDITION_SUBMISSION_ERROR);
                    }
                    Err(ApiError::AlreadyExists(_)) => status.set_last_scheduled(scheduled),
                    Err(e) => {
                        warn!(workflow = %wf_name, error = %e, "cannot submit the scheduled workflow");
                        status.set_condition(
                            CONDITION_SUBMISSION_ERROR,
                            format!("Failed to submit Workflow: {e}"),
                        );
                        status.failed += 1;
                    }
                }
            }
        }
    }
    write_status(state, ns, name, &old, &status).await
}

fn is_done(phase: &str) -> bool {
    Phase::parse(phase).is_some_and(Phase::is_done)
}

/// `status.active` := the unfinished children; active ones that finished count.
fn reconcile(status: &mut CronStatus, children: &[WorkflowRecord]) {
    let by_name: HashMap<&str, &WorkflowRecord> =
        children.iter().map(|w| (w.name.as_str(), w)).collect();
    for r in &status.active {
        match by_name.get(r.name.as_str()).map(|w| w.phase.as_str()) {
            Some(p) if p == Phase::Succeeded.as_str() => status.succeeded += 1,
            Some(p) if is_done(p) => status.failed += 1,
            _ => {}
        }
    }
    let mut active: Vec<WorkflowRef> = children
        .iter()
        .filter(|w| !is_done(&w.phase))
        .map(|w| WorkflowRef {
            kind: "Workflow".into(),
            api_version: weft_engine::model::API_VERSION.into(),
            name: w.name.clone(),
            namespace: w.namespace.clone(),
            uid: w.uid.clone(),
        })
        .collect();
    active.sort_by(|a, b| a.name.cmp(&b.name));
    status.active = active;
}

/// The Workflow for one scheduled time, as Argo builds it
/// (`ConvertCronWorkflowToWorkflowWithProperties`): the `workflowSpec`, the
/// creator labels of the CronWorkflow, the cron label, `workflowMetadata`'s
/// labels and annotations, and the scheduled-time annotation.
fn child_workflow(
    body: &Value,
    cron: &CronWorkflow,
    name: &str,
    scheduled: DateTime<Utc>,
) -> Value {
    let mut labels = Map::new();
    for k in LABELS_TO_PROPAGATE {
        if let Some(v) = cron.metadata.labels.get(k) {
            labels.insert(k.into(), json!(v));
        }
    }
    labels.insert(
        LABEL_CRON_WORKFLOW.into(),
        json!(cron.metadata.name.clone().unwrap_or_default()),
    );
    let mut annotations = Map::new();
    annotations.insert(ANNOTATION_SCHEDULED_TIME.into(), json!(rfc3339(scheduled)));
    let meta = &body["spec"]["workflowMetadata"];
    for (field, out) in [("labels", &mut labels), ("annotations", &mut annotations)] {
        if let Some(m) = meta[field].as_object() {
            for (k, v) in m {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    json!({
        "apiVersion": weft_engine::model::API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "name": name,
            "namespace": cron.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": body["spec"]["workflowSpec"].clone(),
    })
}

/// Store `status` into the CronWorkflow if it changed (re-read first: only `status` is written).
async fn write_status(
    state: &ApiState,
    ns: &str,
    name: &str,
    old: &CronStatus,
    status: &CronStatus,
) -> Result<(), CronLoopError> {
    if status == old {
        return Ok(());
    }
    let Some(mut rec) = state.store.get_template(CRON_WORKFLOW, ns, name).await? else {
        return Ok(()); // deleted meanwhile
    };
    rec.body["status"] = status.to_value();
    state.store.put_template(&rec).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, phase: &str) -> WorkflowRecord {
        WorkflowRecord {
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            name: name.into(),
            phase: phase.into(),
            created_ms: 0,
            started_ms: None,
            finished_ms: None,
            message: None,
            labels: Map::new(),
            workflow: Value::Null,
            status: Value::Null,
        }
    }

    #[test]
    fn reconcile_counts_the_active_ones_that_finished() {
        let mut st = CronStatus::default();
        for n in ["c-1", "c-2", "c-3"] {
            st.active.push(WorkflowRef {
                name: n.into(),
                ..Default::default()
            });
        }
        let children = [
            rec("c-1", "Succeeded"),
            rec("c-2", "Failed"),
            rec("c-3", "Running"),
            rec("c-0", "Succeeded"), // finished long ago: not counted again
            rec("c-4", "Pending"),
        ];
        reconcile(&mut st, &children);
        assert_eq!((st.succeeded, st.failed), (1, 1));
        let names: Vec<&str> = st.active.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["c-3", "c-4"]);
        // a second look counts nothing again
        reconcile(&mut st, &children);
        assert_eq!((st.succeeded, st.failed), (1, 1));
    }

    #[test]
    fn child_workflow_has_argo_name_labels_and_annotations() {
        let body = json!({
            "metadata": {"name": "nightly", "namespace": "team",
                "labels": {"workflows.argoproj.io/creator": "ann", "other": "x"}},
            "spec": {"schedules": ["0 0 * * *"],
                "workflowMetadata": {"labels": {"k": "v"}, "annotations": {"a": "b"}},
                "workflowSpec": {"entrypoint": "main"}}
        });
        let cron: CronWorkflow = serde_json::from_value(body.clone()).unwrap();
        let t = DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let name = workflow_name("nightly", t);
        let wf = child_workflow(&body, &cron, &name, t);
        assert_eq!(wf["metadata"]["name"], "nightly-1714521600");
        assert_eq!(wf["metadata"]["namespace"], "team");
        assert_eq!(
            wf["metadata"]["labels"],
            json!({"workflows.argoproj.io/creator": "ann",
                "workflows.argoproj.io/cron-workflow": "nightly", "k": "v"})
        );
        assert_eq!(
            wf["metadata"]["annotations"],
            json!({"workflows.argoproj.io/scheduled-time": "2024-05-01T00:00:00Z", "a": "b"})
        );
        assert_eq!(wf["spec"], json!({"entrypoint": "main"}));
    }
}
