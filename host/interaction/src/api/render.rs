//! Workflows as the API shows them, and the list options Argo clients send:
//! label selectors, field selectors and the `fields` projection.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use weft_engine::runtime::{StateStore, WorkflowRecord, argo_workflow, stored_status};
use weft_store::Store;

use super::error::{ApiError, ApiResult};

/// The Argo Workflow object of a row. A workflow the engine has not started yet
/// (queued, `Pending`) is reported `Running`, as Argo clients expect of a live
/// workflow: Hera's `wait()` polls only while the phase is `Running`, and never
/// accepts an empty phase.
pub fn render(rec: &WorkflowRecord, status: Value) -> Value {
    let mut wf = argo_workflow(rec, status);
    let live = |p: &Value| p.as_str().is_none_or(|s| s.is_empty() || s == "Pending");
    if live(&wf["status"]["phase"]) {
        wf["status"]["phase"] = json!("Running");
    }
    if wf["metadata"]["labels"]["workflows.argoproj.io/phase"].as_str() == Some("Pending") {
        wf["metadata"]["labels"]["workflows.argoproj.io/phase"] = json!("Running");
    }
    if let Some(spec) = wf.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("status");
    }
    wf
}

/// A stored workflow with its nodes, or NotFound.
pub async fn load(store: &Store, ns: &str, name: &str) -> ApiResult<Value> {
    let (rec, nodes) = store
        .load_workflow(ns, name)
        .await?
        .ok_or_else(|| not_found(ns, name))?;
    let status = stored_status(&rec, nodes)?;
    Ok(render(&rec, status))
}

/// The workflow row alone (no nodes): phase, times, message, outputs.
pub fn summary(rec: &WorkflowRecord) -> Value {
    let status = stored_status(rec, Vec::new())
        .unwrap_or_else(|_| json!({"phase": rec.phase, "message": rec.message}));
    render(rec, status)
}

pub fn not_found(ns: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "workflows.argoproj.io \"{name}\" not found in namespace \"{ns}\""
    ))
}

/// One requirement of a Kubernetes label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
pub fn parse_labels(sel: &str) -> ApiResult<Vec<Requirement>> {
    let mut out = Vec::new();
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in sel.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&sel[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&sel[start..]);
    let bad = |p: &str| ApiError::Invalid(format!("unable to parse requirement {p:?}"));
    for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> ApiResult<Vec<String>> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| bad(p))?;
            Ok(inner.split(',').map(|s| s.trim().to_string()).collect())
        };
        if let Some((k, v)) = p.split_once("!=") {
            out.push(Requirement::NotEq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            out.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            out.push(Requirement::NotIn(k.trim().into(), set(rest)?));
        } else if let Some((k, rest)) = p.split_once(" in ") {
            out.push(Requirement::In(k.trim().into(), set(rest)?));
        } else if let Some(k) = p.strip_prefix('!') {
            out.push(Requirement::NotExists(k.trim().into()));
        } else if p.chars().all(|c| c.is_alphanumeric() || "-_./".contains(c)) {
            out.push(Requirement::Exists(p.into()));
        } else {
            return Err(bad(p));
        }
    }
    Ok(out)
}

/// Do an object's labels meet every requirement?
pub fn labels_match(reqs: &[Requirement], labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Eq(k, v) => get(k) == Some(v),
        Requirement::NotEq(k, v) => get(k) != Some(v),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

/// A query-string option, `""` when absent.
pub fn query_str<'a>(q: &'a HashMap<String, String>, key: &str) -> &'a str {
    q.get(key).map_or("", String::as_str)
}

/// The query's `listOptions.labelSelector`, parsed (absent: no requirement).
pub fn label_selector(q: &HashMap<String, String>) -> ApiResult<Vec<Requirement>> {
    parse_labels(query_str(q, "listOptions.labelSelector"))
}

/// The query's `listOptions.fieldSelector`, parsed (absent: no requirement).
pub fn field_selector(q: &HashMap<String, String>) -> ApiResult<Vec<(String, bool, String)>> {
    parse_fields(query_str(q, "listOptions.fieldSelector"))
}

/// A field selector: `metadata.name=x,status.phase!=Running` (fields by dotted path).
pub fn parse_fields(sel: &str) -> ApiResult<Vec<(String, bool, String)>> {
    sel.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if let Some((k, v)) = p.split_once("!=") {
                Ok((k.trim().to_string(), false, v.trim().to_string()))
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Ok((k.trim().to_string(), true, v.trim().to_string()))
            } else {
                Err(ApiError::Invalid(format!(
                    "invalid field selector {p:?}: expected field=value"
                )))
            }
        })
        .collect()
}

