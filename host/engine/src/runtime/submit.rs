//! Preparing a workflow for execution: name, uid, `workflowTemplateRef`
//! merged in, and every (Cluster)WorkflowTemplate reachable through
//! `templateRef` collected, so the state machine never needs IO.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::Value;

use super::store::{StateStore, StoreError};
use crate::model::{Template, Workflow, WorkflowSpec, merge_json};

/// Why a workflow cannot be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub const WORKFLOW_TEMPLATE: &str = "WorkflowTemplate";
pub const CLUSTER_WORKFLOW_TEMPLATE: &str = "ClusterWorkflowTemplate";
pub const CRON_WORKFLOW: &str = "CronWorkflow";

/// A random lowercase suffix like Kubernetes' generateName.
pub fn random_suffix(len: usize) -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A random uid in the 8-4-4-4-12 hex form.
pub fn new_uid() -> String {
    let mut rng = rand::rng();
    let b: [u8; 16] = rng.random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

async fn fetch_spec(
    store: &dyn StateStore,
    namespace: &str,
    name: &str,
    cluster: bool,
) -> Result<WorkflowSpec, SubmitError> {
    let (kind, ns) = if cluster {
        (CLUSTER_WORKFLOW_TEMPLATE, "")
    } else {
        (WORKFLOW_TEMPLATE, namespace)
    };
    let rec = store.get_template(kind, ns, name).await?.ok_or_else(|| {
        SubmitError::Invalid(format!(
            "{kind} {name:?} not found{}",
            if cluster {
                String::new()
            } else {
                format!(" in namespace {namespace:?}")
            }
        ))
    })?;
    let spec = rec.body.get("spec").cloned().unwrap_or(Value::Null);
    serde_json::from_value(spec).map_err(|e| SubmitError::Invalid(format!("{kind} {name:?}: {e}")))
}

/// Merge `workflowTemplateRef`, name the workflow, and collect stored templates.
pub async fn prepare(
    store: &dyn StateStore,
    mut wf: Workflow,
) -> Result<(Workflow, BTreeMap<String, WorkflowSpec>), SubmitError> {
    if wf.kind.is_empty() {
        wf.kind = "Workflow".into();
    }
    if wf.metadata.namespace.is_none() {
        wf.metadata.namespace = Some("default".into());
    }
    if wf.metadata.name.as_deref().is_none_or(str::is_empty) {
        let prefix = wf
            .metadata
            .generate_name
            .clone()
            .unwrap_or_else(|| "workflow-".into());
        wf.metadata.name = Some(format!("{prefix}{}", random_suffix(5)));
    }
    let ns = wf.namespace().to_string();
    if let Some(r) = wf.spec.workflow_template_ref.clone() {
        let cluster = r.cluster_scope == Some(true);
        let base = fetch_spec(store, &ns, &r.name, cluster).await?;
        let mut merged =
            serde_json::to_value(&base).map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let mut mine =
            serde_json::to_value(&wf.spec).map_err(|e| SubmitError::Invalid(e.to_string()))?;
        // arguments merge by parameter name: the workflow's values win
        let mut params: Vec<Value> = merged
            .pointer("/arguments/parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(over)) = mine.pointer("/arguments/parameters") {
            for p in over {
                let name = p.get("name").cloned();
                match params.iter_mut().find(|x| x.get("name") == name.as_ref()) {
                    Some(x) => merge_json(x, p.clone()),
                    None => params.push(p.clone()),
                }
            }
        }
        if let Some(o) = mine.as_object_mut() {
            o.remove("workflowTemplateRef");
            o.remove("arguments");
        }
        merge_json(&mut merged, mine);
        if !params.is_empty() {
            merged["arguments"]["parameters"] = Value::Array(params);
        }
        let mut spec: WorkflowSpec =
            serde_json::from_value(merged).map_err(|e| SubmitError::Invalid(e.to_string()))?;
        spec.workflow_template_ref = Some(r);
        wf.spec = spec;
    }
    // Collect templateRefs transitively.
    let mut stored: BTreeMap<String, WorkflowSpec> = BTreeMap::new();
    let mut todo: Vec<(String, String, bool)> = Vec::new();
    collect_refs(&wf.spec, &mut todo);
    while let Some((key, name, cluster)) = todo.pop() {
        if stored.contains_key(&key) {
            continue;
        }
        let spec = fetch_spec(store, &ns, &name, cluster).await?;
        collect_refs(&spec, &mut todo);
        stored.insert(key, spec);
    }
    Ok((wf, stored))
}

fn collect_refs(spec: &WorkflowSpec, out: &mut Vec<(String, String, bool)>) {
    fn tmpl(t: &Template, out: &mut Vec<(String, String, bool)>) {
        let mut steps: Vec<&crate::model::WorkflowStep> = Vec::new();
        if let Some(groups) = &t.steps {
            for g in groups {
                steps.extend(g.0.iter());
            }
        }
        if let Some(d) = &t.dag {
            steps.extend(d.tasks.iter());
        }
        for s in steps {
            if let Some(r) = &s.template_ref {
                let cluster = r.cluster_scope == Some(true);
                let key = if cluster {
                    format!("cluster/{}", r.name)
                } else {
                    format!("namespaced/{}", r.name)
                };
                out.push((key, r.name.clone(), cluster));
            }
            for h in s.hooks.values() {
                if let Some(r) = &h.template_ref {
                    let cluster = r.cluster_scope == Some(true);
                    let key = if cluster {
                        format!("cluster/{}", r.name)
                    } else {
                        format!("namespaced/{}", r.name)
                    };
                    out.push((key, r.name.clone(), cluster));
                }
            }
            if let Some(i) = &s.inline {
                tmpl(i, out);
            }
        }
    }
    for t in &spec.templates {
        tmpl(t, out);
    }
    for h in spec.hooks.values() {
        if let Some(r) = &h.template_ref {
            let cluster = r.cluster_scope == Some(true);
            let key = if cluster {
                format!("cluster/{}", r.name)
            } else {
                format!("namespaced/{}", r.name)
            };
            out.push((key, r.name.clone(), cluster));
        }
    }
}
