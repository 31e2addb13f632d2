//! Which artifacts a step needs and produces (pure: the drivers layer moves the bytes).
//!
//! - Input artifacts: `from` (already substituted to the producing artifact's
//!   JSON, or chosen by `fromExpression`) is replaced by that artifact's
//!   location, so a step sees a plain location (`s3: {key}`, `raw`, …).
//! - Output artifacts of a container/script leaf get their key when they name
//!   none: Argo's default `<workflow>/<pod>/<name>.tgz`, or
//!   `<workflow>/<pod>/<basename of path>` with `archive: {none: {}}`. The
//!   location is Argo's key-only form `s3: {key}`, which means "in the
//!   workflow's artifact repository" (weft's default repository).
//! - `archiveLogs` (workflow spec or template `archiveLocation`) becomes the
//!   resolved template's `archiveLocation: {archiveLogs: true, s3: {key: <wf>/<pod>}}`;
//!   the drivers layer saves `main.log` under that prefix.

use serde_json::{Map, Value, json};
use weft_expr::Vars;

use crate::model::{Artifact, Template};

/// Fields of Argo's `Artifact` that are a location.
const LOCATIONS: &[&str] = &[
    "s3",
    "gcs",
    "oss",
    "azure",
    "http",
    "git",
    "raw",
    "hdfs",
    "artifactory",
];

/// Fields of a producing artifact that are not carried over to a consumer.
const NOT_LOCATION: &[&str] = &[
    "name",
    "path",
    "from",
    "fromExpression",
    "globalName",
    "optional",
    "subPath",
    "mode",
    "archive",
    "artifactGC",
    "deleted",
    "recurseMode",
];

pub(crate) fn has_location(a: &Artifact) -> bool {
    LOCATIONS.iter().any(|k| a.extra.contains_key(*k))
}

/// Replace a bound input artifact's `from` by the location it names. A `from`
/// that did not resolve (still `{{…}}`, or not an artifact) is an error unless
/// the artifact is optional; so is an artifact with no location at all.
pub(crate) fn resolve_input(art: &mut Artifact) -> Result<(), String> {
    let optional = art.optional == Some(true);
    if let Some(f) = art.from.take() {
        match serde_json::from_str::<Value>(&f) {
            Ok(Value::Object(src)) => {
                for (k, v) in src {
                    if !NOT_LOCATION.contains(&k.as_str()) {
                        art.extra.insert(k, v);
                    }
                }
            }
            _ if optional => {}
            _ => {
                return Err(format!(
                    "inputs.artifacts.{}: from {f:?} did not resolve to an artifact",
                    art.name
                ));
            }
        }
    }
    if !has_location(art) && !optional {
        return Err(format!("inputs.artifacts.{} was not supplied", art.name));
    }
    Ok(())
}

/// `{{outputs.artifacts.x.path}}` and `{{outputs.parameters.x.path}}` for a leaf's body.
pub(crate) fn add_output_path_vars(t: &Template, vars: &mut Vars) {
    for a in &t.outputs.artifacts {
        if let Some(p) = &a.path {
            vars.insert(format!("outputs.artifacts.{}.path", a.name), p.clone());
        }
    }
    for p in &t.outputs.parameters {
        if let Some(path) = p.value_from.as_ref().and_then(|v| v.path.as_ref()) {
            vars.insert(format!("outputs.parameters.{}.path", p.name), path.clone());
        }
    }
}

/// Fill default output keys and the `archiveLocation` of a resolved
/// container/script template. `prefix` is `<workflow>/<pod>`.
pub(crate) fn plan_leaf(rendered: &mut Value, workflow_prefix: &str, spec_archive_logs: bool) {
    let Value::Object(t) = rendered else { return };
    let loc = t.get("archiveLocation").cloned().unwrap_or(Value::Null);
    let prefix = loc
        .pointer("/s3/key")
        .and_then(Value::as_str)
        .map(|k| k.trim_end_matches('/').to_string())
        .unwrap_or_else(|| workflow_prefix.to_string());
    let archive_logs = loc
        .get("archiveLogs")
        .and_then(Value::as_bool)
        .unwrap_or(spec_archive_logs);
    if let Some(Value::Array(arts)) = t.get_mut("outputs").and_then(|o| o.get_mut("artifacts")) {
        for a in arts.iter_mut().filter_map(Value::as_object_mut) {
            fill_key(a, &prefix);
        }
    }
    if archive_logs {
        let mut loc = match loc {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        loc.insert("archiveLogs".into(), Value::Bool(true));
        if loc.get("s3").is_none_or(|s| s.get("key").is_none()) {
            loc.insert("s3".into(), json!({ "key": prefix }));
        }
        t.insert("archiveLocation".into(), Value::Object(loc));
    }
}

fn fill_key(a: &mut Map<String, Value>, prefix: &str) {
    if LOCATIONS.iter().any(|k| {
        *k != "s3" && a.contains_key(*k)
            || *k == "s3" && a.get("s3").is_some_and(|s| s.get("key").is_some())
    }) {
        return;
    }
    let name = a.get("name").and_then(Value::as_str).unwrap_or("artifact");
    let none = a.get("archive").is_some_and(|x| x.get("none").is_some());
    let file = if none {
        a.get("path")
            .and_then(Value::as_str)
            .and_then(|p| std::path::Path::new(p).file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string())
    } else {
        format!("{name}.tgz")
    };
    let key = Value::String(format!("{prefix}/{file}"));
    match a.get_mut("s3") {
        Some(Value::Object(s3)) => {
            s3.insert("key".into(), key);
        }
        _ => {
            a.insert("s3".into(), json!({ "key": key }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keys_and_archive_logs() {
        let mut t = json!({"container": {}, "outputs": {"artifacts": [
            {"name": "a", "path": "/tmp/a.txt"},
            {"name": "d", "path": "/tmp/", "archive": {"none": {}}},
            {"name": "k", "path": "/mnt/file", "s3": {"key": "my-file"}},
        ]}});
        plan_leaf(&mut t, "wf/wf-main-1", true);
        let keys: Vec<&str> = t["outputs"]["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["s3"]["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["wf/wf-main-1/a.tgz", "wf/wf-main-1/tmp", "my-file"]);
        assert_eq!(
            t["archiveLocation"],
            json!({"archiveLogs": true, "s3": {"key": "wf/wf-main-1"}})
        );
    }

    #[test]
    fn from_becomes_the_location() {
        let mut a = Artifact {
            name: "in".into(),
            path: Some("/tmp/in".into()),
            from: Some(r#"{"name":"out","path":"/x","s3":{"key":"wf/p/out.tgz"}}"#.into()),
            ..Default::default()
        };
        resolve_input(&mut a).unwrap();
        assert_eq!(a.extra["s3"], json!({"key": "wf/p/out.tgz"}));
        assert_eq!(a.path.as_deref(), Some("/tmp/in"));
        let mut a = Artifact {
            name: "in".into(),
            from: Some("{{steps.x.outputs.artifacts.y}}".into()),
            ..Default::default()
        };
        let e = resolve_input(&mut a).unwrap_err();
        assert!(e.contains("did not resolve"), "{e}");
        a.optional = Some(true);
        a.from = Some("{{steps.x.outputs.artifacts.y}}".into());
        resolve_input(&mut a).unwrap();
    }
}
