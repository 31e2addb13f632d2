//! `weft:plugin/process`: sandboxed step processes (see [`crate::sandbox`]).
//! Only plugins granted `process` may call it; ids are scoped to the calling step.

use weft_bindings::driver::weft::plugin::process::{Host, ProcessState, SpawnSpec};
use weft_bindings::driver::weft::plugin::types::CapabilityError;

use crate::runtime::HostState;
use crate::sandbox::manager::{FileSpec, ProcessError, ProcessSpec};
use crate::sandbox::{ProcessManager, ProcessState as S};

type R<T> = wasmtime::Result<Result<T, CapabilityError>>;

impl From<ProcessError> for CapabilityError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Unknown(_) | ProcessError::Invalid(_) => {
                CapabilityError::Invalid(e.to_string())
            }
            ProcessError::Failed(m) => CapabilityError::Failed(m),
        }
    }
}

impl HostState {
    /// The grant check plus: a plugin may only touch its own step's processes.
    fn check_process(&self, id: Option<&str>) -> Result<(), CapabilityError> {
        if !self.call.grants.process {
            return Err(super::not_granted(format!(
                "plugin '{}' is not granted `process`",
                self.call.plugin
            )));
        }
        let Some(step) = &self.call.step else {
            return Err(CapabilityError::Invalid("no step is being served".into()));
        };
        if let Some(id) = id {
            let prefix = ProcessManager::process_id(step, "");
            if !id.starts_with(&prefix) {
                return Err(CapabilityError::Invalid(format!(
                    "process '{id}' does not belong to this step"
                )));
            }
        }
        Ok(())
    }
}

impl Host for HostState {
    async fn spawn(&mut self, spec: SpawnSpec) -> R<String> {
        if let Err(e) = self.check_process(None) {
            return Ok(Err(e));
        }
        let step = self.call.step.clone().expect("checked");
        let spec = ProcessSpec {
            name: if spec.name.is_empty() {
                "main".into()
            } else {
                spec.name
            },
            argv: spec.argv,
            env: spec.env,
            working_dir: spec.working_dir,
            files: spec
                .files
                .into_iter()
                .map(|f| FileSpec {
                    path: f.path,
                    contents: f.contents,
                    mode: f.mode,
                })
                .collect(),
        };
        Ok(self
            .caps
            .processes
            .spawn(&step, spec)
            .await
            .map_err(Into::into))
    }

    fn status(&mut self, id: String) -> R<ProcessState> {
        if let Err(e) = self.check_process(Some(&id)) {
            return Ok(Err(e));
        }
        Ok(self
            .caps
            .processes
            .status(&id)
            .map_err(Into::into)
            .map(|s| match s {
                S::Running => ProcessState::Running,
                S::Exited(c) => ProcessState::Exited(c),
                S::Signaled(s) => ProcessState::Signaled(s),
                S::FailedToStart(m) => ProcessState::FailedToStart(m),
            }))
    }

    fn read_file(&mut self, id: String, path: String, max_bytes: u64) -> R<Option<Vec<u8>>> {
        if let Err(e) = self.check_process(Some(&id)) {
            return Ok(Err(e));
        }
        Ok(self
            .caps
            .processes
            .read_file(&id, &path, max_bytes)
            .map_err(Into::into))
    }

    fn stdout_tail(&mut self, id: String, max_bytes: u32) -> R<String> {
        if let Err(e) = self.check_process(Some(&id)) {
            return Ok(Err(e));
        }
        Ok(self
            .caps
            .processes
            .stdout_tail(&id, max_bytes as usize)
            .map_err(Into::into))
    }

    fn kill(&mut self, id: String) -> R<()> {
        if let Err(e) = self.check_process(Some(&id)) {
            return Ok(Err(e));
        }
        Ok(self.caps.processes.kill(&id).map_err(Into::into))
    }

    fn release(&mut self, id: String) -> R<()> {
        if let Err(e) = self.check_process(Some(&id)) {
            return Ok(Err(e));
        }
        Ok(self.caps.processes.release(&id).map_err(Into::into))
    }
}