pub fn fields_match(sel: &[(String, bool, String)], obj: &Value) -> bool {
    sel.iter().all(|(path, eq, want)| {
        let mut v = obj;
        for seg in path.split('.') {
            v = v.get(seg).unwrap_or(&Value::Null);
        }
        let got = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        (got == *want) == *eq
    })
}

/// Argo's `fields` projection: `items.metadata.name,items.status.phase` keeps only
/// those paths; a leading `-` (`-items.status.nodes`) drops them instead.
pub fn project(v: Value, fields: &str) -> Value {
    let fields = fields.trim();
    if fields.is_empty() {
        return v;
    }
    if let Some(excl) = fields.strip_prefix('-') {
        let mut v = v;
        for f in excl.split(',') {
            drop_path(&mut v, &f.trim().split('.').collect::<Vec<_>>());
        }
        return v;
    }
    let mut out = Value::Object(Map::new());
    for f in fields.split(',') {
        let path: Vec<&str> = f.trim().split('.').filter(|s| !s.is_empty()).collect();
        keep_path(&v, &mut out, &path);
    }
    out
}

fn drop_path(v: &mut Value, path: &[&str]) {
    match (v, path) {
        (_, []) => {}
        (Value::Array(items), _) => items.iter_mut().for_each(|i| drop_path(i, path)),
        (Value::Object(m), [last]) => {
            m.remove(*last);
        }
        (Value::Object(m), [first, rest @ ..]) => {
            if let Some(c) = m.get_mut(*first) {
                drop_path(c, rest);
            }
        }
        _ => {}
    }
}

fn keep_path(src: &Value, dst: &mut Value, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        *dst = src.clone();
        return;
    };
    match src {
        Value::Array(items) => {
            if !matches!(dst, Value::Array(a) if a.len() == items.len()) {
                *dst = Value::Array(vec![Value::Object(Map::new()); items.len()]);
            }
            if let Value::Array(out) = dst {
                for (i, item) in items.iter().enumerate() {
                    keep_path(item, &mut out[i], path);
                }
            }
        }
        Value::Object(m) => {
            let Some(child) = m.get(*first) else { return };
            if !dst.is_object() {
                *dst = Value::Object(Map::new());
            }
            let slot = dst
                .as_object_mut()
                .expect("object")
                .entry(first.to_string())
                .or_insert(if rest.is_empty() {
                    Value::Null
                } else if child.is_array() {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                });
            keep_path(child, slot, rest);
        }
        _ => {}
    }
}

/// Does a `fields` projection need node statuses (`status.nodes`)?
pub fn needs_nodes(fields: Option<&str>) -> bool {
    match fields.map(str::trim) {
        None | Some("") => true,
        Some(f) if f.starts_with('-') => !f.split(',').any(|p| {
            let p = p.trim().trim_start_matches('-');
            p == "items.status.nodes" || p == "items.status" || p == "items"
        }),
        Some(f) => f.split(',').any(|p| {
            let p = p.trim();
            p == "items" || p == "items.status" || p.starts_with("items.status.nodes")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let reqs = parse_labels("a=1,b!=2,c in (x, y),d notin (z),e,!f").unwrap();
        let labels = json!({"a": "1", "b": "3", "c": "y", "e": ""});
        assert!(labels_match(&reqs, &labels));
        assert!(!labels_match(&reqs, &json!({"a": "2"})));
        assert!(parse_labels("a in x").is_err());
    }

    #[test]
    fn projection_keeps_and_drops() {
        let v = json!({"metadata": {"continue": ""}, "items": [
            {"metadata": {"name": "a", "uid": "1"}, "status": {"phase": "Running", "nodes": {}}},
        ]});
        let kept = project(v.clone(), "items.metadata.name,items.status.phase");
        assert_eq!(
            kept,
            json!({"items": [{"metadata": {"name": "a"}, "status": {"phase": "Running"}}]})
        );
        let dropped = project(v, "-items.status.nodes");
        assert_eq!(dropped["items"][0]["status"], json!({"phase": "Running"}));
        assert!(!needs_nodes(Some("items.metadata.name,items.status.phase")));
        assert!(!needs_nodes(Some("-items.status.nodes")));
        assert!(needs_nodes(None));
    }

    #[test]
    fn field_selectors() {
        let sel = parse_fields("metadata.name=a,status.phase!=Failed").unwrap();
        let obj = json!({"metadata": {"name": "a"}, "status": {"phase": "Running"}});
        assert!(fields_match(&sel, &obj));
    }
}
