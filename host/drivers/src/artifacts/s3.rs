//! The S3 repository: objects in a bucket of any S3-compatible endpoint (AWS,
//! MinIO, Ceph, Alibaba OSS through its S3-compatible endpoint), through the
//! `object_store` crate.
//!
//! [`Repository`] is blocking (it runs on `spawn_blocking` threads); each call
//! drives `object_store`'s async client on the runtime [`Handle`] given at
//! construction. Nothing holds a whole object: writes buffer at most one
//! [`CHUNK`] and then become a multipart upload with at most [`PARALLEL`] parts
//! in flight; reads pull the response body chunk by chunk.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder};
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

/// A secret string: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where an S3 repository is and how to sign for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Options {
    /// `host[:port]` (Argo's form; the scheme comes from `insecure`) or a URL
    /// (`http://…`, `https://…`). `None`: AWS (`s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Signing region; default `us-east-1` (what MinIO and s3s expect).
    pub region: Option<String>,
    /// Prepended (with `/`) to every key; empty: none.
    pub key_prefix: String,
    /// Plain HTTP to a `host[:port]` endpoint.
    pub insecure: bool,
    /// `https://<bucket>.<endpoint>/<key>` instead of `https://<endpoint>/<bucket>/<key>`.
    pub virtual_hosted: bool,
    /// Credentials; when unset, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
    /// (and `AWS_SESSION_TOKEN`) from the environment, then the AWS
    /// instance/container credential chain.
    pub access_key: Option<String>,
    pub secret_key: Option<Secret>,
}

impl S3Options {
    /// The endpoint as a URL (`None` for AWS's own).
    pub fn endpoint_url(&self) -> Option<String> {
        let ep = self.endpoint.as_deref()?.trim_end_matches('/');
        Some(if ep.contains("://") {
            ep.to_string()
        } else {
            format!("{}://{ep}", if self.insecure { "http" } else { "https" })
        })
    }

    /// The endpoint's host (and port), for comparing locations.
    pub fn endpoint_host(&self) -> Option<String> {
        let u = self.endpoint_url()?;
        let rest = u.split_once("://").map(|x| x.1).unwrap_or(&u);
        Some(rest.split('/').next().unwrap_or(rest).to_ascii_lowercase())
    }
}

/// A bucket (and key prefix) as an artifact repository.
pub struct S3Repository {
    store: Arc<AmazonS3>,
    handle: Handle,
    prefix: String,
    described: String,
    /// Scrubbed from every message, should a server ever echo it.
    secret: Option<String>,
}

impl std::fmt::Debug for S3Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.described)
    }
}

impl S3Repository {
    /// Build the client (no request is made: bad credentials show at first use).
    pub fn new(opts: &S3Options, handle: Handle) -> Result<S3Repository, ArtifactError> {
        let prefix = opts.key_prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            Key::parse(&prefix)?;
        }
        let endpoint = opts.endpoint_url();
        let described = format!(
            "S3 repository s3://{}/{}{}",
            opts.bucket,
            if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_else(|| " on AWS".into())
        );
        let fail = |message: String| ArtifactError::Store {
            repo: described.clone(),
            message: format!("{described}: {message}"),
        };
        if opts.bucket.is_empty() {
            return Err(fail("no bucket configured".into()));
        }
        // from_env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
        // AWS_REGION…; everything configured below takes precedence.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&opts.bucket)
            .with_region(opts.region.as_deref().unwrap_or("us-east-1"))
            .with_virtual_hosted_style_request(opts.virtual_hosted)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300)),
            );
        if let Some(ep) = &endpoint {
            let url = if opts.virtual_hosted {
                // object_store wants the bucket in a virtual-hosted endpoint
                let (scheme, host) = ep.split_once("://").expect("a URL");
                format!("{scheme}://{}.{host}", opts.bucket)
            } else {
                ep.clone()
            };
            b = b
                .with_endpoint(url)
                .with_allow_http(ep.starts_with("http://"));
        }
        if let Some(k) = &opts.access_key {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &opts.secret_key {
            b = b.with_secret_access_key(&s.0);
        }
        let secret = opts
            .secret_key
            .as_ref()
            .map(|s| s.0.clone())
            .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok())
            .filter(|s| !s.is_empty());
        let store = b.build().map_err(|e| fail(scrub(&e, secret.as_deref())))?;
        Ok(S3Repository {
            store: Arc::new(store),
            handle,
            prefix,
            described,
            secret,
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
        ArtifactError::Store {
            repo: self.described.clone(),
            message: format!("{doing}: {}", scrub(&e, self.secret.as_deref())),
        }
    }
}

/// An error's text with the secret (if any) cut out. Signature mismatches are
/// reported by servers without the secret; this is the belt to those braces.
fn scrub(e: &dyn std::fmt::Display, secret: Option<&str>) -> String {
    let s = e.to_string();
    match secret {
        Some(sec) => s.replace(sec, "<redacted>"),
        None => s,
    }
}

enum State {
    /// Under one chunk so far: a single `PUT` on commit.
    Small(Vec<u8>),
    Multipart(WriteMultipart),
    Done,
}

struct S3Writer {
    store: Arc<AmazonS3>,
    handle: Handle,
    path: Path,
    state: State,
    secret: Option<String>,
}

impl S3Writer {
    fn io(&self, e: object_store::Error) -> std::io::Error {
        std::io::Error::other(scrub(&e, self.secret.as_deref()))
    }
}

impl Write for S3Writer {
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

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<(), ArtifactError> {
        let r = match std::mem::replace(&mut self.state, State::Done) {
            State::Small(v) => self
                .handle
                .block_on(self.store.put(&self.path, PutPayload::from(v)))
                .map(drop),
            State::Multipart(w) => self.handle.block_on(w.finish()).map(drop),
            State::Done => Ok(()),
        };
        r.map_err(|e| ArtifactError::Io {
            what: format!("storing '{}'", self.path),
            source: self.io(e),
        })
    }
}

