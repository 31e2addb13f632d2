//! The WorkflowTemplates and ClusterWorkflowTemplates a `templateRef` or
//! `workflowTemplateRef` may name: those in the linted files plus those the
//! caller found in the store.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::model::Document;

/// WorkflowTemplate and ClusterWorkflowTemplate names → what lint needs of them.
#[derive(Debug, Clone, Default)]
pub struct KnownTemplates {
    namespaced: BTreeMap<String, Known>,
    cluster: BTreeMap<String, Known>,
}

/// One known WorkflowTemplate or ClusterWorkflowTemplate.
#[derive(Debug, Clone, Default)]
pub(super) struct Known {
    pub templates: BTreeSet<String>,
    pub entrypoint: Option<String>,
}

impl KnownTemplates {
    /// The WorkflowTemplates and ClusterWorkflowTemplates among `docs`.
    pub fn from_documents(docs: &[Document]) -> Self {
        let mut k = KnownTemplates::default();
        k.extend_from_documents(docs);
        k
    }

    /// Add the WorkflowTemplates and ClusterWorkflowTemplates among `docs`.
    pub fn extend_from_documents(&mut self, docs: &[Document]) {
        for d in docs {
            let spec = d.value.get("spec").unwrap_or(&Value::Null);
            self.add(&d.kind, &d.name(), spec);
        }
    }

    /// Add one template object by its `kind`, `metadata.name` and `spec`
    /// (other kinds are ignored).
    pub fn add(&mut self, kind: &str, name: &str, spec: &Value) {
        let map = match kind {
            "WorkflowTemplate" => &mut self.namespaced,
            "ClusterWorkflowTemplate" => &mut self.cluster,
            _ => return,
        };
        let templates = spec
            .get("templates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let entrypoint = spec
            .get("entrypoint")
            .and_then(Value::as_str)
            .map(str::to_string);
        map.insert(
            name.to_string(),
            Known {
                templates,
                entrypoint,
            },
        );
    }

    /// Whether some `templateRef` or `workflowTemplateRef` in `docs` names a
    /// template not known yet — only then must the caller look in the store.
    pub fn has_unresolved(&self, docs: &[Document]) -> bool {
        docs.iter().any(|d| self.unresolved_in(&d.value))
    }

    fn unresolved_in(&self, v: &Value) -> bool {
        match v {
            Value::Object(map) => map.iter().any(|(k, v)| {
                let named = (k == "templateRef" || k == "workflowTemplateRef")
                    && v.get("name").and_then(Value::as_str).is_some_and(|name| {
                        let cluster = v.get("clusterScope").and_then(Value::as_bool) == Some(true);
                        self.get(cluster, name).is_none()
                    });
                named || self.unresolved_in(v)
            }),
            Value::Array(items) => items.iter().any(|v| self.unresolved_in(v)),
            _ => false,
        }
    }

    /// The named WorkflowTemplate (`cluster`: ClusterWorkflowTemplate).
    pub(super) fn get(&self, cluster: bool, name: &str) -> Option<&Known> {
        if cluster {
            self.cluster.get(name)
        } else {
            self.namespaced.get(name)
        }
    }
}

/// The kind a `clusterScope` flag selects, for messages.
pub(super) fn kind_name(cluster: bool) -> &'static str {
    if cluster {
        "ClusterWorkflowTemplate"
    } else {
        "WorkflowTemplate"
    }
}
