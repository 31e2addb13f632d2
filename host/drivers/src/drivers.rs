//! The registry of loaded plugins and the engine's `StepDriver` port.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::Instrument;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store};
use weft_bindings::driver::DriverPluginPre;
use weft_bindings::driver::weft::plugin::types::{Outcome, Phase, PollResult, StepContext};
use weft_bindings::step::StepComponentPre;
use weft_engine::runtime::{
    DriverError, DriverPoll, EventNotifier, LogSink, OutcomePhase, StepDriver, StepOutcome,
    StepRequest,
};

use crate::artifacts::{Repositories, stage};
use crate::config::{Grants, PluginConfig, PluginInfo, PluginKind, PluginSource};
use crate::error::DriverLoadError;
use crate::host::{self, Capabilities};
use crate::runtime::{self, BUDGET_EXCEEDED, CallInfo, HostState, TickerGuard};
use crate::sandbox::manager::StepKey;
use crate::sandbox::{ProcessManager, layers};

mod wasm_step;

/// Options of the drivers layer (one `*Options` struct per subsystem).
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Compiled components (`.cwasm`) are cached here.
    pub cache_dir: PathBuf,
    /// Per-step private directories live under it: `<work_dir>/<wf-uid>/<node-id>-<attempt>/root`.
    pub work_dir: PathBuf,
    /// Plugins loaded from files, in addition to the embedded ones.
    pub plugins: Vec<PluginConfig>,
    /// CPU time a plugin may use per call (thread CPU time inside the call, see `cpu.rs`).
    pub cpu_budget: Duration,
    /// Linear-memory cap of a plugin instance.
    pub memory_limit_bytes: usize,
    /// Keep step directories after a step is released (debugging).
    pub keep_step_dirs: bool,
    /// The default artifact repository: every key-only artifact location
    /// (and every default output key) is in it.
    pub artifact_repository: RepositoryOptions,
    /// Named repositories (`[artifacts.repositories.NAME]`): key-only
    /// locations whose `repository` field names one are in it.
    pub artifact_repositories: std::collections::BTreeMap<String, RepositoryOptions>,
}

pub use crate::artifacts::RepositoryOptions;

impl DriverOptions {
    /// Defaults: 2 s CPU per call, 256 MiB of memory, no configured plugins.
    /// The artifact repository defaults to `artifacts/` beside `work_dir`
    /// (`$WEFT_HOME/artifacts` for the CLI's `$WEFT_HOME/steps`).
    pub fn new(cache_dir: impl Into<PathBuf>, work_dir: impl Into<PathBuf>) -> Self {
        let work_dir: PathBuf = work_dir.into();
        let artifacts = work_dir
            .parent()
            .map(|p| p.join("artifacts"))
            .unwrap_or_else(|| work_dir.join("artifacts"));
        DriverOptions {
            cache_dir: cache_dir.into(),
            artifact_repository: RepositoryOptions::Local { path: artifacts },
            artifact_repositories: Default::default(),
            work_dir,
            plugins: Vec::new(),
            cpu_budget: Duration::from_secs(2),
            memory_limit_bytes: 256 << 20,
            keep_step_dirs: false,
        }
    }
}

/// Grants of an embedded plugin when weft.toml does not re-grant it: `local`
/// spawns sandboxed processes; `http` may reach any host, as Argo's http
/// template can (restrict it with a path-less `[[plugins]] name = "http"`).
fn embedded_grants(name: &str) -> Grants {
    match name {
        "local" => Grants {
            process: true,
            ..Grants::default()
        },
        "http" => Grants {
            http_hosts: vec!["*".into()],
            ..Grants::default()
        },
        _ => Grants::default(),
    }
}

/// A loaded plugin ready to instantiate.
struct Plugin {
    info: PluginInfo,
    name: Arc<str>,
    grants: Arc<Grants>,
    config_json: String,
    pre: Pre,
}

