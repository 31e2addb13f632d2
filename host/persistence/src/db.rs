//! Connecting, migrating, and the two-backend dispatch.
//!
//! [`Db`] is a small enum over a SQLite and a PostgreSQL pool. The macros below
//! expand one block of Rust once per backend, so every query is written once,
//! with `$1`-style placeholders that both SQLite and PostgreSQL accept, and
//! type-checked against each driver.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgConnectOptions, PgPool, PgPoolOptions, PgTypeInfo};
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous, SqliteTypeInfo,
};
use sqlx::{ConnectOptions, Connection, Encode, PgConnection, Postgres, Sqlite, Type};

use crate::error::{Ctx, Error, redact_url};
use crate::options::{Durability, StoreOptions};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a connection waits for a lock held by another writer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The database behind a [`crate::Store`]. Cheap to clone (pools are `Arc`s).
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

/// SQLite: one writer connection (writers are serialised by SQLite anyway; one
/// connection avoids `SQLITE_BUSY` ping-pong between our own connections) and a
/// pool of read-only connections that read concurrently thanks to WAL.
#[derive(Clone, Debug)]
pub(crate) struct SqliteDb {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
}

/// PostgreSQL: one pool; `reader` and `writer` are the same pool so the
/// dispatch macros can name a role on both backends.
#[derive(Clone, Debug)]
pub(crate) struct PgDb {
    pub(crate) writer: PgPool,
    pub(crate) reader: PgPool,
}

/// Run `$body` with `$pool` bound to the `$role` (`reader` or `writer`) pool of
/// whichever backend `$db` is. The body is compiled once per backend.
macro_rules! on_pool {
    ($db:expr, $role:ident, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(db) => {
                let $pool = &db.$role;
                $body
            }
            $crate::db::Db::Postgres(db) => {
                let $pool = &db.$role;
                $body
            }
        }
    };
}

/// Run `$body` inside a write transaction bound to `$tx`, and commit it if the
/// body did not return early. A `?` in the body drops the transaction, which
/// rolls it back. SQLite takes the write lock up front (`BEGIN IMMEDIATE`), so a
/// transaction never fails half-way on a lock upgrade.
macro_rules! in_write_tx {
    ($db:expr, $op:literal, |$tx:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(db) => {
                let mut $tx = db.writer.begin_with("BEGIN IMMEDIATE").await.ctx($op)?;
                let out = $body;
                $tx.commit().await.ctx($op)?;
                out
            }
            $crate::db::Db::Postgres(db) => {
                let mut $tx = db.writer.begin().await.ctx($op)?;
                let out = $body;
                $tx.commit().await.ctx($op)?;
                out
            }
        }
    };
}

/// Run `$body` in a read-only transaction that sees one snapshot across all its
/// statements (SQLite WAL read transaction; PostgreSQL REPEATABLE READ).
macro_rules! in_read_tx {
    ($db:expr, $op:literal, |$tx:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(db) => {
                let mut $tx = db.reader.begin().await.ctx($op)?;
                let out = $body;
                $tx.commit().await.ctx($op)?;
                out
            }
            $crate::db::Db::Postgres(db) => {
                let mut $tx = db
                    .reader
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await
                    .ctx($op)?;
                let out = $body;
                $tx.commit().await.ctx($op)?;
                out
            }
        }
    };
}

pub(crate) use {in_read_tx, in_write_tx, on_pool};

impl Db {
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    pub(crate) async fn open(opts: &StoreOptions) -> Result<Db, Error> {
        let url = opts.url.trim();
        if let Some(path) = sqlite_path(url) {
            open_sqlite(&path, opts).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            open_postgres(url, opts).await
        } else {
            Err(Error::Config(format!(
                "unsupported store URL {:?}: expected sqlite:///path or postgres://…",
                redact_url(url)
            )))
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Db::Sqlite(db) => {
                db.reader.close().await;
                db.writer.close().await;
            }
            Db::Postgres(db) => db.writer.close().await,
        }
    }
}

/// `sqlite:///abs/path`, `sqlite://rel/path`, `sqlite:path` → the file path.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let rest = rest.split('?').next().unwrap_or_default();
    Some(PathBuf::from(rest))
}

