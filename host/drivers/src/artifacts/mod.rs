//! Artifacts: the bytes behind Argo's `inputs.artifacts` and `outputs.artifacts`.
//!
//! The engine decides *which* artifacts a step needs and produces (it resolves
//! `from`/`fromExpression`, fills in default keys and the `archiveLocation`);
//! this module moves the bytes, host side, between a step's private root and a
//! [`Repository`]:
//! - [`Repository`]: a flat key space of objects (the shape of S3, Azure Blob,
//!   GCS and `object_store`), streamed through bounded buffers; a "directory"
//!   is the set of objects under a key prefix;
//! - [`LocalRepository`]: the embedded default, a directory on the host
//!   (`$WEFT_HOME/artifacts`);
//! - [`ObjectStoreRepository`]: any `object_store` store (multipart uploads,
//!   streamed gets, errors naming the repository, secrets scrubbed), built as
//!   [`s3`] (any S3-compatible endpoint: AWS, MinIO, Alibaba OSS), [`azure`]
//!   (Azure Blob; tested against Azurite) or [`gcs`] (Google Cloud Storage;
//!   no emulator works here, so tested through the in-memory store);
//! - [`Repositories`]: the default repository, the named ones
//!   (`[artifacts.repositories.NAME]`, for `artifactRepositoryRef`), and the
//!   repositories named by artifacts with a full location (`s3: {endpoint,
//!   bucket, key}`, `oss: …`, `azure: {endpoint, container, blob}`, `gcs:
//!   {bucket, key}`);
//! - [`SecretSelector`]: Argo's `{name, key}` secret selectors in a location
//!   (`accessKeySecret`, `basicAuth.passwordSecret`, …), whose values are host
//!   environment variables `WEFT_SECRET_<NAME>_<KEY>`;
//! - [`archive`]: tar+gzip packing and safe unpacking (entries that escape their
//!   directory are rejected);
//! - [`stage`]: placing a step's inputs before it starts and saving its outputs
//!   (and `main.log` for `archiveLogs`) after it exits.

pub mod archive;
pub mod azure;
pub mod fetch;
pub mod gcs;
pub mod local;
pub mod objstore;
pub mod repos;
pub mod s3;
pub mod stage;
#[doc(hidden)]
pub mod testing;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;

pub use azure::{AzureOptions, AzureRepository};
pub use gcs::{GcsOptions, GcsRepository};
pub use local::LocalRepository;
pub use objstore::ObjectStoreRepository;
pub use repos::{Located, REPOSITORY_FIELD, Repositories, RepositoryOptions};
pub use s3::{S3Options, S3Repository, Secret};

/// Errors of the artifact layer.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A key that is empty, absolute-looking after normalisation, or contains `..`.
    #[error("artifact key {key:?} is invalid: {reason}")]
    BadKey { key: String, reason: String },
    /// An archive entry or a path that would land outside its directory.
    #[error("{0}")]
    Escape(String),
    /// The location kind is not served by this version (S3 bucket, GCS, …).
    #[error("{0}")]
    Unsupported(String),
    /// A remote store refused or failed a request (the message never carries
    /// a secret; callers name `repo` in their context).
    #[error("{message}")]
    Store { repo: String, message: String },
    /// A secret a location names is malformed or has no value (the message
    /// names the secret and its environment variable, never a value).
    #[error("{0}")]
    Secret(String),
    /// Filesystem or stream failure, with what was being done.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ArtifactError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArtifactError {
        let what = what.into();
        move |source| ArtifactError::Io { what, source }
    }
}

/// Argo's `{name, key}` selector of a Kubernetes secret in an artifact's
/// location (`s3.accessKeySecret`, `http.auth.basicAuth.passwordSecret`,
/// `git.usernameSecret`, …). weft has no Kubernetes: the value is the host
/// environment variable [`SecretSelector::env_var`],
/// `WEFT_SECRET_<NAME>_<KEY>` upper-cased with `-` and `.` as `_` — the
/// variable of the secret `<NAME>_<KEY>` granted to plugins
/// ([`crate::host::secret_env_var`]) and of weft.toml's `*_secret` fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretSelector {
    pub name: String,
    pub key: String,
}

