//! Integration tests of the drivers layer: real components, real processes.
//! One binary (each extra test binary links wasmtime again).

mod layers;
mod local;
mod measure;
mod robustness;
mod support;

/// The local plugin's pure planning rules (`plugins/local/src/plan.rs`), compiled
/// for the host so that their unit tests run here: the plugin crate itself is a
/// Wasm component and cannot be tested on the host.
#[allow(dead_code)]
#[path = "../../../../plugins/local/src/plan.rs"]
mod local_plan;

/// The http plugin's pure half (`plugins/http/src/call.rs`: template parsing,
/// `successCondition`), compiled for the host so its unit tests run here.
#[allow(dead_code)]
#[path = "../../../../plugins/http/src/call.rs"]
mod http_call;
