//! Wiring: open the store, load the drivers, start the engine.
//!
//! On one machine several `weft` processes may share the embedded store (two
//! terminals running workflows). Each process has an owner id and holds an
//! `flock` on its lock file `<home>/locks/<owner>.lock`, which the kernel drops
//! when the process dies. Workflow rows carry their owner (the lease column,
//! never expiring on SQLite): a process stamps what it submits, and adopts an
//! unfinished workflow whose owner's lock is free (a crash) by moving the
//! owner in the row with a compare-and-set. One that finds the owner alive
//! sends a control request through the store instead, which the owner applies.
//! (One lock file per process, not per workflow: creating a file per
//! submission cost more than the rest of the submission.)

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use weft_drivers::{DriverOptions, Drivers, Prepared};
use weft_engine::machine::Event;
use weft_engine::runtime::{Engine, EngineOptions, ReplicaOptions, StateStore, TemplateRecord};
use weft_store::{Durability, Store, StoreOptions};

use crate::config::Config;
use crate::gc::Collector;

/// Store kind under which control requests travel between processes.
pub const CONTROL_KIND: &str = "weft.control";

pub struct App {
    pub config: Config,
    pub store: Store,
    /// Where the engine reports step and driver-call latencies (`weft server`'s /metrics).
    pub engine_metrics: Option<Arc<dyn weft_engine::runtime::EngineMetrics>>,
}

/// A running engine with its drivers.
pub struct Running {
    pub engine: Engine,
    pub drivers: Drivers,
    /// Lock-file mode (SQLite): this process's owner id and its held lock.
    owner: Option<ProcessLock>,
    /// Lease mode: the lock on `<home>/replica.id` while this replica uses that id.
    _replica_lock: Option<File>,
    /// Lease mode (PostgreSQL): several replicas, on any machines, share the
    /// store; a workflow belongs to the replica holding its lease in the store.
    replica: Option<ReplicaOptions>,
    store: Store,
    /// Artifact GC: collects each workflow this engine finishes (`artifactGC`).
    pub gc: Arc<Collector>,
}

/// A replica id unique across machines and restarts: `<host>-<pid>-<random>`.
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "weft".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// The replica id of a lease-mode engine and the lock that makes it ours.
///
/// A replica restarted on the same data directory (a crash, a deploy) takes
/// its previous id again, from `<home>/replica.id`, when it can lock that
/// file — proof that the process that used it is gone. Its leases are then
/// still its own and it resumes its workflows at once instead of waiting for
/// them to expire. Another replica running on the same directory holds the
/// lock; then a fresh id is used.
fn stable_replica_id(home: &Path) -> (String, Option<File>) {
    let path = home.join("replica.id");
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path);
    let Ok(mut file) = file else {
        return (replica_id(), None);
    };
    if !try_flock(&file) {
        return (replica_id(), None);
    }
    use std::io::{Read, Seek, Write};
    let mut old = String::new();
    let _ = file.read_to_string(&mut old);
    let old = old.trim();
    if !old.is_empty() && old.len() < 200 && !old.contains(char::is_whitespace) {
        return (old.to_string(), Some(file));
    }
    let id = replica_id();
    let written = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(id.as_bytes()))
        .and_then(|_| file.sync_all());
    (id, written.ok().map(|_| file))
}

/// This process's claim on the workflows it owns in lock-file mode: an
/// `flock` held on `<dir>/<id>.lock` for the life of the process.
struct ProcessLock {
    id: String,
    dir: PathBuf,
    _file: File,
}

