//! # weft-drivers — the drivers layer
//!
//! Runs steps for the engine. Owns:
//! - the **Wasm plugin runtime** ([`runtime`]): wasmtime 48 with the component
//!   model, a pooling allocator, epoch interruption (per-call CPU budget),
//!   per-call memory limits, a fresh instance per call, and an on-disk cache of
//!   compiled components;
//! - the **plugin registry** ([`Drivers`]): plugins built from `plugins/` and
//!   embedded in the binary (`local`), plus plugins loaded from files named in
//!   configuration ([`PluginConfig`]);
//! - the **host capabilities** granted to plugins ([`host`]): `log`, `clock`,
//!   `process`, `http`, `secrets`, `kube`, `object-store`, each checked against
//!   the plugin's [`Grants`];
//! - the **process sandbox** ([`sandbox`]): steps as host processes, each in a
//!   private filesystem built from Linux namespaces;
//! - **artifacts** ([`artifacts`]): input artifacts placed in a step's private
//!   root before it starts, outputs saved from it after it exits, through a
//!   [`Repository`](artifacts::Repository) (the local directory one by default).
//!
//! [`Drivers`] implements the engine's [`StepDriver`](weft_engine::runtime::StepDriver)
//! port and consumes its [`LogSink`](weft_engine::runtime::LogSink) and
//! [`EventNotifier`](weft_engine::runtime::EventNotifier) ports.
//!
//! May depend on: `weft-engine` (its ports only), `weft-bindings` (the generated
//! WIT bindings), wasmtime and plain libraries. Nothing depends on this crate
//! but the interaction layer (CLI, server) that wires everything together.

pub mod artifacts;
pub mod config;
pub mod cpu;
mod drivers;
pub mod error;
pub mod floor;
pub mod host;
pub mod runtime;
pub mod sandbox;

pub use config::{
    Grants, KubeGrant, ObjectStoreGrant, PluginConfig, PluginInfo, PluginKind, PluginSource,
};
pub use drivers::{DriverOptions, Drivers, Prepared, RepositoryOptions};
pub use error::DriverLoadError;

/// Plugins built from `plugins/` by `build.rs` and embedded in the binary.
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}