async fn open_sqlite(path: &Path, opts: &StoreOptions) -> Result<Db, Error> {
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Err(Error::Config(
            "a SQLite store needs a file path (in-memory databases are not shared between connections)"
                .into(),
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("creating directory {}: {e}", dir.display())))?;
    }
    let synchronous = match opts.durability {
        Durability::Process => SqliteSynchronous::Normal,
        Durability::Power => SqliteSynchronous::Full,
    };
    let base = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .synchronous(synchronous);

    // Two processes opening a new store at once (`weft run` and a `weft get`)
    // would both apply migration 1 and one would fail: serialize opening with
    // an exclusive lock on a file beside the database (released on drop).
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".migrate-lock");
    let migrate_lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| {
            Error::Config(format!(
                "locking {} for migrations: {e}",
                Path::new(&lock_path).display()
            ))
        })?;
    if opts.durability == Durability::Process && is_new_database(path) {
        create_sqlite(path, &base).await?;
    }
    // No ping before each acquire (sqlx's default, meant for network
    // connections): an SQLite connection is a library handle on a thread of
    // ours, and the ping was one more round trip to that thread in every
    // transaction — a group commit's begin, statements and commit took
    // 0.5-1 ms with it, 0.1-0.4 ms without (W3 marks).
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(
            base.clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .map_err(|source| Error::Connect {
            target: format!("SQLite database {}", path.display()),
            source,
        })?;
    let applied: i32 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&writer)
        .await
        .ctx("reading the SQLite store's schema mark")?;
    if applied != migrations_mark() {
        let mut conn = writer.acquire().await.ctx("migrating the SQLite store")?;
        migrate_sqlite(&mut conn).await?;
    }
    drop(migrate_lock);
    // Readers connect on first use: a `weft run` that only writes (and
    // answers from the engine's memory) never opens one (~0.4 ms each).
    let reader = SqlitePoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .test_before_acquire(false)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(base.read_only(true));
    Ok(Db::Sqlite(SqliteDb { writer, reader }))
}

/// Whether `path` holds no database yet (absent or empty).
fn is_new_database(path: &Path) -> bool {
    std::fs::metadata(path).map_or(true, |m| m.len() == 0)
}

/// Create a new SQLite store and its schema without a single disk sync.
///
/// Opened the usual way, a new database is created in rollback-journal mode with
/// `synchronous=FULL` (sqlx switches to WAL before it sets `synchronous`): five
/// fsyncs and a journal unlink, ~20 ms on these machines — most of a short
/// `weft run` on a fresh `WEFT_HOME`. With `durability = "process"` nothing
/// needs the disk (the contract is `kill -9`, and the page cache survives
/// that), so the first connection turns syncing off, switches to WAL itself and
/// applies the migrations. Only called under the migrate lock.
async fn create_sqlite(path: &Path, base: &SqliteConnectOptions) -> Result<(), Error> {
    let mut conn = base
        .clone()
        .create_if_missing(true)
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await
        .map_err(|source| Error::Connect {
            target: format!("SQLite database {}", path.display()),
            source,
        })?;
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut conn)
        .await
        .ctx("creating the SQLite store")?;
    migrate_sqlite(&mut conn).await?;
    conn.close().await.ctx("creating the SQLite store")
}

/// A fingerprint of the SQLite migrations (each version and checksum, FNV-1a,
/// in 31 bits, never 0), kept in the database header's `user_version` once
/// they are all applied. An open that finds it there skips sqlx's migration
/// check — three statements and a checksum comparison per migration, ~0.5 ms
/// of every short command — and reads one pragma instead. An added or edited
/// migration changes the fingerprint, so the full check runs again (and
/// reports an edited one, as before). A new database's `user_version` is 0.
fn migrations_mark() -> i32 {
    static MARK: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *MARK.get_or_init(|| {
        let mut h: u32 = 0x811c_9dc5;
        for m in SQLITE_MIGRATIONS.iter() {
            for b in m.version.to_le_bytes().iter().chain(m.checksum.iter()) {
                h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
            }
        }
        i32::try_from(h & 0x7fff_ffff).unwrap_or(1).max(1)
    })
}

