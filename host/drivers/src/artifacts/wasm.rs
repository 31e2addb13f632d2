//! A [`Repository`] implemented by an artifact plugin: a Wasm component of the
//! world `artifact-plugin` exporting `weft:plugin/artifact-store`.
//!
//! ```toml
//! [artifacts.default]                    # or [artifacts.repositories.NAME]
//! plugin = "vault"
//!
//! [artifacts.repositories.vault-bytes]   # where the plugin's bytes go
//! local = { path = "/var/lib/weft/vault" }
//!
//! [[plugins]]
//! name = "vault"
//! path = "plugins/vault.wasm"
//! kind = "artifact"
//! [plugins.grants]
//! object_store = { bucket = "vault-bytes", prefix = "weft" }
//! ```
//!
//! The blocking trait maps onto the plugin's calls, each a fresh instance in
//! a fresh store with the plugin's CPU budget and memory cap (as every plugin
//! call), driven with `Handle::block_on` on the runtime the repository was
//! built on (the trait runs on `spawn_blocking` threads, as
//! [`ObjectStoreRepository`](crate::artifacts::ObjectStoreRepository) does):
//! - `create` → `begin-put`; writes are buffered into parts of [`PART`]
//!   bytes → `put-part` (numbered from 1; at least one part, the last may be
//!   short or empty); `commit` → `finish-put` with the parts' tags; a writer
//!   dropped uncommitted → `abort-put` (in the background);
//! - `open` → `get-range(key, 0, 0)` to learn whether the object exists, then
//!   a [`Read`] pulling `get-range` chunks of at most [`PART`] bytes;
//! - `list` → `list-objects`; `delete` → `delete`.
//!
//! **Not found.** The WIT `get-range` has no "no such object" case, so a
//! plugin signals it with a `plugin-error` whose message starts with
//! [`NOT_FOUND`] (`weft-sdk` does this when `get_range` returns `Ok(None)`).
//!
//! **Bytes through the host.** A plugin granted `object_store` gets one
//! [`Session`] per transfer (one writer, one reader, one listing): every call
//! of that transfer sees the same uploads and open readers, so the plugin's
//! `begin-upload` id survives from `begin-put` to `finish-put`, and reads of a
//! backing object stream. The grant's `bucket` names a configured repository
//! that is not itself a plugin, `prefix` scopes the plugin's keys in it
//! ([`crate::host::object_store`]).
//!
//! Plugin errors and traps become [`ArtifactError::Store`] naming the
//! repository and the plugin. Repository calls serve no step, so the
//! `step-context` carries only the plugin's `config` (the other fields are
//! empty).
//!
//! The plugin is compiled (or loaded from the component cache) at its first
//! use, in an engine shared by every plugin-backed repository of the process
//! (on-demand allocation, epoch interruption for the CPU budget).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tracing::Instrument;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store};
use weft_bindings::artifact::ArtifactPluginPre;
use weft_bindings::artifact::exports::weft::plugin::artifact_store::{Chunk, ObjectInfo};
use weft_bindings::driver::weft::plugin::types::StepContext;
use weft_engine::runtime::{EventNotifier, LogLine, LogSink};

use crate::artifacts::{ArtifactError, Key, ObjectWriter, Repository};
use crate::config::{Grants, PluginConfig, PluginKind};
use crate::host::object_store::{Session, Target};
use crate::host::{self, Capabilities};
use crate::runtime::{self, CallInfo, HostState, TICK};

/// Bytes per `put-part` and per `get-range`.
pub const PART: usize = 4 << 20;
/// The prefix of a `get-range` plugin error meaning "no object at this key".
pub const NOT_FOUND: &str = "not-found:";

/// Where a plugin-backed repository is: the plugin and the limits of its calls.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRepositoryOptions {
    /// The repository's name in weft.toml (`default` or NAME), for messages.
    pub repository: String,
    /// The `[[plugins]]` entry (`kind = "artifact"`, with a `path`).
    pub plugin: PluginConfig,
    /// Compiled components are cached here.
    pub cache_dir: PathBuf,
    /// CPU time per plugin call.
    pub cpu_budget: Duration,
    /// Linear-memory cap of a plugin instance.
    pub memory_limit_bytes: usize,
}

