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
//! - **The workflow's repository.** `spec.artifactRepositoryRef: {configMap,
//!   key}` is resolved once, at submission ([`ArtifactRepositories::resolve`]),
//!   to a named repository of weft.toml (`[artifacts.repositories.NAME]`, see
//!   [`ref_name`] for the mapping) and stored with the workflow as its
//!   [`WorkflowRepository`]. Key-only locations of such a workflow (default
//!   keys, keys written in the template, `archiveLocation`) get the field
//!   `repository: NAME` ([`REPOSITORY_FIELD`]) inside the location, which the
//!   drivers layer reads; a location without it is in the default repository,
//!   so workflows stored before named repositories existed are unchanged.
//! - **Default keys** follow the repository's `keyFormat` (Argo's
//!   `s3.keyFormat`; default `{{workflow.name}}/{{pod.name}}`), rendered with
//!   the step's variables: `workflow.name`, `workflow.namespace`,
//!   `workflow.uid`, `workflow.creationTimestamp[.Y/.m/.d/.H/.M/.S/.s]`,
//!   `pod.name`, …; the artifact's file name is appended.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use weft_expr::{Missing, Vars};

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

/// The field of a key-only location naming the repository it is in (the
/// drivers layer's `REPOSITORY_FIELD`).
pub const REPOSITORY_FIELD: &str = "repository";

/// Argo's default `keyFormat`.
pub const DEFAULT_KEY_FORMAT: &str = "{{workflow.name}}/{{pod.name}}";

/// Argo's default artifact-repositories ConfigMap.
pub const DEFAULT_CONFIGMAP: &str = "artifact-repositories";

/// What the engine knows of the configured artifact repositories: their names
/// and key formats (the bytes are the drivers layer's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArtifactRepositories {
    /// `keyFormat` of the default repository (`None`: [`DEFAULT_KEY_FORMAT`]).
    pub default_key_format: Option<String>,
    /// Named repositories and their `keyFormat`s.
    pub named: BTreeMap<String, Option<String>>,
}

/// The repository a workflow's key-only artifacts are in, fixed at submission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRepository {
    /// A named repository; `None`: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its `keyFormat` (`None`: [`DEFAULT_KEY_FORMAT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_format: Option<String>,
}

/// The repository name an `artifactRepositoryRef` means: `key` when the
/// ConfigMap is Argo's default `artifact-repositories` (or not given),
/// `configMap/key` otherwise, the ConfigMap's name alone without a `key`.
/// `Ok(None)`: no ref (or an empty one), the default repository.
pub fn ref_name(r: &Value) -> Result<Option<String>, String> {
    let field = |f: &str| match r.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "spec.artifactRepositoryRef.{f}: {other} is not a string"
        )),
    };
    if !r.is_object() && !r.is_null() {
        return Err(format!("spec.artifactRepositoryRef: {r} is not an object"));
    }
    Ok(match (field("configMap")?, field("key")?) {
        (None, None) => None,
        (None, Some(k)) => Some(k),
        (Some(cm), Some(k)) if cm == DEFAULT_CONFIGMAP => Some(k),
        (Some(cm), Some(k)) => Some(format!("{cm}/{k}")),
        (Some(cm), None) => Some(cm),
    })
}