enum Pre {
    Driver(DriverPluginPre<HostState>),
    /// A user step registered by name (`plugin.wasm.component: NAME`).
    Step(Arc<StepComponentPre<HostState>>),
    /// Loaded and type-checked against its world; not routable as a driver.
    Other,
}

/// What a plugin is made from, kept until it is loaded.
struct Spec {
    name: String,
    kind: PluginKind,
    bytes: std::borrow::Cow<'static, [u8]>,
    /// Already compiled or read from the cache, by [`Drivers::prepare`].
    compiled: std::sync::Mutex<Option<Compiled>>,
    source: PluginSource,
    grants: Grants,
    config: serde_json::Value,
}

/// A registry entry. Plugins from files are loaded (and so checked) at start;
/// embedded ones on first use: a run that has no `http` template never pays
/// for hashing and loading the http plugin (~2 ms of a short `weft run`).
struct Slot {
    grants: Arc<Grants>,
    kind: PluginKind,
    spec: Option<Spec>,
    loaded: tokio::sync::OnceCell<Arc<Plugin>>,
}

struct Inner {
    engine: Engine,
    _ticker: TickerGuard,
    caps: Arc<Capabilities>,
    plugins: HashMap<String, Slot>,
    cpu_budget: Duration,
    memory_limit: usize,
    /// One permit per pooled instance: a call waits for a free slot instead of
    /// failing when more steps start at once than the pool holds (a wide DAG).
    slots: tokio::sync::Semaphore,
    /// The default artifact repository, and those full locations name.
    repos: Arc<Repositories>,
    /// Where compiled components are cached on disk.
    cache_dir: PathBuf,
    /// User Wasm steps loaded from files, ready to instantiate.
    steps: wasm_step::StepCache,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.caps.processes.kill_all();
    }
}

/// The drivers layer: a registry of Wasm plugins behind the engine's `StepDriver`
/// port. Cheap to clone.
#[derive(Clone)]
pub struct Drivers {
    inner: Arc<Inner>,
}

fn linker_for(engine: &Engine, kind: PluginKind) -> wasmtime::Result<Linker<HostState>> {
    let mut l = Linker::new(engine);
    match kind {
        PluginKind::Driver => host::add_driver_world(&mut l)?,
        PluginKind::Step => host::add_step_world(&mut l)?,
        PluginKind::Artifact => host::add_artifact_world(&mut l)?,
        PluginKind::Executor => host::add_executor_world(&mut l)?,
    }
    Ok(l)
}

/// A component with its sha256 and how it was obtained.
type Compiled = (wasmtime::component::Component, String, runtime::LoadPath);

/// The Wasm engine, and embedded plugins read from the compiled-component
/// cache, being made on a thread of their own ([`Drivers::prepare`]), with the
/// options they are made for.
pub struct Prepared {
    warm: tokio::sync::oneshot::Receiver<Result<Warm, DriverLoadError>>,
    opts: DriverOptions,
}

struct Warm {
    engine: Engine,
    ticker: TickerGuard,
    compiled: HashMap<String, Compiled>,
}