impl SecretSelector {
    /// The selector at `loc[field]`; `Ok(None)` when the field is absent or
    /// names nothing (`{}`, empty strings); an error when it gives only one
    /// of `name` and `key`.
    pub fn of(loc: &Value, field: &str) -> Result<Option<SecretSelector>, ArtifactError> {
        let Some(v) = loc.get(field).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let s = |f: &str| v.get(f).and_then(Value::as_str).filter(|s| !s.is_empty());
        match (s("name"), s("key")) {
            (Some(name), Some(key)) => Ok(Some(SecretSelector {
                name: name.to_string(),
                key: key.to_string(),
            })),
            (None, None) if v.as_object().is_some() => Ok(None),
            _ => Err(ArtifactError::Secret(format!(
                "'{field}' must name a secret and its key ({{name: NAME, key: KEY}})"
            ))),
        }
    }

    /// The host environment variable holding the value.
    pub fn env_var(&self) -> String {
        crate::host::secret_env_var(&format!("{}_{}", self.name, self.key))
    }

    /// The value, from [`SecretSelector::env_var`]. The error names `field`
    /// (what the secret is for), the secret and the variable to set.
    pub fn value(&self, field: &str) -> Result<Secret, ArtifactError> {
        match std::env::var(self.env_var()) {
            Ok(v) => Ok(Secret(v)),
            Err(e) => Err(ArtifactError::Secret(format!(
                "'{field}' names {self}, which has no value: set {} in weft's environment{}",
                self.env_var(),
                match e {
                    std::env::VarError::NotUnicode(_) => " (it is set, but not valid UTF-8)",
                    std::env::VarError::NotPresent => "",
                }
            ))),
        }
    }

    /// The selector at `loc[field]` and its value; `Ok(None)`: none given.
    pub fn resolve(
        loc: &Value,
        field: &str,
    ) -> Result<Option<(SecretSelector, Secret)>, ArtifactError> {
        let Some(s) = SecretSelector::of(loc, field)? else {
            return Ok(None);
        };
        let v = s.value(field)?;
        Ok(Some((s, v)))
    }
}

impl std::fmt::Display for SecretSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "secret '{}' (key '{}')", self.name, self.key)
    }
}

