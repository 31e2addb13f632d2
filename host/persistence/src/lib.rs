//! weft's persistence layer: workflow and node rows, step logs, stored
//! templates, the memoization cache and mutex/semaphore slots, in SQLite (one
//! file, for a laptop) or PostgreSQL (production, several engine replicas).
//!
//! # What it owns and what it may depend on
//!
//! This crate owns the database schema (`migrations/`) and every SQL statement
//! weft runs. It implements two ports of the engine — [`StateStore`] and
//! [`LogSink`] from `weft_engine::runtime` — and depends on nothing else of
//! weft: no drivers, no interaction layer. The engine never names SQLite or
//! PostgreSQL; it gets an `Arc<dyn StateStore>`.
//!
//! # Durability, in plain words
//!
//! When [`StateStore::commit`] returns `Ok`, the whole batch is stored; when it
//! returns `Err`, none of it is (one transaction per batch). What "stored"
//! survives depends on [`Durability`]:
//!
//! - [`Durability::Process`] (default): the weft process may be killed
//!   (`kill -9`, OOM, panic) right after a commit and nothing is lost. A power
//!   cut or kernel crash may lose the last commits on SQLite (WAL with
//!   `synchronous=NORMAL`: the WAL is not fsync'd at each commit), never corrupt
//!   the file. On PostgreSQL the server's own `synchronous_commit` applies.
//! - [`Durability::Power`]: also survives power loss. SQLite fsyncs the WAL at
//!   every commit (`synchronous=FULL`), PostgreSQL sessions force
//!   `synchronous_commit=on`. Costs one disk flush per commit (~5 ms here), so
//!   the engine should commit in groups.
//!
//! Log lines go through a bounded in-memory buffer and are appended every
//! ~20 ms or 500 lines; lines still buffered when the process dies are lost,
//! and a full buffer drops lines rather than stall a step. Call
//! [`Store::flush_logs`] (or [`Store::close`]) before a clean shutdown.
//!
//! # One code path for two databases
//!
//! Two migration folders (`migrations/sqlite`, `migrations/postgres`) hold
//! equivalent schemas: the dialects differ in column types (`INTEGER` vs
//! `BIGINT`, `TEXT` vs `json`/`jsonb`, rowid vs identity). The Rust side is one
//! code path: a small enum over `Pool<Sqlite>`/`Pool<Postgres>` and macros that
//! compile each query body once per backend, with `$1` placeholders both
//! dialects accept (generated multi-row INSERTs use `?` on SQLite, where sqlx
//! binds `$N` parameters in quadratic time). The few dialect differences are
//! flagged in `queries.rs`. We do not use `sqlx::Any`: it has no JSON type,
//! converts every row through its own value type, and cannot bind PostgreSQL
//! `json`. Writes of many rows use multi-row upserts of up to 512 rows inside
//! the one transaction, so a 100,000-node workflow commits in about a second.
//!
//! SQLite runs in WAL mode with one writer connection (every write transaction
//! is `BEGIN IMMEDIATE`) and a pool of read-only connections, a 10 s busy
//! timeout and foreign keys on (node rows reference their workflow).
//! On PostgreSQL a non-default schema is chosen in the URL:
//! `postgres://host/db?options=-c%20search_path%3Dweft`; mutex/semaphore
//! acquisition is serialised per lock name with `pg_advisory_xact_lock`, so it
//! stays atomic across engine replicas.
//!
//! # Tests and figures
//!
//! `tests/all` runs every case on SQLite and on PostgreSQL
//! (`WEFT_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`, one
//! schema per test). Without a reachable server the PostgreSQL cases are
//! skipped with a notice, unless `CI=true`, where they fail. Throughput:
//! `cargo test -p weft-store --release --test all bench -- --ignored --nocapture`.

mod db;
mod error;
mod logs;
mod options;
mod queries;
pub mod scratch;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tracing::instrument;
use weft_engine::runtime::{
    CommitBatch, LogLine, LogSink, MemoEntry, NodeRecord, StateStore, StoreError, TemplateRecord,
    WorkflowFilter, WorkflowRecord,
};

pub use error::Error;
pub use options::{Durability, StoreOptions};