impl Drivers {
    /// Start making the Wasm engine and loading the embedded plugins `warm`
    /// on a new thread, for [`Drivers::with_prepared`]. A short `weft run`
    /// does this while it opens the store and checks the workflow: the
    /// engine's pooling reservations and reading the local driver from the
    /// cache are ~1.5 ms that no longer wait for each other.
    pub fn prepare(opts: DriverOptions, warm: &[&str]) -> Prepared {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (memory, cache) = (opts.memory_limit_bytes, opts.cache_dir.clone());
        let replaced: Vec<&str> = opts
            .plugins
            .iter()
            .filter(|p| p.path.is_some())
            .map(|p| p.name.as_str())
            .collect();
        let names: Vec<&'static str> = crate::embedded::EMBEDDED
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| warm.contains(n) && !replaced.contains(n))
            .collect();
        let work = move || -> Result<Warm, DriverLoadError> {
            let (engine, ticker) = runtime::engine(memory)?;
            let mut compiled = HashMap::new();
            for (name, bytes) in crate::embedded::EMBEDDED {
                if names.contains(name) {
                    let c = runtime::load_component(&engine, &cache, name, bytes)?;
                    compiled.insert(name.to_string(), c);
                }
            }
            Ok(Warm {
                engine,
                ticker,
                compiled,
            })
        };
        let spawned = std::thread::Builder::new()
            .name("weft-prepare".into())
            .spawn({
                let work = work.clone();
                move || {
                    let _ = tx.send(work());
                }
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "no thread to prepare the drivers on; preparing inline");
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(work());
            return Prepared { warm: rx, opts };
        }
        Prepared { warm: rx, opts }
    }

    /// Load the embedded plugins and every configured one (compiling or loading
    /// from the cache), and start the process sandbox.
    pub async fn new(
        opts: DriverOptions,
        logs: Arc<dyn LogSink>,
        notifier: Arc<dyn EventNotifier>,
    ) -> Result<Drivers, DriverLoadError> {
        Drivers::with_prepared(Drivers::prepare(opts, &[]), logs, notifier).await
    }

    /// [`Drivers::new`], with the engine (and maybe plugins) from [`Drivers::prepare`].
    pub async fn with_prepared(
        prepared: Prepared,
        logs: Arc<dyn LogSink>,
        notifier: Arc<dyn EventNotifier>,
    ) -> Result<Drivers, DriverLoadError> {
        let Prepared { warm, opts } = prepared;
        let Warm {
            engine,
            ticker,
            mut compiled,
        } = warm.await.map_err(|_| {
            DriverLoadError::Engine("the drivers' preparation ended early".into())
        })??;
        let caps = Arc::new(Capabilities {
            processes: Arc::new(ProcessManager::new(
                opts.work_dir.clone(),
                opts.keep_step_dirs,
                logs.clone(),
                notifier.clone(),
            )),
            logs,
            notifier,
        });
        let mut specs: Vec<Spec> = Vec::new();
        for (name, bytes) in crate::embedded::EMBEDDED {
            let configured = opts.plugins.iter().find(|p| p.name == *name);
            if configured.is_some_and(|p| p.path.is_some()) {
                continue; // replaced by configuration
            }
            // A path-less `[[plugins]]` entry re-grants (and configures) the embedded plugin.
            let (grants, config) = match configured {
                Some(p) if p.kind != PluginKind::Driver => {
                    return Err(DriverLoadError::Invalid {
                        name: p.name.clone(),
                        message: format!(
                            "the embedded plugin is a driver, not {:?}",
                            p.kind.world()
                        ),
                    });
                }
                Some(p) => (p.grants.clone(), p.config.clone()),
                None => (embedded_grants(name), serde_json::Value::Null),
            };
            specs.push(Spec {
                name: name.to_string(),
                kind: PluginKind::Driver,
                bytes: std::borrow::Cow::Borrowed(bytes),
                compiled: std::sync::Mutex::new(compiled.remove(*name)),
                source: PluginSource::Embedded,
                grants,
                config,
            });
        }
        for p in &opts.plugins {
            let Some(path) = &p.path else {
                if crate::embedded::EMBEDDED.iter().any(|(n, _)| *n == p.name) {
                    continue; // handled above
                }
                return Err(DriverLoadError::Invalid {
                    name: p.name.clone(),
                    message: "no `path`, and no embedded plugin has this name".into(),
                });
            };
            if specs.iter().any(|s| s.name == p.name) {
                return Err(DriverLoadError::Duplicate(p.name.clone()));
            }
            let bytes = std::fs::read(path).map_err(|source| DriverLoadError::Read {
                name: p.name.clone(),
                path: path.clone(),
                source,
            })?;
            specs.push(Spec {
                name: p.name.clone(),
                kind: p.kind,
                bytes: std::borrow::Cow::Owned(bytes),
                compiled: std::sync::Mutex::new(None),
                source: PluginSource::Path(path.clone()),
                grants: p.grants.clone(),
                config: p.config.clone(),
            });
        }

        let limits = Limits {
            cache_dir: opts.cache_dir.clone(),
            cpu_budget: opts.cpu_budget,
            memory_limit: opts.memory_limit_bytes,
        };
        let mut plugins = HashMap::new();
        for spec in specs {
            let slot = Slot {
                grants: Arc::new(spec.grants.clone()),
                kind: spec.kind,
                spec: None,
                loaded: tokio::sync::OnceCell::new(),
            };
            let name = spec.name.clone();
            let slot = if spec.source == PluginSource::Embedded {
                Slot {
                    spec: Some(spec),
                    ..slot
                }
            } else {
                let plugin = load_plugin(&engine, &caps, &limits, &spec).await?;
                let _ = slot.loaded.set(Arc::new(plugin));
                slot
            };
            plugins.insert(name, slot);
        }
        Ok(Drivers {
            inner: Arc::new(Inner {
                engine,
                _ticker: ticker,
                caps,
                plugins,
                cpu_budget: opts.cpu_budget,
                memory_limit: opts.memory_limit_bytes,
                slots: tokio::sync::Semaphore::new(runtime::POOL_INSTANCES as usize),
                repos: Arc::new(Repositories::from_config(
                    &opts.artifact_repository,
                    &opts.artifact_repositories,
                    tokio::runtime::Handle::current(),
                )?),
                cache_dir: opts.cache_dir.clone(),
                steps: Default::default(),
            }),
        })
    }

    /// Every plugin, sorted by name (for `weft plugin list/inspect`); loads
    /// the embedded ones not used yet, for their `describe()`.
    pub async fn plugins(&self) -> Result<Vec<PluginInfo>, DriverLoadError> {
        let mut v = Vec::new();
        for name in self.inner.plugins.keys() {
            v.push(self.load(name).await?.info.clone());
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Kill every step process still running (what dropping the last clone
    /// does): for a command that ends the process without tearing down.
    pub fn kill_all(&self) {
        self.inner.caps.processes.kill_all();
    }

    /// Start loading the plugin `name` in the background, if there is one and
    /// it is not loaded yet: `weft run` warms the local process driver while
    /// it submits the workflow, so the first step does not wait for it. A
    /// failure is reported again, by the first call that needs the plugin.
    pub fn warm(&self, name: &str) {
        if self
            .inner
            .plugins
            .get(name)
            .is_none_or(|s| s.loaded.initialized())
        {
            return;
        }
        let (this, name) = (self.clone(), name.to_string());
        tokio::spawn(async move {
            let _ = this.load(&name).await;
        });
    }

    /// The plugin `name`, loaded now if it was not yet; `Ok(None)`: no such plugin.
    async fn plugin(&self, name: &str) -> Result<Option<Arc<Plugin>>, DriverLoadError> {
        if !self.inner.plugins.contains_key(name) {
            return Ok(None);
        }
        self.load(name).await.map(Some)
    }

    async fn load(&self, name: &str) -> Result<Arc<Plugin>, DriverLoadError> {
        let slot = &self.inner.plugins[name];
        slot.loaded
            .get_or_try_init(|| async {
                let spec = slot
                    .spec
                    .as_ref()
                    .expect("an unloaded plugin keeps its spec");
                let limits = Limits {
                    cache_dir: self.inner.cache_dir.clone(),
                    cpu_budget: self.inner.cpu_budget,
                    memory_limit: self.inner.memory_limit,
                };
                load_plugin(&self.inner.engine, &self.inner.caps, &limits, spec)
                    .await
                    .map(Arc::new)
            })
            .await
            .cloned()
    }

    async fn driver(&self, name: &str) -> Result<Arc<Plugin>, DriverError> {
        let p = self
            .plugin(name)
            .await
            .map_err(|e| DriverError::new(e.to_string()))?
            .ok_or_else(|| {
                let mut known: Vec<&str> = self.inner.plugins.keys().map(|s| s.as_str()).collect();
                known.sort();
                DriverError::new(format!(
                    "no driver plugin named '{name}' (loaded: {})",
                    known.join(", ")
                ))
            })?;
        match &p.pre {
            Pre::Driver(_) => Ok(p),
            Pre::Step(_) | Pre::Other => Err(DriverError::new(format!(
                "plugin '{name}' implements {}, not a driver",
                p.info.world
            ))),
        }
    }

    async fn call(&self, req: &StepRequest, op: Op<'_>) -> Result<Option<PollResult>, DriverError> {
        let plugin = self.driver(&req.driver).await?;
        let Pre::Driver(pre) = &plugin.pre else {
            unreachable!("driver() returns drivers only")
        };
        // Held until the store (declared after it, so dropped before it) is gone.
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .map_err(|_| DriverError::new("the drivers are shutting down"))?;
        let step = StepKey {
            workflow_uid: req.workflow_uid.clone(),
            node_id: req.node_id.clone(),
            attempt: req.attempt,
        };
        let mut store = runtime::new_store(
            &self.inner.engine,
            CallInfo {
                plugin: plugin.name.clone(),
                grants: plugin.grants.clone(),
                step: Some(step),
            },
            self.inner.caps.clone(),
            self.inner.cpu_budget,
            self.inner.memory_limit,
        );
        let ctx = StepContext {
            workflow: req.workflow.clone(),
            namespace: req.namespace.clone(),
            workflow_uid: req.workflow_uid.clone(),
            node_id: req.node_id.clone(),
            node_name: req.node_name.clone(),
            attempt: req.attempt,
            template: req.template.to_string(),
            config: plugin.config_json.clone(),
        };
        let span = tracing::info_span!(
            "plugin_call",
            plugin = %plugin.name,
            op = op.name(),
            workflow = %req.workflow,
            node_id = %req.node_id,
            attempt = req.attempt
        );
        let res = run_op(pre, &mut store, &ctx, &op).instrument(span).await;
        match res {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(msg)) => Err(DriverError::new(format!(
                "plugin '{}' {}: {msg}",
                plugin.name,
                op.name()
            ))),
            Err(e) => Err(DriverError::new(describe_failure(
                &plugin.name,
                op.name(),
                &e,
                &store,
                self.inner.cpu_budget,
            ))),
        }
    }
}

enum Op<'a> {
    Start,
    Poll(&'a [u8]),
    Cancel(&'a [u8]),
}

impl Op<'_> {
    fn name(&self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Poll(_) => "poll",
            Op::Cancel(_) => "cancel",
        }
    }
}

