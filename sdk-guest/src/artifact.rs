//! The `artifact-plugin` world: an artifact repository backend.
//!
//! A repository in weft.toml can be backed by a plugin
//! (`[artifacts.default] plugin = "NAME"`, or `[artifacts.repositories.X]`):
//! every artifact the repository stores or loads goes through the plugin's
//! [`ArtifactStore`] calls. Bytes may flow through the host's
//! [`host::object_store`] capability, scoped to the plugin's grant (one
//! configured repository and a key prefix in it), so they move at the speed
//! of the host's disk or object store while the plugin decides layout,
//! naming, checksums, encryption, auditing…
//!
//! ```ignore
//! use weft_sdk::artifact::{ArtifactStore, Chunk, ObjectInfo, PluginError, StepContext};
//! use weft_sdk::artifact::host::object_store as os;
//!
//! /// Objects as they are, under the granted prefix.
//! struct Passthrough;
//! impl ArtifactStore for Passthrough {
//!     fn begin_put(_: StepContext, key: String) -> Result<Vec<u8>, PluginError> {
//!         Ok(os::begin_upload(&key).map_err(PluginError::capability)?.into_bytes())
//!     }
//!     fn put_part(_: StepContext, _: String, upload: Vec<u8>, _: u32, data: Vec<u8>) -> Result<String, PluginError> {
//!         os::upload_part(&String::from_utf8_lossy(&upload), &data).map_err(PluginError::capability)?;
//!         Ok(String::new())
//!     }
//!     fn finish_put(_: StepContext, key: String, upload: Vec<u8>, _: Vec<String>) -> Result<String, PluginError> {
//!         os::complete_upload(&String::from_utf8_lossy(&upload)).map_err(PluginError::capability)?;
//!         Ok(format!(r#"{{"s3":{{"key":{key:?}}}}}"#))
//!     }
//!     fn abort_put(_: StepContext, _: String, upload: Vec<u8>) -> Result<(), PluginError> {
//!         os::abort_upload(&String::from_utf8_lossy(&upload)).map_err(PluginError::capability)
//!     }
//!     fn get_range(_: StepContext, key: String, offset: u64, max_len: u32) -> Result<Option<Chunk>, PluginError> {
//!         let Some(meta) = os::head(&key).map_err(PluginError::capability)? else { return Ok(None) };
//!         let data = os::read(&key, offset, max_len).map_err(PluginError::capability)?;
//!         let eof = offset + data.len() as u64 >= meta.size;
//!         Ok(Some(Chunk { data, total_size: Some(meta.size), eof }))
//!     }
//!     fn list_objects(_: StepContext, prefix: String) -> Result<Vec<ObjectInfo>, PluginError> {
//!         Ok(os::list_objects(&prefix).map_err(PluginError::capability)?.into_iter()
//!             .map(|m| ObjectInfo { key: m.key, size: m.size, modified_ms: m.modified_ms }).collect())
//!     }
//!     fn delete(_: StepContext, key: String) -> Result<(), PluginError> {
//!         os::delete(&key).map_err(PluginError::capability)
//!     }
//! }
//! weft_sdk::export_artifact_store!(Passthrough);
//! ```
//!
//! How the host calls it (see `host/drivers/src/artifacts/wasm.rs`):
//! - **an upload** is `begin_put`, then `put_part` for parts 1, 2, … in
//!   order (at least one; each at most 4 MiB, the last may be short or
//!   empty), then `finish_put` with the tags `put_part` returned — or
//!   `abort_put` when the host gives up. Every call is a fresh instance:
//!   what must survive goes in the opaque `upload` bytes (set once, by
//!   `begin_put`) and in the part tags. An object-store upload id from
//!   `begin_upload` stays valid for the whole transfer;
//! - **a download** is `get_range(key, 0, 0)` (does it exist?), then
//!   `get_range` from each next offset with `max_len` 4 MiB until a chunk
//!   says `eof`. Return `Ok(None)` when there is no object at `key` (the
//!   macro turns it into a `plugin-error` starting with [`NOT_FOUND`], which
//!   the host reads as "absent"). A chunk may be shorter than `max_len`, but
//!   not empty before the end;
//! - **`list_objects(prefix)`** returns every object under `prefix/`
//!   (a "directory" artifact is the objects below its key); keys are whole
//!   repository keys, `/`-separated;
//! - **`delete`** of a missing key succeeds.
//!
//! Repository calls serve no particular step: `ctx` carries the plugin's
//! `config` (weft.toml `[[plugins]] config`, see [`StepContext::config_json`]);
//! its other fields are empty.

/// Raw `wit-bindgen` output for the `artifact-plugin` world.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weft:plugin/artifact-plugin",
        pub_export_macro: true,
        export_macro_name: "__weft_export_artifact_plugin",
        default_bindings_module: "weft_sdk::artifact::bindings",
        runtime_path: "weft_sdk::wit_bindgen::rt",
        generate_all,
    });
}

pub use bindings::exports::weft::plugin::artifact_store::{Chunk, ObjectInfo};
pub use bindings::weft::plugin::object_store::ObjectMeta;
pub use bindings::weft::plugin::types::{CapabilityError, PluginError, StepContext};

/// Host capabilities imported by the `artifact-plugin` world.
pub mod host {
    pub use super::bindings::weft::plugin::{http, log, object_store, secrets};
}

