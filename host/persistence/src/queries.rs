//! Every statement the store runs, written once for both backends.
//!
//! Each method expands its body once per backend through the macros of
//! [`crate::db`]; the SQL text is shared except for a few small spots where
//! the dialects differ (the lock guard in `try_acquire`, the label predicate in
//! `list_workflows`, the placeholder style of generated multi-row INSERTs).

use std::collections::HashSet;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Row};
use weft_engine::runtime::{
    CommitBatch, LogLine, LogStream, MemoEntry, NodeRecord, TemplateRecord, WorkflowFilter,
    WorkflowRecord,
};

use crate::db::{Db, JsonText, in_read_tx, in_write_tx, on_pool};
use crate::error::{Ctx, Error};

/// Rows per multi-row INSERT. Batches are cut into chunks of 512, 256, …, 1 rows
/// so that only ten distinct statements exist per table and every one of them
/// stays in the prepared-statement cache. 512 × 6 parameters stays far below
/// SQLite's (32,766) and PostgreSQL's (65,535) limits.
const MAX_CHUNK: usize = 512;

/// A workflow's columns, selected `FROM {WORKFLOWS}`.
const WORKFLOW_COLUMNS: &str = "w.uid, w.namespace, w.name, w.phase, w.created_ms, w.started_ms, \
     w.finished_ms, w.message, w.labels, s.workflow, w.status";
/// The workflow rows with their specs (which live in their own table: an
/// UPDATE of a row rewrites all of it, and commits update the status often).
const WORKFLOWS: &str = "workflows w JOIN workflow_specs s ON s.uid = w.uid";

/// One workflow with its spec, by namespace (`$1`) and name (`$2`).
fn workflow_by_name() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!("SELECT {WORKFLOW_COLUMNS} FROM {WORKFLOWS} WHERE w.namespace = $1 AND w.name = $2")
    })
}

#[derive(sqlx::FromRow)]
struct WorkflowRow {
    uid: String,
    namespace: String,
    name: String,
    phase: String,
    created_ms: i64,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
    message: Option<String>,
    labels: Json<Map<String, Value>>,
    workflow: Json<Value>,
    status: Json<Value>,
}

impl From<WorkflowRow> for WorkflowRecord {
    fn from(r: WorkflowRow) -> Self {
        WorkflowRecord {
            uid: r.uid,
            namespace: r.namespace,
            name: r.name,
            phase: r.phase,
            created_ms: r.created_ms,
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            message: r.message,
            labels: r.labels.0,
            workflow: r.workflow.0,
            status: r.status.0,
        }
    }
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    node_id: String,
    phase: String,
    data: Json<Value>,
}

#[derive(sqlx::FromRow)]
struct LogRow {
    workflow_uid: String,
    node_id: String,
    attempt: i64,
    stream: String,
    ts_ms: i64,
    line: String,
}

#[derive(sqlx::FromRow)]
struct LogRowWithId {
    id: i64,
    #[sqlx(flatten)]
    row: LogRow,
}

impl TryFrom<LogRow> for LogLine {
    type Error = Error;

    fn try_from(r: LogRow) -> Result<Self, Error> {
        let stream = match r.stream.as_str() {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            other => {
                return Err(Error::Config(format!(
                    "logs: unknown stream {other:?} in row of node {}",
                    r.node_id
                )));
            }
        };
        Ok(LogLine {
            workflow_uid: r.workflow_uid,
            node_id: r.node_id,
            attempt: u32::try_from(r.attempt).unwrap_or(u32::MAX),
            stream,
            ts_ms: r.ts_ms,
            line: r.line,
        })
    }
}

fn stream_name(s: LogStream) -> &'static str {
    match s {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
    }
}