// `Grants` and `serde_json::Value` compare as equivalences; `Grants` only
// does not derive `Eq`.
impl Eq for PluginRepositoryOptions {}

/// The engine (and capability backends) every plugin-backed repository of the
/// process shares.
struct Shared {
    engine: Engine,
    caps: Arc<Capabilities>,
}

struct Discard;

impl LogSink for Discard {
    fn append(&self, _: LogLine) {}
}

impl EventNotifier for Discard {
    fn notify(&self, _: &str) {}
}

fn shared() -> Result<&'static Shared, String> {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let mut cfg = wasmtime::Config::new();
            cfg.epoch_interruption(true);
            let engine = Engine::new(&cfg).map_err(|e| format!("the Wasm engine: {e:#}"))?;
            // Lives as long as the process, like the engine it ticks.
            let e2 = engine.clone();
            std::thread::Builder::new()
                .name("weft-artifact-epoch".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(TICK);
                        e2.increment_epoch();
                    }
                })
                .map_err(|e| format!("the epoch thread: {e}"))?;
            // The artifact-plugin world imports no `process`; the manager only
            // fills the slot (as in `floor.rs`).
            let discard = Arc::new(Discard);
            let caps = Arc::new(Capabilities {
                processes: Arc::new(crate::sandbox::ProcessManager::new(
                    std::env::temp_dir().join("weft-artifact-plugins-unused"),
                    false,
                    discard.clone(),
                    discard.clone(),
                )),
                logs: discard.clone(),
                notifier: discard,
            });
            Ok(Shared { engine, caps })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// An artifact repository whose backend is an artifact plugin.
pub struct WasmRepository {
    inner: Arc<Inner>,
}

struct Inner {
    repository: String,
    plugin: Arc<str>,
    path: PathBuf,
    grants: Arc<Grants>,
    config_json: String,
    cache_dir: PathBuf,
    cpu_budget: Duration,
    memory_limit: usize,
    /// The object-store grant's backend, if the plugin has one.
    target: Option<Arc<Target>>,
    handle: Handle,
    described: String,
    /// Loaded at first use.
    pre: Mutex<Option<ArtifactPluginPre<HostState>>>,
}

impl std::fmt::Debug for WasmRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.inner.described)
    }
}

/// One call of the `artifact-store` interface.
enum Op<'a> {
    BeginPut,
    PutPart {
        upload: &'a [u8],
        n: u32,
        data: &'a [u8],
    },
    FinishPut {
        upload: &'a [u8],
        parts: &'a [String],
    },
    AbortPut {
        upload: &'a [u8],
    },
    GetRange {
        offset: u64,
        max_len: u32,
    },
    List,
    Delete,
}

impl Op<'_> {
    fn name(&self) -> &'static str {
        match self {
            Op::BeginPut => "begin-put",
            Op::PutPart { .. } => "put-part",
            Op::FinishPut { .. } => "finish-put",
            Op::AbortPut { .. } => "abort-put",
            Op::GetRange { .. } => "get-range",
            Op::List => "list-objects",
            Op::Delete => "delete",
        }
    }
}

enum Reply {
    Bytes(Vec<u8>),
    Text(String),
    Unit,
    Chunk(Chunk),
    Objects(Vec<ObjectInfo>),
}

