//! # weft-bindings — the one `bindgen!` of weft's WIT worlds
//!
//! Generated host-side bindings for `wit/` (package `weft:plugin@0.1.0`), kept in
//! a crate of their own so that edits in `weft-drivers` do not re-expand the macro.
//!
//! - [`driver`] binds the `driver-plugin` world and owns the Rust types of every
//!   host capability interface (`log`, `clock`, `process`, `http`, `secrets`, `kube`);
//! - [`step`] binds `step-component`;
//! - [`artifact`] binds `artifact-plugin` (adds `object-store`);
//! - [`executor`] binds `executor-plugin`.
//!
//! Later worlds reuse the interface modules of [`driver`] through `with:`, so a
//! host implements each capability trait once.
//!
//! Imports that can suspend (process spawn, HTTP, Kubernetes, object store) are
//! `async`; all imports are `trappable` so a host bug can trap instead of panicking.
//! Exports are always `async` (called with `call_async` under epoch interruption).
//!
//! May depend on: wasmtime, wasmtime-wasi. Nothing of weft.

/// The `driver-plugin` world; also the home of the shared capability interfaces.
pub mod driver {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "weft:plugin/driver-plugin",
        imports: {
            "weft:plugin/process.spawn": async | trappable,
            "weft:plugin/http.send": async | trappable,
            "weft:plugin/kube.get": async | trappable,
            "weft:plugin/kube.list-objects": async | trappable,
            "weft:plugin/kube.create": async | trappable,
            "weft:plugin/kube.delete": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

/// The `step-component` world (a user's Wasm step).
pub mod step {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "weft:plugin/step-component",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "weft:plugin/log": crate::driver::weft::plugin::log,
            "weft:plugin/clock": crate::driver::weft::plugin::clock,
        },
    });
}

/// The `artifact-plugin` world (an artifact repository backend).
pub mod artifact {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "weft:plugin/artifact-plugin",
        imports: {
            "weft:plugin/object-store.begin-upload": async | trappable,
            "weft:plugin/object-store.upload-part": async | trappable,
            "weft:plugin/object-store.complete-upload": async | trappable,
            "weft:plugin/object-store.read": async | trappable,
            "weft:plugin/object-store.head": async | trappable,
            "weft:plugin/object-store.list-objects": async | trappable,
            "weft:plugin/object-store.delete": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "weft:plugin/types": crate::driver::weft::plugin::types,
            "weft:plugin/log": crate::driver::weft::plugin::log,
            "weft:plugin/http": crate::driver::weft::plugin::http,
            "weft:plugin/secrets": crate::driver::weft::plugin::secrets,
        },
    });
}

/// The `executor-plugin` world (Argo executor logic for pod-style drivers).
pub mod executor {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "weft:plugin/executor-plugin",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "weft:plugin/types": crate::driver::weft::plugin::types,
            "weft:plugin/log": crate::driver::weft::plugin::log,
        },
    });
}
