//! # weft's local process driver (a Wasm component, `driver-plugin` world)
//!
//! Runs Argo `container` and `script` templates as host processes through the
//! host's sandboxed `process` capability:
//! - [`plan`] turns the template into an argv, environment and injected files
//!   (script sources, emulated image entrypoints);
//! - `start` spawns it and waits on the event key `process:<id>`;
//! - `poll` turns the exit status, the stdout tail and the files named by
//!   `outputs.parameters[].valueFrom.path` into the outcome, Argo-style.

pub mod plan;

use serde::{Deserialize, Serialize};
use weft_sdk::driver::host::process::{self, ProcessState};
use weft_sdk::driver::{
    Driver, Outcome, Phase, PluginError, PluginMetadata, PollResult, StepContext, outcome, pending,
};

/// Largest output parameter file read back (Argo caps parameters too).
const MAX_PARAM_BYTES: u64 = 256 * 1024;
/// `outputs.result` is the last 256 KiB of stdout.
const RESULT_TAIL_BYTES: u32 = 256 * 1024;
/// Safety-net poll interval in case an exit notification is missed.
const REPOLL_MS: u64 = 30_000;

/// What the driver keeps between calls.
#[derive(Serialize, Deserialize)]
struct State {
    id: String,
}

struct Local;

fn pending_on(id: &str) -> PollResult {
    let state = serde_json::to_vec(&State { id: id.to_string() }).expect("state serializes");
    pending(state, Some(format!("process:{id}")), Some(REPOLL_MS))
}

fn parse_state(state: &[u8]) -> Result<State, PluginError> {
    serde_json::from_slice(state)
        .map_err(|e| PluginError::new(format!("local driver: unreadable state: {e}")))
}

impl Driver for Local {
    fn describe() -> PluginMetadata {
        PluginMetadata {
            name: "local".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "runs container, script and containerSet templates as sandboxed host processes".into(),
        }
    }

    fn start(ctx: StepContext) -> Result<PollResult, PluginError> {
        let template = ctx.template_json();
        let plan = match plan::plan(&template) {
            Ok(p) => p,
            Err(msg) => return Ok(PollResult::Done(outcome::error(msg))),
        };
        let spec = process::SpawnSpec {
            name: "main".into(),
            argv: plan.argv,
            env: plan.env,
            working_dir: plan.working_dir,
            files: plan
                .files
                .into_iter()
                .map(|f| process::FileSpec {
                    path: f.path,
                    contents: f.contents,
                    mode: f.mode,
                })
                .collect(),
        };
        match process::spawn(&spec) {
            Ok(id) => Ok(pending_on(&id)),
            Err(e) => Ok(PollResult::Done(outcome::error(format!(
                "could not start the step: {}",
                e.message()
            )))),
        }
    }

    fn poll(ctx: StepContext, state: Vec<u8>) -> Result<PollResult, PluginError> {
        let st = parse_state(&state)?;
        let status = match process::status(&st.id) {
            Ok(s) => s,
            Err(e) => {
                return Ok(PollResult::Done(outcome::error(format!(
                    "the step's process is gone ({}): it was cancelled, or the engine restarted",
                    e.message()
                ))));
            }
        };
        let code = match status {
            ProcessState::Running => return Ok(pending_on(&st.id)),
            ProcessState::FailedToStart(msg) => {
                let _ = process::release(&st.id);
                return Ok(PollResult::Done(outcome::error(msg)));
            }
            ProcessState::Exited(code) => code,
            ProcessState::Signaled(sig) => 128 + sig,
        };
        let out = collect(&ctx, &st.id, code);
        let _ = process::release(&st.id);
        Ok(PollResult::Done(out))
    }

    fn cancel(_ctx: StepContext, state: Vec<u8>) -> Result<(), PluginError> {
        let st = parse_state(&state)?;
        let _ = process::kill(&st.id);
        let _ = process::release(&st.id);
        Ok(())
    }
}

/// Build the outcome of an exited process: Argo's phase/message rules, the
/// stdout tail as `outputs.result`, output parameters read from the step's files.
fn collect(ctx: &StepContext, id: &str, code: i32) -> Outcome {
    let template = ctx.template_json();
    let mut out = if code == 0 {
        outcome::succeeded(None)
    } else {
        outcome::failed(format!("Error (exit code {code})"))
    };
    out.exit_code = Some(code);
    if let Ok(mut tail) = process::stdout_tail(id, RESULT_TAIL_BYTES) {
        if tail.ends_with('\n') {
            tail.pop();
            if tail.ends_with('\r') {
                tail.pop();
            }
        }
        out.result = Some(tail);
    }
    let params = template
        .pointer("/outputs/parameters")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    for p in params {
        let Some(name) = p.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        let Some(path) = p.pointer("/valueFrom/path").and_then(|n| n.as_str()) else {
            continue;
        };
        let default = p.pointer("/valueFrom/default").and_then(value_str);
        match process::read_file(id, path, MAX_PARAM_BYTES) {
            Ok(Some(bytes)) => {
                let mut v = String::from_utf8_lossy(&bytes).into_owned();
                if v.ends_with('\n') {
                    v.pop();
                }
                out.parameters.push((name.to_string(), v));
            }
            Ok(None) | Err(_) if default.is_some() => {
                out.parameters
                    .push((name.to_string(), default.unwrap_or_default()));
            }
            Ok(None) => {
                if out.phase == Phase::Succeeded {
                    out.phase = Phase::Error;
                    out.message = Some(format!(
                        "output parameter '{name}': file '{path}' does not exist and no valueFrom.default is set"
                    ));
                }
            }
            Err(e) => {
                if out.phase == Phase::Succeeded {
                    out.phase = Phase::Error;
                    out.message = Some(format!(
                        "output parameter '{name}': cannot read '{path}': {}",
                        e.message()
                    ));
                }
            }
        }
    }
    out
}

/// Argo parameter values may be strings or other JSON scalars.
fn value_str(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

weft_sdk::export_driver!(Local);
