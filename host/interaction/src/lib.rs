//! # weft — the interaction layer
//!
//! The `weft` binary's library: the CLI ([`cli`]), the Argo Server REST API
//! that `weft server` serves ([`api`]) with its CronWorkflow scheduler
//! ([`cron`]), artifact garbage collection ([`gc`]), configuration ([`config`]), the wiring
//! of store, drivers and engine ([`app`]) and the progress display
//! ([`progress`]). The web UI will live beside them here.
//!
//! May depend on every other layer; nothing depends on it. `anyhow` is used
//! here, at the edge, and nowhere below.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod cron;
pub mod gc;
pub mod progress;
