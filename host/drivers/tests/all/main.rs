//! Integration tests of the drivers layer: real components, real processes.
//! One binary (each extra test binary links wasmtime again).

mod local;
mod measure;
mod robustness;
mod support;
