//! # weft-engine — the engine layer
//!
//! Owns the meaning of a workflow: the Argo model ([`model`]), the pure state
//! machine that turns events into actions ([`machine`]), validation ([`lint`]),
//! CronWorkflow scheduling decisions ([`cron`]),
//! and the runtime loop that persists state and carries actions out through
//! ports ([`runtime`]).
//!
//! May depend on: `weft-expr` and plain libraries. Must not depend on the
//! persistence, drivers or interaction layers: they depend on this crate and
//! implement its ports ([`runtime::StepDriver`], [`runtime::StateStore`]).

pub mod cron;
pub mod lint;
pub mod machine;
pub mod model;
pub mod runtime;
