//! # weft — the interaction layer
//!
//! The `weft` binary's library: the CLI ([`cli`]), configuration ([`config`]),
//! the wiring of store, drivers and engine ([`app`]) and the progress display
//! ([`progress`]). The REST API and the web UI will live beside the CLI here.
//!
//! May depend on every other layer; nothing depends on it. `anyhow` is used
//! here, at the edge, and nowhere below.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod progress;
