//! Which repository an artifact's location is in.
//!
//! - no location, or a key-only one (`s3: {key}`, `oss: {key}`,
//!   `azure: {blob}`, `gcs: {key}`): the **workflow's repository** (Argo's
//!   words). That is the repository named by the location's `repository`
//!   field ([`REPOSITORY_FIELD`], which the engine writes for workflows with
//!   `spec.artifactRepositoryRef`: a name of `[artifacts.repositories.NAME]`),
//!   and the **default repository** without one (so locations stored before
//!   named repositories existed keep working);
//! - a full location: that bucket or container, with no key prefix, made
//!   once and cached:
//!   - `s3: {endpoint, bucket, key}` (also `region`, `insecure`) or
//!     `oss: {endpoint, bucket, key}` (Alibaba OSS through its S3-compatible
//!     endpoint, virtual-hosted style): an S3 repository;
//!   - `azure: {endpoint, container, blob}`: an Azure Blob repository;
//!   - `gcs: {bucket, key}`: a GCS repository.
//!
//!   Credentials, first match:
//!   1. the location's own Argo secret selectors ([`SecretSelector`]: a
//!      `{name, key}` is the host environment variable
//!      `WEFT_SECRET_<NAME>_<KEY>`, upper-cased, `-` and `.` as `_`):
//!      `s3`/`oss` `accessKeySecret` **and** `secretKeySecret` (both or
//!      neither), `azure.accountKeySecret` (unless `useSDKCreds`),
//!      `gcs.serviceAccountKeySecret` (the key's JSON). A selector whose
//!      variable is unset fails naming the secret and the variable;
//!   2. those of a configured repository (default first, then the named
//!      ones) of the same kind at the same endpoint (S3: same host, for AWS
//!      both without an endpoint; Azure: same host and account; GCS: same
//!      endpoint);
//!   3. the environment's (`AWS_ACCESS_KEY_ID`…, `AZURE_STORAGE_ACCOUNT_KEY`…,
//!      `GOOGLE_APPLICATION_CREDENTIALS`…).
//!
//!   The cache tells credentials apart (its key is the options' redacting
//!   `Debug` plus a SHA-256 of the secret values), so two artifacts of one
//!   bucket with different secrets get two clients. Selectors on a key-only
//!   location are not read: it is the workflow's repository, with that
//!   repository's credentials.
//!
//! A configured repository may also be **backed by an artifact plugin**
//! ([`RepositoryOptions::Plugin`], [`wasm`]): a Wasm component implementing
//! `weft:plugin/artifact-store`. Its object-store grant's `bucket` names
//! another configured repository (`default` for `[artifacts.default]`, else
//! a NAME of `[artifacts.repositories.NAME]`) that is not itself a plugin:
//! [`Repositories::from_config`] builds the plain repositories first, then
//! the plugin-backed ones over them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::runtime::Handle;

use super::azure::AzureOptions;
use super::gcs::GcsOptions;
use super::objstore::ObjectStoreRepository;
use super::s3::S3Options;
use super::{ArtifactError, Key, LocalRepository, Repository, Secret, SecretSelector};
use crate::host::object_store::Target;

// Declared here rather than in `artifacts/mod.rs`: the plugin-backed
// repository is configured through this module.
#[path = "wasm.rs"]
pub mod wasm;

pub use wasm::{PluginRepositoryOptions, WasmRepository};

/// The field of a key-only location that names the repository it is in
/// (`{"s3": {"key": "…", "repository": "team-a"}}`); absent: the default.
pub const REPOSITORY_FIELD: &str = "repository";

/// Where an artifact repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryOptions {
    /// A directory on the host; keys are paths below it.
    Local { path: PathBuf },
    /// A bucket (and key prefix) of an S3-compatible endpoint.
    S3(S3Options),
    /// A container (and blob name prefix) of an Azure storage account.
    Azure(AzureOptions),
    /// A GCS bucket (and key prefix).
    Gcs(GcsOptions),
    /// An artifact plugin (`[artifacts.…] plugin = "NAME"`): a Wasm
    /// component exporting `artifact-store`.
    Plugin(Box<PluginRepositoryOptions>),
}