/// Instantiate fresh and call; outer error = trap, inner = the plugin's error message.
async fn run_op(
    pre: &ArtifactPluginPre<HostState>,
    store: &mut Store<HostState>,
    ctx: &StepContext,
    key: &str,
    op: &Op<'_>,
) -> wasmtime::Result<Result<Reply, String>> {
    let meter = store.data().cpu.clone();
    crate::cpu::metered(meter, async move {
        let b = pre.instantiate_async(&mut *store).await?;
        let a = b.weft_plugin_artifact_store();
        let s = &mut *store;
        Ok(match op {
            Op::BeginPut => a.call_begin_put(s, ctx, key).await?.map(Reply::Bytes),
            Op::PutPart { upload, n, data } => a
                .call_put_part(s, ctx, key, upload, *n, data)
                .await?
                .map(Reply::Text),
            Op::FinishPut { upload, parts } => a
                .call_finish_put(s, ctx, key, upload, parts)
                .await?
                .map(Reply::Text),
            Op::AbortPut { upload } => a
                .call_abort_put(s, ctx, key, upload)
                .await?
                .map(|()| Reply::Unit),
            Op::GetRange { offset, max_len } => a
                .call_get_range(s, ctx, key, *offset, *max_len)
                .await?
                .map(Reply::Chunk),
            Op::List => a.call_list_objects(s, ctx, key).await?.map(Reply::Objects),
            Op::Delete => a.call_delete(s, ctx, key).await?.map(|()| Reply::Unit),
        }
        .map_err(|e| e.message))
    })
    .await
}

impl WasmRepository {
    /// The repository `opts` describe; `target` is what the plugin's
    /// object-store grant resolved to (none: no grant). Plugin calls run on
    /// `handle`. The component is loaded at first use.
    pub fn new(
        opts: &PluginRepositoryOptions,
        target: Option<Arc<Target>>,
        handle: Handle,
    ) -> Result<WasmRepository, ArtifactError> {
        let p = &opts.plugin;
        let described = format!(
            "repository '{}' (artifact plugin '{}')",
            opts.repository, p.name
        );
        if p.kind != PluginKind::Artifact {
            return Err(ArtifactError::Unsupported(format!(
                "{described}: plugin '{}' is of kind {:?}, not \"artifact\"",
                p.name,
                p.kind.world()
            )));
        }
        let Some(path) = &p.path else {
            return Err(ArtifactError::Unsupported(format!(
                "{described}: plugin '{}' has no `path` (no artifact plugin is embedded)",
                p.name
            )));
        };
        if p.grants.object_store.is_some() != target.is_some() {
            return Err(ArtifactError::Unsupported(format!(
                "{described}: the object-store grant was not resolved to a repository"
            )));
        }
        Ok(WasmRepository {
            inner: Arc::new(Inner {
                repository: opts.repository.clone(),
                plugin: p.name.as_str().into(),
                path: path.clone(),
                grants: Arc::new(p.grants.clone()),
                config_json: p.config.to_string(),
                cache_dir: opts.cache_dir.clone(),
                cpu_budget: opts.cpu_budget,
                memory_limit: opts.memory_limit_bytes,
                target,
                handle,
                described,
                pre: Mutex::new(None),
            }),
        })
    }

    /// The object-store grant's target (for tests and diagnostics).
    pub fn target(&self) -> Option<&Target> {
        self.inner.target.as_deref()
    }
}

impl Inner {
    fn err(&self, doing: String, message: impl std::fmt::Display) -> ArtifactError {
        ArtifactError::Store {
            repo: self.described.clone(),
            message: format!("{}: {doing}: {message}", self.described),
        }
    }

    /// The component, compiled or loaded from the cache at first use.
    fn pre(&self) -> Result<ArtifactPluginPre<HostState>, ArtifactError> {
        let mut slot = self.pre.lock().expect("not poisoned");
        if let Some(p) = &*slot {
            return Ok(p.clone());
        }
        let load = |m: String| self.err(format!("loading {}", self.path.display()), m);
        let sh = shared().map_err(load)?;
        let t0 = Instant::now();
        let bytes = std::fs::read(&self.path).map_err(|e| load(e.to_string()))?;
        let (component, _, how) =
            runtime::load_component(&sh.engine, &self.cache_dir, &self.plugin, &bytes)
                .map_err(|e| load(e.to_string()))?;
        let world = |e: wasmtime::Error| {
            load(format!(
                "does not fit world {}: {e:#}",
                PluginKind::Artifact.world()
            ))
        };
        let mut linker = Linker::new(&sh.engine);
        host::add_artifact_world(&mut linker).map_err(world)?;
        let pre = ArtifactPluginPre::new(linker.instantiate_pre(&component).map_err(world)?)
            .map_err(world)?;
        tracing::info!(plugin = %self.plugin, repository = %self.repository, load = ?how,
            elapsed_ms = t0.elapsed().as_secs_f64() * 1e3, "artifact plugin loaded");
        *slot = Some(pre.clone());
        Ok(pre)
    }

