//! weft's one integration-test binary: everything through the public surface
//! (the `weft` CLI and workflow files). Each extra test binary would link
//! wasmtime again, so all integration tests live here as modules.

mod api;
mod artifact_gc;
mod artifacts;
mod azure;
mod bad_input;
mod bench;
mod cli;
mod conformance;
mod crash;
mod cron;
mod fetch_artifacts;
mod guests;
mod plugin_steps;
mod replicas;
mod support;
mod wasm_artifacts;
