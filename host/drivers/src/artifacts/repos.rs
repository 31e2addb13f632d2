//! Which repository an artifact's location is in.
//!
//! - no location, or a key-only `s3: {key}` / `oss: {key}`: the **default
//!   repository** (Argo's "workflow's artifact repository");
//! - a full location, `s3: {endpoint, bucket, key}` (also `region`,
//!   `insecure`) or `oss: {endpoint, bucket, key}` (Alibaba OSS through its
//!   S3-compatible endpoint, virtual-hosted style): that bucket, as an
//!   [`S3Repository`] with no key prefix, made once and cached. Credentials
//!   are the default S3 repository's when the endpoint is the same host (for
//!   AWS: both without an endpoint), otherwise the environment's
//!   (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`). Argo's per-artifact
//!   `accessKeySecret`/`secretKeySecret` name Kubernetes secrets, which do not
//!   exist locally: they are ignored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::runtime::Handle;

use super::s3::{S3Options, S3Repository};
use super::{ArtifactError, Key, LocalRepository, Repository};

/// Where the default artifact repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryOptions {
    /// A directory on the host; keys are paths below it.
    Local { path: PathBuf },
    /// A bucket (and key prefix) of an S3-compatible endpoint.
    S3(S3Options),
}

/// Where an artifact lives: its repository and its key there.
pub type Located = (Arc<dyn Repository>, Key);

/// The default repository and the ones full locations name.
pub struct Repositories {
    default: Arc<dyn Repository>,
    default_s3: Option<S3Options>,
    handle: Option<Handle>,
    others: Mutex<HashMap<String, Arc<dyn Repository>>>,
}

impl Repositories {
    /// Only `default`; full S3 locations need a runtime `handle` to be served.
    pub fn new(default: Arc<dyn Repository>, handle: Option<Handle>) -> Repositories {
        Repositories {
            default,
            default_s3: None,
            handle,
            others: Mutex::default(),
        }
    }

    /// The default repository `opts` describe; S3 clients run on `handle`.
    pub fn from_options(
        opts: &RepositoryOptions,
        handle: Handle,
    ) -> Result<Repositories, ArtifactError> {
        match opts {
            RepositoryOptions::Local { path } => Ok(Repositories::new(
                Arc::new(LocalRepository::new(path)),
                Some(handle),
            )),
            RepositoryOptions::S3(o) => Repositories::s3(o, handle),
        }
    }

    /// An S3 bucket as the default repository.
    pub fn s3(opts: &S3Options, handle: Handle) -> Result<Repositories, ArtifactError> {
        let repo = S3Repository::new(opts, handle.clone())?;
        Ok(Repositories {
            default: Arc::new(repo),
            default_s3: Some(opts.clone()),
            handle: Some(handle),
            others: Mutex::default(),
        })
    }

    pub fn default_repo(&self) -> &dyn Repository {
        self.default.as_ref()
    }

    /// The repository and key of `a`'s `s3` or `oss` location; `Ok(None)`: it
    /// has none (or no key).
    pub fn locate(&self, a: &Value) -> Result<Option<Located>, ArtifactError> {
        for kind in ["s3", "oss"] {
            let Some(loc) = a.get(kind) else { continue };
            let Some(k) = loc.get("key").and_then(Value::as_str) else {
                return Ok(None);
            };
            let key = Key::parse(k)?;
            let str_of = |f: &str| loc.get(f).and_then(Value::as_str).filter(|s| !s.is_empty());
            if str_of("endpoint").is_none() && str_of("bucket").is_none() {
                return Ok(Some((self.default.clone(), key)));
            }
            let opts = self.full_location(kind, loc)?;
            return Ok(Some((self.repo_for(&opts)?, key)));
        }
        Ok(None)
    }

