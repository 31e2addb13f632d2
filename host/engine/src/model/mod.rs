//! The Argo `argoproj.io/v1alpha1` model: Workflow, WorkflowTemplate,
//! ClusterWorkflowTemplate and CronWorkflow.
//!
//! Every struct keeps the fields weft does not read in a flattened `extra`
//! map, so a document read and written back loses nothing (Kubernetes-only
//! fields such as `podSpecPatch`, `nodeSelector`, `volumes` ride along for the
//! Kubernetes driver).

mod load;
mod params;
mod status;
mod template;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use load::*;
pub use params::*;
pub use status::*;
pub use template::*;

pub const API_VERSION: &str = "argoproj.io/v1alpha1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTemplateRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    #[serde(default, skip_serializing_if = "Arguments::is_empty")]
    pub arguments: Arguments,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<Template>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exit: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hooks: BTreeMap<String, LifecycleHook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_template_ref: Option<WorkflowTemplateRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_defaults: Option<Template>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronization: Option<Synchronization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_strategy: Option<RetryStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_repository_ref: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WorkflowSpec {
    pub fn template(&self, name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == name)
    }
}

/// The envelope every kind shares: `apiVersion`, `kind`, `metadata`, a
/// kind's `spec`, `status`. [`Workflow`] and [`CronWorkflow`] are its two
/// forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Resource<Spec> {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Spec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Workflow, WorkflowTemplate and ClusterWorkflowTemplate share this shape.
pub type Workflow = Resource<WorkflowSpec>;

fn api_version() -> String {
    API_VERSION.to_string()
}

impl<Spec> Resource<Spec> {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CronWorkflowSpec {
    /// Older single-schedule form; merged into `schedules` by [`CronWorkflowSpec::all_schedules`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(default)]
    pub workflow_spec: WorkflowSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_metadata: Option<ObjectMeta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CronWorkflowSpec {
    pub fn all_schedules(&self) -> Vec<String> {
        self.schedule
            .iter()
            .chain(self.schedules.iter())
            .cloned()
            .collect()
    }
}

pub type CronWorkflow = Resource<CronWorkflowSpec>;
