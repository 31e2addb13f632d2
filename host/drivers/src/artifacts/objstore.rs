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
//! Whole files move in parallel pieces ([`Repository::put_file`],
//! [`Repository::get_to_file`]): a file larger than one [`CHUNK`] is uploaded as
//! parts read with `pread` at their offsets, [`PARALLEL`] of them in flight;
//! an object larger than one [`CHUNK`] is fetched as [`PARALLEL`] concurrent
//! byte ranges, each written with `pwrite` at its offset (the ranges are
//! conditional on the `ETag` the first `HEAD` saw, so a replaced object fails
//! the download instead of mixing two versions). Memory per call is at most
//! `(PARALLEL + 1) * CHUNK`.
//!
//! Every error the repository builds is [`ArtifactError::Store`], names the
//! repository (its `describe()`), and has the configured secret cut out should
//! a server ever echo it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig, WriteMultipart,
};
use tokio::runtime::Handle;
use tokio::task::JoinSet;

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

    /// A file of at most one [`CHUNK`] is one `PUT`; a larger one a multipart
    /// upload of parts read at their offsets, [`PARALLEL`] in flight.
    fn put_file(
        &self,
        key: &Key,
        src: &std::path::Path,
        _disposable: bool,
    ) -> Result<(), ArtifactError> {
        let reading = || format!("reading {}", src.display());
        let mut f = File::open(src).map_err(ArtifactError::io(reading()))?;
        let size = f.metadata().map_err(ArtifactError::io(reading()))?.len();
        let path = self.path(key);
        let storing = || format!("storing '{key}'");
        if size <= CHUNK as u64 {
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf)
                .map_err(ArtifactError::io(reading()))?;
            let r = self.handle.block_on(self.store.put(&path, buf.into()));
            return r.map(drop).map_err(|e| self.err(storing(), e));
        }
        let t0 = std::time::Instant::now();
        let mut upload = self
            .handle
            .block_on(self.store.put_multipart(&path))
            .map_err(|e| self.err(storing(), e))?;
        let parts = match self.put_parts(&f, size, upload.as_mut(), src, key) {
            Ok(n) => n,
            Err(e) => {
                let _ = self.handle.block_on(upload.abort());
                return Err(e);
            }
        };
        if let Err(e) = self.handle.block_on(upload.complete()) {
            let _ = self.handle.block_on(upload.abort());
            return Err(self.err(storing(), e));
        }
        tracing::debug!(
            repository = %self.described,
            %key,
            bytes = size,
            parts,
            elapsed_us = t0.elapsed().as_micros() as u64,
            "file uploaded in parts"
        );
        Ok(())
    }

    /// An object of at most one [`CHUNK`] is one streamed `GET`; a larger one
    /// [`PARALLEL`] concurrent range `GET`s written at their offsets.
    fn get_to_file(&self, key: &Key, dest: &std::path::Path) -> Result<bool, ArtifactError> {
        let path = self.path(key);
        let reading = || format!("reading '{key}'");
        let meta = match self.handle.block_on(self.store.head(&path)) {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            // a "directory" (see `open`)
            Err(e) => match self.list(key) {
                Ok(l) if !l.is_empty() => return Ok(false),
                _ => return Err(self.err(reading(), e)),
            },
        };
        let creating = || format!("creating {}", dest.display());
        let out = File::create(dest).map_err(ArtifactError::io(creating()))?;
        let t0 = std::time::Instant::now();
        let r = if meta.size <= CHUNK as u64 {
            self.get_whole(key, &out, dest)
        } else {
            self.get_ranges(key, &path, &meta, &out, dest)
                .map(|()| true)
        };
        drop(out);
        match r {
            Ok(true) => {
                tracing::debug!(
                    repository = %self.described,
                    %key,
                    bytes = meta.size,
                    elapsed_us = t0.elapsed().as_micros() as u64,
                    "object downloaded"
                );
                Ok(true)
            }
            // deleted between HEAD and GET, or failed: no file
            Ok(false) | Err(_) => {
                let _ = std::fs::remove_file(dest);
                r
            }
        }
    }
}