    /// S3 options for a full location, with the default repository's
    /// credentials when it is the same endpoint.
    fn full_location(&self, kind: &str, loc: &Value) -> Result<S3Options, ArtifactError> {
        let str_of = |f: &str| {
            loc.get(f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut o = S3Options {
            endpoint: str_of("endpoint"),
            bucket: str_of("bucket").unwrap_or_default(),
            region: str_of("region"),
            insecure: loc
                .get("insecure")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            // Alibaba OSS serves only virtual-hosted requests; AWS prefers them.
            virtual_hosted: kind == "oss" || str_of("endpoint").is_none(),
            ..Default::default()
        };
        if o.endpoint.is_none() && kind == "oss" {
            return Err(ArtifactError::Unsupported(
                "an 'oss' location with a bucket needs its endpoint".into(),
            ));
        }
        if let Some(d) = &self.default_s3 {
            let same = match (&o.endpoint, &d.endpoint) {
                (None, None) => true,
                (Some(_), Some(_)) => {
                    // Argo's endpoints have no scheme: compare hosts, and take
                    // the default's scheme when the location does not say.
                    let same = o.endpoint_host() == d.endpoint_host();
                    if same && loc.get("insecure").is_none() {
                        o.insecure = d.insecure;
                    }
                    same
                }
                _ => false,
            };
            if same {
                o.access_key = d.access_key.clone();
                o.secret_key = d.secret_key.clone();
                o.region = o.region.or_else(|| d.region.clone());
                o.virtual_hosted = kind == "oss" || d.virtual_hosted;
                if o.bucket.is_empty() {
                    o.bucket = d.bucket.clone();
                }
            }
        }
        if o.bucket.is_empty() {
            return Err(ArtifactError::Unsupported(format!(
                "the '{kind}' location has an endpoint but no bucket"
            )));
        }
        Ok(o)
    }

    fn repo_for(&self, o: &S3Options) -> Result<Arc<dyn Repository>, ArtifactError> {
        let Some(handle) = &self.handle else {
            return Err(ArtifactError::Unsupported(
                "S3 locations need the engine's runtime".into(),
            ));
        };
        let id = format!(
            "{:?}|{}|{:?}|{}|{}|{:?}",
            o.endpoint_url(),
            o.bucket,
            o.region,
            o.virtual_hosted,
            o.insecure,
            o.access_key
        );
        let mut others = self.others.lock().expect("not poisoned");
        if let Some(r) = others.get(&id) {
            return Ok(r.clone());
        }
        let r: Arc<dyn Repository> = Arc::new(S3Repository::new(o, handle.clone())?);
        others.insert(id, r.clone());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::s3::Secret;
    use super::*;
    use serde_json::json;

    #[test]
    fn key_only_is_the_default_and_full_locations_share_credentials_by_host() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let d = S3Options {
            endpoint: Some("minio.local:9000".into()),
            bucket: "art".into(),
            insecure: true,
            access_key: Some("AK".into()),
            secret_key: Some(Secret("SK".into())),
            ..Default::default()
        };
        let repos = Repositories::s3(&d, rt.handle().clone()).unwrap();
        let (r, k) = repos
            .locate(&json!({"s3": {"key": "a/b.tgz"}}))
            .unwrap()
            .unwrap();
        assert_eq!(k.as_str(), "a/b.tgz");
        assert_eq!(r.describe(), repos.default_repo().describe());
        let o = repos
            .full_location(
                "s3",
                &json!({"endpoint": "minio.local:9000", "bucket": "other", "key": "k"}),
            )
            .unwrap();
        assert_eq!(o.access_key.as_deref(), Some("AK"));
        assert_eq!(o.endpoint_url().unwrap(), "http://minio.local:9000");
        let o = repos
            .full_location(
                "oss",
                &json!({"endpoint": "oss-cn-hangzhou.aliyuncs.com", "bucket": "b", "key": "k"}),
            )
            .unwrap();
        assert!(o.access_key.is_none() && o.virtual_hosted);
        assert_eq!(
            o.endpoint_url().unwrap(),
            "https://oss-cn-hangzhou.aliyuncs.com"
        );
        let (r, _) = repos
            .locate(&json!({"s3": {"endpoint": "minio.local:9000", "bucket": "other", "key": "k"}}))
            .unwrap()
            .unwrap();
        assert!(r.describe().contains("s3://other/"), "{}", r.describe());
        // no S3 default, no runtime: a full location is refused with a reason
        let local = Repositories::new(Arc::new(LocalRepository::new("/nonexistent")), None);
        let e = local
            .locate(&json!({"s3": {"bucket": "b", "key": "k"}}))
            .err()
            .unwrap();
        assert!(e.to_string().contains("runtime"), "{e}");
    }
}
