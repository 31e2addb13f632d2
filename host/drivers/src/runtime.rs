//! The Wasm runtime: one wasmtime `Engine` per `Drivers` (pooling allocator,
//! epoch interruption), the on-disk cache of compiled components, and the
//! per-call `Store` with its limits.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::config::Grants;
use crate::cpu::CpuMeter;
use crate::error::DriverLoadError;
use crate::host::Capabilities;
use crate::sandbox::manager::StepKey;

/// Epoch tick: the granularity of CPU budgets and of yielding to tokio.
pub const TICK: Duration = Duration::from_millis(10);
/// Instances that may exist at once (a fresh one per call).
pub(crate) const POOL_INSTANCES: u32 = 128;
/// Plugin stderr kept for error messages (panics print there).
const STDERR_CAP: usize = 16 * 1024;

/// Build the engine and start its epoch ticker (stops when the returned guard drops).
pub fn engine(memory_limit: usize) -> Result<(Engine, TickerGuard), DriverLoadError> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 16)
        .max_core_instances_per_component(32)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .total_stacks(POOL_INSTANCES)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .max_memory_size(memory_limit.max(1 << 20))
        // A fresh instance per call: resetting its slots afterwards is a cost of
        // every call. Reset only the pages the call dirtied (PAGEMAP_SCAN, Linux
        // 6.7+; elsewhere as before), and batch the decommits: each madvise is
        // a TLB shootdown across cores. (W4 proc, 1,000 steps of two plugin
        // calls each: 4.3 -> 3.3 s of CPU.)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .decommit_batch_size(16);
    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&cfg).map_err(|e| DriverLoadError::Engine(format!("{e:#}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (e2, s2) = (engine.clone(), stop.clone());
    std::thread::Builder::new()
        .name("weft-epoch".into())
        .spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                e2.increment_epoch();
            }
        })
        .map_err(|e| DriverLoadError::Engine(e.to_string()))?;
    Ok((engine, TickerGuard(stop)))
}

/// Stops the epoch ticker thread when dropped.
pub struct TickerGuard(Arc<AtomicBool>);

impl Drop for TickerGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// How a component was obtained, for the load report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadPath {
    Compiled,
    Cached,
}

/// Load a component through the cache: `<cache>/<sha256(wasm)>-<engine hash>.cwasm`.
pub fn load_component(
    engine: &Engine,
    cache_dir: &Path,
    name: &str,
    wasm: &[u8],
) -> Result<(Component, String, LoadPath), DriverLoadError> {
    let digest = hex::encode(Sha256::digest(wasm));
    let mut h = ShaHasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    let engine_hash = hex::encode(&h.0.finalize()[..8]);
    let path: PathBuf = cache_dir.join(format!("{digest}-{engine_hash}.cwasm"));
    if path.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine with
        // the same compatibility hash (part of the name), in a directory we own.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, digest, LoadPath::Cached)),
            Err(e) => {
                tracing::warn!(plugin = name, path = %path.display(), "stale component cache entry: {e:#}")
            }
        }
    }
    let invalid = |e: wasmtime::Error| DriverLoadError::Invalid {
        name: name.to_string(),
        message: format!("{e:#}"),
    };
    let bytes = engine.precompile_component(wasm).map_err(invalid)?;
    let cache = |source| DriverLoadError::Cache {
        path: cache_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(cache_dir).map_err(cache)?;
    // Unique per process *and* per call: two threads of one process (tests run
    // in parallel) compiling the same component must not share a temp file, or
    // the second rename finds it gone.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = cache_dir.join(format!(
        ".{digest}-{engine_hash}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, &bytes).map_err(cache)?;
    std::fs::rename(&tmp, &path).map_err(cache)?;
    // SAFETY: just produced by this engine.
    let c = unsafe { Component::deserialize_file(engine, &path) }.map_err(invalid)?;
    Ok((c, digest, LoadPath::Compiled))
}

/// What one plugin call knows about itself.
pub struct CallInfo {
    pub plugin: Arc<str>,
    pub grants: Arc<Grants>,
    pub step: Option<StepKey>,
}

/// The data of one per-call `Store`.
pub struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub call: CallInfo,
    pub caps: Arc<Capabilities>,
    /// CPU time of this call, when it is driven through [`crate::cpu::metered`].
    pub cpu: Arc<CpuMeter>,
    pub cpu_budget: Duration,
    /// Epoch deadlines this call reached: the budget of a call not driven
    /// through [`crate::cpu::metered`] (then each counts as one tick of CPU).
    pub ticks: u64,
    pub budget_ticks: u64,
    pub stderr: MemoryOutputPipe,
    /// The memory cap, for messages.
    pub mem_limit: usize,
    /// The object-store grant's backend for this call chain (artifact
    /// plugins run by [`crate::artifacts::repos::wasm::WasmRepository`]); `None`:
    /// the capability answers `not-granted` or `not-configured`.
    pub object_store: Option<Arc<crate::host::object_store::Session>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Marker in the trap message when the CPU budget is exhausted.
pub const BUDGET_EXCEEDED: &str = "CPU budget exceeded";

/// A fresh store for one call, with memory limit, CPU budget and an empty WASI context.
pub fn new_store(
    engine: &Engine,
    call: CallInfo,
    caps: Arc<Capabilities>,
    cpu_budget: Duration,
    memory_limit: usize,
) -> Store<HostState> {
    let stderr = MemoryOutputPipe::new(STDERR_CAP);
    let mut wasi = WasiCtxBuilder::new();
    wasi.stderr(stderr.clone());
    for (k, v) in &call.grants.env {
        wasi.env(k, v);
    }
    let state = HostState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(memory_limit)
            .trap_on_grow_failure(true)
            .build(),
        call,
        caps,
        cpu: CpuMeter::new(),
        cpu_budget,
        ticks: 0,
        budget_ticks: (cpu_budget.as_millis() / TICK.as_millis()).max(1) as u64,
        stderr,
        mem_limit: memory_limit,
        object_store: None,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let s = ctx.data_mut();
        s.ticks += 1;
        let over = if s.cpu.is_metered() {
            s.cpu.used() > s.cpu_budget
        } else {
            s.ticks > s.budget_ticks
        };
        if over {
            return Err(wasmtime::Error::msg(BUDGET_EXCEEDED));
        }
        Ok(UpdateDeadline::Yield(1))
    });
    store
}