/// What every plugin instance is limited to, and where compiled code is cached.
struct Limits {
    cache_dir: PathBuf,
    cpu_budget: Duration,
    memory_limit: usize,
}

/// Compile (or load from the cache), link against its world, and for a
/// driver call `describe()`.
async fn load_plugin(
    engine: &Engine,
    caps: &Arc<Capabilities>,
    limits: &Limits,
    spec: &Spec,
) -> Result<Plugin, DriverLoadError> {
    let Spec {
        name,
        kind,
        bytes,
        compiled,
        source,
        grants,
        config,
    } = spec;
    let t0 = Instant::now();
    let ready = compiled.lock().unwrap_or_else(|p| p.into_inner()).take();
    let (component, sha256, how) = if let Some(c) = ready {
        c
    } else {
        // cloning a borrowed (embedded, 'static) component copies nothing
        let (engine, cache, name, bytes) = (
            engine.clone(),
            limits.cache_dir.clone(),
            name.clone(),
            bytes.clone(),
        );
        tokio::task::spawn_blocking(move || runtime::load_component(&engine, &cache, &name, &bytes))
            .await
            .map_err(|e| DriverLoadError::Engine(e.to_string()))??
    };
    let invalid = |e: wasmtime::Error| DriverLoadError::Invalid {
        name: name.clone(),
        message: format!("does not fit world {}: {e:#}", kind.world()),
    };
    let linker = linker_for(engine, *kind).map_err(invalid)?;
    let inst_pre = linker.instantiate_pre(&component).map_err(invalid)?;
    let mut info = PluginInfo {
        name: name.clone(),
        kind: *kind,
        world: kind.world().to_string(),
        version: "unknown".into(),
        description: String::new(),
        source: source.clone(),
        grants: grants.clone(),
        sha256,
    };
    let pre = match kind {
        PluginKind::Driver => Pre::Driver(DriverPluginPre::new(inst_pre).map_err(invalid)?),
        PluginKind::Step => Pre::Step(Arc::new(
            weft_bindings::step::StepComponentPre::new(inst_pre).map_err(invalid)?,
        )),
        PluginKind::Artifact => {
            weft_bindings::artifact::ArtifactPluginPre::new(inst_pre).map_err(invalid)?;
            Pre::Other
        }
        PluginKind::Executor => {
            weft_bindings::executor::ExecutorPluginPre::new(inst_pre).map_err(invalid)?;
            Pre::Other
        }
    };
    let plugin = Plugin {
        name: name.as_str().into(),
        grants: Arc::new(grants.clone()),
        config_json: config.to_string(),
        info: info.clone(),
        pre,
    };
    if let Pre::Driver(pre) = &plugin.pre {
        let mut store = runtime::new_store(
            engine,
            CallInfo {
                plugin: plugin.name.clone(),
                grants: plugin.grants.clone(),
                step: None,
            },
            caps.clone(),
            limits.cpu_budget,
            limits.memory_limit,
        );
        let meta = async {
            let b = pre.instantiate_async(&mut store).await?;
            b.weft_plugin_driver().call_describe(&mut store).await
        }
        .await
        .map_err(|e| DriverLoadError::Invalid {
            name: name.clone(),
            message: format!("describe() failed: {e:#}"),
        })?;
        info.version = meta.version;
        info.description = meta.description;
    }
    tracing::info!(plugin = %name, kind = ?kind, load = ?how, elapsed_ms = t0.elapsed().as_secs_f64() * 1e3, "plugin loaded");
    Ok(Plugin { info, ..plugin })
}

