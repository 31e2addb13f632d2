//! Any `object_store` store as an artifact repository: S3 and S3-compatible
//! endpoints ([`super::s3`]), Azure Blob ([`super::azure`]), GCS
//! ([`super::gcs`]) and, in tests, `object_store::memory::InMemory`.
//!
//! [`Repository`] is blocking (it runs on `spawn_blocking` threads); each call
//! drives the async store on the runtime [`Handle`] given at construction.
//! Nothing holds a whole object: writes buffer at most one [`CHUNK`] and then
//! become a multipart upload with at most [`PARALLEL`] parts in flight; reads
//! pull the response body chunk by chunk.
//!
//! Every error the repository builds is [`ArtifactError::Store`], names the
//! repository (its `describe()`), and has the configured secret cut out should
//! a server ever echo it.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::runtime::Handle;

use super::{ArtifactError, Key, ObjectWriter, Repository};

/// Part size of multipart uploads (S3's minimum is 5 MiB); objects smaller
/// than this are one `PUT`.
pub const CHUNK: usize = 8 << 20;
/// Parts uploaded concurrently: memory per writer is at most `(PARALLEL + 1) * CHUNK`.
pub const PARALLEL: usize = 4;

/// Retries and timeouts every remote repository uses: 3 retries within 30 s,
/// 10 s to connect, 5 min per request.
pub(crate) fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

pub(crate) fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(300))
}

/// A store (and key prefix) as an artifact repository.
pub struct ObjectStoreRepository {
    store: Arc<dyn ObjectStore>,
    handle: Handle,
    prefix: String,
    described: String,
    /// Scrubbed from every message, should a server ever echo it.
    secret: Option<String>,
}

impl std::fmt::Debug for ObjectStoreRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.described)
    }
}

impl ObjectStoreRepository {
    /// `store` as a repository whose keys live under `key_prefix` (may be
    /// empty). `described` is how messages name it (e.g. `S3 repository
    /// s3://bucket/prefix/ at http://host:9000`); `secret` is cut out of every
    /// message.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        handle: Handle,
        key_prefix: &str,
        described: String,
        secret: Option<String>,
    ) -> Result<ObjectStoreRepository, ArtifactError> {
        let prefix = key_prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            Key::parse(&prefix)?;
        }
        Ok(ObjectStoreRepository {
            store,
            handle,
            prefix,
            described,
            secret: secret.filter(|s| !s.is_empty()),
        })
    }

    fn path(&self, key: &Key) -> Path {
        if self.prefix.is_empty() {
            Path::from(key.as_str())
        } else {
            Path::from(format!("{}/{}", self.prefix, key.as_str()))
        }
    }

    fn err(&self, doing: String, e: object_store::Error) -> ArtifactError {
        store_error(&self.described, doing, &e, self.secret.as_deref())
    }
}

/// `prefix/` for descriptions (empty: nothing).
pub(crate) fn shown_prefix(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

/// An [`ArtifactError::Store`] naming the repository, secret scrubbed.
pub(crate) fn store_error(
    described: &str,
    doing: String,
    e: &dyn std::fmt::Display,
    secret: Option<&str>,
) -> ArtifactError {
    ArtifactError::Store {
        repo: described.to_string(),
        message: format!("{described}: {doing}: {}", scrub(e, secret)),
    }
}

/// An error's text with the secret (if any) cut out. Signature mismatches are
/// reported by servers without the secret; this is the belt to those braces.
pub(crate) fn scrub(e: &dyn std::fmt::Display, secret: Option<&str>) -> String {
    let s = e.to_string();
    match secret {
        Some(sec) if !sec.is_empty() => s.replace(sec, "<redacted>"),
        _ => s,
    }
}

enum State {
    /// Under one chunk so far: a single `PUT` on commit.
    Small(Vec<u8>),
    Multipart(WriteMultipart),
    Done,
}

struct StoreWriter {
    store: Arc<dyn ObjectStore>,
    handle: Handle,
    path: Path,
    key: Key,
    described: String,
    state: State,
    secret: Option<String>,
}

impl StoreWriter {
    fn io(&self, e: object_store::Error) -> std::io::Error {
        std::io::Error::other(format!(
            "{}: {}",
            self.described,
            scrub(&e, self.secret.as_deref())
        ))
    }
}

impl Write for StoreWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let State::Small(v) = &mut self.state {
            if v.len() + buf.len() <= CHUNK {
                v.extend_from_slice(buf);
                return Ok(buf.len());
            }
            let first = std::mem::take(v);
            let upload = self
                .handle
                .block_on(self.store.put_multipart(&self.path))
                .map_err(|e| self.io(e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, CHUNK);
            let _rt = self.handle.enter(); // parts are spawned on the runtime
            w.write(&first);
            self.state = State::Multipart(w);
        }
        let State::Multipart(w) = &mut self.state else {
            return Err(std::io::Error::other("write after commit"));
        };
        let r = self.handle.block_on(w.wait_for_capacity(PARALLEL));
        r.map_err(|e| self.io(e))?;
        let State::Multipart(w) = &mut self.state else {
            unreachable!()
        };
        let _rt = self.handle.enter();
        w.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for StoreWriter {
    fn commit(mut self: Box<Self>) -> Result<(), ArtifactError> {
        let r = match std::mem::replace(&mut self.state, State::Done) {
            State::Small(v) => self
                .handle
                .block_on(self.store.put(&self.path, PutPayload::from(v)))
                .map(drop),
            State::Multipart(w) => self.handle.block_on(w.finish()).map(drop),
            State::Done => Ok(()),
        };
        r.map_err(|e| {
            store_error(
                &self.described,
                format!("storing '{}'", self.key),
                &e,
                self.secret.as_deref(),
            )
        })
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        // Not committed: drop the uploaded parts (in the background: drop may
        // run anywhere, and nothing waits for it).
        if let State::Multipart(w) = std::mem::replace(&mut self.state, State::Done) {
            self.handle.spawn(async move {
                let _ = w.abort().await;
            });
        }
    }
}

struct StoreReader {
    handle: Handle,
    body: BoxStream<'static, object_store::Result<Bytes>>,
    cur: Bytes,
    described: String,
    secret: Option<String>,
}

impl Read for StoreReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.handle.block_on(self.body.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "{}: {}",
                        self.described,
                        scrub(&e, self.secret.as_deref())
                    )));
                }
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

