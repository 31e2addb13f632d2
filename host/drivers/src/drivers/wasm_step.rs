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
use weft_bindings::step::exports::weft::plugin::step::{ArtifactData, StepInput, StepOutput};
use weft_engine::runtime::{OutcomePhase, StepOutcome, StepRequest};

use super::{Drivers, Pre, describe_failure, linker_for};
use crate::artifacts::{Repositories, stage};
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
    #[error("inputs.artifacts: {0}")]
    Inputs(String),
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

/// The input artifacts of `template`, read into memory for `step-input.artifacts`.
///
/// They are staged exactly as for a process step (raw data, repository
/// objects, a gzip'd tar's single entry, `subPath`, `optional`) into
/// `<dir>/root`, each at `/in/<index>` whatever its `path`: a Wasm step has no
/// filesystem, so `path` is irrelevant and may be absent. A directory is
/// refused (a Wasm step gets files by value). `dir` is removed afterwards.
fn read_inputs(
    repos: &Repositories,
    template: &Value,
    dir: &Path,
) -> Result<Vec<ArtifactData>, WasmStepError> {
    let Some(list) = template
        .pointer("/inputs/artifacts")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return Ok(Vec::new());
    };
    let mut staged = template.clone();
    let names: Vec<String> = list
        .iter()
        .map(|a| {
            a.get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    for (i, a) in staged
        .pointer_mut("/inputs/artifacts")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(o) = a.as_object_mut() {
            o.insert("path".into(), Value::String(format!("/in/{i}")));
        }
    }
    let (root, scratch) = (dir.join("root"), dir.join("scratch"));
    let res = (|| {
        for d in [&root, &scratch] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        stage::place_inputs(repos, &staged, &root, &scratch, None)?;
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let p = root.join("in").join(i.to_string());
            match std::fs::symlink_metadata(&p) {
                Err(_) => continue, // optional and absent
                Ok(m) if !m.is_file() => {
                    return Err(format!(
                        "input artifact '{name}' is a directory; a Wasm step takes files"
                    ));
                }
                Ok(_) => {}
            }
            let data = std::fs::read(&p).map_err(|e| format!("input artifact '{name}': {e}"))?;
            out.push(ArtifactData {
                name: name.clone(),
                data,
            });
        }
        Ok(out)
    })();
    let _ = std::fs::remove_dir_all(dir);
    if let Some(step_dir) = dir.parent() {
        let _ = std::fs::remove_dir(step_dir); // only if nothing else is there
    }
    res.map_err(WasmStepError::Inputs)
}

impl Drivers {
    /// The ready-to-instantiate component `component` names: a registered
    /// step plugin, else a file.
    async fn step_component(
        &self,
        component: &str,
    ) -> Result<(Arc<str>, Arc<StepComponentPre<HostState>>), WasmStepError> {
        if let Some(slot) = self.inner.plugins.get(component)
            && slot.kind == PluginKind::Step
            && let Ok(Some(p)) = self.plugin(component).await
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
        let mut spec = match parse(&req.template) {
            Ok(s) => s,
            Err(e) => return StepOutcome::error(e.to_string()),
        };
        let step = StepKey {
            workflow_uid: req.workflow_uid.clone(),
            node_id: req.node_id.clone(),
            attempt: req.attempt,
        };
        if stage::has_inputs(&req.template) {
            let (repos, template) = (self.inner.repos.clone(), req.template.clone());
            let dir = self
                .inner
                .caps
                .processes
                .step_dir(&step)
                .join("wasm-inputs");
            match tokio::task::spawn_blocking(move || read_inputs(&repos, &template, &dir)).await {
                Ok(Ok(a)) => spec.input.artifacts = a,
                Ok(Err(e)) => return StepOutcome::error(e.to_string()),
                Err(e) => return StepOutcome::error(format!("inputs.artifacts: {e}")),
            }
        }
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
                step: Some(step),
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

    #[test]
    fn input_artifacts_arrive_by_value_raw_and_from_the_repository() {
        use crate::artifacts::{LocalRepository, Repository, archive};
        let tmp = tempfile::tempdir().unwrap();
        let repo = LocalRepository::new(tmp.path().join("repo"));
        // an upstream step's output: a file packed as Argo's default .tgz
        std::fs::write(tmp.path().join("words.txt"), "from the repository").unwrap();
        let key = crate::artifacts::Key::parse("wf/pod/words.tgz").unwrap();
        let mut w = repo.create(&key).unwrap();
        archive::pack_tgz(&tmp.path().join("words.txt"), "words.txt", &mut w).unwrap();
        w.commit().unwrap();
        let repos = Repositories::new(Arc::new(repo), None);
        let dir = tmp.path().join("steps/uid/node-0/wasm-inputs");
        let template = json!({"inputs": {"artifacts": [
            {"name": "a", "raw": {"data": "raw text"}},
            {"name": "b", "path": "/tmp/b.txt", "s3": {"key": "wf/pod/words.tgz"}},
            {"name": "c", "optional": true, "s3": {"key": "wf/pod/none.tgz"}},
        ]}});
        let got = read_inputs(&repos, &template, &dir).unwrap();
        let got: Vec<(&str, &[u8])> = got
            .iter()
            .map(|a| (a.name.as_str(), a.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", b"raw text".as_slice()),
                ("b", b"from the repository".as_slice())
            ]
        );
        assert!(!dir.exists() && !dir.parent().unwrap().exists());

        // a missing non-optional input names the artifact
        let missing = json!({"inputs": {"artifacts": [{"name": "d", "s3": {"key": "wf/x.tgz"}}]}});
        let e = read_inputs(&repos, &missing, &dir).unwrap_err().to_string();
        assert!(e.contains("'d'") && e.contains("wf/x.tgz"), "{e}");
    }
}