/// Instantiate fresh and call; outer error = trap, inner = plugin-error message.
async fn run_op(
    pre: &DriverPluginPre<HostState>,
    store: &mut Store<HostState>,
    ctx: &StepContext,
    op: &Op<'_>,
) -> wasmtime::Result<Result<Option<PollResult>, String>> {
    // The CPU budget counts the time spent in this future's polls (cpu.rs).
    let meter = store.data().cpu.clone();
    crate::cpu::metered(meter, async move {
        let b = pre.instantiate_async(&mut *store).await?;
        let d = b.weft_plugin_driver();
        Ok(match op {
            Op::Start => d.call_start(&mut *store, ctx).await?.map(Some),
            Op::Poll(s) => d.call_poll(&mut *store, ctx, s).await?.map(Some),
            Op::Cancel(s) => d.call_cancel(&mut *store, ctx, s).await?.map(|_| None),
        }
        .map_err(|e| e.message))
    })
    .await
}

/// A clear message for a trapped call: which plugin, what happened, its stderr.
pub(crate) fn describe_failure(
    plugin: &str,
    op: &str,
    e: &wasmtime::Error,
    store: &Store<HostState>,
    budget: Duration,
) -> String {
    let full = format!("{e:#}");
    let reason = if full.contains(BUDGET_EXCEEDED) {
        let used = store.data().cpu.used();
        format!(
            "exceeded its CPU budget of {budget:?} per call (used {} ms of CPU; runaway loop?)",
            used.as_millis()
        )
    } else if full.contains("growing memory") || full.contains("memory") && full.contains("limit") {
        format!(
            "ran out of memory (limit {} MiB): {}",
            store.data().limits_mib(),
            first_line(&full)
        )
    } else if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        format!("trapped: {trap}")
    } else {
        first_line(&full).to_string()
    };
    let stderr = store.data().stderr.contents();
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        format!("plugin '{plugin}' failed in {op}: {reason}")
    } else {
        format!("plugin '{plugin}' failed in {op}: {reason}; plugin stderr: {stderr}")
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

impl HostState {
    fn limits_mib(&self) -> usize {
        self.mem_limit >> 20
    }
}

fn to_outcome(o: Outcome) -> StepOutcome {
    StepOutcome {
        phase: match o.phase {
            Phase::Succeeded => OutcomePhase::Succeeded,
            Phase::Failed => OutcomePhase::Failed,
            Phase::Error => OutcomePhase::Error,
        },
        message: o.message,
        exit_code: o.exit_code,
        result: o.result,
        parameters: o.parameters,
        artifacts: o
            .artifacts
            .into_iter()
            .map(|a| serde_json::from_str(&a).unwrap_or(serde_json::Value::String(a)))
            .collect(),
    }
}

fn to_poll(r: PollResult) -> DriverPoll {
    match r {
        PollResult::Pending(w) => DriverPoll::Pending {
            state: w.state,
            wake_after: w.after_ms.map(Duration::from_millis),
            event_key: w.event_key,
        },
        PollResult::Done(o) => DriverPoll::Done(to_outcome(o)),
    }
}

/// A step whose artifacts the drivers layer moves: its plugin runs it in the
/// process sandbox (granted `process`), and its template has artifacts.
struct ArtifactStep {
    step: StepKey,
    inputs: bool,
    outputs: bool,
}

impl Drivers {
    fn artifact_step(&self, req: &StepRequest) -> Option<ArtifactStep> {
        let p = self.inner.plugins.get(&req.driver)?;
        if p.kind != PluginKind::Driver || !p.grants.process {
            return None;
        }
        let inputs = stage::has_inputs(&req.template);
        let outputs = stage::has_outputs(&req.template);
        (inputs || outputs).then(|| ArtifactStep {
            step: StepKey {
                workflow_uid: req.workflow_uid.clone(),
                node_id: req.node_id.clone(),
                attempt: req.attempt,
            },
            inputs,
            outputs,
        })
    }

    /// Place the input artifacts in the step's root (created now, before the
    /// plugin spawns into it).
    async fn place_inputs(&self, req: &StepRequest, step: &StepKey) -> Result<(), String> {
        let procs = self.inner.caps.processes.clone();
        let dir = procs.step_dir(step);
        let repos = self.inner.repos.clone();
        let template = req.template.clone();
        let t0 = Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            let root = dir.join("root");
            procs
                .prepare_root(&dir, &[], "/")
                .map_err(|e| format!("preparing the step root: {e}"))?;
            let scratch = dir.join("artifacts-in");
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
            let r = stage::place_inputs(
                &repos,
                &template,
                &root,
                &scratch,
                Some(&dir.join(layers::DIR)),
            );
            let _ = std::fs::remove_dir_all(&scratch);
            r
        })
        .await
        .map_err(|e| format!("placing input artifacts: {e}"))?;
        tracing::debug!(workflow = %req.workflow, node_id = %req.node_id, ok = r.is_ok(),
            elapsed_ms = t0.elapsed().as_secs_f64() * 1e3, "input artifacts placed");
        r
    }

    /// Save the output artifacts (and `main.log`) of a finished step into the
    /// outcome; a missing non-optional artifact turns a success into `Error`.
    async fn save_outputs(&self, req: &StepRequest, step: &StepKey, out: &mut StepOutcome) {
        let dir = self.inner.caps.processes.step_dir(step);
        let repos = self.inner.repos.clone();
        let template = req.template.clone();
        // the step has exited; its root is deleted after this unless kept
        let disposable = !self.inner.caps.processes.keeps_dirs();
        let t0 = Instant::now();
        let saved = tokio::task::spawn_blocking(move || {
            let (root, log) = (dir.join("root"), dir.join("main.log"));
            stage::save_outputs(&repos, &template, &root, &log, disposable)
        })
        .await
        .unwrap_or_else(|e| stage::Saved {
            artifacts: Vec::new(),
            error: Some(format!("saving output artifacts: {e}")),
        });
        tracing::debug!(workflow = %req.workflow, node_id = %req.node_id,
            saved = saved.artifacts.len(), error = ?saved.error,
            elapsed_ms = t0.elapsed().as_secs_f64() * 1e3, "output artifacts saved");
        out.artifacts.extend(saved.artifacts);
        if let Some(e) = saved.error {
            if out.phase == OutcomePhase::Succeeded {
                out.phase = OutcomePhase::Error;
                out.message = Some(e);
            } else {
                tracing::warn!(workflow = %req.workflow, node_id = %req.node_id, "{e}");
            }
        }
    }

    /// After a start/poll call: save outputs of a finished step, end the hold.
    async fn finish_call(
        &self,
        req: &StepRequest,
        art: Option<ArtifactStep>,
        r: Result<Option<PollResult>, DriverError>,
    ) -> Result<DriverPoll, DriverError> {
        let r = r.map(|r| to_poll(r.expect("start and poll return a poll result")));
        let Some(art) = art else { return r };
        let mut r = r;
        let done = !matches!(r, Ok(DriverPoll::Pending { .. }));
        if art.outputs
            && let Ok(DriverPoll::Done(out)) = &mut r
        {
            self.save_outputs(req, &art.step, out).await;
        }
        if done {
            self.inner.caps.processes.unhold(&art.step);
        }
        r
    }
}

