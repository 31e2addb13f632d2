//! Opening a fresh store per test on each backend.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::io::Write;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use weft_store::{Store, StoreOptions};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct Harness {
    pub store: Store,
    opts: StoreOptions,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(PgConnection, String)>,
}

impl Harness {
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions::sqlite(&dir.path().join("weft.db"));
        let store = Store::open(&opts).await.unwrap();
        Harness {
            store,
            opts,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A store in a schema of its own, or `None` (with a notice) when
    /// PostgreSQL is unreachable and `CI` is not `true`.
    pub async fn postgres() -> Option<Harness> {
        let (mut admin, url) = pg_admin().await?;
        let schema = format!("t_{:016x}", random_u64());
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let opts = StoreOptions::postgres(with_search_path(&url, &schema));
        let store = Store::open(&opts).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        Some(Harness {
            store,
            opts,
            _dir: None,
            pg: Some((admin, schema)),
        })
    }

    /// A second, independent store on the same database (own pools, own log
    /// writer), as another process or engine replica would have.
    pub async fn open_another(&self) -> Store {
        Store::open(&self.opts).await.unwrap()
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some((mut admin, schema)) = self.pg {
            sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.unwrap();
        }
    }
}

pub fn pg_url() -> String {
    std::env::var("WEFT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// An admin connection for creating and dropping test schemas.
pub async fn pg_admin() -> Option<(PgConnection, String)> {
    let url = pg_url();
    let connected = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url))
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
    match connected {
        Ok(conn) => Some((conn, url)),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "PostgreSQL not reachable at {} and CI=true: {e}",
                without_password(&url)
            )
        }
        Err(e) => {
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                // Straight to stderr: libtest captures eprintln! of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: PostgreSQL not reachable at {}; skipping PostgreSQL store tests ({e})",
                    without_password(&url)
                );
            }
            None
        }
    }
}

pub fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// `postgres://user:pw@host/db` → `postgres://user@host/db`, for messages.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
