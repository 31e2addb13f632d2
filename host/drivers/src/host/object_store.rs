//! `weft:plugin/object-store`: a plugin's window onto one host artifact
//! repository, scoped to a key prefix.
//!
//! **The grant.** `[plugins.grants] object_store = { bucket = "B", prefix = "P" }`
//! names a repository of weft.toml — `B` is `default` or a NAME of
//! `[artifacts.repositories.NAME]` (it must not itself be backed by a plugin) —
//! and a prefix inside it. The plugin's keys are relative to `P`: key `k` is
//! the repository's key `P/k`. Keys are validated like every artifact key
//! ([`Key::parse`]); a key with a `..` segment is refused as `not-granted`, so
//! no key, read, listing or delete ever reaches outside `P`.
//!
//! **The backend** of a call chain is a [`Session`]: the artifact repository
//! a plugin implements ([`WasmRepository`](crate::artifacts::repos::wasm::WasmRepository))
//! puts one in the [`HostState`] of every call of one transfer (an upload is
//! `begin-put`, the parts, `finish-put`: separate plugin calls, separate
//! stores, one session), so an upload id lives exactly as long as the
//! transfer. Without a grant every call is `not-granted`; with a grant but
//! no session (a plugin called outside a repository) `not-configured`.
//!
//! **Streamed.** An upload is an [`ObjectWriter`] of the backing repository
//! held in the session (parts are written through as they come; nothing is
//! visible before `complete-upload`; an abandoned upload is dropped, which
//! aborts it). Reads never load a whole object: a local directory's file is
//! opened and seeked to the offset; any other repository keeps one open
//! reader per key at the offset where the last read stopped, so sequential
//! reads stream (a read elsewhere re-opens and skips). One read returns at
//! most [`MAX_READ`] bytes. Repository calls are blocking (object stores
//! drive their client with `Handle::block_on`), so each runs on
//! `spawn_blocking`.
//!
//! `head` and the sizes of `list-objects` are file metadata for a local
//! directory; other repositories have no size call in [`Repository`], so
//! there they are counted by reading the object through (bounded memory).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weft_bindings::artifact::weft::plugin::object_store::{Host, ObjectMeta};
use weft_bindings::driver::weft::plugin::types::CapabilityError;

use crate::artifacts::{ArtifactError, Key, LocalRepository, ObjectWriter, Repository};
use crate::runtime::HostState;

type R<T> = wasmtime::Result<Result<T, CapabilityError>>;

/// The most bytes one `read` returns (a larger `max-len` is cut to it).
pub const MAX_READ: u32 = 8 << 20;
/// Open readers a session keeps (non-local repositories) before evicting one.
const MAX_READERS: usize = 16;

/// What an object-store grant resolves to: a repository and a prefix in it.
pub struct Target {
    /// The repository's name in weft.toml (`default` or NAME).
    pub repository: String,
    pub repo: Arc<dyn Repository>,
    /// Set when `repo` is a local directory: reads seek, `head` stats the file.
    pub local: Option<LocalRepository>,
    /// The granted prefix, normalised (`None`: the whole repository).
    prefix: Option<Key>,
}

impl Target {
    /// The grant's target; `prefix` is validated like a key (empty: everything).
    pub fn new(
        repository: impl Into<String>,
        repo: Arc<dyn Repository>,
        local: Option<LocalRepository>,
        prefix: &str,
    ) -> Result<Target, ArtifactError> {
        let prefix = match prefix.trim_matches('/') {
            "" => None,
            p => Some(Key::parse(p)?),
        };
        Ok(Target {
            repository: repository.into(),
            repo,
            local,
            prefix,
        })
    }

    /// `repository 'NAME' (prefix 'P/')`, for messages.
    pub fn describe(&self) -> String {
        match &self.prefix {
            None => format!("repository '{}'", self.repository),
            Some(p) => format!("repository '{}' (prefix '{p}/')", self.repository),
        }
    }

