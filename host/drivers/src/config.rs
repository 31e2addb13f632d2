//! Plugin configuration: what the CLI reads from `weft.toml` `[[plugins]]`.
//!
//! Unknown keys are errors (`deny_unknown_fields`), never silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which world a plugin component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// `driver-plugin`: runs steps (`StepRequest.driver` names it).
    Driver,
    /// `step-component`: a user's Wasm step.
    Step,
    /// `artifact-plugin`: an artifact repository backend.
    Artifact,
    /// `executor-plugin`: Argo executor logic for pod-style drivers.
    Executor,
}

impl PluginKind {
    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Driver => "weft:plugin/driver-plugin@0.1.0",
            PluginKind::Step => "weft:plugin/step-component@0.1.0",
            PluginKind::Artifact => "weft:plugin/artifact-plugin@0.1.0",
            PluginKind::Executor => "weft:plugin/executor-plugin@0.1.0",
        }
    }
}

/// A Kubernetes grant: one namespace, objects carrying these labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeGrant {
    pub namespace: String,
    /// e.g. `app.kubernetes.io/managed-by=weft`.
    pub label_selector: String,
}

/// An object-store grant: one bucket, keys under one prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreGrant {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
}

/// What a plugin may use. Everything defaults to nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Hosts outbound HTTP may reach (`example.com`, `*.example.com`, `host:port`;
    /// `*` is any host).
    pub http_hosts: Vec<String>,
    /// PEM files of extra certificate authorities trusted for `https` beside
    /// the system's (a company's internal CA); relative to weft.toml's directory.
    pub http_ca_certs: Vec<PathBuf>,
    /// May spawn sandboxed host processes.
    pub process: bool,
    /// Secrets the plugin may read (values come from the host environment,
    /// `WEFT_SECRET_<NAME>` with `-`/`.` as `_`, upper-cased).
    pub secrets: Vec<String>,
    pub kube: Option<KubeGrant>,
    pub object_store: Option<ObjectStoreGrant>,
    /// Environment variables visible to the plugin through WASI.
    pub env: BTreeMap<String, String>,
}

/// One configured plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Registry name; `StepRequest.driver` routes by it. A configured plugin
    /// named like an embedded one replaces it.
    pub name: String,
    /// Path of the component (`.wasm`). Omitted: `name` must be an embedded
    /// plugin (`local`, `http`), which then runs with these grants and config.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Which world it implements.
    #[serde(alias = "world")]
    pub kind: PluginKind,
    #[serde(default)]
    pub grants: Grants,
    /// Handed to the plugin as `step-context.config` (JSON).
    #[serde(default)]
    pub config: serde_json::Value,
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginSource {
    /// Built from `plugins/` and embedded in the binary.
    Embedded,
    /// Loaded from this file.
    Path(PathBuf),
}

/// What `weft plugin list/inspect` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub kind: PluginKind,
    pub world: String,
    /// From the plugin's `describe()` (drivers), else `unknown`.
    pub version: String,
    pub description: String,
    pub source: PluginSource,
    pub grants: Grants,
    /// sha256 of the component bytes.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_and_rejects_unknown_keys() {
        let ok: PluginConfig = toml::from_str(
            r#"
            name = "http"
            path = "plugins/http.wasm"
            kind = "driver"
            config = { timeout = 5 }
            [grants]
            http_hosts = ["example.com"]
            secrets = ["token"]
            object_store = { bucket = "b", prefix = "p/" }
            "#,
        )
        .unwrap();
        assert_eq!(ok.grants.http_hosts, ["example.com"]);
        assert_eq!(ok.kind, PluginKind::Driver);
        let bad = toml::from_str::<PluginConfig>(
            "name = \"x\"\npath = \"x.wasm\"\nkind = \"driver\"\n[grants]\nproces = true\n",
        );
        assert!(bad.unwrap_err().to_string().contains("proces"));
        let bad = toml::from_str::<PluginConfig>(
            "name = \"x\"\npath = \"x.wasm\"\nkind = \"driver\"\nextra = 1\n",
        );
        assert!(bad.is_err());
        let regrant: PluginConfig = toml::from_str(
            "name = \"http\"\nkind = \"driver\"\n[grants]\nhttp_hosts = [\"api.example.com\"]\n",
        )
        .unwrap();
        assert_eq!(regrant.path, None);
    }
}
