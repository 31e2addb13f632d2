//! User Wasm steps: Argo's `plugin:` template with a `wasm` entry,
//!
//! ```yaml
//! plugin:
//!   wasm:
//!     component: steps/add.wasm   # a file (relative: to weft's working directory)
//!     args: {a: "1", b: "2"}      # or the name of a `kind = "step"` plugin in weft.toml
//! ```
//!
//! run in-process as `step-component` instances: no plugin driver in between,
//! a fresh instance per step, the same CPU budget and memory limit as every
//! plugin call. A component file is compiled once (through the on-disk cache
//! of [`runtime::load_component`]) and kept ready to instantiate while its
//! size and mtime stay the same.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::Value;
use tracing::Instrument;
use weft_bindings::step::StepComponentPre;
use weft_bindings::step::exports::weft::plugin::step::{StepInput, StepOutput};
use weft_engine::runtime::{OutcomePhase, StepOutcome, StepRequest};

use super::{Drivers, Pre, describe_failure, linker_for};
use crate::config::{Grants, PluginKind};
use crate::runtime::{self, CallInfo, HostState};
use crate::sandbox::manager::StepKey;

/// The engine routes `plugin: {wasm: …}` templates to this driver name.
pub(crate) const DRIVER: &str = "wasm-step";

/// Loaded step components by file identity.
pub(crate) type StepCache = tokio::sync::Mutex<
    HashMap<(PathBuf, u64, Option<SystemTime>), Arc<StepComponentPre<HostState>>>,
>;

/// Why a Wasm step could not run (the node becomes `Error`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum WasmStepError {
    #[error("plugin.wasm: {0}")]
    Spec(String),
    #[error("plugin.wasm.component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin.wasm.component {path}: not a step component: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The `plugin.wasm` object of a resolved template, and the inputs it gets.
struct Spec {
    component: String,
    input: StepInput,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse(template: &Value) -> Result<Spec, WasmStepError> {
    let w = template
        .pointer("/plugin/wasm")
        .and_then(Value::as_object)
        .ok_or_else(|| WasmStepError::Spec("the template has no `plugin.wasm` object".into()))?;
    let component = w
        .get("component")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| WasmStepError::Spec("`component` (a .wasm file) is required".into()))?
        .to_string();
    let mut parameters: Vec<(String, String)> = Vec::new();
    match w.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Object(args)) => {
            parameters.extend(args.iter().map(|(k, v)| (k.clone(), text(v))));
        }
        Some(_) => return Err(WasmStepError::Spec("`args` must be a map".into())),
    }
    // input parameters after args: a step reading the last value gets the input
    for p in template
        .pointer("/inputs/parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = p.get("name").and_then(Value::as_str)
            && let Some(v) = p.get("value").or_else(|| p.get("default"))
        {
            parameters.push((name.to_string(), text(v)));
        }
    }
    Ok(Spec {
        component,
        input: StepInput {
            parameters,
            artifacts: Vec::new(),
        },
    })
}

impl Drivers {
    /// The ready-to-instantiate component `component` names: a registered
    /// step plugin, else a file.
    async fn step_component(
        &self,
        component: &str,
    ) -> Result<(Arc<str>, Arc<StepComponentPre<HostState>>), WasmStepError> {
        if let Some(p) = self.inner.plugins.get(component)
            && let Pre::Step(pre) = &p.pre
        {
            return Ok((p.name.clone(), pre.clone()));
        }
        let path =
            std::path::absolute(Path::new(component)).map_err(|source| WasmStepError::Read {
                path: component.into(),
                source,
            })?;
        let read = |source| WasmStepError::Read {
            path: path.clone(),
            source,
        };
        let meta = std::fs::metadata(&path).map_err(read)?;
        let key = (path.clone(), meta.len(), meta.modified().ok());
        let name: Arc<str> = path.display().to_string().into();
        let mut cache = self.inner.steps.lock().await;
        if let Some(pre) = cache.get(&key) {
            return Ok((name, pre.clone()));
        }
        let bytes = std::fs::read(&path).map_err(read)?;
        let invalid = |message: String| WasmStepError::Invalid {
            path: path.clone(),
            message,
        };
        let t0 = Instant::now();
        let (engine, cache_dir, n) = (
            self.inner.engine.clone(),
            self.inner.cache_dir.clone(),
            name.to_string(),
        );
        let (component, _sha, how) = tokio::task::spawn_blocking(move || {
            runtime::load_component(&engine, &cache_dir, &n, &bytes)
        })
        .await
        .map_err(|e| invalid(e.to_string()))?
        .map_err(|e| invalid(e.to_string()))?;
        let linker = linker_for(&self.inner.engine, PluginKind::Step)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(StepComponentPre::new)
            .map_err(|e| invalid(format!("{e:#}")))?;
        tracing::debug!(component = %name, load = ?how,
            elapsed_ms = t0.elapsed().as_secs_f64() * 1e3, "wasm step loaded");
        let pre = Arc::new(pre);
        cache.retain(|k, _| k.0 != path); // an older version of the file
        cache.insert(key, pre.clone());
        Ok((name, pre))
    }