    /// The repository key of the plugin's key `rel`, and `rel` normalised.
    fn full(&self, rel: &str) -> Result<(Key, String), CapabilityError> {
        if rel.split('/').any(|s| s == "..") {
            return Err(CapabilityError::NotGranted(format!(
                "key {rel:?} would leave the granted {}",
                self.describe()
            )));
        }
        let k = Key::parse(rel).map_err(|e| CapabilityError::Invalid(e.to_string()))?;
        let full = match &self.prefix {
            None => k.clone(),
            Some(p) => p
                .join(k.as_str())
                .map_err(|e| CapabilityError::Invalid(e.to_string()))?,
        };
        Ok((full, k.as_str().to_string()))
    }

    /// The plugin's key of a repository key under the prefix.
    fn relative(&self, full: &Key) -> Option<String> {
        match &self.prefix {
            None => Some(full.as_str().to_string()),
            Some(p) => full
                .as_str()
                .strip_prefix(p.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .map(str::to_string),
        }
    }

    fn failed(&self, doing: String, e: impl std::fmt::Display) -> CapabilityError {
        CapabilityError::Failed(format!("{}: {doing}: {e}", self.describe()))
    }

    /// Size and modification time of `full`, `None` if there is no object.
    fn stat(&self, full: &Key, rel: &str) -> Result<Option<(u64, Option<u64>)>, CapabilityError> {
        if let Some(local) = &self.local {
            return match std::fs::metadata(local.path_of(full)) {
                Ok(m) if m.is_file() => Ok(Some((
                    m.len(),
                    m.modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64),
                ))),
                Ok(_) => Ok(None),
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    Ok(None)
                }
                Err(e) => Err(self.failed(format!("reading '{rel}'"), e)),
            };
        }
        let Some(mut r) = self
            .repo
            .open(full)
            .map_err(|e| self.failed(format!("reading '{rel}'"), e))?
        else {
            return Ok(None);
        };
        let n = std::io::copy(&mut r, &mut std::io::sink())
            .map_err(|e| self.failed(format!("reading '{rel}'"), e))?;
        Ok(Some((n, None)))
    }
}

/// Fill `buf` from `r` as far as it goes; the count (short only at the end).
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

struct Upload {
    rel: String,
    full: Key,
    /// Taken out while a part is being written (on a blocking thread).
    writer: Option<Box<dyn ObjectWriter>>,
    size: u64,
}

/// A reader of a non-local object, at this offset.
type OpenReader = (u64, Box<dyn Read + Send>);

/// The object-store backend of one call chain (see the module docs).
pub struct Session {
    target: Arc<Target>,
    uploads: Mutex<HashMap<String, Upload>>,
    /// Non-local repositories: an open reader per key, at this offset.
    readers: Mutex<HashMap<Key, OpenReader>>,
    seq: AtomicU64,
}