/// A validated object key: `/`-separated, relative, no empty, `.` or `..` segments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Normalise (leading/trailing and doubled `/`, `.` segments dropped) and
    /// validate: `..` anywhere is rejected, so a key can never leave its repository.
    pub fn parse(raw: &str) -> Result<Key, ArtifactError> {
        let bad = |reason: &str| ArtifactError::BadKey {
            key: raw.to_string(),
            reason: reason.to_string(),
        };
        if raw.contains('\0') || raw.contains('\\') {
            return Err(bad("NUL and backslash are not allowed"));
        }
        let mut segs = Vec::new();
        for s in raw.split('/') {
            match s {
                "" | "." => {}
                ".." => return Err(bad("'..' is not allowed in keys")),
                s => segs.push(s),
            }
        }
        if segs.is_empty() {
            return Err(bad("empty"));
        }
        Ok(Key(segs.join("/")))
    }

    /// `self/rel` (for `subPath` and directory members), validated like [`Key::parse`].
    pub fn join(&self, rel: &str) -> Result<Key, ArtifactError> {
        Key::parse(&format!("{}/{rel}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A writer for one object; nothing is visible under its key before [`commit`](ObjectWriter::commit).
pub trait ObjectWriter: Write + Send {
    fn commit(self: Box<Self>) -> Result<(), ArtifactError>;
}

/// An artifact repository: objects by key, streamed. Blocking (call it from
/// `spawn_blocking`); implementations must never hold a whole object in memory.
pub trait Repository: Send + Sync {
    /// How messages name it, e.g. `local repository /var/lib/weft/artifacts`.
    fn describe(&self) -> String;
    /// A writer for `key` (replacing any object there on commit).
    fn create(&self, key: &Key) -> Result<Box<dyn ObjectWriter>, ArtifactError>;
    /// The object at exactly `key`, or `None`.
    fn open(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, ArtifactError>;
    /// Keys of every object under `prefix/`, sorted.
    fn list(&self, prefix: &Key) -> Result<Vec<Key>, ArtifactError>;
    /// Remove the object at exactly `key`; a missing object is no error
    /// (garbage collection retries, and may race another replica).
    fn delete(&self, key: &Key) -> Result<(), ArtifactError>;
    /// Store the regular file `src` under `key`. `disposable`: the caller
    /// neither reads nor changes `src` again and will delete it (a finished
    /// step's private root), so a repository on the same filesystem may take
    /// the file itself (a hard link) instead of copying its bytes.
    fn put_file(&self, key: &Key, src: &Path, disposable: bool) -> Result<(), ArtifactError> {
        let _ = disposable;
        let mut f =
            File::open(src).map_err(ArtifactError::io(format!("reading {}", src.display())))?;
        let mut w = self.create(key)?;
        copy(&mut f, &mut w).map_err(ArtifactError::io(format!("saving '{key}'")))?;
        w.commit()
    }
    /// Write the object at exactly `key` to the new file `dest`; false (and
    /// no file) when there is no such object.
    fn get_to_file(&self, key: &Key, dest: &Path) -> Result<bool, ArtifactError> {
        let Some(mut r) = self.open(key)? else {
            return Ok(false);
        };
        let mut out = File::create(dest)
            .map_err(ArtifactError::io(format!("creating {}", dest.display())))?;
        copy(&mut r, &mut out).map_err(ArtifactError::io(format!("reading '{key}'")))?;
        Ok(true)
    }
    /// Hard-link the object at exactly `key` to the new path `dest`, when the
    /// repository keeps it as a file on `dest`'s filesystem (a copy-on-write
    /// input layer). `Ok(false)`: it cannot (no such object, another
    /// filesystem, not a filesystem at all); the caller copies instead.
    fn link_to(&self, key: &Key, dest: &Path) -> Result<bool, ArtifactError> {
        let _ = (key, dest);
        Ok(false)
    }
    /// Remove `key` and every object under `key/` (an artifact saved as a
    /// directory with `archive: none` is many objects). Returns how many went.
    fn delete_all(&self, key: &Key) -> Result<usize, ArtifactError> {
        let mut keys = self.list(key)?;
        if self.open(key)?.is_some() {
            keys.push(key.clone());
        }
        for k in &keys {
            self.delete(k)?;
        }
        Ok(keys.len())
    }
}

/// Copy with a bounded buffer (never the whole stream in memory).
pub(crate) fn copy(r: &mut dyn Read, w: &mut dyn Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise_and_reject_dotdot() {
        assert_eq!(Key::parse("/a//b/./c/").unwrap().as_str(), "a/b/c");
        for bad in ["..", "a/../b", "../x", "a/..", "", "/", "a\\b"] {
            let e = Key::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid"), "{bad}: {e}");
        }
        let k = Key::parse("wf/pod").unwrap();
        assert_eq!(k.join("x.tgz").unwrap().as_str(), "wf/pod/x.tgz");
        assert!(k.join("../../etc").unwrap_err().to_string().contains(".."));
    }

    #[test]
    fn secret_selectors_map_to_weft_secret_variables() {
        use serde_json::json;
        let loc = json!({"s": {"name": "my-creds.v1", "key": "secret-key"}, "e": {}, "n": null});
        let s = SecretSelector::of(&loc, "s").unwrap().unwrap();
        // the plugins' secret variable of `<name>_<key>`, as weft.toml's `*_secret`
        assert_eq!(s.env_var(), "WEFT_SECRET_MY_CREDS_V1_SECRET_KEY");
        assert_eq!(
            s.env_var(),
            crate::host::secret_env_var("my-creds.v1_secret-key")
        );
        assert_eq!(s.to_string(), "secret 'my-creds.v1' (key 'secret-key')");
        for absent in ["e", "n", "missing"] {
            assert!(
                SecretSelector::of(&loc, absent).unwrap().is_none(),
                "{absent}"
            );
        }
        for bad in [
            json!({"f": {"name": "x"}}),
            json!({"f": {"key": "k"}}),
            json!({"f": "x"}),
        ] {
            let e = SecretSelector::of(&bad, "f").unwrap_err().to_string();
            assert!(e.contains("'f' must name a secret and its key"), "{e}");
        }
        let unset = SecretSelector {
            name: "weft-unit-unset".into(),
            key: "k".into(),
        };
        let e = unset.value("passwordSecret").unwrap_err();
        assert!(matches!(e, ArtifactError::Secret(_)));
        assert_eq!(
            e.to_string(),
            "'passwordSecret' names secret 'weft-unit-unset' (key 'k'), which has no value: \
             set WEFT_SECRET_WEFT_UNIT_UNSET_K in weft's environment"
        );
    }
}