    /// A session for one transfer, if the plugin has an object-store grant.
    fn session(&self) -> Option<Arc<Session>> {
        self.target.clone().map(Session::new)
    }

    /// One plugin call for `key` (blocking). `Ok(Err(msg))`: the plugin's
    /// own error, for the caller to interpret (not-found); traps and
    /// loading failures are `Err`.
    fn call(
        &self,
        session: Option<&Arc<Session>>,
        key: &str,
        op: Op<'_>,
    ) -> Result<Result<Reply, String>, ArtifactError> {
        let pre = self.pre()?;
        let sh = shared().map_err(|m| self.err("starting".into(), m))?;
        let mut store = runtime::new_store(
            &sh.engine,
            CallInfo {
                plugin: self.plugin.clone(),
                grants: self.grants.clone(),
                step: None,
            },
            sh.caps.clone(),
            self.cpu_budget,
            self.memory_limit,
        );
        store.data_mut().object_store = session.cloned();
        let ctx = StepContext {
            workflow: String::new(),
            namespace: String::new(),
            workflow_uid: String::new(),
            node_id: String::new(),
            node_name: String::new(),
            attempt: 0,
            template: "null".into(),
            config: self.config_json.clone(),
        };
        let name = op.name();
        let span = tracing::debug_span!("artifact_plugin_call", plugin = %self.plugin,
            repository = %self.repository, op = name, key);
        let r = self
            .handle
            .block_on(run_op(&pre, &mut store, &ctx, key, &op).instrument(span));
        r.map_err(|e| {
            let m =
                crate::drivers::describe_failure(&self.plugin, name, &e, &store, self.cpu_budget);
            self.err(format!("{name} '{key}'"), m)
        })
    }

    /// [`Inner::call`] where every plugin error is a failure.
    fn must(
        &self,
        session: Option<&Arc<Session>>,
        key: &str,
        op: Op<'_>,
    ) -> Result<Reply, ArtifactError> {
        let name = op.name();
        self.call(session, key, op)?.map_err(|m| {
            self.err(
                format!("{name} '{key}'"),
                format!("plugin '{}': {m}", self.plugin),
            )
        })
    }
}

fn unexpected(inner: &Inner, op: &str) -> ArtifactError {
    inner.err(op.into(), "the plugin returned the wrong kind of value")
}

struct WasmWriter {
    inner: Arc<Inner>,
    key: Key,
    session: Option<Arc<Session>>,
    /// `None` once committed or failed.
    upload: Option<Vec<u8>>,
    buf: Vec<u8>,
    tags: Vec<String>,
}