impl ArtifactRepositories {
    /// The repository `spec.artifactRepositoryRef` (if any) names; an unknown
    /// name is an error naming the ref and the configured names.
    pub fn resolve(&self, r: Option<&Value>) -> Result<WorkflowRepository, String> {
        let Some(name) = r.map(ref_name).transpose()?.flatten() else {
            return Ok(WorkflowRepository {
                name: None,
                key_format: self.default_key_format.clone(),
            });
        };
        match self.named.get(&name) {
            Some(f) => Ok(WorkflowRepository {
                name: Some(name),
                key_format: f.clone(),
            }),
            None => Err(format!(
                "spec.artifactRepositoryRef {}: no artifact repository named {name:?} is configured (add [artifacts.repositories.\"{name}\"] to weft.toml; configured: {})",
                r.map(Value::to_string).unwrap_or_default(),
                if self.named.is_empty() {
                    "none".to_string()
                } else {
                    self.named.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )),
        }
    }
}

/// The key prefix of a leaf's default output keys: the repository's
/// `keyFormat` rendered with the step's variables (`pod.name` is `node_id`
/// if the step has none).
pub(crate) fn key_prefix(
    repo: Option<&WorkflowRepository>,
    vars: &Vars,
    node_id: &str,
) -> Result<String, String> {
    let format = repo
        .and_then(|r| r.key_format.as_deref())
        .unwrap_or(DEFAULT_KEY_FORMAT);
    let with_pod;
    let vars = if vars.get("pod.name").is_none() {
        let mut v = vars.clone();
        v.insert("pod.name", node_id);
        with_pod = v;
        &with_pod
    } else {
        vars
    };
    let p = weft_expr::substitute(format, vars, Missing::Error)
        .map_err(|e| format!("artifact repository keyFormat {format:?}: {e}"))?;
    let p = p.trim_matches('/').to_string();
    if p.is_empty() || p.split('/').any(|s| s == "..") {
        return Err(format!(
            "artifact repository keyFormat {format:?} gave the key prefix {p:?}"
        ));
    }
    Ok(p)
}

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
/// container/script template. `prefix` is the rendered `keyFormat`
/// (`<workflow>/<pod>` by default); `repository`, the workflow's named
/// repository, is written into every key-only location that names none.
pub(crate) fn plan_leaf(
    rendered: &mut Value,
    workflow_prefix: &str,
    spec_archive_logs: bool,
    repository: Option<&str>,
) {
    plan_keys(rendered, workflow_prefix, spec_archive_logs);
    if let (Some(name), Value::Object(t)) = (repository, rendered) {
        for dir in ["inputs", "outputs"] {
            if let Some(Value::Array(arts)) = t.get_mut(dir).and_then(|o| o.get_mut("artifacts")) {
                for a in arts.iter_mut() {
                    mark_repository(a, name);
                }
            }
        }
        if let Some(loc) = t.get_mut("archiveLocation") {
            mark_repository(loc, name);
        }
    }
}

/// Add `repository: name` to `a`'s key-only location, if it has one that names none.
fn mark_repository(a: &mut Value, name: &str) {
    for (kind, full) in [
        ("s3", &["endpoint", "bucket"][..]),
        ("oss", &["endpoint", "bucket"][..]),
        ("azure", &["endpoint", "container"][..]),
        ("gcs", &["bucket"][..]),
    ] {
        let Some(Value::Object(loc)) = a.get_mut(kind) else {
            continue;
        };
        let set = |f: &str| {
            loc.get(f)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        if full.iter().any(|f| set(f)) || loc.contains_key(REPOSITORY_FIELD) {
            return;
        }
        loc.insert(REPOSITORY_FIELD.into(), Value::String(name.into()));
        return;
    }
}

fn plan_keys(rendered: &mut Value, workflow_prefix: &str, spec_archive_logs: bool) {
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
        plan_leaf(&mut t, "wf/wf-main-1", true, None);
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
    fn named_repository_marks_key_only_locations() {
        let mut t = json!({"container": {},
        "inputs": {"artifacts": [
            {"name": "i", "path": "/in", "s3": {"key": "x/y.tgz"}},
            {"name": "j", "path": "/in2", "s3": {"key": "p/q.tgz", "repository": "other"}},
            {"name": "r", "path": "/in3", "raw": {"data": "x"}},
        ]},
        "outputs": {"artifacts": [
            {"name": "a", "path": "/tmp/a.txt"},
            {"name": "f", "path": "/f", "s3": {"endpoint": "h:9000", "bucket": "b", "key": "k"}},
            {"name": "z", "path": "/z", "azure": {"blob": "b/z"}},
        ]}});
        plan_leaf(&mut t, "team/wf/wf-1", true, Some("team-a"));
        assert_eq!(t["inputs"]["artifacts"][0]["s3"]["repository"], "team-a");
        assert_eq!(t["inputs"]["artifacts"][1]["s3"]["repository"], "other");
        assert!(
            t["inputs"]["artifacts"][2]["raw"]
                .get("repository")
                .is_none()
        );
        assert_eq!(
            t["outputs"]["artifacts"][0]["s3"],
            json!({"key": "team/wf/wf-1/a.tgz", "repository": "team-a"})
        );
        assert!(
            t["outputs"]["artifacts"][1]["s3"]
                .get("repository")
                .is_none()
        );
        assert_eq!(
            t["outputs"]["artifacts"][2]["azure"]["repository"],
            "team-a"
        );
        assert_eq!(
            t["archiveLocation"],
            json!({"archiveLogs": true, "s3": {"key": "team/wf/wf-1", "repository": "team-a"}})
        );
    }

    #[test]
    fn refs_resolve_to_named_repositories_with_their_key_formats() {
        let repos = ArtifactRepositories {
            default_key_format: Some("d/{{workflow.name}}".into()),
            named: BTreeMap::from([
                ("team-a".to_string(), Some("a/{{pod.name}}".to_string())),
                ("cm/k".to_string(), None),
            ]),
        };
        let r = |v: Value| repos.resolve(Some(&v));
        assert_eq!(
            repos.resolve(None).unwrap().key_format.as_deref(),
            Some("d/{{workflow.name}}")
        );
        assert_eq!(
            r(json!({"key": "team-a"})).unwrap().name.as_deref(),
            Some("team-a")
        );
        let w = r(json!({"configMap": "artifact-repositories", "key": "team-a"})).unwrap();
        assert_eq!(w.key_format.as_deref(), Some("a/{{pod.name}}"));
        assert_eq!(
            r(json!({"configMap": "cm", "key": "k"}))
                .unwrap()
                .name
                .as_deref(),
            Some("cm/k")
        );
        assert_eq!(r(json!({})).unwrap().name, None);
        let e = r(json!({"configMap": "my-repos", "key": "nope"})).unwrap_err();
        assert!(
            e.contains("artifactRepositoryRef")
                && e.contains("\"my-repos/nope\"")
                && e.contains("cm/k, team-a"),
            "{e}"
        );
        assert!(r(json!({"key": 3})).unwrap_err().contains("not a string"));
    }

    #[test]
    fn key_format_renders_argo_variables() {
        let vars = Vars::from_iter([
            ("workflow.name", "wf"),
            ("workflow.namespace", "ns"),
            ("workflow.creationTimestamp.Y", "2026"),
            ("workflow.creationTimestamp.m", "12"),
            ("pod.name", "wf-main-1"),
        ]);
        assert_eq!(key_prefix(None, &vars, "n").unwrap(), "wf/wf-main-1");
        let repo = |f: &str| WorkflowRepository {
            name: None,
            key_format: Some(f.into()),
        };
        let p = key_prefix(
            Some(&repo(
                "art/{{workflow.namespace}}/{{workflow.creationTimestamp.Y}}/{{workflow.creationTimestamp.m}}/{{workflow.name}}/{{pod.name}}/",
            )),
            &vars,
            "n",
        );
        assert_eq!(p.unwrap(), "art/ns/2026/12/wf/wf-main-1");
        let e = key_prefix(Some(&repo("{{workflow.nope}}/x")), &vars, "n").unwrap_err();
        assert!(
            e.contains("keyFormat") && e.contains("workflow.nope"),
            "{e}"
        );
        assert!(key_prefix(Some(&repo("../{{pod.name}}")), &vars, "n").is_err());
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
