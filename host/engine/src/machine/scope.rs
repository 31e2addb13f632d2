//! Variables: building the scopes templates are rendered in, and rendering.

use serde_json::Value;
use weft_expr::{Missing, Vars};

use super::{Machine, Node, NodeId, rfc3339};
use crate::model::{Outputs, Phase};

/// Render every string inside `v` with `vars`.
pub fn render_value(
    v: &Value,
    vars: &Vars,
    missing: Missing,
) -> Result<Value, weft_expr::ExprError> {
    Ok(match v {
        Value::String(s) if s.contains("{{") => {
            Value::String(weft_expr::substitute(s, vars, missing)?)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_value(x, vars, missing))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut out = serde_json::Map::with_capacity(o.len());
            for (k, x) in o {
                out.insert(k.clone(), render_value(x, vars, missing)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Text form of a loop item (`{{item}}`).
pub fn item_text(v: &Value) -> String {
    weft_expr::to_string_value(v)
}

/// Variables for a loop item: `item`, and `item.<key>` for maps.
pub fn item_vars(item: &Value) -> Vec<(String, String)> {
    let mut out = vec![("item".to_string(), item_text(item))];
    if let Value::Object(m) = item {
        for (k, v) in m {
            out.push((format!("item.{k}"), item_text(v)));
            if let Value::Object(inner) = v {
                for (k2, v2) in inner {
                    out.push((format!("item.{k}.{k2}"), item_text(v2)));
                }
            }
        }
    }
    out
}

/// Temporarily add `overlay` to `vars`, run `f`, then restore the previous values.
/// Avoids cloning large scopes for every loop item.
pub fn with_overlay<R>(
    vars: &mut Vars,
    overlay: &[(String, String)],
    f: impl FnOnce(&Vars) -> R,
) -> R {
    let saved: Vec<(String, Option<String>)> = overlay
        .iter()
        .map(|(k, _)| (k.clone(), vars.get(k).map(str::to_string)))
        .collect();
    for (k, v) in overlay {
        vars.insert(k.clone(), v.clone());
    }
    let r = f(vars);
    for (k, old) in saved {
        match old {
            Some(v) => vars.insert(k, v),
            None => {
                vars.remove(&k);
            }
        }
    }
    r
}

impl Machine {
    /// `workflow.*` variables.
    pub(crate) fn global_vars(&self) -> Vars {
        let wf = &self.wf;
        let meta = &wf.workflow.metadata;
        let mut v = Vars::new();
        v.insert("workflow.name", wf.name.clone());
        v.insert("workflow.namespace", wf.namespace.clone());
        v.insert("workflow.uid", wf.uid.clone());
        v.insert("workflow.mainEntrypoint", wf.entrypoint.clone());
        v.insert(
            "workflow.serviceAccountName",
            wf.workflow
                .spec
                .extra
                .get("serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
        );
        v.insert("workflow.creationTimestamp", rfc3339(wf.created_ms));
        if let Some(t) = chrono::DateTime::from_timestamp_millis(wf.created_ms) {
            use chrono::{Datelike, Timelike};
            for (k, val) in [
                ("Y", t.year().to_string()),
                ("m", format!("{:02}", t.month())),
                ("d", format!("{:02}", t.day())),
                ("H", format!("{:02}", t.hour())),
                ("M", format!("{:02}", t.minute())),
                ("S", format!("{:02}", t.second())),
                ("s", t.timestamp().to_string()),
                ("RFC3339", rfc3339(wf.created_ms)),
            ] {
                v.insert(format!("workflow.creationTimestamp.{k}"), val);
            }
        }
        v.insert("workflow.priority", "0");
        v.insert(
            "workflow.duration",
            format!(
                "{}",
                ((self.now - wf.started_ms.unwrap_or(self.now)).max(0) as f64) / 1000.0
            ),
        );
        for (k, val) in &meta.labels {
            v.insert(format!("workflow.labels.{k}"), val.clone());
        }
        for (k, val) in &meta.annotations {
            v.insert(format!("workflow.annotations.{k}"), val.clone());
        }
        let mut all = serde_json::Map::new();
        for p in &wf.workflow.spec.arguments.parameters {
            let val = p
                .value
                .as_ref()
                .or(p.default.as_ref())
                .map(|s| s.0.clone())
                .unwrap_or_default();
            all.insert(p.name.clone(), Value::String(val.clone()));
            v.insert(format!("workflow.parameters.{}", p.name), val);
        }
        v.insert("workflow.parameters", Value::Object(all).to_string());
        for (k, val) in &wf.global_outputs {
            v.insert(format!("workflow.outputs.parameters.{k}"), val.clone());
        }
        for a in &wf.global_artifacts {
            if let Some(name) = a.get("name").and_then(Value::as_str) {
                v.insert(format!("workflow.outputs.artifacts.{name}"), a.to_string());
            }
        }
        if let Some(exit) = &wf.exit_node {
            let _ = exit;
        }
        v
    }

    /// Variables a node's own template sees: globals, its inputs, pod/node name, retries.
    pub(crate) fn node_vars(&self, node: &Node) -> Vars {
        let mut v = self.global_vars();
        self.add_exit_vars(&mut v);
        if let Some(inputs) = &node.inputs {
            let mut all = serde_json::Map::new();
            for p in &inputs.parameters {
                let val = p.value.as_ref().map(|s| s.0.clone()).unwrap_or_default();
                all.insert(p.name.clone(), Value::String(val.clone()));
                v.insert(format!("inputs.parameters.{}", p.name), val);
            }
            v.insert("inputs.parameters", Value::Object(all).to_string());
            for a in &inputs.artifacts {
                if let Some(path) = &a.path {
                    v.insert(format!("inputs.artifacts.{}.path", a.name), path.clone());
                }
                // the whole artifact, for `from: "{{inputs.artifacts.x}}"` in a steps/dag template
                if let Ok(json) = serde_json::to_string(a) {
                    v.insert(format!("inputs.artifacts.{}", a.name), json);
                }
            }
        }
        v.insert("node.name", node.name.clone());
        v.insert("pod.name", pod_name(&self.wf.name, node));
        let attempt = node.invocation.as_ref().map(|i| i.attempt).unwrap_or(0);
        v.insert("retries", attempt.to_string());
        v
    }

    /// `workflow.status` and `workflow.failures`, once the main part is over.
    pub(crate) fn add_exit_vars(&self, v: &mut Vars) {
        let root = self.nodes.get(&self.wf.name);
        let status = match root {
            Some(r) if r.phase.is_done() => r.phase,
            _ => Phase::Running,
        };
        let status = if self.wf.shutdown.is_some() && status.is_ok() {
            Phase::Failed
        } else {
            status
        };
        v.insert("workflow.status", status.as_str());
        if status.is_done() {
            let mut failures = Vec::new();
            let mut all: Vec<&Node> = self.nodes.values().collect();
            all.sort_by_key(|n| n.seq);
            for n in all {
                if matches!(n.phase, Phase::Failed | Phase::Error) && n.driver.is_some() {
                    failures.push(serde_json::json!({
                        "displayName": n.display_name,
                        "message": n.message.clone().unwrap_or_default(),
                        "templateName": n.template_name.clone().unwrap_or_default(),
                        "phase": n.phase.as_str(),
                        "podName": pod_name(&self.wf.name, n),
                        "finishedAt": n.finished_ms.map(rfc3339).unwrap_or_default(),
                    }));
                }
            }
            v.insert("workflow.failures", Value::Array(failures).to_string());
        }
    }

    /// The cached scope of a composite node (created on first use).
    pub(crate) fn scope_mut(&mut self, id: &str) -> &mut Vars {
        if !self.scopes.contains_key(id) {
            let vars = match self.nodes.get(id) {
                Some(n) => self.node_vars(n),
                None => self.global_vars(),
            };
            self.scopes.insert(id.to_string(), vars);
        }
        self.scopes.get_mut(id).expect("inserted above")
    }

    /// Record a finished unit's variables in `scope_owner`'s scope under `prefix`
    /// (`steps.<name>` or `tasks.<name>`). Loop expansions aggregate.
    pub(crate) fn record_unit(
        &mut self,
        scope_owner: &str,
        prefix: &str,
        members: &[NodeId],
        looped: bool,
    ) {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let nodes: Vec<&Node> = members.iter().filter_map(|id| self.nodes.get(id)).collect();
        if nodes.is_empty() && !looped {
            return;
        }
        if !looped {
            let n = nodes[0];
            unit_vars(prefix, n, &mut pairs);
        } else {
            let mut results = Vec::new();
            let mut param_maps = Vec::new();
            let mut per_param: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
            let mut all_ok = true;
            for n in &nodes {
                all_ok &= n.phase.is_ok();
                if let Some(o) = &n.outputs {
                    if let Some(r) = &o.result {
                        results.push(Value::String(r.clone()));
                    }
                    let mut m = serde_json::Map::new();
                    for p in &o.parameters {
                        let val = p.value.as_ref().map(|s| s.0.clone()).unwrap_or_default();
                        m.insert(p.name.clone(), Value::String(val.clone()));
                        per_param
                            .entry(p.name.clone())
                            .or_default()
                            .push(Value::String(val));
                    }
                    if !m.is_empty() {
                        param_maps.push(Value::Object(m));
                    }
                }
            }
            pairs.push((
                format!("{prefix}.outputs.result"),
                Value::Array(results).to_string(),
            ));
            pairs.push((
                format!("{prefix}.outputs.parameters"),
                Value::Array(param_maps).to_string(),
            ));
            for (k, vals) in per_param {
                pairs.push((
                    format!("{prefix}.outputs.parameters.{k}"),
                    Value::Array(vals).to_string(),
                ));
            }
            pairs.push((
                format!("{prefix}.status"),
                if all_ok { "Succeeded" } else { "Failed" }.to_string(),
            ));
        }
        let scope = self.scope_mut(scope_owner);
        for (k, v) in pairs {
            scope.insert(k, v);
        }
    }
}

/// Variables of one finished node under `prefix`.
pub(crate) fn unit_vars(prefix: &str, n: &Node, out: &mut Vec<(String, String)>) {
    out.push((format!("{prefix}.id"), n.id.clone()));
    out.push((format!("{prefix}.status"), n.phase.as_str().to_string()));
    if let Some(t) = n.started_ms {
        out.push((format!("{prefix}.startedAt"), rfc3339(t)));
    }
    if let Some(t) = n.finished_ms {
        out.push((format!("{prefix}.finishedAt"), rfc3339(t)));
    }
    if let Some(o) = &n.outputs {
        add_outputs(prefix, o, out);
    }
}

pub(crate) fn add_outputs(prefix: &str, o: &Outputs, out: &mut Vec<(String, String)>) {
    if let Some(r) = &o.result {
        out.push((format!("{prefix}.outputs.result"), r.clone()));
    }
    if let Some(c) = &o.exit_code {
        out.push((format!("{prefix}.exitCode"), c.clone()));
        out.push((format!("{prefix}.outputs.exitCode"), c.clone()));
    }
    let mut all = serde_json::Map::new();
    for p in &o.parameters {
        let val = p.value.as_ref().map(|s| s.0.clone()).unwrap_or_default();
        all.insert(p.name.clone(), Value::String(val.clone()));
        out.push((format!("{prefix}.outputs.parameters.{}", p.name), val));
    }
    if !all.is_empty() {
        out.push((
            format!("{prefix}.outputs.parameters"),
            Value::Object(all).to_string(),
        ));
    }
    for a in &o.artifacts {
        out.push((
            format!("{prefix}.outputs.artifacts.{}", a.name),
            serde_json::to_string(a).unwrap_or_default(),
        ));
    }
}

/// Argo's pod name (v2 naming): `<wf>-<template>-<hash>`, or the node id shape.
pub fn pod_name(workflow: &str, node: &Node) -> String {
    let id_hash = node.id.rsplit('-').next().unwrap_or("");
    match &node.template_name {
        Some(t) if !t.is_empty() => format!("{workflow}-{t}-{id_hash}"),
        _ => node.id.clone(),
    }
}

/// Nodes of `members` by id, helper for callers holding ids.
pub(crate) fn _ids(v: &[NodeId]) -> &[NodeId] {
    v
}