use db::Db;
use logs::{ChannelSink, LogMsg};

/// A handle on the database. Cheap to clone; all clones share the pools and
/// the log writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    logs: mpsc::Sender<LogMsg>,
    sink: Arc<ChannelSink>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connect (creating the SQLite file and its directories if needed), apply
    /// pending migrations, and start the log writer task. Must be called from
    /// within a tokio runtime; the writer task lives on it until every clone of
    /// the store and every sink is dropped.
    #[instrument(skip_all, fields(durability = ?opts.durability))]
    pub async fn open(opts: &StoreOptions) -> Result<Store, StoreError> {
        let db = Db::open(opts).await?;
        let (logs, sink) = logs::spawn_writer(db.clone());
        tracing::debug!(backend = db.backend(), "store opened");
        Ok(Store {
            inner: Arc::new(Inner { db, logs, sink }),
        })
    }

    /// [`Store::open`] on a SQLite file with default options.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Store::open(&StoreOptions::sqlite(path)).await
    }

    /// The sink drivers append log lines to. `append` never blocks: lines are
    /// buffered (bounded) and written in groups by a background task.
    pub fn log_sink(&self) -> Arc<dyn LogSink> {
        self.inner.sink.clone()
    }

    /// Wait until every line appended before this call is written.
    pub async fn flush_logs(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.logs.send(LogMsg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Log lines dropped because the buffer was full since the store opened.
    pub fn dropped_log_lines(&self) -> u64 {
        self.inner.sink.dropped()
    }

    /// Flush logs and close the connections. Other clones become unusable.
    pub async fn close(&self) {
        self.flush_logs().await;
        self.inner.db.close().await;
    }

    /// `"sqlite"` or `"postgres"`.
    /// Who holds the lease of an unfinished workflow (None: nobody, or it is finished).
    /// With one machine's SQLite, owners are processes proven alive by a lock
    /// file (see the interaction layer's `app.rs`), and leases never expire.
    #[instrument(skip(self), err)]
    pub async fn lease_owner(&self, uid: &str) -> Result<Option<String>, StoreError> {
        Ok(self.inner.db.lease_owner(uid).await?)
    }

    /// Move a lease from an owner known to be gone to `to`; false if another
    /// process moved it first.
    #[instrument(skip(self), err)]
    pub async fn transfer_lease(
        &self,
        uid: &str,
        from: &str,
        to: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .db
            .transfer_lease(uid, from, to, until_ms)
            .await?)
    }

    pub fn backend(&self) -> &'static str {
        self.inner.db.backend()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[async_trait]
impl StateStore for Store {
    #[instrument(skip_all, err(level = "debug"), fields(uid = %wf.uid, namespace = %wf.namespace, name = %wf.name))]
    async fn create_workflow(&self, wf: &WorkflowRecord) -> Result<(), StoreError> {
        Ok(self.inner.db.create_workflow(wf, None).await?)
    }

    #[instrument(skip_all, err(level = "debug"), fields(uid = %wf.uid, namespace = %wf.namespace, name = %wf.name, owner))]
    async fn create_workflow_leased(
        &self,
        wf: &WorkflowRecord,
        owner: &str,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        Ok(self
            .inner
            .db
            .create_workflow(wf, Some((owner, until_ms)))
            .await?)
    }

    #[instrument(skip_all, err, fields(
        uid = batch.workflows.first().map(|w| w.uid.as_str()).or(batch.nodes.first().map(|n| n.0.as_str())),
        workflows = batch.workflows.len(),
        nodes = batch.nodes.len(),
    ))]
    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        Ok(self.inner.db.commit(&batch).await?)
    }

    #[instrument(skip(self), err, fields(uid))]
    async fn load_workflow(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(WorkflowRecord, Vec<NodeRecord>)>, StoreError> {
        let found = self.inner.db.load_workflow(namespace, name).await?;
        if let Some((wf, nodes)) = &found {
            tracing::Span::current().record("uid", wf.uid.as_str());
            tracing::trace!(nodes = nodes.len(), "loaded");
        }
        Ok(found)
    }

    #[instrument(skip(self), err(level = "debug"))]
    async fn get_workflow(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<WorkflowRecord>, StoreError> {
        Ok(self.inner.db.get_workflow(namespace, name).await?)
    }

    #[instrument(skip_all, err, fields(namespace = ?filter.namespace, phases = ?filter.phases, labels = ?filter.labels, limit = ?filter.limit))]
    async fn list_workflows(
        &self,
        filter: &WorkflowFilter,
    ) -> Result<Vec<WorkflowRecord>, StoreError> {
        Ok(self.inner.db.list_workflows(filter).await?)
    }

    #[instrument(skip(self), err(level = "debug"), fields(uid))]
    async fn delete_workflow(&self, namespace: &str, name: &str) -> Result<(), StoreError> {
        let uid = self.inner.db.delete_workflow(namespace, name).await?;
        tracing::Span::current().record("uid", uid.as_str());
        Ok(())
    }

    #[instrument(skip_all, err, fields(kind = %t.kind, namespace = %t.namespace, name = %t.name))]
    async fn put_template(&self, t: &TemplateRecord) -> Result<(), StoreError> {
        Ok(self.inner.db.put_template(t).await?)
    }

    #[instrument(skip(self), err)]
    async fn get_template(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        Ok(self.inner.db.get_template(kind, namespace, name).await?)
    }

    #[instrument(skip(self), err)]
    async fn list_templates(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<TemplateRecord>, StoreError> {
        Ok(self.inner.db.list_templates(kind, namespace).await?)
    }

    #[instrument(skip(self), err(level = "debug"))]
    async fn delete_template(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        Ok(self.inner.db.delete_template(kind, namespace, name).await?)
    }

    #[instrument(skip(self), err)]
    async fn memo_get(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
    ) -> Result<Option<MemoEntry>, StoreError> {
        Ok(self.inner.db.memo_get(namespace, cache, key).await?)
    }

    #[instrument(skip(self, entry), err)]
    async fn memo_put(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
        entry: &MemoEntry,
    ) -> Result<(), StoreError> {
        Ok(self.inner.db.memo_put(namespace, cache, key, entry).await?)
    }

    #[instrument(skip(self), err)]
    async fn acquire_lease(
        &self,
        uid: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .db
            .acquire_lease(uid, owner, now_ms, until_ms)
            .await?)
    }

    #[instrument(skip(self), err)]
    async fn renew_leases(&self, owner: &str, until_ms: i64) -> Result<Vec<String>, StoreError> {
        Ok(self.inner.db.renew_leases(owner, until_ms).await?)
    }

    #[instrument(skip(self), err)]
    async fn claimable(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(self.inner.db.claimable(now_ms, limit).await?)
    }

    #[instrument(skip(self), err)]
    async fn release_lease(&self, uid: &str, owner: &str) -> Result<(), StoreError> {
        Ok(self.inner.db.release_lease(uid, owner).await?)
    }

    #[instrument(skip(self), err)]
    async fn try_acquire(&self, lock: &str, holder: &str, limit: u32) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .db
            .try_acquire(lock, holder, limit, now_ms())
            .await?)
    }

    #[instrument(skip(self), err)]
    async fn release(&self, lock: &str, holder: &str) -> Result<(), StoreError> {
        Ok(self.inner.db.release(lock, holder).await?)
    }

    #[instrument(skip(self), err, fields(uid = %workflow_uid))]
    async fn logs(
        &self,
        workflow_uid: &str,
        node_id: Option<&str>,
    ) -> Result<Vec<LogLine>, StoreError> {
        Ok(self.inner.db.logs(workflow_uid, node_id).await?)
    }

    #[instrument(skip(self), err, fields(uid = %workflow_uid))]
    async fn logs_after(
        &self,
        workflow_uid: &str,
        node_id: Option<&str>,
        after: i64,
    ) -> Result<Vec<(i64, LogLine)>, StoreError> {
        Ok(self
            .inner
            .db
            .logs_after(workflow_uid, node_id, after)
            .await?)
    }

    #[instrument(skip_all, err, fields(uid = lines.first().map(|l| l.workflow_uid.as_str()), lines = lines.len()))]
    async fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError> {
        Ok(self.inner.db.append_logs(lines).await?)
    }
}