/// Apply (or check) every SQLite migration, then record [`migrations_mark`].
async fn migrate_sqlite(conn: &mut sqlx::SqliteConnection) -> Result<(), Error> {
    SQLITE_MIGRATIONS
        .run(&mut *conn)
        .await
        .map_err(|source| Error::Migrate {
            backend: "sqlite",
            source,
        })?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA user_version = {}",
        migrations_mark()
    )))
    .execute(&mut *conn)
    .await
    .ctx("recording the SQLite store's schema mark")?;
    Ok(())
}

async fn open_postgres(url: &str, opts: &StoreOptions) -> Result<Db, Error> {
    let mut connect = PgConnectOptions::from_str(url)
        .map_err(|e| Error::Config(format!("bad PostgreSQL URL {}: {e}", redact_url(url))))?;
    if opts.durability == Durability::Power {
        connect = connect.options([("synchronous_commit", "on")]);
    }
    // One direct connection first: it fails fast (a pool would retry until its
    // acquire timeout) and runs the migrations; the pool then connects lazily.
    let mut conn = PgConnection::connect_with(&connect)
        .await
        .map_err(|source| Error::Connect {
            target: redact_url(url),
            source,
        })?;
    POSTGRES_MIGRATIONS
        .run(&mut conn)
        .await
        .map_err(|source| Error::Migrate {
            backend: "postgres",
            source,
        })?;
    let _ = conn.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(connect);
    Ok(Db::Postgres(PgDb {
        writer: pool.clone(),
        reader: pool,
    }))
}

/// A JSON document bound as text: `TEXT` on SQLite, `json` on PostgreSQL (kept
/// verbatim there, key order included; `sqlx::types::Json` would bind `jsonb`).
pub(crate) struct JsonText(pub(crate) String);

impl JsonText {
    pub(crate) fn of(value: &impl Serialize, op: &'static str) -> Result<JsonText, Error> {
        serde_json::to_string(value).map(JsonText).ctx(op)
    }
}

impl Type<Sqlite> for JsonText {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for JsonText {
    fn encode(self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.0, buf)
    }

    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode_by_ref(&self.0, buf)
    }
}

/// PostgreSQL's `json` type (no named constant is public in sqlx).
const PG_JSON_OID: Oid = Oid(114);

impl Type<Postgres> for JsonText {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(PG_JSON_OID)
    }
}