#[async_trait]
impl StepDriver for Drivers {
    async fn start(&self, req: &StepRequest) -> Result<DriverPoll, DriverError> {
        if req.driver == wasm_step::DRIVER {
            return Ok(DriverPoll::Done(self.run_wasm_step(req).await));
        }
        let art = self.artifact_step(req);
        if let Some(a) = &art {
            let procs = &self.inner.caps.processes;
            // a repeated start adopts the running process: its inputs are in place
            let adopting = procs.has_step(&a.step);
            if a.outputs {
                procs.hold(&a.step, stage::log_key(&req.template).is_some());
            }
            if a.inputs
                && !adopting
                && let Err(msg) = self.place_inputs(req, &a.step).await
            {
                procs.unhold(&a.step);
                return Ok(DriverPoll::Done(StepOutcome::error(msg)));
            }
        }
        let r = self.call(req, Op::Start).await;
        self.finish_call(req, art, r).await
    }

    async fn poll(&self, req: &StepRequest, state: &[u8]) -> Result<DriverPoll, DriverError> {
        if req.driver == wasm_step::DRIVER {
            // a Wasm step finishes inside `start`; nothing is pending
            return Ok(DriverPoll::Done(self.run_wasm_step(req).await));
        }
        let art = self.artifact_step(req);
        let r = self.call(req, Op::Poll(state)).await;
        self.finish_call(req, art, r).await
    }

    async fn cancel(&self, req: &StepRequest, state: &[u8]) -> Result<(), DriverError> {
        if req.driver == wasm_step::DRIVER {
            return Ok(());
        }
        let r = self.call(req, Op::Cancel(state)).await.map(|_| ());
        if let Some(a) = self.artifact_step(req) {
            self.inner.caps.processes.unhold(&a.step);
        }
        r
    }
}