impl ObjectStoreRepository {
    /// Upload `size` bytes of `f` as the parts of `upload`; returns how many.
    fn put_parts(
        &self,
        f: &File,
        size: u64,
        upload: &mut dyn MultipartUpload,
        src: &std::path::Path,
        key: &Key,
    ) -> Result<usize, ArtifactError> {
        let storing = || format!("storing '{key}'");
        let mut inflight: JoinSet<object_store::Result<()>> = JoinSet::new();
        let (mut off, mut parts) = (0u64, 0usize);
        while off < size {
            let n = (size - off).min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; n];
            f.read_exact_at(&mut buf, off)
                .map_err(ArtifactError::io(format!("reading {}", src.display())))?;
            while inflight.len() >= PARALLEL {
                self.joined(self.handle.block_on(inflight.join_next()), storing)?;
            }
            inflight.spawn_on(upload.put_part(PutPayload::from(buf)), &self.handle);
            off += n as u64;
            parts += 1;
        }
        while let Some(j) = self.handle.block_on(inflight.join_next()) {
            self.joined(Some(j), storing)?;
        }
        Ok(parts)
    }

    /// One finished task's result as ours.
    fn joined<T>(
        &self,
        j: Option<Result<object_store::Result<T>, tokio::task::JoinError>>,
        doing: impl Fn() -> String,
    ) -> Result<Option<T>, ArtifactError> {
        match j {
            None => Ok(None),
            Some(Ok(Ok(v))) => Ok(Some(v)),
            Some(Ok(Err(e))) => Err(self.err(doing(), e)),
            Some(Err(e)) => Err(store_error(
                &self.described,
                doing(),
                &e,
                self.secret.as_deref(),
            )),
        }
    }

    /// The whole (small) object streamed into `out`; false: it is gone.
    fn get_whole(
        &self,
        key: &Key,
        out: &File,
        dest: &std::path::Path,
    ) -> Result<bool, ArtifactError> {
        let Some(mut r) = self.open(key)? else {
            return Ok(false);
        };
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, out);
        super::copy(&mut r, &mut w)
            .and_then(|_| w.flush())
            .map_err(ArtifactError::io(format!(
                "reading '{key}' into {}",
                dest.display()
            )))?;
        Ok(true)
    }

    /// The object `meta` describes, fetched as ranges of one [`CHUNK`],
    /// [`PARALLEL`] at a time, each written at its offset in `out`. Every
    /// range must come from the object `HEAD` saw (same `ETag`, same size).
    fn get_ranges(
        &self,
        key: &Key,
        path: &Path,
        meta: &object_store::ObjectMeta,
        out: &File,
        dest: &std::path::Path,
    ) -> Result<(), ArtifactError> {
        let reading = || format!("reading '{key}'");
        let writing = format!("writing '{key}' to {}", dest.display());
        let size = meta.size;
        out.set_len(size)
            .map_err(ArtifactError::io(writing.clone()))?;
        type Piece = (std::ops::Range<u64>, Option<String>, u64, Bytes);
        let mut inflight: JoinSet<object_store::Result<Piece>> = JoinSet::new();
        let mut next = 0u64;
        loop {
            while inflight.len() < PARALLEL && next < size {
                let range = next..(next + CHUNK as u64).min(size);
                next = range.end;
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(range.clone())),
                    if_match: meta.e_tag.clone(),
                    ..Default::default()
                };
                let (store, path) = (self.store.clone(), path.clone());
                inflight.spawn_on(
                    async move {
                        let r = store.get_opts(&path, opts).await?;
                        let (tag, total) = (r.meta.e_tag.clone(), r.meta.size);
                        Ok((range, tag, total, r.bytes().await?))
                    },
                    &self.handle,
                );
            }
            let j = self.handle.block_on(inflight.join_next());
            let Some((range, tag, total, bytes)) = self.joined(j, reading)? else {
                return Ok(());
            };
            let changed = (tag.is_some() && meta.e_tag.is_some() && tag != meta.e_tag)
                || total != size
                || bytes.len() as u64 != range.end - range.start;
            if changed {
                return Err(store_error(
                    &self.described,
                    reading(),
                    &format!(
                        "the object changed while being read (bytes {}..{} of {size}: got {} bytes of an object of {total}, ETag {tag:?}, expected {:?})",
                        range.start,
                        range.end,
                        bytes.len(),
                        meta.e_tag
                    ),
                    self.secret.as_deref(),
                ));
            }
            out.write_all_at(&bytes, range.start)
                .map_err(ArtifactError::io(writing.clone()))?;
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
        let scratch = tempfile::tempdir().unwrap();
        testing::files(&r, scratch.path());
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