/// Where an artifact lives: its repository and its key there.
pub type Located = (Arc<dyn Repository>, Key);

/// The default repository, the named ones, and those full locations name.
pub struct Repositories {
    default: Arc<dyn Repository>,
    /// The options of the default (first) and the named repositories, for
    /// lending credentials to full locations at the same endpoint.
    configured: Vec<RepositoryOptions>,
    named: BTreeMap<String, Arc<dyn Repository>>,
    handle: Option<Handle>,
    others: Mutex<HashMap<String, Arc<dyn Repository>>>,
}

/// Build the repository `opts` describe; object stores run on `handle`.
pub fn build(
    opts: &RepositoryOptions,
    handle: Handle,
) -> Result<Arc<dyn Repository>, ArtifactError> {
    Ok(match opts {
        RepositoryOptions::Local { path } => Arc::new(LocalRepository::new(path)),
        RepositoryOptions::S3(o) => Arc::new(ObjectStoreRepository::s3(o, handle)?),
        RepositoryOptions::Azure(o) => Arc::new(ObjectStoreRepository::azure(o, handle)?),
        RepositoryOptions::Gcs(o) => Arc::new(ObjectStoreRepository::gcs(o, handle)?),
        RepositoryOptions::Plugin(o) => {
            return Err(ArtifactError::Unsupported(format!(
                "repository '{}' is backed by plugin '{}', whose object-store grant names \
                 another repository: build it with the others (Repositories::from_config)",
                o.repository, o.plugin.name
            )));
        }
    })
}

/// The name an object-store grant gives `[artifacts.default]`.
pub const DEFAULT_NAME: &str = "default";

/// Build the plugin-backed repository `o`, its object-store grant resolved
/// against the plain repositories `plain` (by name: `default`, or a NAME of
/// `[artifacts.repositories.NAME]`). `plugins` names the plugin-backed
/// repositories, for a clearer refusal.
fn build_plugin(
    o: &PluginRepositoryOptions,
    plain: &BTreeMap<String, (Arc<dyn Repository>, Option<LocalRepository>)>,
    plugins: &[(&str, &str)],
    handle: Handle,
) -> Result<Arc<dyn Repository>, ArtifactError> {
    let target = match &o.plugin.grants.object_store {
        None => None,
        Some(g) => {
            let refuse = |why: String| {
                ArtifactError::Unsupported(format!(
                    "repository '{}': the object_store grant of plugin '{}' names bucket '{}', {why}",
                    o.repository, o.plugin.name, g.bucket
                ))
            };
            let Some((repo, local)) = plain.get(&g.bucket) else {
                if let Some((_, p)) = plugins.iter().find(|(r, _)| *r == g.bucket) {
                    return Err(refuse(format!(
                        "a repository that is itself backed by plugin '{p}' (a plugin's bytes \
                         must go to a local, s3, azure or gcs repository)"
                    )));
                }
                let names: Vec<&str> = plain.keys().map(String::as_str).collect();
                return Err(refuse(format!(
                    "which is not a configured repository (the bucket is '{DEFAULT_NAME}' or a NAME \
                     of [artifacts.repositories.NAME]; configured: {})",
                    names.join(", ")
                )));
            };
            let t = Target::new(g.bucket.clone(), repo.clone(), local.clone(), &g.prefix)
                .map_err(|e| refuse(format!("with a bad prefix: {e}")))?;
            Some(Arc::new(t))
        }
    };
    Ok(Arc::new(WasmRepository::new(o, target, handle)?))
}

