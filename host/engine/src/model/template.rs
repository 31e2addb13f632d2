//! Templates: the unit of work in Argo (container, script, steps, dag, suspend,
//! containerSet, http, plugin, resource, data).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::params::{AnyString, Arguments, Inputs, IntOrString, Outputs};

/// Container fields weft reads; everything else (resources, volumeMounts, …)
/// is kept in `extra` for the Kubernetes driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<AnyString>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Script templates only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// containerSet containers only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<AnyString>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    pub name: String,
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContinueOn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Sequence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleHook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    #[serde(default, skip_serializing_if = "Arguments::is_empty")]
    pub arguments: Arguments,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One step of a `steps` template, or one task of a `dag` (tasks add
/// `dependencies` and `depends`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStep {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Box<Template>>,
    #[serde(default, skip_serializing_if = "Arguments::is_empty")]
    pub arguments: Arguments,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_items: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_sequence: Option<Sequence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_on: Option<ContinueOn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exit: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hooks: BTreeMap<String, LifecycleHook>,
    /// DAG only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// DAG only: enhanced depends expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `steps` is a list of parallel groups. Argo also accepts a group written as
/// an object `{steps: [...]}` in JSON from some clients; both are read.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(transparent)]
pub struct ParallelSteps(pub Vec<WorkflowStep>);

impl<'de> Deserialize<'de> for ParallelSteps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<WorkflowStep>),
            Obj { steps: Vec<WorkflowStep> },
        }
        Ok(match Form::deserialize(d)? {
            Form::List(v) => ParallelSteps(v),
            Form::Obj { steps } => ParallelSteps(steps),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DagTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default)]
    pub tasks: Vec<WorkflowStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_fast: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SuspendTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<AnyString>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSetTemplate {
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_strategy: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<AnyString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<AnyString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<AnyString>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetryStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Memoize {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Memoize {
    /// `cache.configMap.name`, the cache's name in the store.
    pub fn cache_name(&self) -> String {
        self.cache
            .as_ref()
            .and_then(|c| c.pointer("/configMap/name"))
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    }
}

/// A mutex or semaphore reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Synchronization {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutex: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semaphore: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mutexes: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub semaphores: Vec<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Synchronization {
    /// All mutexes, the older single `mutex` form included.
    pub fn all_mutexes(&self) -> Vec<&Value> {
        self.mutex.iter().chain(self.mutexes.iter()).collect()
    }
    /// All semaphores, the older single `semaphore` form included.
    pub fn all_semaphores(&self) -> Vec<&Value> {
        self.semaphore
            .iter()
            .chain(self.semaphores.iter())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Arguments::is_empty")]
    pub inputs: Inputs,
    #[serde(default, skip_serializing_if = "Outputs::is_empty")]
    pub outputs: Outputs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<ParallelSteps>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dag: Option<DagTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<SuspendTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_set: Option<ContainerSetTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_strategy: Option<RetryStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_fast: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memoize: Option<Memoize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronization: Option<Synchronization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What kind of work a template describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    Container,
    Script,
    Steps,
    Dag,
    Suspend,
    ContainerSet,
    Http,
    Plugin,
    Resource,
    Data,
    /// No body at all: lint reports it; the engine fails the node.
    Empty,
}

impl Template {
    pub fn kind(&self) -> TemplateKind {
        if self.container.is_some() {
            TemplateKind::Container
        } else if self.script.is_some() {
            TemplateKind::Script
        } else if self.steps.is_some() {
            TemplateKind::Steps
        } else if self.dag.is_some() {
            TemplateKind::Dag
        } else if self.suspend.is_some() {
            TemplateKind::Suspend
        } else if self.container_set.is_some() {
            TemplateKind::ContainerSet
        } else if self.http.is_some() {
            TemplateKind::Http
        } else if self.plugin.is_some() {
            TemplateKind::Plugin
        } else if self.resource.is_some() {
            TemplateKind::Resource
        } else if self.data.is_some() {
            TemplateKind::Data
        } else {
            TemplateKind::Empty
        }
    }

    /// Fill unset fields from `spec.templateDefaults` (Argo merges the
    /// defaults under the template: the template's own fields win).
    pub fn with_defaults(&self, defaults: Option<&Template>) -> Template {
        let Some(defaults) = defaults else {
            return self.clone();
        };
        let mut base = serde_json::to_value(defaults).unwrap_or(Value::Null);
        let mine = serde_json::to_value(self).unwrap_or(Value::Null);
        merge_json(&mut base, mine);
        serde_json::from_value(base).unwrap_or_else(|_| self.clone())
    }
}

/// Deep-merge `over` into `base` (objects merge key by key; anything else replaces).
pub fn merge_json(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) => merge_json(bv, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}