/// The kinds the engine stores, as `'static` names for [`Error::NotFound`].
fn template_kind(kind: &str) -> &'static str {
    match kind {
        "WorkflowTemplate" => "WorkflowTemplate",
        "ClusterWorkflowTemplate" => "ClusterWorkflowTemplate",
        "CronWorkflow" => "CronWorkflow",
        _ => "template",
    }
}

/// Chunk sizes for `n` rows: as many `MAX_CHUNK`s as fit, then the binary
/// decomposition of the rest (100 → 64, 32, 4).
fn chunk_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= MAX_CHUNK {
            MAX_CHUNK
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        n -= size;
        Some(size)
    })
}

/// `{head} VALUES ($1, …), (…) {tail}` for `rows` rows of `cols` columns.
///
/// SQLite gets anonymous `?` placeholders here: sqlx binds each parameter after
/// asking SQLite for its name, and that lookup walks the list of named
/// parameters, so 2,048 `$N` parameters cost O(n²) (a quarter of a 100-node
/// commit's time in a profile). The statement shape is the same.
fn values_sql(head: &str, cols: usize, rows: usize, tail: &str, numbered: bool) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 7);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    let mut p = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            p += 1;
            if numbered {
                sql.push('$');
                sql.push_str(&p.to_string());
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// Statement texts per chunk size (index: log2 of the size), per backend.
type ChunkCache = [OnceLock<Vec<String>>; 2];

/// The cached statement text for a chunk of `rows` (a power of two ≤ `MAX_CHUNK`).
fn chunk_sql(
    cache: &'static ChunkCache,
    postgres: bool,
    head: &str,
    cols: usize,
    tail: &str,
    rows: usize,
) -> &'static str {
    let all = cache[usize::from(postgres)].get_or_init(|| {
        (0..=MAX_CHUNK.trailing_zeros())
            .map(|bit| values_sql(head, cols, 1 << bit, tail, postgres))
            .collect()
    });
    all[rows.trailing_zeros() as usize].as_str()
}

fn upsert_nodes_sql(postgres: bool, rows: usize) -> &'static str {
    static CACHE: ChunkCache = [OnceLock::new(), OnceLock::new()];
    chunk_sql(
        &CACHE,
        postgres,
        "INSERT INTO nodes (workflow_uid, node_id, phase, data)",
        4,
        "ON CONFLICT (workflow_uid, node_id) DO UPDATE SET phase = excluded.phase, data = excluded.data",
        rows,
    )
}

fn insert_logs_sql(postgres: bool, rows: usize) -> &'static str {
    static CACHE: ChunkCache = [OnceLock::new(), OnceLock::new()];
    chunk_sql(
        &CACHE,
        postgres,
        "INSERT INTO logs (workflow_uid, node_id, attempt, stream, ts_ms, line)",
        6,
        "",
        rows,
    )
}

/// Node rows ready to bind: last write wins within a batch (PostgreSQL refuses
/// an `ON CONFLICT DO UPDATE` that touches one row twice in a statement).
fn encode_nodes(
    nodes: &[(String, NodeRecord)],
) -> Result<Vec<(&str, &str, &str, JsonText)>, Error> {
    let mut seen = HashSet::with_capacity(nodes.len());
    let mut out = Vec::with_capacity(nodes.len());
    for (uid, node) in nodes.iter().rev() {
        if seen.insert((uid.as_str(), node.node_id.as_str())) {
            out.push((
                uid.as_str(),
                node.node_id.as_str(),
                node.phase.as_str(),
                JsonText::of(&node.data, "commit: encoding node data")?,
            ));
        }
    }
    out.reverse();
    Ok(out)
}

/// How a label requirement is checked in SQL, per backend; `None` when it
/// cannot be expressed there (then it is checked in Rust only).
fn label_predicate(postgres: bool, key: &str, first_param: usize) -> Option<(String, String)> {
    let (k, v) = (first_param, first_param + 1);
    if postgres {
        Some((
            format!("labels @> jsonb_build_object(CAST(${k} AS TEXT), CAST(${v} AS TEXT))"),
            key.to_owned(),
        ))
    } else if key.contains(['"', '\\']) {
        None
    } else {
        Some((
            format!("json_extract(labels, ${k}) = ${v}"),
            format!("$.\"{key}\""),
        ))
    }
}

