//! The S3 repository: objects in a bucket of any S3-compatible endpoint (AWS,
//! MinIO, Ceph, Alibaba OSS through its S3-compatible endpoint), through the
//! `object_store` crate.
//!
//! This file builds the `AmazonS3` client from [`S3Options`]; the repository
//! itself (streamed multipart writes and reads, errors naming the repository,
//! secret scrubbing) is the generic [`ObjectStoreRepository`].

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use tokio::runtime::Handle;

use super::ArtifactError;
use super::objstore::{ObjectStoreRepository, client_options, retry, shown_prefix, store_error};

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

/// A bucket (and key prefix) of an S3-compatible endpoint as a repository.
pub type S3Repository = ObjectStoreRepository;

impl ObjectStoreRepository {
    /// An S3 bucket. Builds the client only (no request is made: bad
    /// credentials show at first use).
    pub fn s3(opts: &S3Options, handle: Handle) -> Result<ObjectStoreRepository, ArtifactError> {
        let endpoint = opts.endpoint_url();
        let described = format!(
            "S3 repository s3://{}/{}{}",
            opts.bucket,
            shown_prefix(&opts.key_prefix),
            endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_else(|| " on AWS".into())
        );
        let secret = opts
            .secret_key
            .as_ref()
            .map(|s| s.0.clone())
            .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok())
            .filter(|s| !s.is_empty());
        let fail = |doing: &str, e: &dyn std::fmt::Display| {
            store_error(&described, doing.into(), e, secret.as_deref())
        };
        if opts.bucket.is_empty() {
            return Err(fail("configuring", &"no bucket configured"));
        }
        // from_env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
        // AWS_REGION…; everything configured below takes precedence.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&opts.bucket)
            .with_region(opts.region.as_deref().unwrap_or("us-east-1"))
            .with_virtual_hosted_style_request(opts.virtual_hosted)
            .with_retry(retry())
            .with_client_options(client_options());
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
        let store = b.build().map_err(|e| fail("configuring", &e))?;
        ObjectStoreRepository::new(
            Arc::new(store),
            handle,
            &opts.key_prefix,
            described.clone(),
            secret.clone(),
        )
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
    use super::super::{Key, Repository, testing};
    use super::*;
    use std::io::Write;

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

    #[test]
    fn contract_on_s3s_fs() {
        let (rt, d, o) = setup();
        let r = S3Repository::s3(&o, rt.handle().clone()).unwrap();
        testing::contract(&r);
        // objects are files in the bucket's directory, under the key prefix
        let mut w = r.create(&Key::parse("a/small").unwrap()).unwrap();
        w.write_all(b"hello").unwrap();
        w.commit().unwrap();
        assert_eq!(
            std::fs::read(d.path().join("bucket/pre/fix/a/small")).unwrap(),
            b"hello"
        );
        assert!(
            r.describe().contains("s3://bucket/pre/fix/"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn files_in_parallel_parts_and_ranges_on_s3s_fs() {
        let (rt, d, o) = setup();
        let r = S3Repository::s3(&o, rt.handle().clone()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        testing::files(&r, scratch.path());
        // a multipart object is one file on the server, no parts left over
        let src = scratch.path().join("big");
        let data: Vec<u8> = (0..super::super::objstore::CHUNK * 3 + 1)
            .map(|i| (i % 241) as u8)
            .collect();
        std::fs::write(&src, &data).unwrap();
        r.put_file(&Key::parse("m/big").unwrap(), &src, true)
            .unwrap();
        assert!(std::fs::read(d.path().join("bucket/pre/fix/m/big")).unwrap() == data);
        let dest = scratch.path().join("back");
        assert!(r.get_to_file(&Key::parse("m/big").unwrap(), &dest).unwrap());
        assert!(std::fs::read(&dest).unwrap() == data);
    }

    #[test]
    fn wrong_credentials_name_the_repository_never_the_secret() {
        let (rt, _d, mut o) = setup();
        o.secret_key = Some(Secret("wrong-secret-value".into()));
        let r = S3Repository::s3(&o, rt.handle().clone()).unwrap();
        testing::wrong_credentials(
            &r,
            &["S3 repository s3://bucket/pre/fix/", "127.0.0.1"],
            &["wrong-secret-value", "sk-very-secret"],
        );
        let scratch = tempfile::tempdir().unwrap();
        testing::wrong_credentials_files(
            &r,
            scratch.path(),
            &["S3 repository s3://bucket/pre/fix/", "127.0.0.1"],
            &["wrong-secret-value", "sk-very-secret"],
        );
        assert!(!format!("{o:?}").contains("wrong-secret-value"));
        o.bucket.clear();
        let e = S3Repository::s3(&o, rt.handle().clone()).unwrap_err();
        assert!(e.to_string().contains("no bucket"), "{e}");
    }
}