    /// Run one `plugin: {wasm: …}` step to completion.
    pub(crate) async fn run_wasm_step(&self, req: &StepRequest) -> StepOutcome {
        let spec = match parse(&req.template) {
            Ok(s) => s,
            Err(e) => return StepOutcome::error(e.to_string()),
        };
        let (name, pre) = match self.step_component(&spec.component).await {
            Ok(v) => v,
            Err(e) => return StepOutcome::error(e.to_string()),
        };
        let Ok(_slot) = self.inner.slots.acquire().await else {
            return StepOutcome::error("the drivers are shutting down");
        };
        let mut store = runtime::new_store(
            &self.inner.engine,
            CallInfo {
                plugin: name.clone(),
                grants: Arc::new(Grants::default()),
                step: Some(StepKey {
                    workflow_uid: req.workflow_uid.clone(),
                    node_id: req.node_id.clone(),
                    attempt: req.attempt,
                }),
            },
            self.inner.caps.clone(),
            self.inner.cpu_budget,
            self.inner.memory_limit,
        );
        let span = tracing::info_span!(
            "wasm_step",
            component = %name,
            workflow = %req.workflow,
            node_id = %req.node_id,
            attempt = req.attempt
        );
        // The CPU budget counts the time spent in this future's polls (cpu.rs).
        let meter = store.data().cpu.clone();
        let res = crate::cpu::metered(meter, async {
            let b = pre.instantiate_async(&mut store).await?;
            b.weft_plugin_step().call_run(&mut store, &spec.input).await
        })
        .instrument(span)
        .await;
        match res {
            Ok(Ok(out)) => succeeded(out),
            Ok(Err(msg)) => failed(format!("wasm step {}: {msg}", spec.component)),
            Err(e) => failed(describe_failure(
                &spec.component,
                "run",
                &e,
                &store,
                self.inner.cpu_budget,
            )),
        }
    }
}

fn succeeded(out: StepOutput) -> StepOutcome {
    StepOutcome {
        phase: OutcomePhase::Succeeded,
        message: None,
        exit_code: None,
        result: out.result,
        parameters: out.parameters,
        artifacts: Vec::new(),
    }
}

fn failed(message: String) -> StepOutcome {
    StepOutcome {
        phase: OutcomePhase::Failed,
        message: Some(message),
        exit_code: None,
        result: None,
        parameters: Vec::new(),
        artifacts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_args_then_inputs() {
        let s = parse(&json!({
            "plugin": {"wasm": {"component": "a.wasm", "args": {"a": "1", "n": 2}}},
            "inputs": {"parameters": [{"name": "a", "value": "5"}]}
        }))
        .unwrap();
        assert_eq!(s.component, "a.wasm");
        assert_eq!(
            s.input.parameters,
            [
                ("a".into(), "1".into()),
                ("n".into(), "2".into()),
                ("a".into(), "5".into())
            ]
        );
        assert!(parse(&json!({"plugin": {"wasm": {}}})).is_err());
        assert!(parse(&json!({"plugin": {"wasm": {"component": "x", "args": [1]}}})).is_err());
    }
}
