//! [`StoreOptions`]: where the store lives and how hard it tries to keep a commit.

use std::path::Path;

/// How the store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// `sqlite:///path/to/weft.db` (file and parent directories are created) or
    /// `postgres://user@host:5432/db`. A PostgreSQL schema other than `public`
    /// is chosen with `?options=-c%20search_path%3Dmy_schema`.
    pub url: String,
    pub durability: Durability,
    /// PostgreSQL: pool size. SQLite: number of reader connections (writes go
    /// through one dedicated writer connection).
    pub max_connections: u32,
}

impl StoreOptions {
    /// Options for a SQLite file at `path`, default durability and pool size.
    pub fn sqlite(path: &Path) -> Self {
        StoreOptions {
            url: format!("sqlite://{}", path.display()),
            durability: Durability::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Options for a PostgreSQL URL, default durability and pool size.
    pub fn postgres(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            durability: Durability::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

pub(crate) const DEFAULT_MAX_CONNECTIONS: u32 = 4;

/// What a commit that returned `Ok` survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Survives `kill -9` of the weft process with nothing lost, but the last
    /// commits may be lost if the machine loses power (SQLite: WAL with
    /// `synchronous=NORMAL`; PostgreSQL: the server's `synchronous_commit`).
    #[default]
    Process,
    /// Also survives power loss: every commit is fsync'd before it returns
    /// (SQLite: `synchronous=FULL`; PostgreSQL: `synchronous_commit=on` for our
    /// sessions, whatever the server default).
    Power,
}