impl Repository for ObjectStoreRepository {
    fn describe(&self) -> String {
        self.described.clone()
    }

    fn create(&self, key: &Key) -> Result<Box<dyn ObjectWriter>, ArtifactError> {
        Ok(Box::new(StoreWriter {
            store: self.store.clone(),
            handle: self.handle.clone(),
            path: self.path(key),
            key: key.clone(),
            described: self.described.clone(),
            state: State::Small(Vec::new()),
            secret: self.secret.clone(),
        }))
    }

    fn open(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, ArtifactError> {
        let path = self.path(key);
        match self.handle.block_on(self.store.get(&path)) {
            Ok(r) => Ok(Some(Box::new(StoreReader {
                handle: self.handle.clone(),
                body: r.into_stream(),
                cur: Bytes::new(),
                described: self.described.clone(),
                secret: self.secret.clone(),
            }))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            // A "directory" (a prefix with objects below it) is no object; some
            // servers (s3s-fs) answer 500 rather than 404 for it.
            Err(e) => match self.list(key) {
                Ok(l) if !l.is_empty() => Ok(None),
                _ => Err(self.err(format!("reading '{key}'"), e)),
            },
        }
    }

    fn list(&self, prefix: &Key) -> Result<Vec<Key>, ArtifactError> {
        let p = self.path(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let metas: Vec<_> = self
            .handle
            .block_on(self.store.list(Some(&p)).collect::<Vec<_>>());
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let m = m.map_err(|e| self.err(format!("listing '{prefix}/'"), e))?;
            let full = m.location.as_ref();
            out.push(Key::parse(full.get(strip..).unwrap_or(full))?);
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &Key) -> Result<(), ArtifactError> {
        match self.handle.block_on(self.store.delete(&self.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(format!("deleting '{key}'"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    /// The generic repository over `object_store`'s in-memory store: the same
    /// contract S3 (s3s-fs) and Azure (Azurite) are held to. GCS is this code
    /// with `GoogleCloudStorage` as the store; no GCS emulator works here.
    #[test]
    fn contract_in_memory() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(object_store::memory::InMemory::new());
        let r = ObjectStoreRepository::new(
            store.clone(),
            rt.handle().clone(),
            "pre/fix",
            "memory repository mem://pre/fix/".into(),
            None,
        )
        .unwrap();
        testing::contract(&r);
        // keys live under the prefix in the store
        let mut w = r.create(&Key::parse("k").unwrap()).unwrap();
        w.write_all(b"v").unwrap();
        w.commit().unwrap();
        let all: Vec<_> = rt.block_on(store.list(None).collect::<Vec<_>>());
        assert!(!all.is_empty());
        for m in all {
            assert!(m.unwrap().location.as_ref().starts_with("pre/fix/"));
        }
        assert!(
            ObjectStoreRepository::new(store, rt.handle().clone(), "a/../b", "x".into(), None)
                .is_err()
        );
    }
}
