//! Throw-away PostgreSQL databases for benchmarks and tests: `weft bench`
//! creates one per run on the server it is pointed at and drops it afterwards,
//! so a run starts from an empty store and leaves nothing behind.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::error::{Ctx, Error, redact_url};

/// How long connecting to the administration database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database name we create and drop: lower-case letters, digits and `_`,
/// starting with a letter, at most 63 bytes (PostgreSQL's identifier limit).
fn checked(name: &str) -> Result<&str, Error> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(Error::Config(format!(
            "scratch database name {name:?}: use [a-z][a-z0-9_]*, at most 63 bytes"
        )))
    }
}

async fn admin(url: &str) -> Result<PgConnection, Error> {
    let target = redact_url(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(source)) => Err(Error::Connect { target, source }),
        Err(_) => Err(Error::Connect {
            target,
            source: sqlx::Error::PoolTimedOut,
        }),
    }
}

/// `url` with its database path replaced by `name` (query string kept).
pub fn database_url(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let authority_end = head
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| head[start..].find('/').map(|j| start + j))
        .unwrap_or(head.len());
    let mut out = format!("{}/{name}", &head[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Create the empty database `name` on the server of `admin_url` (any
/// database there we may connect to); returns the URL of the new database.
pub async fn create_database(admin_url: &str, name: &str) -> Result<String, Error> {
    let name = checked(name)?;
    let mut c = admin(admin_url).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .ctx("create_database: CREATE DATABASE")?;
    let _ = c.close().await;
    Ok(database_url(admin_url, name))
}

/// Drop the database `name` (if it exists), ending its open sessions.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), Error> {
    let name = checked(name)?;
    let mut c = admin(admin_url).await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut c)
    .await
    .ctx("drop_database: DROP DATABASE")?;
    let _ = c.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_the_path_only() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/test", "b1"),
            "postgres://postgres@127.0.0.1:5432/b1"
        );
        assert_eq!(
            database_url("postgres://u:p@h/test?sslmode=disable", "b1"),
            "postgres://u:p@h/b1?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://h:5432", "b1"),
            "postgres://h:5432/b1"
        );
    }

    #[test]
    fn names_are_plain_identifiers() {
        assert!(checked("weft_bench_123").is_ok());
        for bad in ["", "1abc", "a;drop", "A", "a-b", &"a".repeat(64)] {
            assert!(checked(bad).is_err(), "{bad:?}");
        }
    }
}
