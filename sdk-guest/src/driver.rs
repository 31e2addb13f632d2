//! The `driver-plugin` world: a step driver.
//!
//! ```ignore
//! use weft_sdk::driver::{Driver, PluginMetadata, PollResult, PluginError, StepContext, outcome};
//!
//! struct Echo;
//! impl Driver for Echo {
//!     fn describe() -> PluginMetadata {
//!         PluginMetadata { name: "echo".into(), version: "0.1.0".into(), description: "echoes".into() }
//!     }
//!     fn start(ctx: StepContext) -> Result<PollResult, PluginError> {
//!         Ok(PollResult::Done(outcome::succeeded(Some(ctx.node_name))))
//!     }
//!     fn poll(ctx: StepContext, _state: Vec<u8>) -> Result<PollResult, PluginError> { Self::start(ctx) }
//!     fn cancel(_ctx: StepContext, _state: Vec<u8>) -> Result<(), PluginError> { Ok(()) }
//! }
//! weft_sdk::export_driver!(Echo);
//! ```

/// Raw `wit-bindgen` output for the `driver-plugin` world.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weft:plugin/driver-plugin",
        pub_export_macro: true,
        export_macro_name: "__weft_export_driver_plugin",
        default_bindings_module: "weft_sdk::driver::bindings",
        runtime_path: "weft_sdk::wit_bindgen::rt",
        generate_all,
    });
}

pub use bindings::exports::weft::plugin::driver::PluginMetadata;
pub use bindings::weft::plugin::types::{
    CapabilityError, Outcome, Phase, PluginError, PollResult, StepContext, Wake,
};

/// Host capabilities imported by the `driver-plugin` world.
pub mod host {
    pub use super::bindings::weft::plugin::{clock, http, kube, log, process, secrets};
}

/// A step driver. Every call gets the step context; `state` is what the previous
/// call put in [`Wake::state`]. Calls must be idempotent by (node id, attempt).
pub trait Driver {
    /// Name, version and a one-line description. Must not use capabilities.
    fn describe() -> PluginMetadata;
    /// Start the attempt.
    fn start(ctx: StepContext) -> Result<PollResult, PluginError>;
    /// Poll a pending attempt.
    fn poll(ctx: StepContext, state: Vec<u8>) -> Result<PollResult, PluginError>;
    /// Cancel a pending attempt (idempotent).
    fn cancel(ctx: StepContext, state: Vec<u8>) -> Result<(), PluginError>;
}

/// Export a [`Driver`] implementation as the component's `driver` interface.
#[macro_export]
macro_rules! export_driver {
    ($ty:ty) => {
        const _: () = {
            struct __WeftDriverExport;
            impl $crate::driver::bindings::exports::weft::plugin::driver::Guest for __WeftDriverExport {
                fn describe() -> $crate::driver::PluginMetadata {
                    <$ty as $crate::driver::Driver>::describe()
                }
                fn start(
                    ctx: $crate::driver::StepContext,
                ) -> Result<$crate::driver::PollResult, $crate::driver::PluginError> {
                    <$ty as $crate::driver::Driver>::start(ctx)
                }
                fn poll(
                    ctx: $crate::driver::StepContext,
                    state: Vec<u8>,
                ) -> Result<$crate::driver::PollResult, $crate::driver::PluginError> {
                    <$ty as $crate::driver::Driver>::poll(ctx, state)
                }
                fn cancel(
                    ctx: $crate::driver::StepContext,
                    state: Vec<u8>,
                ) -> Result<(), $crate::driver::PluginError> {
                    <$ty as $crate::driver::Driver>::cancel(ctx, state)
                }
            }
            $crate::driver::bindings::__weft_export_driver_plugin!(__WeftDriverExport with_types_in $crate::driver::bindings);
        };
    };
}

impl StepContext {
    /// The resolved Argo template, parsed (`Value::Null` if the host sent invalid JSON).
    pub fn template_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.template).unwrap_or(serde_json::Value::Null)
    }
    /// The plugin's configuration, parsed (`Value::Null` if absent).
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.config).unwrap_or(serde_json::Value::Null)
    }
}

impl PluginError {
    /// A plugin error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError {
            message: message.into(),
        }
    }
}

impl CapabilityError {
    /// The message, prefixed with the kind of refusal.
    pub fn message(&self) -> String {
        match self {
            CapabilityError::NotGranted(m) => format!("not granted: {m}"),
            CapabilityError::NotConfigured(m) => format!("not configured: {m}"),
            CapabilityError::Invalid(m) => format!("invalid request: {m}"),
            CapabilityError::Failed(m) => format!("failed: {m}"),
        }
    }
}

/// A `pending` result: poll again when `event_key` fires or after `after_ms`.
pub fn pending(state: Vec<u8>, event_key: Option<String>, after_ms: Option<u64>) -> PollResult {
    PollResult::Pending(Wake {
        state,
        after_ms,
        event_key,
    })
}

/// Constructors for [`Outcome`].
pub mod outcome {
    use super::{Outcome, Phase};

    fn new(phase: Phase, message: Option<String>) -> Outcome {
        Outcome {
            phase,
            message,
            exit_code: None,
            result: None,
            parameters: Vec::new(),
            artifacts: Vec::new(),
        }
    }
    /// Succeeded with `result` as `outputs.result`.
    pub fn succeeded(result: Option<String>) -> Outcome {
        Outcome {
            result,
            ..new(Phase::Succeeded, None)
        }
    }
    /// Failed (the step ran and failed) with a message.
    pub fn failed(message: impl Into<String>) -> Outcome {
        new(Phase::Failed, Some(message.into()))
    }
    /// Error (the step could not run) with a message.
    pub fn error(message: impl Into<String>) -> Outcome {
        new(Phase::Error, Some(message.into()))
    }
}