impl ProcessLock {
    /// Create and lock this process's file. It is locked under a temporary
    /// name and renamed into place, so no other process ever sees it unlocked
    /// (and takes it for a dead owner's).
    fn take(dir: &Path) -> Result<ProcessLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let id = format!("proc-{}", replica_id());
        let tmp = dir.join(format!("{id}.tmp"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        if !try_flock(&file) {
            anyhow::bail!("cannot lock {}", tmp.display());
        }
        let path = dir.join(format!("{id}.lock"));
        std::fs::rename(&tmp, &path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ProcessLock {
            id,
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    /// Whether the owner `id` is a live process: its lock file exists and is
    /// locked. (A lock we can take belongs to a process that died.)
    fn alive(&self, id: &str) -> bool {
        if id == self.id {
            return true;
        }
        if id.contains('/') || id.contains("..") {
            return false;
        }
        match File::open(self.dir.join(format!("{id}.lock"))) {
            Ok(f) => !try_flock(&f), // dropping `f` releases a lock we took
            Err(_) => false,
        }
    }

    /// Remove the lock files of dead processes (and the per-workflow lock
    /// files older versions made). Best effort.
    fn sweep(dir: &Path) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "lock") {
                continue;
            }
            if let Ok(f) = File::open(&p)
                && try_flock(&f)
            {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(format!("{}.lock", self.id)));
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: true when we got it.
fn try_flock(f: &File) -> bool {
    // SAFETY: flock on a valid, owned file descriptor.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl App {
    pub async fn open(config: Config) -> Result<App> {
        std::fs::create_dir_all(&config.home)
            .with_context(|| format!("creating {}", config.home.display()))?;
        let mut opts = if config.store_url.starts_with("postgres") {
            StoreOptions::postgres(config.store_url.clone())
        } else {
            StoreOptions {
                url: config.store_url.clone(),
                ..StoreOptions::sqlite(&config.home.join("weft.db"))
            }
        };
        if config.power_durability {
            opts.durability = Durability::Power;
        }
        // artifacts in the local repository are as durable as the rows naming them
        weft_drivers::artifacts::local::sync_by_default(config.power_durability);
        let store = Store::open(&opts)
            .await
            .with_context(|| format!("opening the store at {}", redact(&config.store_url)))?;
        Ok(App {
            config,
            store,
            engine_metrics: None,
        })
    }

    pub fn store_dyn(&self) -> Arc<dyn StateStore> {
        Arc::new(self.store.clone())
    }

    /// Load the drivers and start the engine.
    pub async fn start(&self) -> Result<Running> {
        let prepared = Drivers::prepare(driver_options(&self.config), &[]);
        self.start_prepared(prepared).await
    }

    /// [`App::start`] with drivers whose engine [`Drivers::prepare`] began
    /// making earlier (`weft run`, while the store opened).
    pub async fn start_prepared(&self, prepared: Prepared) -> Result<Running> {
        let (notifier, notify_rx) = Engine::notifier();
        let drivers = Drivers::with_prepared(prepared, self.store.log_sink(), notifier)
            .await
            .context("loading plugins")?;
        // PostgreSQL may be shared by engines on several machines, where lock
        // files mean nothing: ownership is a lease in the store. SQLite is one
        // machine's: ownership is a lock file the kernel drops when we die.
        let (replica, replica_lock) = if self.config.store_url.starts_with("postgres") {
            let (id, lock) = stable_replica_id(&self.config.home);
            tracing::info!(replica = %id, kept_in_home = lock.is_some(), "lease-mode replica");
            let r = ReplicaOptions {
                id,
                lease: self.config.lease,
            };
            (Some(r), lock)
        } else {
            (None, None)
        };
        let owner = match replica {
            Some(_) => None,
            None => Some(ProcessLock::take(&self.config.home.join("locks"))?),
        };
        if owner.is_some() {
            let dir = self.config.home.join("locks");
            tokio::task::spawn_blocking(move || ProcessLock::sweep(&dir));
        }
        let opts = EngineOptions {
            owner: owner.as_ref().map(|o| o.id.clone()),
            semaphore_limits: self.config.semaphores.clone(),
            metrics: self.engine_metrics.clone(),
            replica: replica.clone(),
            artifact_repositories: self.config.artifact_key_formats.clone(),
            ..EngineOptions::default()
        };
        let engine = Engine::start(self.store_dyn(), Arc::new(drivers.clone()), notify_rx, opts);
        let repos = weft_drivers::artifacts::Repositories::from_config(
            &self.config.artifact_repository,
            &self.config.artifact_repositories,
            tokio::runtime::Handle::current(),
        )
        .context("artifact repositories for artifact GC")?;
        let gc = Collector::new(self.store.clone(), Arc::new(repos));
        gc.spawn_listener(&engine);
        let running = Running {
            engine,
            drivers,
            owner,
            _replica_lock: replica_lock,
            replica,
            store: self.store.clone(),
            gc,
        };
        running.spawn_control_poller(self.store.clone());
        Ok(running)
    }
}

/// The drivers layer's options, from the configuration.
pub fn driver_options(config: &Config) -> DriverOptions {
    let mut dopts = DriverOptions::new(config.cache_dir.clone(), config.home.join("steps"));
    dopts.plugins = config.plugins.clone();
    dopts.cpu_budget = Duration::from_millis(config.drivers.cpu_budget_ms);
    dopts.memory_limit_bytes = config.drivers.memory_limit_mb << 20;
    dopts.keep_step_dirs = config.drivers.keep_step_dirs;
    dopts.artifact_repository = config.artifact_repository.clone();
    dopts.artifact_repositories = config.artifact_repositories.clone();
    dopts
}

impl Running {
    /// Take ownership of a workflow: its lease (PostgreSQL), or (SQLite) the
    /// owner in its row when that is us, nobody, or a process that died.
    /// False if another live process owns it.
    pub async fn own(&self, uid: &str) -> Result<bool> {
        let now = now_ms();
        if let Some(r) = &self.replica {
            let until = now + i64::try_from(r.lease.as_millis()).unwrap_or(i64::MAX);
            return Ok(self.store.acquire_lease(uid, &r.id, now, until).await?);
        }
        let me = self.owner.as_ref().expect("lock-file mode has an owner");
        if self.store.acquire_lease(uid, &me.id, now, i64::MAX).await? {
            return Ok(true);
        }
        let Some(holder) = self.store.lease_owner(uid).await? else {
            return Ok(false); // finished meanwhile
        };
        if me.alive(&holder) {
            return Ok(holder == me.id);
        }
        tracing::info!(workflow_uid = %uid, dead_owner = %holder, "adopting a dead process's workflow");
        Ok(self
            .store
            .transfer_lease(uid, &holder, &me.id, i64::MAX)
            .await?)
    }

    /// Artifact GC of a workflow this process finished, awaited (the
    /// listener may be doing it too: collection is serialised and idempotent).
    /// Failures are logged and recorded in the workflow's conditions.
    pub async fn collect_artifacts(&self, ns: &str, name: &str) {
        match self
            .gc
            .collect(ns, name, crate::gc::Trigger::Completion)
            .await
        {
            Ok(r) if !r.failures.is_empty() => {
                tracing::warn!(workflow = %name, failures = %r.message(), "artifact GC failed")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(workflow = %name, error = %e, "artifact GC failed"),
        }
    }

    /// Apply control requests addressed to workflows this process runs.
    fn spawn_control_poller(&self, store: Store) {
        let engine = self.engine.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Ok(reqs) = store.list_templates(CONTROL_KIND, None).await else {
                    continue;
                };
                for r in reqs {
                    let name = r
                        .body
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    // Ours when our engine drives it (it owns what it drives).
                    if engine.live_status(&r.namespace, name).await.is_none() {
                        continue;
                    }
                    if let Some(ev) = control_event(&r.body) {
                        let _ = engine.control(&r.namespace, name, ev).await;
                    }
                    let _ = store
                        .delete_template(CONTROL_KIND, &r.namespace, &r.name)
                        .await;
                }
            }
        });
    }
}

/// The engine event a stored control request stands for.
pub fn control_event(body: &Value) -> Option<Event> {
    let action = body.get("action")?.as_str()?;
    Some(match action {
        "resume" => Event::Resume {
            node: body.get("node").and_then(Value::as_str).map(str::to_string),
            parameters: body
                .get("parameters")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        },
        "stop" => Event::Shutdown {
            terminate: false,
            message: "Stopped by user".into(),
        },
        "terminate" => Event::Shutdown {
            terminate: true,
            message: "Terminated by user".into(),
        },
        _ => return None,
    })
}

/// Queue a control request for the process that owns a workflow.
pub async fn send_control(
    store: &Store,
    namespace: &str,
    name: &str,
    uid: &str,
    body: Value,
) -> Result<()> {
    let mut body = body;
    body["uid"] = json!(uid);
    body["name"] = json!(name);
    let rec = TemplateRecord {
        kind: CONTROL_KIND.into(),
        namespace: namespace.into(),
        name: format!("{uid}-{}", weft_engine::runtime::random_suffix(8)),
        body,
    };
    store.put_template(&rec).await?;
    Ok(())
}

/// A store URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