impl Repositories {
    /// Only `default`; full locations need a runtime `handle` to be served.
    pub fn new(default: Arc<dyn Repository>, handle: Option<Handle>) -> Repositories {
        Repositories {
            default,
            configured: Vec::new(),
            named: BTreeMap::new(),
            handle,
            others: Mutex::default(),
        }
    }

    /// The default repository `opts` describe; object stores run on `handle`.
    pub fn from_options(
        opts: &RepositoryOptions,
        handle: Handle,
    ) -> Result<Repositories, ArtifactError> {
        Repositories::from_config(opts, &BTreeMap::new(), handle)
    }

    /// The default repository and the named ones (`[artifacts.repositories.NAME]`).
    pub fn from_config(
        default: &RepositoryOptions,
        named: &BTreeMap<String, RepositoryOptions>,
        handle: Handle,
    ) -> Result<Repositories, ArtifactError> {
        // The plain repositories first: a plugin's object-store grant names one.
        let all = std::iter::once((DEFAULT_NAME, default))
            .chain(named.iter().map(|(n, o)| (n.as_str(), o)));
        // (A named repository called `default` is not a grant's target:
        // that name is `[artifacts.default]`'s.)
        let mut plain = BTreeMap::new();
        let mut plugins = Vec::new();
        let mut built: Vec<Option<Arc<dyn Repository>>> = Vec::new();
        for (i, (name, o)) in all.clone().enumerate() {
            let grant_name = i == 0 || name != DEFAULT_NAME;
            built.push(match o {
                RepositoryOptions::Plugin(p) => {
                    if grant_name {
                        plugins.push((name, p.plugin.name.as_str()));
                    }
                    None
                }
                RepositoryOptions::Local { path } => {
                    let local = LocalRepository::new(path);
                    let repo: Arc<dyn Repository> = Arc::new(local.clone());
                    if grant_name {
                        plain.insert(name.to_string(), (repo.clone(), Some(local)));
                    }
                    Some(repo)
                }
                o => {
                    let repo = build(o, handle.clone())?;
                    if grant_name {
                        plain.insert(name.to_string(), (repo.clone(), None));
                    }
                    Some(repo)
                }
            });
        }
        let mut built = all
            .zip(built)
            .map(|((_, o), b)| match (o, b) {
                (_, Some(b)) => Ok(b),
                (RepositoryOptions::Plugin(p), None) => {
                    build_plugin(p, &plain, &plugins, handle.clone())
                }
                _ => unreachable!("only plugin-backed repositories are built second"),
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let mut r = Repositories::new(built.next().expect("the default"), Some(handle.clone()));
        r.configured.push(default.clone());
        for ((name, o), repo) in named.iter().zip(built) {
            r.named.insert(name.clone(), repo);
            r.configured.push(o.clone());
        }
        Ok(r)
    }

    /// An S3 bucket as the default repository.
    pub fn s3(opts: &S3Options, handle: Handle) -> Result<Repositories, ArtifactError> {
        Repositories::from_options(&RepositoryOptions::S3(opts.clone()), handle)
    }

    pub fn default_repo(&self) -> &dyn Repository {
        self.default.as_ref()
    }

    /// A named repository.
    pub fn named(&self, name: &str) -> Option<&Arc<dyn Repository>> {
        self.named.get(name)
    }

    /// Names of the named repositories, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.keys().map(String::as_str)
    }

    /// The workflow's repository a key-only location `loc` means: the one its
    /// `repository` field names, else the default.
    pub fn workflow_repo(&self, loc: &Value) -> Result<Arc<dyn Repository>, ArtifactError> {
        match loc.get(REPOSITORY_FIELD).and_then(Value::as_str) {
            None | Some("") => Ok(self.default.clone()),
            Some(name) => self.named.get(name).cloned().ok_or_else(|| {
                ArtifactError::Unsupported(format!(
                    "no artifact repository named {name:?} is configured ([artifacts.repositories.{name}] in weft.toml)"
                ))
            }),
        }
    }

    /// The repository and key of `a`'s `s3`, `oss`, `azure` or `gcs`
    /// location; `Ok(None)`: it has none (or no key).
    pub fn locate(&self, a: &Value) -> Result<Option<Located>, ArtifactError> {
        for (kind, key_field, full_fields) in [
            ("s3", "key", &["endpoint", "bucket"][..]),
            ("oss", "key", &["endpoint", "bucket"][..]),
            ("azure", "blob", &["endpoint", "container"][..]),
            ("gcs", "key", &["bucket"][..]),
        ] {
            let Some(loc) = a.get(kind) else { continue };
            let Some(k) = loc.get(key_field).and_then(Value::as_str) else {
                return Ok(None);
            };
            let key = Key::parse(k)?;
            let str_of = |f: &str| loc.get(f).and_then(Value::as_str).filter(|s| !s.is_empty());
            if full_fields.iter().all(|f| str_of(f).is_none()) {
                return Ok(Some((self.workflow_repo(loc)?, key)));
            }
            let opts = match kind {
                "azure" => RepositoryOptions::Azure(self.azure_location(loc)?),
                "gcs" => RepositoryOptions::Gcs(self.gcs_location(loc)?),
                _ => RepositoryOptions::S3(self.full_location(kind, loc)?),
            };
            return Ok(Some((self.repo_for(&opts)?, key)));
        }
        Ok(None)
    }

    fn configured_s3(&self) -> impl Iterator<Item = &S3Options> {
        self.configured.iter().filter_map(|o| match o {
            RepositoryOptions::S3(s) => Some(s),
            _ => None,
        })
    }

    /// S3 options for a full location, with a configured repository's
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
        for d in self.configured_s3() {
            let same = match (&o.endpoint, &d.endpoint) {
                (None, None) => true,
                (Some(_), Some(_)) => {
                    // Argo's endpoints have no scheme: compare hosts, and take
                    // the configured scheme when the location does not say.
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
                break;
            }
        }
        if o.bucket.is_empty() {
            return Err(ArtifactError::Unsupported(format!(
                "the '{kind}' location has an endpoint but no bucket"
            )));
        }
        // The location's own secrets come first. Both are checked before
        // either is read, so "one alone" is said whatever the environment.
        let place = format!(
            "the '{kind}' location s3://{}/ {}",
            o.bucket,
            o.endpoint_url()
                .map(|e| format!("at {e}"))
                .unwrap_or_else(|| "on AWS".into())
        );
        let in_place = |e: ArtifactError| ArtifactError::Secret(format!("{place}: {e}"));
        match (
            SecretSelector::of(loc, "accessKeySecret").map_err(in_place)?,
            SecretSelector::of(loc, "secretKeySecret").map_err(in_place)?,
        ) {
            (None, None) => {}
            (Some(a), Some(s)) => {
                let access = a.value("accessKeySecret").map_err(in_place)?;
                let secret = s.value("secretKeySecret").map_err(in_place)?;
                o.access_key = Some(access.0);
                o.secret_key = Some(secret);
            }
            (a, _) => {
                let (given, missing) = if a.is_some() {
                    ("accessKeySecret", "secretKeySecret")
                } else {
                    ("secretKeySecret", "accessKeySecret")
                };
                return Err(ArtifactError::Secret(format!(
                    "{place}: '{given}' without '{missing}': give both, or neither (then the \
                     credentials of a configured repository at that endpoint, else the \
                     environment's)"
                )));
            }
        }
        Ok(o)
    }

    /// Azure options for a full location, with a configured repository's key
    /// when it is the same host and account.
    fn azure_location(&self, loc: &Value) -> Result<AzureOptions, ArtifactError> {
        let str_of = |f: &str| {
            loc.get(f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut o = AzureOptions {
            endpoint: str_of("endpoint"),
            container: str_of("container").unwrap_or_default(),
            use_sdk_creds: loc
                .get("useSDKCreds")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ..Default::default()
        };
        let id = o.identity();
        for d in self.configured.iter().filter_map(|c| match c {
            RepositoryOptions::Azure(a) => Some(a),
            _ => None,
        }) {
            if o.endpoint.is_none() || (id.is_some() && id == d.identity()) {
                o.endpoint = o.endpoint.or_else(|| d.endpoint.clone());
                o.account = d.account.clone();
                o.use_emulator = d.use_emulator;
                if !o.use_sdk_creds {
                    o.account_key = d.account_key.clone();
                    o.use_sdk_creds = d.use_sdk_creds;
                }
                if o.container.is_empty() {
                    o.container = d.container.clone();
                }
                break;
            }
        }
        if o.container.is_empty() {
            return Err(ArtifactError::Unsupported(
                "the 'azure' location has an endpoint but no container".into(),
            ));
        }
        // The location's own key comes first; useSDKCreds (Argo: it wins)
        // means no key at all.
        if !o.use_sdk_creds {
            let place = format!(
                "the 'azure' location azure://{}/ at {}",
                o.container,
                o.endpoint_url().unwrap_or_else(|e| e)
            );
            if let Some((_, key)) = SecretSelector::resolve(loc, "accountKeySecret")
                .map_err(|e| ArtifactError::Secret(format!("{place}: {e}")))?
            {
                o.account_key = Some(key);
            }
        }
        Ok(o)
    }

    /// GCS options for a full location, with the first configured GCS
    /// repository's credentials and endpoint (Argo's GCS locations name no
    /// endpoint: there is one GCS).
    fn gcs_location(&self, loc: &Value) -> Result<GcsOptions, ArtifactError> {
        let mut o = GcsOptions {
            bucket: loc
                .get("bucket")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            ..Default::default()
        };
        if let Some(d) = self.configured.iter().find_map(|c| match c {
            RepositoryOptions::Gcs(g) => Some(g),
            _ => None,
        }) {
            o.service_account_key = d.service_account_key.clone();
            o.service_account_path = d.service_account_path.clone();
            o.endpoint = d.endpoint.clone();
        }
        // The location's own service-account key (JSON) comes first.
        if let Some((_, key)) =
            SecretSelector::resolve(loc, "serviceAccountKeySecret").map_err(|e| {
                ArtifactError::Secret(format!("the 'gcs' location gs://{}/: {e}", o.bucket))
            })?
        {
            o.service_account_key = Some(key);
            o.service_account_path = None;
        }
        Ok(o)
    }

    fn repo_for(&self, o: &RepositoryOptions) -> Result<Arc<dyn Repository>, ArtifactError> {
        let Some(handle) = &self.handle else {
            return Err(ArtifactError::Unsupported(
                "object-store locations need the engine's runtime".into(),
            ));
        };
        let id = cache_key(o);
        let mut others = self.others.lock().expect("not poisoned");
        if let Some(r) = others.get(&id) {
            return Ok(r.clone());
        }
        let r = build(o, handle.clone())?;
        others.insert(id, r.clone());
        Ok(r)
    }
}

/// The key of a full location's cached repository: the options' `Debug`
/// (which redacts secrets, so it shows the endpoint, bucket, access key id,
/// account…) plus a SHA-256 of the secret values, so that the same access key
/// id with another secret (a configured repository's, a location's own) is
/// another client. The key is never logged.
fn cache_key(o: &RepositoryOptions) -> String {
    use sha2::{Digest, Sha256};
    let secrets: Vec<&Secret> = match o {
        RepositoryOptions::S3(s) => s.secret_key.iter().collect(),
        RepositoryOptions::Azure(a) => a.account_key.iter().collect(),
        RepositoryOptions::Gcs(g) => g.service_account_key.iter().collect(),
        RepositoryOptions::Local { .. } | RepositoryOptions::Plugin(_) => Vec::new(),
    };
    let mut h = Sha256::new();
    for s in secrets {
        h.update((s.0.len() as u64).to_le_bytes());
        h.update(s.0.as_bytes());
    }
    format!("{o:?} #{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn key_only_is_the_default_and_full_locations_share_credentials_by_host() {
        let rt = rt();
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

    #[test]
    fn named_repositories_and_azure_and_gcs_locations() {
        let rt = rt();
        let az = AzureOptions {
            endpoint: Some("http://127.0.0.1:10000/devstoreaccount1".into()),
            container: "art".into(),
            account_key: Some(Secret("a2V5".into())),
            ..Default::default()
        };
        let named = BTreeMap::from([
            (
                "team-a".to_string(),
                RepositoryOptions::Local {
                    path: "/tmp/team-a".into(),
                },
            ),
            ("blob".to_string(), RepositoryOptions::Azure(az.clone())),
        ]);
        let repos = Repositories::from_config(
            &RepositoryOptions::Local {
                path: "/tmp/default".into(),
            },
            &named,
            rt.handle().clone(),
        )
        .unwrap();
        assert_eq!(repos.names().collect::<Vec<_>>(), ["blob", "team-a"]);
        let desc = |a: Value| repos.locate(&a).unwrap().unwrap().0.describe();
        assert!(desc(json!({"s3": {"key": "k"}})).contains("/tmp/default"));
        assert!(desc(json!({"s3": {"key": "k", "repository": "team-a"}})).contains("/tmp/team-a"));
        // key-only Azure and GCS locations are the workflow's repository too
        assert!(
            desc(json!({"azure": {"blob": "k", "repository": "blob"}})).contains("azure://art/")
        );
        assert!(desc(json!({"gcs": {"key": "k"}})).contains("/tmp/default"));
        let e = repos
            .locate(&json!({"s3": {"key": "k", "repository": "nope"}}))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("\"nope\"") && e.contains("[artifacts.repositories.nope]"),
            "{e}"
        );
        // a full Azure location at the configured account borrows its key
        let o = repos
            .azure_location(&json!({"endpoint": "http://127.0.0.1:10000/devstoreaccount1", "container": "other", "blob": "k"}))
            .unwrap();
        assert_eq!(o.account_key, az.account_key);
        assert!(desc(json!({"azure": {"endpoint": "http://127.0.0.1:10000/devstoreaccount1", "container": "other", "blob": "k"}})).contains("azure://other/"));
        // elsewhere: the environment's credentials
        let o = repos
            .azure_location(&json!({"endpoint": "https://acct.blob.core.windows.net", "container": "c", "blob": "k"}))
            .unwrap();
        assert!(o.account_key.is_none());
        assert!(desc(json!({"gcs": {"bucket": "gb", "key": "k"}})).contains("gs://gb/"));
        // a bad key in a full location is still refused
        assert!(
            repos
                .locate(&json!({"gcs": {"bucket": "gb", "key": "../x"}}))
                .is_err()
        );
    }
    #[test]
    fn location_secrets_are_both_or_neither_and_named_when_unset() {
        let rt = rt();
        let repos = Repositories::from_options(
            &RepositoryOptions::Local {
                path: "/tmp/default".into(),
            },
            rt.handle().clone(),
        )
        .unwrap();
        let sel = |name: &str, key: &str| json!({"name": name, "key": key});
        let s3 = |extra: &[(&str, Value)]| {
            let mut l = json!({"endpoint": "minio.local:9000", "bucket": "b", "key": "k"});
            for (f, v) in extra {
                l[*f] = v.clone();
            }
            l
        };
        let err = |kind: &str, loc: Value| {
            repos
                .locate(&json!({ kind: loc }))
                .err()
                .expect("refused")
                .to_string()
        };
        // one alone: refused whatever the environment, naming the location
        let e = err("s3", s3(&[("accessKeySecret", sel("weft-unit-set", "a"))]));
        for x in [
            "'accessKeySecret' without 'secretKeySecret'",
            "s3://b/",
            "https://minio.local:9000",
        ] {
            assert!(e.contains(x), "{e} lacks {x}");
        }
        let e = err("oss", s3(&[("secretKeySecret", sel("weft-unit-set", "s"))]));
        assert!(
            e.contains("'secretKeySecret' without 'accessKeySecret'"),
            "{e}"
        );
        let e = err(
            "s3",
            s3(&[
                ("accessKeySecret", json!({"name": "n"})),
                ("secretKeySecret", sel("n", "s")),
            ]),
        );
        assert!(
            e.contains("'accessKeySecret' must name a secret and its key"),
            "{e}"
        );
        // both, unset: the secret and the variable to set
        let e = err(
            "s3",
            s3(&[
                ("accessKeySecret", sel("weft-unit.unset", "access-key")),
                ("secretKeySecret", sel("weft-unit.unset", "secret-key")),
            ]),
        );
        assert!(
            e.contains("secret 'weft-unit.unset' (key 'access-key')")
                && e.contains("set WEFT_SECRET_WEFT_UNIT_UNSET_ACCESS_KEY")
                && e.contains("s3://b/"),
            "{e}"
        );
        // empty selectors say nothing
        let (r, _) = repos
            .locate(&json!({"s3": s3(&[("accessKeySecret", json!({})), ("secretKeySecret", json!({"name": "", "key": ""}))])}))
            .unwrap()
            .unwrap();
        assert!(r.describe().contains("s3://b/"), "{}", r.describe());
        // Azure and GCS: their one key secret
        let e = err(
            "azure",
            json!({"endpoint": "https://acct.blob.core.windows.net", "container": "c", "blob": "k",
                   "accountKeySecret": sel("weft-unit-unset", "account-key")}),
        );
        assert!(
            e.contains("azure://c/")
                && e.contains("'accountKeySecret' names secret 'weft-unit-unset'")
                && e.contains("WEFT_SECRET_WEFT_UNIT_UNSET_ACCOUNT_KEY"),
            "{e}"
        );
        // useSDKCreds wins (as in Argo): the key secret is not read
        assert!(
            repos
                .locate(
                    &json!({"azure": {"endpoint": "https://acct.blob.core.windows.net",
                    "container": "c", "blob": "k", "useSDKCreds": true,
                    "accountKeySecret": sel("weft-unit-unset", "account-key")}})
                )
                .is_ok()
        );
        let e = err(
            "gcs",
            json!({"bucket": "gb", "key": "k", "serviceAccountKeySecret": sel("weft-unit-unset", "sa")}),
        );
        assert!(
            e.contains("gs://gb/") && e.contains("WEFT_SECRET_WEFT_UNIT_UNSET_SA"),
            "{e}"
        );
    }

    #[test]
    fn cached_repositories_tell_credentials_apart_without_holding_values_in_the_key() {
        let o = |secret: &str| {
            RepositoryOptions::S3(S3Options {
                endpoint: Some("minio.local:9000".into()),
                bucket: "b".into(),
                access_key: Some("AK".into()),
                secret_key: Some(Secret(secret.into())),
                ..Default::default()
            })
        };
        let (one, two) = (o("secret-one"), o("secret-two"));
        assert_eq!(format!("{one:?}"), format!("{two:?}"));
        assert_ne!(cache_key(&one), cache_key(&two));
        assert_eq!(cache_key(&one), cache_key(&o("secret-one")));
        assert!(!cache_key(&one).contains("secret-one"));
        let rt = rt();
        let repos = Repositories::new(
            Arc::new(LocalRepository::new("/nonexistent")),
            Some(rt.handle().clone()),
        );
        let a = repos.repo_for(&one).unwrap();
        assert!(Arc::ptr_eq(&a, &repos.repo_for(&o("secret-one")).unwrap()));
        assert!(!Arc::ptr_eq(&a, &repos.repo_for(&two).unwrap()));
    }

    #[test]
    fn a_plugin_repository_grant_names_a_plain_repository() {
        use crate::config::{Grants, ObjectStoreGrant, PluginConfig, PluginKind};
        let rt = rt();
        let plugin = |repository: &str, bucket: &str| {
            RepositoryOptions::Plugin(Box::new(PluginRepositoryOptions {
                repository: repository.into(),
                plugin: PluginConfig {
                    name: "vault".into(),
                    path: Some("/nonexistent/vault.wasm".into()),
                    kind: PluginKind::Artifact,
                    grants: Grants {
                        object_store: Some(ObjectStoreGrant {
                            bucket: bucket.into(),
                            prefix: "weft".into(),
                        }),
                        ..Grants::default()
                    },
                    config: Value::Null,
                },
                cache_dir: "/nonexistent/cache".into(),
                cpu_budget: std::time::Duration::from_secs(1),
                memory_limit_bytes: 1 << 20,
            }))
        };
        let local = |p: &str| RepositoryOptions::Local { path: p.into() };
        // the plugin is the default repository; its bytes go to a named local one
        let named = BTreeMap::from([("bytes".to_string(), local("/tmp/bytes"))]);
        let repos =
            Repositories::from_config(&plugin("default", "bytes"), &named, rt.handle().clone())
                .unwrap();
        let d = repos.default_repo().describe();
        assert_eq!(d, "repository 'default' (artifact plugin 'vault')");
        let (r, _) = repos.locate(&json!({"s3": {"key": "k"}})).unwrap().unwrap();
        assert_eq!(r.describe(), d);
        // and the other way round: `default` is [artifacts.default]
        let named = BTreeMap::from([("vault".to_string(), plugin("vault", "default"))]);
        let repos =
            Repositories::from_config(&local("/tmp/d"), &named, rt.handle().clone()).unwrap();
        let (r, _) = repos
            .locate(&json!({"s3": {"key": "k", "repository": "vault"}}))
            .unwrap()
            .unwrap();
        assert!(r.describe().contains("artifact plugin 'vault'"));
        // refusals name the repository, the plugin and the bucket
        let err = |default: RepositoryOptions, named: BTreeMap<String, RepositoryOptions>| {
            Repositories::from_config(&default, &named, rt.handle().clone())
                .err()
                .unwrap()
                .to_string()
        };
        let e = err(
            plugin("default", "nope"),
            BTreeMap::from([("bytes".to_string(), local("/tmp/b"))]),
        );
        for x in [
            "repository 'default'",
            "plugin 'vault'",
            "bucket 'nope'",
            "configured: bytes",
        ] {
            assert!(e.contains(x), "{e} lacks {x}");
        }
        let e = err(plugin("default", "default"), BTreeMap::new());
        assert!(e.contains("itself backed by plugin 'vault'"), "{e}");
        let e = err(
            local("/tmp/d"),
            BTreeMap::from([
                ("a".to_string(), plugin("a", "b")),
                ("b".to_string(), plugin("b", "default")),
            ]),
        );
        assert!(
            e.contains("repository 'a'") && e.contains("bucket 'b'"),
            "{e}"
        );
        let e = err(
            plugin("default", "bytes"),
            BTreeMap::from([("bytes".to_string(), plugin("bytes", "x"))]),
        );
        assert!(e.contains("itself backed"), "{e}");
        // a bad prefix is refused with the grant
        let mut bad = plugin("default", "bytes");
        if let RepositoryOptions::Plugin(p) = &mut bad {
            p.plugin.grants.object_store.as_mut().unwrap().prefix = "a/../..".into();
        }
        let e = err(
            bad,
            BTreeMap::from([("bytes".to_string(), local("/tmp/b"))]),
        );
        assert!(e.contains("bad prefix") && e.contains(".."), "{e}");
    }
}
