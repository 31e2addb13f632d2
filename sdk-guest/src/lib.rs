//! # weft-sdk — write weft plugins in Rust
//!
//! A weft plugin is a WebAssembly component built for `wasm32-wasip2` against
//! the WIT package `weft:plugin@0.1.0` (the repository's `wit/`). This crate
//! wraps the `wit-bindgen` output so that a plugin is **one trait implementation
//! plus one macro**:
//!
//! - feature `driver`: implement [`driver::Driver`], then `weft_sdk::export_driver!(MyDriver);`
//! - feature `step`: implement [`step::Step`], then `weft_sdk::export_step!(MyStep);`
//! - feature `artifact`: implement [`artifact::ArtifactStore`], then
//!   `weft_sdk::export_artifact_store!(MyStore);` — an artifact repository
//!   backend (`[artifacts.default] plugin = "NAME"` in weft.toml)
//!
//! Enable exactly one world per plugin crate (a component exports one world).
//! The host capabilities of the world (`process`, `http`, `secrets`, `kube`, `log`,
//! `clock`, `object-store`) are re-exported under [`driver::host`] / [`step::host`] /
//! [`artifact::host`]; calls to a
//! capability the plugin's configuration does not grant return
//! `CapabilityError::NotGranted`.
//!
//! Drivers are stateless: keep what you need between calls in `Wake::state`
//! (see [`driver::pending`]).

extern crate self as weft_sdk;

#[doc(hidden)]
pub use wit_bindgen;

pub use serde_json;

#[cfg(feature = "driver")]
pub mod driver;

#[cfg(feature = "step")]
pub mod step;

#[cfg(feature = "artifact")]
pub mod artifact;