impl Encode<'_, Postgres> for JsonText {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        // The binary format of `json` is its text.
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_engine::runtime::CommitBatch;

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db"),
            Some(PathBuf::from("/tmp/a.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://rel/a.db"),
            Some(PathBuf::from("rel/a.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:a.db?mode=rwc"),
            Some(PathBuf::from("a.db"))
        );
        assert_eq!(sqlite_path("postgres://x"), None);
    }

    /// A store written before the spec had its own table (migrations 1 and 2)
    /// opens with its workflows intact: migration 3 moves every spec over,
    /// and reading, committing and deleting work on the moved rows.
    #[tokio::test]
    async fn an_older_store_keeps_its_workflow_specs_through_migration_3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.db");
        let old = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = old.connect().await.unwrap();
        SQLITE_MIGRATIONS.run_to(2, &mut conn).await.unwrap();
        let spec =
            serde_json::json!({"spec": {"entrypoint": "main", "templates": [{"name": "main"}]}});
        sqlx::query(
            "INSERT INTO workflows (uid, namespace, name, phase, created_ms, workflow, status) \
             VALUES ('u1', 'default', 'old-wf', 'Running', 1, $1, '{}')",
        )
        .bind(spec.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let db = Db::open(&StoreOptions::sqlite(&path)).await.unwrap();
        let (wf, _) = db
            .load_workflow("default", "old-wf")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(wf.workflow, spec);
        assert_eq!(wf.phase, "Running");
        let Db::Sqlite(sq) = &db else { unreachable!() };
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('workflows')")
                .fetch_all(&sq.reader)
                .await
                .unwrap();
        assert!(!columns.iter().any(|c| c == "workflow"), "{columns:?}");
        let mut wf = wf;
        wf.phase = "Succeeded".into();
        db.commit(&CommitBatch {
            workflows: vec![wf],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
        let wf = db.get_workflow("default", "old-wf").await.unwrap().unwrap();
        assert_eq!((wf.phase.as_str(), &wf.workflow), ("Succeeded", &spec));
        assert_eq!(db.delete_workflow("default", "old-wf").await.unwrap(), "u1");
        let specs: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_specs")
            .fetch_one(&sq.reader)
            .await
            .unwrap();
        assert_eq!(specs, 0, "the spec goes with its workflow");
    }

    /// Opening checks the migrations only when the database's schema mark
    /// (`user_version`) is not the current one: a store at migration 2 with a
    /// stale mark gets migration 3 and the mark; the same store claiming the
    /// current mark is trusted and opened as it is (the cheap path every
    /// short command takes).
    #[tokio::test]
    async fn the_migrations_are_checked_unless_the_schema_mark_is_current() {
        async fn at_migration_2(path: &Path, mark: i32) {
            let mut conn = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .connect()
                .await
                .unwrap();
            SQLITE_MIGRATIONS.run_to(2, &mut conn).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {mark}")))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        async fn state(db: &Db) -> (i32, bool) {
            let Db::Sqlite(sq) = db else { unreachable!() };
            let mark: i32 = sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&sq.reader)
                .await
                .unwrap();
            let specs: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sqlite_master WHERE name = 'workflow_specs'",
            )
            .fetch_one(&sq.reader)
            .await
            .unwrap();
            (mark, specs == 1)
        }
        let dir = tempfile::tempdir().unwrap();

        let new = dir.path().join("new.db");
        let db = Db::open(&StoreOptions::sqlite(&new)).await.unwrap();
        assert_eq!(state(&db).await, (migrations_mark(), true), "a new store");
        drop(db);
        let db = Db::open(&StoreOptions::sqlite(&new)).await.unwrap();
        assert_eq!(state(&db).await, (migrations_mark(), true), "opened again");

        let stale = dir.path().join("stale.db");
        at_migration_2(&stale, migrations_mark().wrapping_add(1)).await;
        let db = Db::open(&StoreOptions::sqlite(&stale)).await.unwrap();
        assert_eq!(state(&db).await, (migrations_mark(), true), "a stale mark");

        let trusted = dir.path().join("trusted.db");
        at_migration_2(&trusted, migrations_mark()).await;
        let db = Db::open(&StoreOptions::sqlite(&trusted)).await.unwrap();
        assert_eq!(
            state(&db).await,
            (migrations_mark(), false),
            "a current mark"
        );
    }

    /// The sync-free creation path (`durability = "process"`) leaves the same
    /// store as the usual one: WAL mode, the schema migrated, and the
    /// configured `synchronous` on the writer; opening it again finds it.
    #[tokio::test]
    async fn a_new_store_is_created_in_wal_mode_with_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("weft.db");
        for durability in [Durability::Process, Durability::Power] {
            let _ = std::fs::remove_file(&path);
            let opts = StoreOptions {
                durability,
                ..StoreOptions::sqlite(&path)
            };
            for _ in 0..2 {
                let Db::Sqlite(db) = Db::open(&opts).await.unwrap() else {
                    unreachable!()
                };
                let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&db.writer)
                    .await
                    .unwrap();
                assert_eq!(mode, "wal", "{durability:?}");
                let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(&db.writer)
                    .await
                    .unwrap();
                let want = if durability == Durability::Power {
                    2
                } else {
                    1
                };
                assert_eq!(sync, want, "{durability:?}");
                let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
                    .fetch_one(&db.reader)
                    .await
                    .unwrap();
                assert_eq!(applied as usize, SQLITE_MIGRATIONS.iter().count());
                let workflows: i64 = sqlx::query_scalar("SELECT count(*) FROM workflows")
                    .fetch_one(&db.reader)
                    .await
                    .unwrap();
                assert_eq!(workflows, 0);
                Db::Sqlite(db).close().await;
            }
        }
    }
}