impl WasmWriter {
    fn send_part(&mut self) -> Result<(), ArtifactError> {
        let Some(upload) = &self.upload else {
            return Err(self.inner.err(
                format!("storing '{}'", self.key),
                "the upload already failed or was committed",
            ));
        };
        let n = self.tags.len() as u32 + 1;
        let r = self.inner.must(
            self.session.as_ref(),
            self.key.as_str(),
            Op::PutPart {
                upload,
                n,
                data: &self.buf,
            },
        );
        match r {
            Ok(Reply::Text(tag)) => {
                self.tags.push(tag);
                self.buf.clear();
                Ok(())
            }
            Ok(_) => Err(unexpected(&self.inner, "put-part")),
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// Abandon the upload in the background (drop may run anywhere).
    fn abort(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        let (inner, key, session) = (self.inner.clone(), self.key.clone(), self.session.clone());
        self.inner.handle.spawn_blocking(move || {
            if let Err(e) = inner.must(session.as_ref(), key.as_str(), Op::AbortPut { upload: &upload }) {
                tracing::warn!(plugin = %inner.plugin, repository = %inner.repository, key = %key, "{e}");
            }
        });
    }
}

impl Write for WasmWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() == PART {
            self.send_part().map_err(std::io::Error::other)?;
        }
        let n = data.len().min(PART - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for WasmWriter {
    fn commit(mut self: Box<Self>) -> Result<(), ArtifactError> {
        if !self.buf.is_empty() || self.tags.is_empty() {
            self.send_part()?;
        }
        let Some(upload) = self.upload.take() else {
            return Err(self.inner.err(
                format!("storing '{}'", self.key),
                "the upload already failed",
            ));
        };
        let r = self.inner.must(
            self.session.as_ref(),
            self.key.as_str(),
            Op::FinishPut {
                upload: &upload,
                parts: &self.tags,
            },
        );
        match r {
            Ok(Reply::Text(location)) => {
                tracing::debug!(plugin = %self.inner.plugin, repository = %self.inner.repository,
                    key = %self.key, parts = self.tags.len(), %location, "artifact stored through the plugin");
                Ok(())
            }
            Ok(_) => Err(unexpected(&self.inner, "finish-put")),
            Err(e) => {
                self.upload = Some(upload);
                self.abort();
                Err(e)
            }
        }
    }
}

impl Drop for WasmWriter {
    fn drop(&mut self) {
        self.abort();
    }
}

struct WasmReader {
    inner: Arc<Inner>,
    key: Key,
    session: Option<Arc<Session>>,
    offset: u64,
    cur: Vec<u8>,
    pos: usize,
    eof: bool,
    total: Option<u64>,
}

impl WasmReader {
    /// Take in a chunk the plugin returned at `self.offset`.
    fn accept(&mut self, c: Chunk, probe: bool) -> Result<(), ArtifactError> {
        if c.data.is_empty() && !c.eof && !probe {
            return Err(self.inner.err(
                format!("reading '{}' at byte {}", self.key, self.offset),
                "the plugin returned no bytes before the end of the object",
            ));
        }
        self.offset += c.data.len() as u64;
        self.cur = c.data;
        self.pos = 0;
        self.eof = c.eof;
        if c.total_size.is_some() {
            self.total = c.total_size;
        }
        if self.eof
            && let Some(t) = self.total
            && t != self.offset
        {
            return Err(self.inner.err(
                format!("reading '{}'", self.key),
                format!(
                    "the plugin said the object has {t} bytes but ended it at byte {}",
                    self.offset
                ),
            ));
        }
        Ok(())
    }
}

impl Read for WasmReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.cur.len() {
            if self.eof {
                return Ok(0);
            }
            let r = self.inner.must(
                self.session.as_ref(),
                self.key.as_str(),
                Op::GetRange {
                    offset: self.offset,
                    max_len: PART as u32,
                },
            );
            match r {
                Ok(Reply::Chunk(c)) => self.accept(c, false),
                Ok(_) => Err(unexpected(&self.inner, "get-range")),
                Err(e) => Err(e),
            }
            .map_err(std::io::Error::other)?;
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Repository for WasmRepository {
    fn describe(&self) -> String {
        self.inner.described.clone()
    }

    fn create(&self, key: &Key) -> Result<Box<dyn ObjectWriter>, ArtifactError> {
        let session = self.inner.session();
        let upload = match self
            .inner
            .must(session.as_ref(), key.as_str(), Op::BeginPut)?
        {
            Reply::Bytes(u) => u,
            _ => return Err(unexpected(&self.inner, "begin-put")),
        };
        Ok(Box::new(WasmWriter {
            inner: self.inner.clone(),
            key: key.clone(),
            session,
            upload: Some(upload),
            buf: Vec::with_capacity(PART),
            tags: Vec::new(),
        }))
    }

    fn open(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, ArtifactError> {
        let session = self.inner.session();
        let probe = Op::GetRange {
            offset: 0,
            max_len: 0,
        };
        let chunk = match self.inner.call(session.as_ref(), key.as_str(), probe)? {
            Ok(Reply::Chunk(c)) => c,
            Ok(_) => return Err(unexpected(&self.inner, "get-range")),
            Err(m) if m.starts_with(NOT_FOUND) => return Ok(None),
            Err(m) => {
                return Err(self.inner.err(
                    format!("get-range '{key}'"),
                    format!("plugin '{}': {m}", self.inner.plugin),
                ));
            }
        };
        let mut r = WasmReader {
            inner: self.inner.clone(),
            key: key.clone(),
            session,
            offset: 0,
            cur: Vec::new(),
            pos: 0,
            eof: false,
            total: None,
        };
        r.accept(chunk, true)?;
        Ok(Some(Box::new(r)))
    }

    fn list(&self, prefix: &Key) -> Result<Vec<Key>, ArtifactError> {
        let session = self.inner.session();
        let objects = match self
            .inner
            .must(session.as_ref(), prefix.as_str(), Op::List)?
        {
            Reply::Objects(o) => o,
            _ => return Err(unexpected(&self.inner, "list-objects")),
        };
        let under = format!("{prefix}/");
        let mut keys = Vec::with_capacity(objects.len());
        for o in objects {
            let k = Key::parse(&o.key).map_err(|e| {
                self.inner.err(
                    format!("listing '{prefix}'"),
                    format!("the plugin listed {e}"),
                )
            })?;
            if k.as_str().starts_with(&under) {
                keys.push(k);
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn delete(&self, key: &Key) -> Result<(), ArtifactError> {
        let session = self.inner.session();
        self.inner
            .must(session.as_ref(), key.as_str(), Op::Delete)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::LocalRepository;
    use std::path::Path;

    fn plugin_wasm() -> PathBuf {
        PathBuf::from(env!("WEFT_TEST_PLUGIN_DIR")).join("weft_artifact_checksum_store.wasm")
    }

    fn options(dir: &Path) -> PluginRepositoryOptions {
        PluginRepositoryOptions {
            repository: "test".into(),
            plugin: PluginConfig {
                name: "checksum-store".into(),
                path: Some(plugin_wasm()),
                kind: PluginKind::Artifact,
                grants: Grants {
                    object_store: Some(crate::config::ObjectStoreGrant {
                        bucket: "bytes".into(),
                        prefix: "pfx".into(),
                    }),
                    ..Grants::default()
                },
                config: serde_json::json!({"tenant": "acme"}),
            },
            cache_dir: dir.join("cache"),
            cpu_budget: Duration::from_secs(5),
            memory_limit_bytes: 256 << 20,
        }
    }

    fn repository(opts: &PluginRepositoryOptions, dir: &Path, handle: Handle) -> WasmRepository {
        let local = LocalRepository::new(dir.join("bytes"));
        let target = Target::new("bytes", Arc::new(local.clone()), Some(local), "pfx").unwrap();
        WasmRepository::new(opts, Some(Arc::new(target)), handle).unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn put(r: &dyn Repository, key: &str, data: &[u8]) -> Result<(), ArtifactError> {
        let mut w = r.create(&Key::parse(key).unwrap())?;
        w.write_all(data).map_err(ArtifactError::io("writing"))?;
        w.commit()
    }

    fn get(r: &dyn Repository, key: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(mut rd) = r
            .open(&Key::parse(key).unwrap())
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let mut v = Vec::new();
        rd.read_to_end(&mut v).map_err(|e| e.to_string())?;
        Ok(Some(v))
    }

    #[test]
    fn a_wasm_plugin_holds_the_repository_contract() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let r = repository(&options(dir.path()), dir.path(), rt.handle().clone());
        crate::artifacts::testing::contract(&r);
        assert!(
            r.describe()
                .contains("repository 'test' (artifact plugin 'checksum-store')")
        );
    }

    #[test]
    fn reads_verify_every_part_and_name_the_damage() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let r = repository(&options(dir.path()), dir.path(), rt.handle().clone());
        // 2.5 parts: three put-part calls, three digests in the sidecar
        let data: Vec<u8> = (0..PART * 5 / 2).map(|i| (i % 253) as u8).collect();
        put(&r, "wf/pod/big.bin", &data).unwrap();
        let tenant = dir.path().join("bytes/pfx/acme");
        let object = tenant.join("objects/wf/pod/big.bin");
        let sidecar = tenant.join("sha256/wf/pod/big.bin.sha256");
        assert_eq!(std::fs::read(&object).unwrap(), data);
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
        assert_eq!(s["size"], data.len());
        assert_eq!(s["parts"].as_array().unwrap().len(), 3, "{s}");
        assert_eq!(s["parts"][1]["offset"], PART);
        assert_eq!(get(&r, "wf/pod/big.bin").unwrap().unwrap(), data);
        assert_eq!(get(&r, "wf/pod/nope").unwrap(), None);

        // one flipped byte in part 2: the read fails there, naming it
        let mut bad = data.clone();
        bad[PART + 7] ^= 0xff;
        std::fs::write(&object, &bad).unwrap();
        let e = get(&r, "wf/pod/big.bin").unwrap_err();
        for part in [
            "repository 'test' (artifact plugin 'checksum-store')",
            "object 'wf/pod/big.bin' is corrupted: SHA-256 mismatch in bytes 4194304..8388608 (part 2)",
        ] {
            assert!(e.contains(part), "{e} lacks {part}");
        }
        // appended bytes, and a lost sidecar, are refused too
        let mut longer = data.clone();
        longer.push(0);
        std::fs::write(&object, &longer).unwrap();
        let e = get(&r, "wf/pod/big.bin").unwrap_err();
        assert!(e.contains("longer than the"), "{e}");
        std::fs::remove_file(&sidecar).unwrap();
        let e = get(&r, "wf/pod/big.bin").unwrap_err();
        assert!(
            e.contains("checksum sidecar") && e.contains("missing"),
            "{e}"
        );
        // delete takes object and sidecar
        put(&r, "wf/pod/big.bin", b"x").unwrap();
        r.delete(&Key::parse("wf/pod/big.bin").unwrap()).unwrap();
        assert!(!object.exists() && !sidecar.exists());
    }

    #[test]
    fn an_uncommitted_writer_aborts_and_limits_apply() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let r = repository(&options(dir.path()), dir.path(), rt.handle().clone());
        let mut w = r.create(&Key::parse("gone").unwrap()).unwrap();
        w.write_all(&vec![1u8; PART + 10]).unwrap();
        drop(w);
        // the abort runs in the background; the backing upload's temp file goes with it
        let tmp = dir.path().join("bytes/.tmp");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) > 0 {
            assert!(
                Instant::now() < deadline,
                "the aborted upload's temp file stayed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(get(&r, "gone").unwrap(), None);

        // the plugin's memory cap holds for repository calls as for any plugin call
        let mut small = options(dir.path());
        small.memory_limit_bytes = 2 << 20;
        let r = repository(&small, dir.path(), rt.handle().clone());
        let e = put(&r, "big", &vec![0u8; PART]).unwrap_err().to_string();
        assert!(
            e.contains("plugin 'checksum-store'") && e.contains("out of memory"),
            "{e}"
        );

        // a plugin of the wrong kind, or without a file, is refused up front
        let mut drv = options(dir.path());
        drv.plugin.kind = PluginKind::Driver;
        let e = WasmRepository::new(&drv, None, rt.handle().clone())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'checksum-store'") && e.contains("not \"artifact\""),
            "{e}"
        );
        let mut missing = options(dir.path());
        missing.plugin.path = Some(dir.path().join("nope.wasm"));
        let local = LocalRepository::new(dir.path().join("bytes"));
        let target = Target::new("bytes", Arc::new(local.clone()), Some(local), "").unwrap();
        let r = WasmRepository::new(&missing, Some(Arc::new(target)), rt.handle().clone()).unwrap();
        let e = get(&r, "k").unwrap_err();
        assert!(
            e.contains("nope.wasm") && e.contains("repository 'test'"),
            "{e}"
        );
    }
}
