//! The `step-component` world: a user's step as a Wasm component.
//!
//! ```ignore
//! use weft_sdk::step::{Step, StepInput, StepOutput};
//! struct Add;
//! impl Step for Add {
//!     fn run(input: StepInput) -> Result<StepOutput, String> {
//!         let sum: i64 = input.parameters.iter().filter_map(|(_, v)| v.parse::<i64>().ok()).sum();
//!         Ok(StepOutput { parameters: vec![], result: Some(sum.to_string()), artifacts: vec![] })
//!     }
//! }
//! weft_sdk::export_step!(Add);
//! ```

/// Raw `wit-bindgen` output for the `step-component` world.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weft:plugin/step-component",
        pub_export_macro: true,
        export_macro_name: "__weft_export_step_component",
        default_bindings_module: "weft_sdk::step::bindings",
        runtime_path: "weft_sdk::wit_bindgen::rt",
        generate_all,
    });
}

pub use bindings::exports::weft::plugin::step::{ArtifactData, StepInput, StepOutput};

/// Host capabilities imported by the `step-component` world.
pub mod host {
    pub use super::bindings::weft::plugin::{clock, log};
}

/// A user's step: inputs in, outputs out. An `Err` fails the step with that message.
pub trait Step {
    /// Run the step.
    fn run(input: StepInput) -> Result<StepOutput, String>;
}

/// Export a [`Step`] implementation as the component's `step` interface.
#[macro_export]
macro_rules! export_step {
    ($ty:ty) => {
        const _: () = {
            struct __WeftStepExport;
            impl $crate::step::bindings::exports::weft::plugin::step::Guest for __WeftStepExport {
                fn run(
                    input: $crate::step::StepInput,
                ) -> Result<$crate::step::StepOutput, String> {
                    <$ty as $crate::step::Step>::run(input)
                }
            }
            $crate::step::bindings::__weft_export_step_component!(__WeftStepExport with_types_in $crate::step::bindings);
        };
    };
}
