//! The raw wasmtime floor of a Wasm step: what one step would cost with no
//! workflow engine around it.
//!
//! [`measure`] builds an engine exactly as [`Drivers`](crate::Drivers) does
//! ([`runtime::engine`]: pooling allocator, epoch interruption, memory cap),
//! loads the embedded example step (`plugins/testing/arith`) and, `calls`
//! times, does what the host does for every `plugin: {wasm: …}` step once the
//! component is compiled: a fresh [`Store`](wasmtime::Store) with the step's
//! limits ([`runtime::new_store`]), a fresh instance, one `step.run` call
//! (`add 40 i`, metered for the CPU budget as a step is), then the store is
//! dropped. `weft bench` shows the per-call
//! time beside the per-step time of its wasm workloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_bindings::step::StepComponentPre;
use weft_bindings::step::exports::weft::plugin::step::StepInput;
use weft_engine::runtime::{EventNotifier, LogLine, LogSink};

use crate::config::Grants;
use crate::host::{self, Capabilities};
use crate::runtime::{self, CallInfo, HostState};
use crate::sandbox::ProcessManager;

/// The result of [`measure`].
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Timed calls (the warm-up is not counted).
    pub calls: usize,
    /// Wall time of all timed calls.
    pub total: Duration,
}

impl Floor {
    /// Mean wall time of one store + instantiate + call + drop, in µs.
    pub fn per_call_us(&self) -> f64 {
        self.total.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }
}

/// Why the floor could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("floor: building the engine: {0}")]
    Engine(#[from] crate::error::DriverLoadError),
    #[error("floor: loading the arith step: {0}")]
    Load(String),
    #[error("floor: call {call}: {message}")]
    Call { call: usize, message: String },
}

struct Discard;

impl LogSink for Discard {
    fn append(&self, _: LogLine) {}
}

impl EventNotifier for Discard {
    fn notify(&self, _: &str) {}
}

/// Run the arith step `calls` times (after a few untimed warm-up calls), each in
/// a fresh store and instance, and check every answer. `memory_limit` is the
/// per-instance cap (the host's default is 256 MiB).
pub async fn measure(calls: usize, memory_limit: usize) -> Result<Floor, FloorError> {
    let (engine, _ticker) = runtime::engine(memory_limit)?;
    let load = |e: wasmtime::Error| FloorError::Load(format!("{e:#}"));
    let component =
        wasmtime::component::Component::new(&engine, crate::embedded::ARITH_STEP).map_err(load)?;
    let mut linker = wasmtime::component::Linker::new(&engine);
    host::add_step_world(&mut linker).map_err(load)?;
    let pre =
        StepComponentPre::new(linker.instantiate_pre(&component).map_err(load)?).map_err(load)?;
    let discard = Arc::new(Discard);
    let caps = Arc::new(Capabilities {
        processes: Arc::new(ProcessManager::new(
            std::env::temp_dir().join("weft-floor-unused"),
            false,
            discard.clone(),
            discard.clone(),
        )),
        logs: discard.clone(),
        notifier: discard,
    });
    let (plugin, grants): (Arc<str>, _) = ("floor".into(), Arc::new(Grants::default()));
    let budget = Duration::from_secs(2);
    let warmup = calls.clamp(1, 100);
    let mut total = Duration::ZERO;
    for i in 0..warmup + calls {
        let t0 = Instant::now();
        let sum = call(
            &engine,
            &pre,
            &caps,
            &plugin,
            &grants,
            budget,
            memory_limit,
            i,
        )
        .await
        .map_err(|message| FloorError::Call { call: i, message })?;
        if i >= warmup {
            total += t0.elapsed();
        }
        if sum != 40 + i as i64 {
            return Err(FloorError::Call {
                call: i,
                message: format!("40 + {i} returned {sum}"),
            });
        }
    }
    Ok(Floor { calls, total })
}

/// One step as the host runs it: store, instance, `run`, drop.
#[allow(clippy::too_many_arguments)]
async fn call(
    engine: &wasmtime::Engine,
    pre: &StepComponentPre<HostState>,
    caps: &Arc<Capabilities>,
    plugin: &Arc<str>,
    grants: &Arc<Grants>,
    budget: Duration,
    memory_limit: usize,
    i: usize,
) -> Result<i64, String> {
    let mut store = runtime::new_store(
        engine,
        CallInfo {
            plugin: plugin.clone(),
            grants: grants.clone(),
            step: None,
        },
        caps.clone(),
        budget,
        memory_limit,
    );
    let input = StepInput {
        parameters: vec![
            ("op".into(), "add".into()),
            ("a".into(), "40".into()),
            ("b".into(), i.to_string()),
        ],
        artifacts: Vec::new(),
    };
    // metered like a step: the CPU budget counts thread CPU time of the polls
    let meter = store.data().cpu.clone();
    let out = crate::cpu::metered(meter, async {
        let b = pre.instantiate_async(&mut store).await?;
        b.weft_plugin_step().call_run(&mut store, &input).await
    })
    .await
    .map_err(|e| format!("{e:#}"))??;
    out.result
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|_| format!("not a number: {:?}", out.result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn floor_calls_really_happen_and_take_time() {
        let f = measure(50, 64 << 20).await.unwrap();
        assert_eq!(f.calls, 50);
        assert!(f.total > Duration::ZERO);
        let us = f.per_call_us();
        // a fresh instance + call is microseconds, never zero, never a second
        assert!(us > 0.0 && us < 1e6, "{us} µs");
    }

    #[tokio::test]
    async fn a_tiny_memory_cap_makes_the_floor_fail_not_hang() {
        // arith cannot even instantiate in 64 KiB (one Wasm page of the pool is more)
        let r = measure(1, 64 << 10).await;
        assert!(r.is_err(), "{r:?}");
    }
}