fn labels_match(labels: &Map<String, Value>, required: &[(String, String)]) -> bool {
    required
        .iter()
        .all(|(k, v)| labels.get(k).and_then(Value::as_str) == Some(v.as_str()))
}

impl Db {
    /// Insert a workflow row, leased to `lease.0` until `lease.1` when given.
    pub(crate) async fn create_workflow(
        &self,
        wf: &WorkflowRecord,
        lease: Option<(&str, i64)>,
    ) -> Result<(), Error> {
        const SQL: &str = "INSERT INTO workflows (uid, namespace, name, phase, created_ms, started_ms, \
             finished_ms, message, labels, status, lease_owner, lease_expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        const SPEC: &str = "INSERT INTO workflow_specs (uid, workflow) VALUES ($1, $2)";
        const OP: &str = "create_workflow: insert into workflows";
        let workflow = JsonText::of(&wf.workflow, OP)?;
        let status = JsonText::of(&wf.status, OP)?;
        let res: Result<(), Error> = async {
            in_write_tx!(self, "create_workflow: transaction", |tx| {
                sqlx::query(SQL)
                    .bind(&wf.uid)
                    .bind(&wf.namespace)
                    .bind(&wf.name)
                    .bind(&wf.phase)
                    .bind(wf.created_ms)
                    .bind(wf.started_ms)
                    .bind(wf.finished_ms)
                    .bind(&wf.message)
                    .bind(Json(&wf.labels))
                    .bind(status)
                    .bind(lease.map(|l| l.0))
                    .bind(lease.map(|l| l.1))
                    .execute(&mut *tx)
                    .await
                    .ctx(OP)?;
                sqlx::query(SPEC)
                    .bind(&wf.uid)
                    .bind(workflow)
                    .execute(&mut *tx)
                    .await
                    .ctx("create_workflow: insert into workflow_specs")?;
            });
            Ok(())
        }
        .await;
        match res {
            Err(e) if e.is_unique_violation() => Err(Error::AlreadyExists {
                kind: "workflow",
                namespace: wf.namespace.clone(),
                name: wf.name.clone(),
            }),
            other => other.map(|_| ()),
        }
    }

    pub(crate) async fn commit(&self, batch: &CommitBatch) -> Result<(), Error> {
        // `$8` fences replicas: with an owner, the row must still be leased to it.
        const UPDATE: &str = "UPDATE workflows SET phase = $1, started_ms = $2, finished_ms = $3, \
             message = $4, labels = $5, status = $6 WHERE uid = $7 \
             AND COALESCE($8, lease_owner, '') = COALESCE(lease_owner, '')";
        if batch.is_empty() {
            return Ok(());
        }
        let statuses = batch
            .workflows
            .iter()
            .map(|wf| JsonText::of(&wf.status, "commit: encoding workflow status"))
            .collect::<Result<Vec<_>, _>>()?;
        let nodes = encode_nodes(&batch.nodes)?;
        let postgres = self.is_postgres();
        in_write_tx!(self, "commit: transaction", |tx| {
            for (wf, status) in batch.workflows.iter().zip(statuses) {
                let done = sqlx::query(UPDATE)
                    .bind(&wf.phase)
                    .bind(wf.started_ms)
                    .bind(wf.finished_ms)
                    .bind(&wf.message)
                    .bind(Json(&wf.labels))
                    .bind(status)
                    .bind(&wf.uid)
                    .bind(batch.owner.as_deref())
                    .execute(&mut *tx)
                    .await
                    .ctx("commit: update workflows")?;
                if done.rows_affected() == 0 {
                    if batch.owner.is_some() {
                        return Err(Error::LeaseLost {
                            uid: wf.uid.clone(),
                        });
                    }
                    return Err(Error::not_found("workflow", &wf.namespace, &wf.name));
                }
            }
            let mut rest = nodes.as_slice();
            for size in chunk_sizes(rest.len()) {
                let (chunk, tail) = rest.split_at(size);
                rest = tail;
                let mut q = sqlx::query(upsert_nodes_sql(postgres, size));
                for (uid, node_id, phase, data) in chunk {
                    q = q.bind(*uid).bind(*node_id).bind(*phase).bind(data);
                }
                q.execute(&mut *tx).await.ctx("commit: upsert nodes")?;
            }
        });
        Ok(())
    }

