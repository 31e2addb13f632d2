//! Host capabilities: one module per WIT interface, each implementing the
//! generated `Host` trait for [`HostState`]. Every call checks the calling
//! plugin's [`Grants`](crate::config::Grants) first and answers
//! `capability-error.not-granted` otherwise; guest-visible failures are WIT
//! `result` errors, traps are reserved for host bugs.

mod clock;
pub(crate) mod http;
mod kube;
mod log;
pub mod object_store;
mod process;
mod secrets;

pub use secrets::secret_env_var;

use std::sync::Arc;

use weft_bindings::driver::weft::plugin::types::{self, CapabilityError};
use weft_engine::runtime::{EventNotifier, LogSink};

use crate::runtime::HostState;
use crate::sandbox::ProcessManager;

/// Shared backends behind the capabilities of one `Drivers`.
pub struct Capabilities {
    pub processes: Arc<ProcessManager>,
    pub logs: Arc<dyn LogSink>,
    pub notifier: Arc<dyn EventNotifier>,
}

impl types::Host for HostState {}

pub(crate) fn not_granted(what: impl std::fmt::Display) -> CapabilityError {
    CapabilityError::NotGranted(what.to_string())
}

/// Register every capability interface (and WASI) for the `driver-plugin` world.
pub fn add_driver_world(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    weft_bindings::driver::DriverPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        linker,
        |s| s,
    )
}

/// Register imports for the `step-component` world.
pub fn add_step_world(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    weft_bindings::step::StepComponent::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        linker,
        |s| s,
    )
}

/// Register imports for the `artifact-plugin` world.
pub fn add_artifact_world(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    weft_bindings::artifact::ArtifactPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        linker,
        |s| s,
    )
}

/// Register imports for the `executor-plugin` world.
pub fn add_executor_world(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    weft_bindings::executor::ExecutorPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        linker,
        |s| s,
    )
}
