//! Wiring: open the store, load the drivers, start the engine.
//!
//! On one machine several `weft` processes may share the embedded store (two
//! terminals running workflows). Each workflow is owned by the process that
//! holds its lock file (`<home>/locks/<uid>.lock`, an `flock` the kernel drops
//! when the process dies). A process that finds a workflow's lock free after a
//! crash adopts it; one that finds it held sends a control request through the
//! store instead, which the owner applies.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use weft_drivers::{DriverOptions, Drivers};
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
    locks: Arc<Mutex<HashMap<String, File>>>,
    lock_dir: PathBuf,
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
        let (notifier, notify_rx) = Engine::notifier();
        let mut dopts = DriverOptions::new(
            self.config.cache_dir.clone(),
            self.config.home.join("steps"),
        );
        dopts.plugins = self.config.plugins.clone();
        dopts.cpu_budget = Duration::from_millis(self.config.drivers.cpu_budget_ms);
        dopts.memory_limit_bytes = self.config.drivers.memory_limit_mb << 20;
        dopts.keep_step_dirs = self.config.drivers.keep_step_dirs;
        dopts.artifact_repository = self.config.artifact_repository.clone();
        dopts.artifact_repositories = self.config.artifact_repositories.clone();
        let drivers = Drivers::new(dopts, self.store.log_sink(), notifier)
            .await
            .context("loading plugins")?;
        // PostgreSQL may be shared by engines on several machines, where lock
        // files mean nothing: ownership is a lease in the store. SQLite is one
        // machine's: ownership is a lock file the kernel drops when we die.
        let replica = self
            .config
            .store_url
            .starts_with("postgres")
            .then(|| ReplicaOptions {
                id: replica_id(),
                lease: self.config.lease,
            });
        let opts = EngineOptions {
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
        let lock_dir = self.config.home.join("locks");
        std::fs::create_dir_all(&lock_dir)?;
        let running = Running {
            engine,
            drivers,
            locks: Arc::default(),
            lock_dir,
            replica,
            store: self.store.clone(),
            gc,
        };
        running.spawn_control_poller(self.store.clone());
        Ok(running)
    }
}

impl Running {
    /// This replica's id in lease mode (PostgreSQL), None with lock files.
    pub fn replica_id(&self) -> Option<&str> {
        self.replica.as_ref().map(|r| r.id.as_str())
    }

    /// Take ownership of a workflow: its lease (PostgreSQL) or its lock file
    /// (SQLite). False if another live process owns it.
    pub async fn own(&self, uid: &str) -> Result<bool> {
        if let Some(r) = &self.replica {
            let now = now_ms();
            let until = now + i64::try_from(r.lease.as_millis()).unwrap_or(i64::MAX);
            return Ok(self.store.acquire_lease(uid, &r.id, now, until).await?);
        }
        let path = self.lock_dir.join(format!("{uid}.lock"));
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Ok(false);
        }
        self.locks
            .lock()
            .expect("lock map")
            .insert(uid.to_string(), f);
        Ok(true)
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
        let locks = self.locks.clone();
        let leased = self.replica.is_some();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Ok(reqs) = store.list_templates(CONTROL_KIND, None).await else {
                    continue;
                };
                for r in reqs {
                    let uid = r
                        .body
                        .get("uid")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let name = r
                        .body
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let mine = if leased {
                        engine.live_status(&r.namespace, name).await.is_some()
                    } else {
                        locks.lock().expect("lock map").contains_key(&uid)
                    };
                    if !mine {
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