/// Run `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CapabilityError> + Send + 'static,
) -> Result<T, CapabilityError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(CapabilityError::Failed(format!(
            "object-store task failed: {e}"
        )))
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Session {
    pub fn new(target: Arc<Target>) -> Arc<Session> {
        Arc::new(Session {
            target,
            uploads: Mutex::default(),
            readers: Mutex::default(),
            seq: AtomicU64::new(1),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Start an upload of `key`; the id is valid for this session.
    pub async fn begin_upload(&self, key: &str) -> Result<String, CapabilityError> {
        let (full, rel) = self.target.full(key)?;
        let t = self.target.clone();
        let k = full.clone();
        let writer = blocking(move || {
            t.repo
                .create(&k)
                .map_err(|e| t.failed(format!("starting the upload of '{}'", k), e))
        })
        .await?;
        let id = format!("upload-{}", self.seq.fetch_add(1, Ordering::Relaxed));
        tracing::debug!(repository = %self.target.repository, key = %full, upload = %id, "object-store upload started");
        self.uploads.lock().expect("not poisoned").insert(
            id.clone(),
            Upload {
                rel,
                full,
                writer: Some(writer),
                size: 0,
            },
        );
        Ok(id)
    }

    fn take_writer(&self, id: &str) -> Result<(Box<dyn ObjectWriter>, String), CapabilityError> {
        let mut ups = self.uploads.lock().expect("not poisoned");
        let up = ups
            .get_mut(id)
            .ok_or_else(|| CapabilityError::Invalid(format!("unknown upload id '{id}'")))?;
        let w = up.writer.take().ok_or_else(|| {
            CapabilityError::Invalid(format!("upload '{id}' is busy with another part"))
        })?;
        Ok((w, up.rel.clone()))
    }

    /// Append `data` to upload `id`. A failed write abandons the upload.
    pub async fn upload_part(&self, id: &str, data: Vec<u8>) -> Result<(), CapabilityError> {
        let (mut w, rel) = self.take_writer(id)?;
        let t = self.target.clone();
        let n = data.len() as u64;
        let r = blocking(move || {
            use std::io::Write;
            match w.write_all(&data) {
                Ok(()) => Ok(w),
                Err(e) => Err(t.failed(format!("writing '{rel}'"), e)),
            }
        })
        .await;
        let mut ups = self.uploads.lock().expect("not poisoned");
        match r {
            Ok(w) => {
                let up = ups
                    .get_mut(id)
                    .expect("uploads leave only through this session");
                up.writer = Some(w);
                up.size += n;
                Ok(())
            }
            Err(e) => {
                ups.remove(id);
                Err(e)
            }
        }
    }

    /// Publish upload `id`.
    pub async fn complete_upload(&self, id: &str) -> Result<ObjectMeta, CapabilityError> {
        let (w, _) = self.take_writer(id)?;
        let up = self
            .uploads
            .lock()
            .expect("not poisoned")
            .remove(id)
            .expect("present: its writer was just taken");
        let t = self.target.clone();
        let rel = up.rel.clone();
        blocking(move || {
            w.commit()
                .map_err(|e| t.failed(format!("storing '{rel}'"), e))
        })
        .await?;
        tracing::debug!(repository = %self.target.repository, key = %up.full, bytes = up.size, "object-store upload completed");
        self.readers.lock().expect("not poisoned").remove(&up.full);
        Ok(ObjectMeta {
            key: up.rel,
            size: up.size,
            modified_ms: Some(now_ms()),
        })
    }

    /// Drop upload `id` (its writer aborts); an unknown id is `invalid`.
    pub fn abort_upload(&self, id: &str) -> Result<(), CapabilityError> {
        let up = self.uploads.lock().expect("not poisoned").remove(id);
        match up {
            Some(_) => Ok(()),
            None => Err(CapabilityError::Invalid(format!(
                "unknown upload id '{id}'"
            ))),
        }
    }

    /// Up to `max_len` (at most [`MAX_READ`]) bytes of `key` from `offset`;
    /// empty at or past the end. A missing object is `invalid`.
    pub async fn read(
        &self,
        key: &str,
        offset: u64,
        max_len: u32,
    ) -> Result<Vec<u8>, CapabilityError> {
        let (full, rel) = self.target.full(key)?;
        let len = max_len.min(MAX_READ) as usize;
        let t = self.target.clone();
        if t.local.is_some() {
            return blocking(move || {
                let local = t.local.as_ref().expect("checked");
                let missing = || CapabilityError::Invalid(format!("no object '{rel}'"));
                let path = local.path_of(&full);
                let mut f = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            || e.raw_os_error() == Some(libc::ENOTDIR) =>
                    {
                        return Err(missing());
                    }
                    Err(e) => return Err(t.failed(format!("reading '{rel}'"), e)),
                };
                let io = |e: std::io::Error| t.failed(format!("reading '{rel}'"), e);
                if !f.metadata().map_err(io)?.is_file() {
                    return Err(missing());
                }
                f.seek(SeekFrom::Start(offset)).map_err(io)?;
                let mut buf = vec![0u8; len];
                let n = read_full(&mut f, &mut buf).map_err(io)?;
                buf.truncate(n);
                Ok(buf)
            })
            .await;
        }
        let cached = {
            let mut rs = self.readers.lock().expect("not poisoned");
            match rs.remove(&full) {
                Some((at, r)) if at == offset => Some(r),
                _ => None,
            }
        };
        let k = full.clone();
        let (buf, reader) = blocking(move || {
            let io = |e: std::io::Error| t.failed(format!("reading '{rel}'"), e);
            let mut r = match cached {
                Some(r) => r,
                None => {
                    let mut r = t
                        .repo
                        .open(&k)
                        .map_err(|e| t.failed(format!("reading '{rel}'"), e))?
                        .ok_or_else(|| CapabilityError::Invalid(format!("no object '{rel}'")))?;
                    let skipped = std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
                        .map_err(io)?;
                    if skipped < offset {
                        return Ok((Vec::new(), None));
                    }
                    r
                }
            };
            let mut buf = vec![0u8; len];
            let n = read_full(&mut r, &mut buf).map_err(io)?;
            buf.truncate(n);
            // a short read is the end: nothing to keep open
            Ok((buf, (n == len && n > 0).then_some(r)))
        })
        .await?;
        if let Some(r) = reader {
            let mut rs = self.readers.lock().expect("not poisoned");
            if rs.len() >= MAX_READERS
                && let Some(k) = rs.keys().next().cloned()
            {
                rs.remove(&k);
            }
            rs.insert(full, (offset + buf.len() as u64, r));
        }
        Ok(buf)
    }

    /// Metadata of `key`, `None` if there is no object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, CapabilityError> {
        let (full, rel) = self.target.full(key)?;
        let t = self.target.clone();
        blocking(move || {
            Ok(t.stat(&full, &rel)?.map(|(size, modified_ms)| ObjectMeta {
                key: rel,
                size,
                modified_ms,
            }))
        })
        .await
    }

    /// Objects under `prefix/` (empty: under the granted prefix), sorted.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectMeta>, CapabilityError> {
        let full = if prefix.trim_matches('/').is_empty() {
            self.target.prefix.clone().ok_or_else(|| {
                CapabilityError::Invalid(format!(
                    "listing all of {} needs a prefix",
                    self.target.describe()
                ))
            })?
        } else {
            self.target.full(prefix)?.0
        };
        let t = self.target.clone();
        blocking(move || {
            let keys = t
                .repo
                .list(&full)
                .map_err(|e| t.failed(format!("listing '{prefix}'", prefix = full), e))?;
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let Some(rel) = t.relative(&k) else { continue };
                if let Some((size, modified_ms)) = t.stat(&k, &rel)? {
                    out.push(ObjectMeta {
                        key: rel,
                        size,
                        modified_ms,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Delete `key`; a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), CapabilityError> {
        let (full, rel) = self.target.full(key)?;
        self.readers.lock().expect("not poisoned").remove(&full);
        let t = self.target.clone();
        blocking(move || {
            t.repo
                .delete(&full)
                .map_err(|e| t.failed(format!("deleting '{rel}'"), e))
        })
        .await
    }
}

impl HostState {
    /// The session of this call, if the plugin is granted `object_store`.
    fn session(&self) -> Result<Arc<Session>, CapabilityError> {
        let Some(g) = &self.call.grants.object_store else {
            return Err(super::not_granted(format!(
                "plugin '{}' is not granted `object_store`",
                self.call.plugin
            )));
        };
        self.object_store.clone().ok_or_else(|| {
            CapabilityError::NotConfigured(format!(
                "plugin '{}' has no object-store backend in this call (grant: bucket {}, prefix {}; \
                 the capability serves artifact plugins backing a repository)",
                self.call.plugin, g.bucket, g.prefix
            ))
        })
    }
}

macro_rules! with_session {
    ($self:ident, |$s:ident| $body:expr) => {
        Ok(match $self.session() {
            Ok($s) => $body,
            Err(e) => Err(e),
        })
    };
}

impl Host for HostState {
    async fn begin_upload(&mut self, key: String) -> R<String> {
        with_session!(self, |s| s.begin_upload(&key).await)
    }
    async fn upload_part(&mut self, upload_id: String, data: Vec<u8>) -> R<()> {
        with_session!(self, |s| s.upload_part(&upload_id, data).await)
    }
    async fn complete_upload(&mut self, upload_id: String) -> R<ObjectMeta> {
        with_session!(self, |s| s.complete_upload(&upload_id).await)
    }
    fn abort_upload(&mut self, upload_id: String) -> R<()> {
        with_session!(self, |s| s.abort_upload(&upload_id))
    }
    async fn read(&mut self, key: String, offset: u64, max_len: u32) -> R<Vec<u8>> {
        with_session!(self, |s| s.read(&key, offset, max_len).await)
    }
    async fn head(&mut self, key: String) -> R<Option<ObjectMeta>> {
        with_session!(self, |s| s.head(&key).await)
    }
    async fn list_objects(&mut self, prefix: String) -> R<Vec<ObjectMeta>> {
        with_session!(self, |s| s.list_objects(&prefix).await)
    }
    async fn delete(&mut self, key: String) -> R<()> {
        with_session!(self, |s| s.delete(&key).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::ObjectStoreRepository;

    fn local(dir: &std::path::Path, prefix: &str) -> Arc<Session> {
        let repo = LocalRepository::new(dir);
        Session::new(Arc::new(
            Target::new("backing", Arc::new(repo.clone()), Some(repo), prefix).unwrap(),
        ))
    }

    async fn put(s: &Session, key: &str, parts: &[&[u8]]) -> Result<ObjectMeta, CapabilityError> {
        let id = s.begin_upload(key).await?;
        for p in parts {
            s.upload_part(&id, p.to_vec()).await?;
        }
        s.complete_upload(&id).await
    }

    fn not_granted(r: Result<impl std::fmt::Debug, CapabilityError>) -> String {
        match r {
            Err(CapabilityError::NotGranted(m)) => m,
            other => panic!("expected not-granted, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_are_scoped_to_the_granted_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let s = local(dir.path(), "/tenants/a/");
        let meta = put(&s, "x//y.txt", &[b"hello ", b"world"]).await.unwrap();
        assert_eq!((meta.key.as_str(), meta.size), ("x/y.txt", 11));
        // the object is the repository's key <prefix>/<key>
        let file = dir.path().join("tenants/a/x/y.txt");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello world");
        assert_eq!(s.read("x/y.txt", 6, 100).await.unwrap(), b"world");
        assert_eq!(s.read("x/y.txt", 0, 5).await.unwrap(), b"hello");
        assert!(s.read("x/y.txt", 11, 5).await.unwrap().is_empty());
        let h = s.head("x/y.txt").await.unwrap().unwrap();
        assert_eq!((h.key.as_str(), h.size), ("x/y.txt", 11));
        assert!(h.modified_ms.is_some());
        assert!(s.head("x/nope").await.unwrap().is_none());
        assert!(matches!(
            s.read("x/nope", 0, 1).await,
            Err(CapabilityError::Invalid(m)) if m.contains("x/nope")
        ));
        // listing: relative keys, under the prefix only
        std::fs::create_dir_all(dir.path().join("tenants/b")).unwrap();
        std::fs::write(dir.path().join("tenants/b/secret"), "b's").unwrap();
        put(&s, "x/z/w", &[b"1"]).await.unwrap();
        let keys = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
        assert_eq!(
            keys(s.list_objects("x").await.unwrap()),
            ["x/y.txt", "x/z/w"]
        );
        assert_eq!(
            keys(s.list_objects("").await.unwrap()),
            ["x/y.txt", "x/z/w"]
        );
        s.delete("x/y.txt").await.unwrap();
        s.delete("x/y.txt").await.unwrap(); // missing: still fine
        assert!(!file.exists());
        // an aborted upload publishes nothing; its id is gone
        let id = s.begin_upload("x/aborted").await.unwrap();
        s.upload_part(&id, b"partial".to_vec()).await.unwrap();
        s.abort_upload(&id).unwrap();
        assert!(!dir.path().join("tenants/a/x/aborted").exists());
        assert!(matches!(
            s.upload_part(&id, b"more".to_vec()).await,
            Err(CapabilityError::Invalid(m)) if m.contains(&id)
        ));
        assert!(matches!(
            s.complete_upload("upload-999").await,
            Err(CapabilityError::Invalid(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prefix_escape_is_not_granted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tenants/b")).unwrap();
        std::fs::write(dir.path().join("tenants/b/secret"), "b's").unwrap();
        std::fs::write(dir.path().join("top"), "top").unwrap();
        let s = local(dir.path(), "tenants/a");
        for key in ["../b/secret", "x/../../b/secret", "..", "a/..", "../../top"] {
            let m = not_granted(s.read(key, 0, 100).await);
            assert!(m.contains("tenants/a/") && m.contains("'backing'"), "{m}");
            not_granted(s.head(key).await);
            not_granted(s.begin_upload(key).await);
            not_granted(s.delete(key).await);
            not_granted(s.list_objects(key).await);
        }
        // an absolute-looking key is inside the prefix, not at the root
        assert!(s.head("/top").await.unwrap().is_none());
        put(&s, "/top", &[b"mine"]).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("top")).unwrap(),
            "top"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tenants/a/top")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tenants/b/secret")).unwrap(),
            "b's"
        );
        assert!(matches!(
            s.read("a\\b", 0, 1).await,
            Err(CapabilityError::Invalid(_))
        ));
        // with no prefix, listing everything is refused rather than guessed
        let whole = local(dir.path(), "");
        assert!(matches!(
            whole.list_objects("").await,
            Err(CapabilityError::Invalid(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remote_reads_stream_through_one_open_reader() {
        let repo = Arc::new(
            ObjectStoreRepository::new(
                Arc::new(object_store::memory::InMemory::new()),
                tokio::runtime::Handle::current(),
                "",
                "in-memory repository".into(),
                None,
            )
            .unwrap(),
        );
        let s = Session::new(Arc::new(Target::new("mem", repo, None, "p").unwrap()));
        let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        put(&s, "big", &[&data[..40_000], &data[40_000..]])
            .await
            .unwrap();
        let mut got = Vec::new();
        loop {
            let chunk = s.read("big", got.len() as u64, 30_000).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            got.extend(chunk);
            // sequential reads keep one reader open at the next offset
            let open = s.readers.lock().unwrap().len();
            assert!(open <= 1, "{open}");
        }
        assert_eq!(got, data);
        // a read elsewhere re-opens and skips
        assert_eq!(s.read("big", 5, 3).await.unwrap(), &data[5..8]);
        assert_eq!(s.head("big").await.unwrap().unwrap().size, 100_000);
        let listed = s.list_objects("").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].key.as_str(), listed[0].size), ("big", 100_000));
        not_granted(s.read("../big", 0, 1).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_grant_or_a_session_the_capability_refuses() {
        use crate::config::{Grants, ObjectStoreGrant};
        use crate::runtime::{CallInfo, new_store};
        use weft_engine::runtime::{EventNotifier, LogLine, LogSink};
        struct Discard;
        impl LogSink for Discard {
            fn append(&self, _: LogLine) {}
        }
        impl EventNotifier for Discard {
            fn notify(&self, _: &str) {}
        }
        let engine = wasmtime::Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let caps = Arc::new(crate::host::Capabilities {
            processes: Arc::new(crate::sandbox::ProcessManager::new(
                tmp.path().to_path_buf(),
                false,
                Arc::new(Discard),
                Arc::new(Discard),
            )),
            logs: Arc::new(Discard),
            notifier: Arc::new(Discard),
        });
        let store_with = |grants: Grants| {
            new_store(
                &engine,
                CallInfo {
                    plugin: "p".into(),
                    grants: Arc::new(grants),
                    step: None,
                },
                caps.clone(),
                std::time::Duration::from_secs(1),
                1 << 20,
            )
        };
        let mut none = store_with(Grants::default());
        let r = Host::read(none.data_mut(), "k".into(), 0, 1).await.unwrap();
        assert!(matches!(r, Err(CapabilityError::NotGranted(m)) if m.contains("'p'")));
        let mut granted = store_with(Grants {
            object_store: Some(ObjectStoreGrant {
                bucket: "backing".into(),
                prefix: "t".into(),
            }),
            ..Grants::default()
        });
        let r = Host::head(granted.data_mut(), "k".into()).await.unwrap();
        assert!(matches!(r, Err(CapabilityError::NotConfigured(m)) if m.contains("backing")));
        // with a session it reaches the grant's target
        granted.data_mut().object_store = Some(local(tmp.path(), "t"));
        let r = Host::head(granted.data_mut(), "k".into()).await.unwrap();
        assert!(matches!(r, Ok(None)));
    }
}
