//! The crate's own error type and its mapping onto the engine's [`StoreError`].

use weft_engine::runtime::StoreError;

/// What can go wrong inside the store. Callers of the [`StateStore`] port see a
/// [`StoreError`]; this richer type keeps the source for logs and tests.
///
/// [`StateStore`]: weft_engine::runtime::StateStore
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A database call failed; `op` names the table and operation.
    #[error("{op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// The database could not be reached or opened. `target` is the redacted
    /// URL or the file path.
    #[error("connecting to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    /// Applying the schema migrations failed.
    #[error("migrating the {backend} schema: {source}")]
    Migrate {
        backend: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A JSON column did not hold what we wrote there.
    #[error("{op}: {source}")]
    Json {
        op: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The URL or options cannot be used. The message never contains a password.
    #[error("store configuration: {0}")]
    Config(String),
    #[error("{kind} {name:?} already exists in namespace {namespace:?}")]
    AlreadyExists {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// A fenced commit touched a workflow leased to another replica.
    #[error("lease on workflow {uid} lost")]
    LeaseLost { uid: String },
}

impl Error {
    pub(crate) fn not_found(kind: &'static str, namespace: &str, name: &str) -> Self {
        Error::NotFound {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// True when the database rejected a row for a UNIQUE or PRIMARY KEY clash.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Db { source: sqlx::Error::Database(e), .. } if e.is_unique_violation())
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::AlreadyExists {
                kind,
                namespace,
                name,
            } => StoreError::AlreadyExists {
                kind,
                namespace,
                name,
            },
            Error::NotFound {
                kind,
                namespace,
                name,
            } => StoreError::NotFound {
                kind,
                namespace,
                name,
            },
            Error::LeaseLost { uid } => StoreError::LeaseLost { uid },
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// Attach the operation name to a sqlx result.
pub(crate) trait Ctx<T> {
    fn ctx(self, op: &'static str) -> Result<T, Error>;
}

impl<T> Ctx<T> for Result<T, sqlx::Error> {
    fn ctx(self, op: &'static str) -> Result<T, Error> {
        self.map_err(|source| Error::Db { op, source })
    }
}

impl<T> Ctx<T> for Result<T, serde_json::Error> {
    fn ctx(self, op: &'static str) -> Result<T, Error> {
        self.map_err(|source| Error::Json { op, source })
    }
}

/// `scheme://user@host:port/db` without password or query string, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => rest.to_owned(),
    };
    if scheme.is_empty() {
        rest
    } else {
        format!("{scheme}://{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_password_and_query() {
        assert_eq!(
            redact_url("postgres://weft:s3cret@db:5432/weft?sslmode=require&password=x"),
            "postgres://weft@db:5432/weft"
        );
        assert_eq!(redact_url("sqlite:///tmp/weft.db"), "sqlite:///tmp/weft.db");
    }
}