    pub(crate) async fn acquire_lease(
        &self,
        uid: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, Error> {
        const SQL: &str = "UPDATE workflows SET lease_owner = $1, lease_expires_ms = $2 \
             WHERE uid = $3 AND phase IN ('Pending', 'Running') \
             AND (lease_owner IS NULL OR lease_owner = $1 OR lease_expires_ms < $4)";
        let n = in_write_tx!(self, "acquire_lease: transaction", |tx| {
            sqlx::query(SQL)
                .bind(owner)
                .bind(until_ms)
                .bind(uid)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .ctx("acquire_lease: update workflows")?
                .rows_affected()
        });
        Ok(n == 1)
    }

    pub(crate) async fn renew_leases(
        &self,
        owner: &str,
        until_ms: i64,
    ) -> Result<Vec<String>, Error> {
        const UPDATE: &str = "UPDATE workflows SET lease_expires_ms = $1 \
             WHERE lease_owner = $2 AND phase IN ('Pending', 'Running')";
        const SELECT: &str =
            "SELECT uid FROM workflows WHERE lease_owner = $1 AND phase IN ('Pending', 'Running')";
        let uids = in_write_tx!(self, "renew_leases: transaction", |tx| {
            sqlx::query(UPDATE)
                .bind(until_ms)
                .bind(owner)
                .execute(&mut *tx)
                .await
                .ctx("renew_leases: update workflows")?;
            let rows: Vec<String> = sqlx::query_scalar(SELECT)
                .bind(owner)
                .fetch_all(&mut *tx)
                .await
                .ctx("renew_leases: select workflows")?;
            rows
        });
        Ok(uids)
    }

    pub(crate) async fn claimable(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, Error> {
        const SQL: &str = "SELECT uid, namespace, name FROM workflows WHERE phase IN ('Pending', 'Running') \
             AND (lease_owner IS NULL OR lease_expires_ms < $1) ORDER BY created_ms LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(String, String, String)> = on_pool!(self, reader, |pool| {
            sqlx::query_as(SQL)
                .bind(now_ms)
                .bind(limit)
                .fetch_all(pool)
                .await
                .ctx("claimable: select workflows")?
        });
        Ok(rows)
    }

    /// Who holds the lease of an unfinished workflow (None: nobody, or finished).
    pub(crate) async fn lease_owner(&self, uid: &str) -> Result<Option<String>, Error> {
        const SQL: &str = "SELECT lease_owner FROM workflows WHERE uid = $1 \
             AND phase IN ('Pending', 'Running')";
        let owner: Option<Option<String>> = on_pool!(self, reader, |pool| {
            sqlx::query_scalar(SQL)
                .bind(uid)
                .fetch_optional(pool)
                .await
                .ctx("lease_owner: select workflows")?
        });
        Ok(owner.flatten())
    }

