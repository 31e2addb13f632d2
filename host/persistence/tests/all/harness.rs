//! Opening a fresh store per test on each backend.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};
use weft_store::{Store, StoreOptions};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct Harness {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(PgPool, String)>,
}

impl Harness {
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("weft.db"))
            .await
            .unwrap();
        Harness {
            store,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A store in a schema of its own, or `None` (with a notice) when
    /// PostgreSQL is unreachable and `CI` is not `true`.
    pub async fn postgres() -> Option<Harness> {
        let (admin, url) = pg_admin().await?;
        let schema = format!("t_{:016x}", random_u64());
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let store = Store::open(&StoreOptions::postgres(with_search_path(&url, &schema)))
            .await
            .unwrap();
        assert_eq!(store.backend(), "postgres");
        Some(Harness {
            store,
            _dir: None,
            pg: Some((admin, schema)),
        })
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some((admin, schema)) = self.pg {
            sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

pub fn pg_url() -> String {
    std::env::var("WEFT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// An admin connection for creating and dropping test schemas.
pub async fn pg_admin() -> Option<(PgPool, String)> {
    let url = pg_url();
    let connected = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await;
    match connected {
        Ok(pool) => Some((pool, url)),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL not reachable at {url} and CI=true: {e}")
        }
        Err(e) => {
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "NOTICE: PostgreSQL not reachable at {url} ({e}); skipping PostgreSQL store tests"
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
