//! Errors of the drivers layer.

use std::path::PathBuf;

/// Why `Drivers::new` failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverLoadError {
    /// The wasmtime engine could not be configured (e.g. pooling reservation refused).
    #[error("could not set up the Wasm engine: {0}")]
    Engine(String),
    /// A configured plugin file could not be read.
    #[error("plugin '{name}': cannot read {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A plugin is not a valid component, or does not implement its world.
    #[error("plugin '{name}': {message}")]
    Invalid { name: String, message: String },
    /// Two configured plugins share a name.
    #[error("plugin name '{0}' is configured twice")]
    Duplicate(String),
    /// The configured artifact repository cannot be set up (its message names
    /// the repository, never a secret).
    #[error("artifact repository: {0}")]
    Artifacts(#[from] crate::artifacts::ArtifactError),
    /// The compiled-component cache directory is unusable.
    #[error("component cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}