/// The start of the `plugin-error` message that tells the host "no object
/// at this key" (what [`ArtifactStore::get_range`] returning `Ok(None)` becomes).
pub const NOT_FOUND: &str = "not-found:";

/// An artifact repository backend. Keys are validated by the host (relative,
/// `/`-separated, never `..`). Calls must be idempotent where the host may
/// retry them (`abort_put`, `delete`).
pub trait ArtifactStore {
    /// Start an upload of `key`; the returned bytes are handed to every later
    /// call of this upload.
    fn begin_put(ctx: StepContext, key: String) -> Result<Vec<u8>, PluginError>;
    /// Store part `part_number` (1-based, in order); the returned tag is
    /// handed to [`finish_put`](Self::finish_put).
    fn put_part(
        ctx: StepContext,
        key: String,
        upload: Vec<u8>,
        part_number: u32,
        data: Vec<u8>,
    ) -> Result<String, PluginError>;
    /// Publish the object; returns its Argo location as JSON (e.g.
    /// `{"s3":{"key":"…"}}`; informational).
    fn finish_put(
        ctx: StepContext,
        key: String,
        upload: Vec<u8>,
        parts: Vec<String>,
    ) -> Result<String, PluginError>;
    /// Abandon an upload.
    fn abort_put(ctx: StepContext, key: String, upload: Vec<u8>) -> Result<(), PluginError>;
    /// Up to `max_len` bytes of `key` from `offset`; `Ok(None)`: no object at `key`.
    fn get_range(
        ctx: StepContext,
        key: String,
        offset: u64,
        max_len: u32,
    ) -> Result<Option<Chunk>, PluginError>;
    /// Every object under `prefix/`.
    fn list_objects(ctx: StepContext, prefix: String) -> Result<Vec<ObjectInfo>, PluginError>;
    /// Delete `key`; a missing key succeeds.
    fn delete(ctx: StepContext, key: String) -> Result<(), PluginError>;
    /// A pre-signed URL for `method` valid `expires_secs`, if the store can
    /// sign (default: it cannot).
    fn signed_url(
        _ctx: StepContext,
        _key: String,
        _method: String,
        _expires_secs: u32,
    ) -> Result<Option<String>, PluginError> {
        Ok(None)
    }
}

/// Export an [`ArtifactStore`] implementation as the component's
/// `artifact-store` interface.
#[macro_export]
macro_rules! export_artifact_store {
    ($ty:ty) => {
        const _: () = {
            use $crate::artifact::{Chunk, ObjectInfo, PluginError, StepContext};
            struct __WeftArtifactExport;
            impl $crate::artifact::bindings::exports::weft::plugin::artifact_store::Guest
                for __WeftArtifactExport
            {
                fn begin_put(ctx: StepContext, key: String) -> Result<Vec<u8>, PluginError> {
                    <$ty as $crate::artifact::ArtifactStore>::begin_put(ctx, key)
                }
                fn put_part(
                    ctx: StepContext,
                    key: String,
                    upload: Vec<u8>,
                    part_number: u32,
                    data: Vec<u8>,
                ) -> Result<String, PluginError> {
                    <$ty as $crate::artifact::ArtifactStore>::put_part(ctx, key, upload, part_number, data)
                }
                fn finish_put(
                    ctx: StepContext,
                    key: String,
                    upload: Vec<u8>,
                    parts: Vec<String>,
                ) -> Result<String, PluginError> {
                    <$ty as $crate::artifact::ArtifactStore>::finish_put(ctx, key, upload, parts)
                }
                fn abort_put(
                    ctx: StepContext,
                    key: String,
                    upload: Vec<u8>,
                ) -> Result<(), PluginError> {
                    <$ty as $crate::artifact::ArtifactStore>::abort_put(ctx, key, upload)
                }
                fn get_range(
                    ctx: StepContext,
                    key: String,
                    offset: u64,
                    max_len: u32,
                ) -> Result<Chunk, PluginError> {
                    match <$ty as $crate::artifact::ArtifactStore>::get_range(ctx, key.clone(), offset, max_len)? {
                        Some(c) => Ok(c),
                        None => Err(PluginError::not_found(&key)),
                    }
                }
                fn list_objects(
                    ctx: StepContext,
                    prefix: String,
                ) -> Result<Vec<ObjectInfo>, PluginError> {
                    <$ty as $crate::artifact::ArtifactStore>::list_objects(ctx, prefix)
                }
                fn delete(ctx: StepContext, key: String) -> Result<(), PluginError> {
                    <$ty as $crate::artifact::ArtifactStore>::delete(ctx, key)
                }
                fn signed_url(
                    ctx: StepContext,
                    key: String,
                    method: String,
                    expires_secs: u32,
                ) -> Result<Option<String>, PluginError> {
                    <$ty as $crate::artifact::ArtifactStore>::signed_url(ctx, key, method, expires_secs)
                }
            }
            $crate::artifact::bindings::__weft_export_artifact_plugin!(__WeftArtifactExport with_types_in $crate::artifact::bindings);
        };
    };
}

impl StepContext {
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

    /// "No object at `key`" (see [`NOT_FOUND`]).
    pub fn not_found(key: &str) -> Self {
        PluginError::new(format!("{NOT_FOUND} no object '{key}'"))
    }

    /// A refused or failed host capability call.
    pub fn capability(e: CapabilityError) -> Self {
        PluginError::new(e.message())
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