    /// Move a workflow's lease from `from` (known to be gone) to `to`, until
    /// `until_ms`. False when someone else moved it first.
    pub(crate) async fn transfer_lease(
        &self,
        uid: &str,
        from: &str,
        to: &str,
        until_ms: i64,
    ) -> Result<bool, Error> {
        const SQL: &str = "UPDATE workflows SET lease_owner = $1, lease_expires_ms = $2 \
             WHERE uid = $3 AND lease_owner = $4 AND phase IN ('Pending', 'Running')";
        let n = in_write_tx!(self, "transfer_lease: transaction", |tx| {
            sqlx::query(SQL)
                .bind(to)
                .bind(until_ms)
                .bind(uid)
                .bind(from)
                .execute(&mut *tx)
                .await
                .ctx("transfer_lease: update workflows")?
                .rows_affected()
        });
        Ok(n == 1)
    }

    pub(crate) async fn release_lease(&self, uid: &str, owner: &str) -> Result<(), Error> {
        const SQL: &str = "UPDATE workflows SET lease_owner = NULL, lease_expires_ms = NULL \
             WHERE uid = $1 AND lease_owner = $2";
        in_write_tx!(self, "release_lease: transaction", |tx| {
            sqlx::query(SQL)
                .bind(uid)
                .bind(owner)
                .execute(&mut *tx)
                .await
                .ctx("release_lease: update workflows")?;
        });
        Ok(())
    }

