//! Node and workflow phases and node types, as Argo names them.

use serde::{Deserialize, Serialize};

/// Phase of a node or a workflow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, PartialOrd, Ord,
)]
pub enum Phase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Skipped,
    Failed,
    Error,
    Omitted,
}

impl Phase {
    pub fn is_done(self) -> bool {
        !matches!(self, Phase::Pending | Phase::Running)
    }
    /// Counts as success for the parent (Argo's `Fulfilled` minus failures).
    pub fn is_ok(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Skipped | Phase::Omitted)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Skipped => "Skipped",
            Phase::Failed => "Failed",
            Phase::Error => "Error",
            Phase::Omitted => "Omitted",
        }
    }
    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "Pending" => Phase::Pending,
            "Running" => Phase::Running,
            "Succeeded" => Phase::Succeeded,
            "Skipped" => Phase::Skipped,
            "Failed" => Phase::Failed,
            "Error" => Phase::Error,
            "Omitted" => Phase::Omitted,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Argo node types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeType {
    Pod,
    Container,
    Steps,
    StepGroup,
    DAG,
    TaskGroup,
    Retry,
    Skipped,
    Suspend,
    HTTP,
    Plugin,
}