impl Drop for S3Writer {
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

struct S3Reader {
    handle: Handle,
    body: BoxStream<'static, object_store::Result<Bytes>>,
    cur: Bytes,
    secret: Option<String>,
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.handle.block_on(self.body.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(scrub(&e, self.secret.as_deref())));
                }
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

impl Repository for S3Repository {
    fn describe(&self) -> String {
        self.described.clone()
    }

    fn create(&self, key: &Key) -> Result<Box<dyn ObjectWriter>, ArtifactError> {
        Ok(Box::new(S3Writer {
            store: self.store.clone(),
            handle: self.handle.clone(),
            path: self.path(key),
            state: State::Small(Vec::new()),
            secret: self.secret.clone(),
        }))
    }

    fn open(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, ArtifactError> {
        let path = self.path(key);
        match self.handle.block_on(self.store.get(&path)) {
            Ok(r) => Ok(Some(Box::new(S3Reader {
                handle: self.handle.clone(),
                body: r.into_stream(),
                cur: Bytes::new(),
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

/// An S3-compatible server (`s3s-fs`) in-process on 127.0.0.1, for tests.
#[cfg(test)]
pub(crate) mod testserver {
    use std::net::SocketAddr;
    use std::path::Path;

    /// Serve `root` (a bucket is a directory below it) with one key pair;
    /// runs until the runtime stops.
    pub async fn serve(root: &Path, access_key: &str, secret_key: &str) -> SocketAddr {
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
        let svc = b.build();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let svc = svc.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tokio::runtime::Runtime, tempfile::TempDir, S3Options) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("bucket")).unwrap();
        let addr = rt.block_on(testserver::serve(d.path(), "AKTEST", "sk-very-secret"));
        let o = S3Options {
            endpoint: Some(addr.to_string()),
            bucket: "bucket".into(),
            key_prefix: "pre/fix".into(),
            insecure: true,
            access_key: Some("AKTEST".into()),
            secret_key: Some(Secret("sk-very-secret".into())),
            ..Default::default()
        };
        (rt, d, o)
    }

    fn put(r: &S3Repository, key: &str, data: &[u8]) {
        let mut w = r.create(&Key::parse(key).unwrap()).unwrap();
        for c in data.chunks(100_000) {
            w.write_all(c).unwrap();
        }
        w.commit().unwrap();
    }

    fn get(r: &S3Repository, key: &str) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        r.open(&Key::parse(key).unwrap())
            .unwrap()?
            .read_to_end(&mut v)
            .unwrap();
        Some(v)
    }

    #[test]
    fn put_get_list_small_and_multipart() {
        let (rt, d, o) = setup();
        let r = S3Repository::new(&o, rt.handle().clone()).unwrap();
        put(&r, "a/small", b"hello");
        // 2.5 chunks: a multipart upload of three parts
        let big: Vec<u8> = (0..CHUNK * 5 / 2).map(|i| (i % 251) as u8).collect();
        put(&r, "a/b/big", &big);
        put(&r, "other", b"x");
        assert_eq!(get(&r, "a/small").unwrap(), b"hello");
        assert!(get(&r, "a/big-missing").is_none());
        assert!(get(&r, "a/b/big").unwrap() == big);
        let l: Vec<String> = r
            .list(&Key::parse("a").unwrap())
            .unwrap()
            .into_iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(l, ["a/b/big", "a/small"]);
        // objects are files in the bucket's directory, under the key prefix
        assert_eq!(
            std::fs::read(d.path().join("bucket/pre/fix/a/small")).unwrap(),
            b"hello"
        );
        // an uncommitted writer leaves no object
        let mut w = r.create(&Key::parse("gone").unwrap()).unwrap();
        w.write_all(&big).unwrap();
        drop(w);
        assert!(get(&r, "gone").is_none());
        // delete: one object, then a "directory"; deleting again is no error
        r.delete(&Key::parse("a/small").unwrap()).unwrap();
        r.delete(&Key::parse("a/small").unwrap()).unwrap();
        assert!(get(&r, "a/small").is_none());
        assert_eq!(r.delete_all(&Key::parse("a").unwrap()).unwrap(), 1);
        assert!(r.list(&Key::parse("a").unwrap()).unwrap().is_empty());
        assert_eq!(get(&r, "other").unwrap(), b"x");
        assert!(
            r.describe().contains("s3://bucket/pre/fix/"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn wrong_credentials_name_the_repository_never_the_secret() {
        let (rt, _d, mut o) = setup();
        o.secret_key = Some(Secret("wrong-secret-value".into()));
        let r = S3Repository::new(&o, rt.handle().clone()).unwrap();
        let mut w = r.create(&Key::parse("k").unwrap()).unwrap();
        w.write_all(b"data").unwrap();
        let e = w.commit().unwrap_err().to_string();
        let e2 = r.open(&Key::parse("k").unwrap()).err().unwrap().to_string();
        for e in [e, e2] {
            assert!(
                !e.contains("wrong-secret-value") && !e.contains("sk-very-secret"),
                "{e}"
            );
            assert!(
                e.contains("403") || e.to_lowercase().contains("signature"),
                "{e}"
            );
        }
        let e = r.list(&Key::parse("x").unwrap()).unwrap_err().to_string();
        assert!(e.contains("bucket") && e.contains("127.0.0.1"), "{e}");
        assert!(r.describe().contains("s3://bucket/") && r.describe().contains("127.0.0.1"));
        assert!(!format!("{o:?}").contains("wrong-secret-value"));
    }
}