    pub(crate) async fn load_workflow(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(WorkflowRecord, Vec<NodeRecord>)>, Error> {
        let sql = workflow_by_name();
        const NODES: &str =
            "SELECT node_id, phase, data FROM nodes WHERE workflow_uid = $1 ORDER BY node_id";
        in_read_tx!(self, "load_workflow: transaction", |tx| {
            let wf: Option<WorkflowRow> = sqlx::query_as(sql)
                .bind(namespace)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .ctx("load_workflow: select from workflows")?;
            let Some(wf) = wf else { return Ok(None) };
            let nodes: Vec<NodeRow> = sqlx::query_as(NODES)
                .bind(&wf.uid)
                .fetch_all(&mut *tx)
                .await
                .ctx("load_workflow: select from nodes")?;
            let nodes = nodes
                .into_iter()
                .map(|n| NodeRecord {
                    node_id: n.node_id,
                    phase: n.phase,
                    data: n.data.0,
                })
                .collect();
            Ok(Some((wf.into(), nodes)))
        })
    }

    /// A workflow's row without its nodes.
    pub(crate) async fn get_workflow(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<WorkflowRecord>, Error> {
        let sql = workflow_by_name();
        let wf: Option<WorkflowRow> = on_pool!(self, reader, |pool| {
            sqlx::query_as(sql)
                .bind(namespace)
                .bind(name)
                .fetch_optional(pool)
                .await
                .ctx("get_workflow: select from workflows")?
        });
        Ok(wf.map(Into::into))
    }

    pub(crate) async fn list_workflows(
        &self,
        filter: &WorkflowFilter,
    ) -> Result<Vec<WorkflowRecord>, Error> {
        let mut sql = format!("SELECT {WORKFLOW_COLUMNS} FROM {WORKFLOWS} WHERE 1 = 1");
        let mut params: Vec<String> = Vec::new();
        if let Some(ns) = &filter.namespace {
            params.push(ns.clone());
            sql.push_str(&format!(" AND namespace = ${}", params.len()));
        }
        if !filter.phases.is_empty() {
            let mut list = Vec::with_capacity(filter.phases.len());
            for phase in &filter.phases {
                params.push(phase.clone());
                list.push(format!("${}", params.len()));
            }
            sql.push_str(&format!(" AND phase IN ({})", list.join(", ")));
        }
        let mut all_in_sql = true;
        for (key, value) in &filter.labels {
            match label_predicate(self.is_postgres(), key, params.len() + 1) {
                Some((predicate, key_param)) => {
                    params.push(key_param);
                    params.push(value.clone());
                    sql.push_str(" AND ");
                    sql.push_str(&predicate);
                }
                None => all_in_sql = false,
            }
        }
        sql.push_str(" ORDER BY w.created_ms DESC, w.uid DESC");
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        if let (Some(limit), true) = (limit, all_in_sql) {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let rows: Vec<WorkflowRow> = on_pool!(self, reader, |pool| {
            let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()));
            for p in &params {
                q = q.bind(p.as_str());
            }
            q.fetch_all(pool)
                .await
                .ctx("list_workflows: select from workflows")?
        });
        let mut out: Vec<WorkflowRecord> = rows
            .into_iter()
            .map(WorkflowRecord::from)
            .filter(|wf| labels_match(&wf.labels, &filter.labels))
            .collect();
        if let Some(limit) = filter.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    /// Returns the deleted workflow's uid.
    pub(crate) async fn delete_workflow(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, Error> {
        in_write_tx!(self, "delete_workflow: transaction", |tx| {
            let uid: Option<String> =
                sqlx::query_scalar("SELECT uid FROM workflows WHERE namespace = $1 AND name = $2")
                    .bind(namespace)
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("delete_workflow: select from workflows")?;
            let Some(uid) = uid else {
                return Err(Error::not_found("workflow", namespace, name));
            };
            sqlx::query("DELETE FROM nodes WHERE workflow_uid = $1")
                .bind(&uid)
                .execute(&mut *tx)
                .await
                .ctx("delete_workflow: delete from nodes")?;
            sqlx::query("DELETE FROM logs WHERE workflow_uid = $1")
                .bind(&uid)
                .execute(&mut *tx)
                .await
                .ctx("delete_workflow: delete from logs")?;
            sqlx::query("DELETE FROM workflow_specs WHERE uid = $1")
                .bind(&uid)
                .execute(&mut *tx)
                .await
                .ctx("delete_workflow: delete from workflow_specs")?;
            sqlx::query("DELETE FROM workflows WHERE uid = $1")
                .bind(&uid)
                .execute(&mut *tx)
                .await
                .ctx("delete_workflow: delete from workflows")?;
            Ok(uid)
        })
    }

    pub(crate) async fn put_template(&self, t: &TemplateRecord) -> Result<(), Error> {
        const SQL: &str = "INSERT INTO templates (kind, namespace, name, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, namespace, name) DO UPDATE SET body = excluded.body";
        let body = JsonText::of(&t.body, "put_template: encoding body")?;
        on_pool!(self, writer, |pool| {
            sqlx::query(SQL)
                .bind(&t.kind)
                .bind(&t.namespace)
                .bind(&t.name)
                .bind(body)
                .execute(pool)
                .await
                .ctx("put_template: upsert into templates")?
                .rows_affected()
        });
        Ok(())
    }

    pub(crate) async fn get_template(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<TemplateRecord>, Error> {
        const SQL: &str =
            "SELECT body FROM templates WHERE kind = $1 AND namespace = $2 AND name = $3";
        let body: Option<Json<Value>> = on_pool!(self, reader, |pool| {
            sqlx::query_scalar(SQL)
                .bind(kind)
                .bind(namespace)
                .bind(name)
                .fetch_optional(pool)
                .await
                .ctx("get_template: select from templates")?
        });
        Ok(body.map(|body| TemplateRecord {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            body: body.0,
        }))
    }

    pub(crate) async fn list_templates(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<TemplateRecord>, Error> {
        const SQL: &str = "SELECT kind, namespace, name, body FROM templates \
             WHERE kind = $1 AND (CAST($2 AS TEXT) IS NULL OR namespace = $2) ORDER BY namespace, name";
        on_pool!(self, reader, |pool| {
            let rows = sqlx::query(SQL)
                .bind(kind)
                .bind(namespace)
                .fetch_all(pool)
                .await
                .ctx("list_templates: select from templates")?;
            rows.iter()
                .map(|row| {
                    Ok(TemplateRecord {
                        kind: row.try_get(0)?,
                        namespace: row.try_get(1)?,
                        name: row.try_get(2)?,
                        body: row.try_get::<Json<Value>, _>(3)?.0,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .ctx("list_templates: decoding rows")
        })
    }

    pub(crate) async fn delete_template(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), Error> {
        const SQL: &str = "DELETE FROM templates WHERE kind = $1 AND namespace = $2 AND name = $3";
        let done = on_pool!(self, writer, |pool| {
            sqlx::query(SQL)
                .bind(kind)
                .bind(namespace)
                .bind(name)
                .execute(pool)
                .await
                .ctx("delete_template: delete from templates")?
                .rows_affected()
        });
        if done == 0 {
            return Err(Error::not_found(template_kind(kind), namespace, name));
        }
        Ok(())
    }

    pub(crate) async fn memo_get(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
    ) -> Result<Option<MemoEntry>, Error> {
        const SQL: &str =
            "SELECT outputs, created_ms FROM memo WHERE namespace = $1 AND cache = $2 AND key = $3";
        let row: Option<(Json<Value>, i64)> = on_pool!(self, reader, |pool| {
            sqlx::query_as(SQL)
                .bind(namespace)
                .bind(cache)
                .bind(key)
                .fetch_optional(pool)
                .await
                .ctx("memo_get: select from memo")?
        });
        Ok(row.map(|(outputs, created_ms)| MemoEntry {
            outputs: outputs.0,
            created_ms,
        }))
    }

    pub(crate) async fn memo_put(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
        entry: &MemoEntry,
    ) -> Result<(), Error> {
        const SQL: &str = "INSERT INTO memo (namespace, cache, key, outputs, created_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, cache, key) \
             DO UPDATE SET outputs = excluded.outputs, created_ms = excluded.created_ms";
        let outputs = JsonText::of(&entry.outputs, "memo_put: encoding outputs")?;
        on_pool!(self, writer, |pool| {
            sqlx::query(SQL)
                .bind(namespace)
                .bind(cache)
                .bind(key)
                .bind(outputs)
                .bind(entry.created_ms)
                .execute(pool)
                .await
                .ctx("memo_put: upsert into memo")?
                .rows_affected()
        });
        Ok(())
    }

    pub(crate) async fn try_acquire(
        &self,
        lock: &str,
        holder: &str,
        limit: u32,
        now_ms: i64,
    ) -> Result<bool, Error> {
        let postgres = self.is_postgres();
        let acquired = in_write_tx!(self, "try_acquire: transaction", |tx| {
            if postgres {
                // Serialise acquirers of this lock across connections and replicas
                // until our transaction ends; SQLite's BEGIN IMMEDIATE already did.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(lock)
                    .execute(&mut *tx)
                    .await
                    .ctx("try_acquire: advisory lock")?;
            }
            let holders: Vec<String> =
                sqlx::query_scalar("SELECT holder FROM locks WHERE lock = $1")
                    .bind(lock)
                    .fetch_all(&mut *tx)
                    .await
                    .ctx("try_acquire: select from locks")?;
            if holders.iter().any(|h| h == holder) {
                true
            } else if holders.len() < limit as usize {
                sqlx::query("INSERT INTO locks (lock, holder, acquired_ms) VALUES ($1, $2, $3)")
                    .bind(lock)
                    .bind(holder)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await
                    .ctx("try_acquire: insert into locks")?;
                true
            } else {
                false
            }
        });
        Ok(acquired)
    }

    pub(crate) async fn release(&self, lock: &str, holder: &str) -> Result<(), Error> {
        on_pool!(self, writer, |pool| {
            sqlx::query("DELETE FROM locks WHERE lock = $1 AND holder = $2")
                .bind(lock)
                .bind(holder)
                .execute(pool)
                .await
                .ctx("release: delete from locks")?
                .rows_affected()
        });
        Ok(())
    }

    pub(crate) async fn logs(
        &self,
        workflow_uid: &str,
        node_id: Option<&str>,
    ) -> Result<Vec<LogLine>, Error> {
        const SQL: &str = "SELECT workflow_uid, node_id, attempt, stream, ts_ms, line FROM logs \
             WHERE workflow_uid = $1 AND (CAST($2 AS TEXT) IS NULL OR node_id = $2) ORDER BY ts_ms, id";
        let rows: Vec<LogRow> = on_pool!(self, reader, |pool| {
            sqlx::query_as(SQL)
                .bind(workflow_uid)
                .bind(node_id)
                .fetch_all(pool)
                .await
                .ctx("logs: select from logs")?
        });
        rows.into_iter().map(LogLine::try_from).collect()
    }

    /// The lines stored after row `after` (0: all), in the order they were
    /// stored, each with its row id: a cursor for following a log.
    pub(crate) async fn logs_after(
        &self,
        workflow_uid: &str,
        node_id: Option<&str>,
        after: i64,
    ) -> Result<Vec<(i64, LogLine)>, Error> {
        const SQL: &str = "SELECT id, workflow_uid, node_id, attempt, stream, ts_ms, line FROM logs \
             WHERE workflow_uid = $1 AND id > $3 AND (CAST($2 AS TEXT) IS NULL OR node_id = $2) \
             ORDER BY id";
        let rows: Vec<LogRowWithId> = on_pool!(self, reader, |pool| {
            sqlx::query_as(SQL)
                .bind(workflow_uid)
                .bind(node_id)
                .bind(after)
                .fetch_all(pool)
                .await
                .ctx("logs_after: select from logs")?
        });
        rows.into_iter()
            .map(|r| Ok((r.id, LogLine::try_from(r.row)?)))
            .collect()
    }

    pub(crate) async fn append_logs(&self, lines: &[LogLine]) -> Result<(), Error> {
        if lines.is_empty() {
            return Ok(());
        }
        let postgres = self.is_postgres();
        in_write_tx!(self, "append_logs: transaction", |tx| {
            let mut rest = lines;
            for size in chunk_sizes(rest.len()) {
                let (chunk, tail) = rest.split_at(size);
                rest = tail;
                let mut q = sqlx::query(insert_logs_sql(postgres, size));
                for l in chunk {
                    q = q
                        .bind(l.workflow_uid.as_str())
                        .bind(l.node_id.as_str())
                        .bind(i64::from(l.attempt))
                        .bind(stream_name(l.stream))
                        .bind(l.ts_ms)
                        .bind(l.line.as_str());
                }
                q.execute(&mut *tx)
                    .await
                    .ctx("append_logs: insert into logs")?;
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_with_cached_sizes() {
        for n in [0, 1, 2, 3, 100, 511, 512, 513, 1000, 100_000] {
            let sizes: Vec<usize> = chunk_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= MAX_CHUNK));
        }
        assert_eq!(chunk_sizes(100).collect::<Vec<_>>(), [64, 32, 4]);
    }

    #[test]
    fn values_sql_numbers_parameters() {
        assert_eq!(
            values_sql("INSERT INTO t (a, b)", 2, 2, "ON CONFLICT DO NOTHING", true),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            values_sql("INSERT INTO t (a)", 1, 2, "", false),
            "INSERT INTO t (a) VALUES (?), (?) "
        );
    }

    #[test]
    fn last_node_write_wins_within_a_batch() {
        let node = |id: &str, phase: &str| {
            (
                "u".to_owned(),
                NodeRecord {
                    node_id: id.into(),
                    phase: phase.into(),
                    data: Value::Null,
                },
            )
        };
        let nodes = vec![
            node("a", "Pending"),
            node("b", "Pending"),
            node("a", "Running"),
        ];
        let enc = encode_nodes(&nodes).unwrap();
        let got: Vec<_> = enc.iter().map(|n| (n.1, n.2)).collect();
        assert_eq!(got, [("b", "Pending"), ("a", "Running")]);
    }
}
