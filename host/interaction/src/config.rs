//! Configuration: defaults → `weft.toml` → `WEFT_*` environment → flags.
//!
//! One `*Options` struct per subsystem; unknown keys in `weft.toml` are an
//! error that names the key, never silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weft_drivers::artifacts::repos::PluginRepositoryOptions;
use weft_drivers::artifacts::{AzureOptions, GcsOptions, S3Options, Secret};
use weft_drivers::{PluginConfig, PluginKind, RepositoryOptions};
use weft_engine::machine::artifacts::ArtifactRepositories;

/// Errors reading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `sqlite:///path/weft.db` or `postgres://…`. Default: `<home>/weft.db`.
    pub url: Option<String>,
    /// `process` (default: survives kill -9) or `power` (fsync'd group commits).
    pub durability: Option<String>,
    /// PostgreSQL only: how long a replica's lease on a workflow lasts without
    /// renewal (default 10 s). A dead replica's workflows are adopted by the
    /// others this long after its last renewal.
    pub lease_seconds: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriversSection {
    pub cpu_budget_ms: u64,
    pub memory_limit_mb: usize,
    pub keep_step_dirs: bool,
}

impl Default for DriversSection {
    fn default() -> Self {
        DriversSection {
            cpu_budget_ms: 2000,
            memory_limit_mb: 256,
            keep_step_dirs: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// An `EnvFilter` directive, e.g. `info,weft_engine=debug`.
    pub level: Option<String>,
}

/// `[server]`: `weft server` and its bearer tokens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Listen address (default `127.0.0.1:2746`).
    pub addr: Option<String>,
    /// Bearer tokens; none configured means the API is open.
    pub tokens: Vec<TokenConfig>,
}

/// One `[[server.tokens]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    /// Namespaces the token may use; `"*"` for all.
    pub namespaces: Vec<String>,
    /// `read`, `submit` or `admin`.
    pub role: String,
}

/// `[artifacts]`: artifact repositories.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactsSection {
    /// `[artifacts.default]`: the repository of every key-only artifact and
    /// every output without a location (Argo's default artifact repository).
    pub default: RepositorySection,
    /// `[artifacts.repositories.NAME]`: named repositories, the targets of
    /// Argo's `spec.artifactRepositoryRef: {configMap, key}` — NAME is `key`
    /// for Argo's default ConfigMap `artifact-repositories` (or none),
    /// `"configMap/key"` otherwise.
    pub repositories: BTreeMap<String, RepositorySection>,
}

/// One artifact repository: exactly one kind, `local`, `s3`, `azure`, `gcs`
/// or `plugin`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepositorySection {
    pub local: Option<LocalRepositorySection>,
    pub s3: Option<S3RepositorySection>,
    pub azure: Option<AzureRepositorySection>,
    pub gcs: Option<GcsRepositorySection>,
    /// The name of a `[[plugins]]` entry of `kind = "artifact"`: a Wasm
    /// component (world `artifact-plugin`) is the repository's backend. Its
    /// `object_store` grant's `bucket` names another repository (`default`
    /// or a NAME here) that holds the bytes the plugin writes.
    pub plugin: Option<String>,
    /// Argo's `keyFormat`: the prefix of default output keys, a template over
    /// `workflow.*` and `pod.name` (default `{{workflow.name}}/{{pod.name}}`).
    /// Also accepted inside the kind, as Argo spells it (`s3.keyFormat`,
    /// `gcs.keyFormat`, `azure.blobNameFormat`).
    #[serde(alias = "keyFormat")]
    pub key_format: Option<String>,
}

/// Argo's `{name, key}` reference to a Kubernetes secret; locally the
/// environment variable `WEFT_SECRET_<NAME>_<KEY>` (upper-cased, `-`/`.` as
/// `_`), as for the secrets granted to plugins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub name: String,
    pub key: String,
}

impl SecretRef {
    /// The same mapping as every other secret (`weft_drivers::host::secret_env_var`).
    pub fn env_var(&self) -> String {
        weft_drivers::host::secret_env_var(&format!("{}.{}", self.name, self.key))
    }
}

/// `azure = { endpoint = "…", container = "…", … }`: a container of an Azure
/// storage account. The shape of Argo's `AzureArtifactRepository`; Argo's
/// camelCase spellings are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureRepositorySection {
    /// The account's blob endpoint, `https://<account>.blob.core.windows.net`
    /// or Azurite's `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
    pub container: String,
    /// Default: from the endpoint.
    pub account: Option<String>,
    /// The account key inline, or the environment variable holding it, or
    /// Argo's `accountKeySecret: {name, key}` (`WEFT_SECRET_<NAME>_<KEY>`).
    /// None: the environment's Azure credentials.
    #[serde(alias = "accountKey")]
    pub account_key: Option<Secret>,
    #[serde(alias = "accountKeyEnv")]
    pub account_key_env: Option<String>,
    #[serde(alias = "accountKeySecret")]
    pub account_key_secret: Option<SecretRef>,
    /// Prepended to every blob name.
    #[serde(default, alias = "keyPrefix")]
    pub key_prefix: String,
    /// Azurite: its default endpoint, account and key unless given.
    #[serde(default, alias = "useEmulator")]
    pub use_emulator: bool,
    /// Argo's `useSDKCreds`: the environment's credential chain, no key.
    #[serde(default, alias = "useSDKCreds")]
    pub use_sdk_creds: bool,
    /// Argo's `blobNameFormat` (this repository's `keyFormat`).
    #[serde(alias = "blobNameFormat")]
    pub blob_name_format: Option<String>,
}

/// `gcs = { bucket = "…", … }`: a Google Cloud Storage bucket, Argo's
/// `GCSArtifactRepository`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsRepositorySection {
    pub bucket: String,
    #[serde(default, alias = "keyPrefix")]
    pub key_prefix: String,
    /// A service-account key (JSON) inline, from an environment variable, from
    /// Argo's `serviceAccountKeySecret: {name, key}`, or a key file. None:
    /// `GOOGLE_APPLICATION_CREDENTIALS` and the other default credentials.
    #[serde(alias = "serviceAccountKey")]
    pub service_account_key: Option<Secret>,
    #[serde(alias = "serviceAccountKeyEnv")]
    pub service_account_key_env: Option<String>,
    #[serde(alias = "serviceAccountKeySecret")]
    pub service_account_key_secret: Option<SecretRef>,
    #[serde(alias = "serviceAccountKeyPath")]
    pub service_account_key_path: Option<PathBuf>,
    /// Another endpoint than `https://storage.googleapis.com`.
    pub endpoint: Option<String>,
    #[serde(alias = "keyFormat")]
    pub key_format: Option<String>,
}

/// `s3 = { endpoint = "…", bucket = "…", … }`: a bucket of any S3-compatible
/// endpoint (AWS, MinIO, Alibaba OSS's S3-compatible endpoint). The shape of
/// Argo's `artifactRepository.s3`; Argo's camelCase spellings are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3RepositorySection {
    /// `host[:port]` as in Argo (scheme from `insecure`), or a URL. Omitted: AWS.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Signing region (default `us-east-1`).
    pub region: Option<String>,
    /// Prepended to every key (Argo's `keyFormat` prefix part).
    #[serde(default, alias = "keyPrefix")]
    pub key_prefix: String,
    /// Plain HTTP to a `host[:port]` endpoint.
    #[serde(default)]
    pub insecure: bool,
    /// `https://<bucket>.<endpoint>/…` (required by Alibaba OSS) instead of path style.
    #[serde(default, alias = "virtualHosted")]
    pub virtual_hosted: bool,
    /// Credentials inline…
    #[serde(alias = "accessKey")]
    pub access_key: Option<String>,
    #[serde(alias = "secretKey")]
    pub secret_key: Option<Secret>,
    /// …or the names of environment variables holding them (the local
    /// counterpart of Argo's `accessKeySecret`/`secretKeySecret`). Neither:
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
    #[serde(alias = "accessKeyEnv")]
    pub access_key_env: Option<String>,
    #[serde(alias = "secretKeyEnv")]
    pub secret_key_env: Option<String>,
    /// Argo's `keyFormat` (this repository's).
    #[serde(alias = "keyFormat")]
    pub key_format: Option<String>,
}

/// `local = { path = "…" }`: a host directory (relative: to weft.toml's directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRepositorySection {
    pub path: PathBuf,
}

/// What a plugin-backed repository takes from the rest of the configuration.
struct PluginContext<'a> {
    /// `[[plugins]]`, paths already resolved.
    plugins: &'a [PluginConfig],
    cache_dir: &'a Path,
    drivers: &'a DriversSection,
}

impl PluginContext<'_> {
    /// Repository `name` (section `label`) backed by plugin `plugin`: a
    /// `[[plugins]]` entry of kind `artifact` with a path.
    fn repository(
        &self,
        name: &str,
        label: &str,
        plugin: &str,
    ) -> Result<PluginRepositoryOptions, String> {
        let Some(p) = self.plugins.iter().find(|p| p.name == plugin) else {
            let artifact: Vec<&str> = self
                .plugins
                .iter()
                .filter(|p| p.kind == PluginKind::Artifact)
                .map(|p| p.name.as_str())
                .collect();
            return Err(format!(
                "{label}: plugin '{plugin}' is not loaded: declare it in [[plugins]] with kind = \"artifact\" \
                 (artifact plugins configured: {})",
                if artifact.is_empty() {
                    "none".to_string()
                } else {
                    artifact.join(", ")
                }
            ));
        };
        if p.kind != PluginKind::Artifact {
            return Err(format!(
                "{label}: plugin '{plugin}' is of kind \"{}\", not \"artifact\" (world {})",
                serde_json::to_value(p.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                PluginKind::Artifact.world()
            ));
        }
        if p.path.is_none() {
            return Err(format!(
                "{label}: plugin '{plugin}' has no `path` (no artifact plugin is embedded)"
            ));
        }
        Ok(PluginRepositoryOptions {
            repository: name.to_string(),
            plugin: p.clone(),
            cache_dir: self.cache_dir.to_path_buf(),
            cpu_budget: std::time::Duration::from_millis(self.drivers.cpu_budget_ms),
            memory_limit_bytes: self.drivers.memory_limit_mb << 20,
        })
    }
}

/// The whole `weft.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub home: Option<PathBuf>,
    pub store: StoreSection,
    pub drivers: DriversSection,
    pub log: LogSection,
    pub plugins: Vec<PluginConfig>,
    /// Semaphore limits: `"<namespace>/<configmap>/<key>" = n`.
    pub semaphores: HashMap<String, u32>,
    pub server: ServerSection,
    pub artifacts: ArtifactsSection,
}

/// Effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub home: PathBuf,
    /// Compiled plugins (`.cwasm`); `$WEFT_CACHE_DIR` or `<home>/cache`.
    pub cache_dir: PathBuf,
    pub store_url: String,
    pub power_durability: bool,
    /// Replica lease length (`[store] lease_seconds`, `WEFT_LEASE_SECONDS`); used
    /// when the store is PostgreSQL, where several engines may share the work.
    pub lease: std::time::Duration,
    pub drivers: DriversSection,
    pub log_format: String,
    pub log_level: String,
    pub plugins: Vec<PluginConfig>,
    pub semaphores: HashMap<String, u32>,
    pub server: ServerSection,
    /// The default artifact repository (`local` at `<home>/artifacts` unless configured).
    pub artifact_repository: RepositoryOptions,
    /// Named artifact repositories (`[artifacts.repositories.NAME]`).
    pub artifact_repositories: BTreeMap<String, RepositoryOptions>,
    /// What the engine needs of them: names and `keyFormat`s.
    pub artifact_key_formats: ArtifactRepositories,
}

fn default_home() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("weft")
}

impl Config {
    /// Load: `explicit` (--config) or `$WEFT_CONFIG`, else `<home>/weft.toml`, else `./weft.toml`.
    pub fn load(explicit: Option<&Path>, home_flag: Option<&Path>) -> Result<Config, ConfigError> {
        let env_home = std::env::var_os("WEFT_HOME").map(PathBuf::from);
        let path = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("WEFT_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let h = home_flag
                    .map(Path::to_path_buf)
                    .or(env_home.clone())
                    .unwrap_or_else(default_home);
                let p = h.join("weft.toml");
                p.exists().then_some(p)
            })
            .or_else(|| {
                let p = PathBuf::from("weft.toml");
                p.exists().then_some(p)
            });
        let file = match &path {
            Some(p) => Self::read_file(p, explicit.is_some())?,
            None => FileConfig::default(),
        };
        let home = home_flag
            .map(Path::to_path_buf)
            .or(env_home)
            .or(file.home.clone())
            .unwrap_or_else(default_home);
        let mut store_url = file
            .store
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", home.join("weft.db").display()));
        if let Ok(u) = std::env::var("WEFT_STORE_URL") {
            store_url = u;
        }
        let mut durability = file
            .store
            .durability
            .clone()
            .unwrap_or_else(|| "process".into());
        if let Ok(d) = std::env::var("WEFT_DURABILITY") {
            durability = d;
        }
        let power_durability = match durability.as_str() {
            "process" => false,
            "power" => true,
            other => {
                return Err(ConfigError::Env {
                    name: "durability".into(),
                    message: format!("{other:?} is not one of \"process\", \"power\""),
                });
            }
        };
        let mut lease_seconds = file.store.lease_seconds.unwrap_or(10);
        if let Ok(v) = std::env::var("WEFT_LEASE_SECONDS") {
            lease_seconds = v.parse().map_err(|_| ConfigError::Env {
                name: "WEFT_LEASE_SECONDS".into(),
                message: format!("{v:?} is not a whole number of seconds"),
            })?;
        }
        if lease_seconds == 0 {
            return Err(ConfigError::Env {
                name: "lease_seconds".into(),
                message: "must be at least 1".into(),
            });
        }
        let lease = std::time::Duration::from_secs(lease_seconds);
        let log_format = std::env::var("WEFT_LOG_FORMAT")
            .ok()
            .or(file.log.format.clone())
            .unwrap_or_else(|| "text".into());
        if !matches!(log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Env {
                name: "WEFT_LOG_FORMAT".into(),
                message: format!("{log_format:?} is not one of \"text\", \"json\""),
            });
        }
        let log_level = std::env::var("WEFT_LOG")
            .ok()
            .or(file.log.level.clone())
            .unwrap_or_else(|| "warn".into());
        let mut plugins = file.plugins.clone();
        if let Some(dir) = path.as_ref().and_then(|p| p.parent()) {
            for p in &mut plugins {
                if let Some(path) = &mut p.path
                    && path.is_relative()
                {
                    *path = dir.join(&*path);
                }
                for ca in &mut p.grants.http_ca_certs {
                    if ca.is_relative() {
                        *ca = dir.join(&*ca);
                    }
                }
            }
        }
        let cache_dir = std::env::var_os("WEFT_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("cache"));
        let plugin_ctx = PluginContext {
            plugins: &plugins,
            cache_dir: &cache_dir,
            drivers: &file.drivers,
        };
        let (artifact_repository, default_key_format) = Self::artifact_repository(
            &file.artifacts.default,
            ("default", "[artifacts.default]"),
            path.as_deref(),
            Some(&home),
            &plugin_ctx,
        )?;
        let mut artifact_repositories = BTreeMap::new();
        let mut artifact_key_formats = ArtifactRepositories {
            default_key_format,
            named: BTreeMap::new(),
        };
        for (name, r) in &file.artifacts.repositories {
            let label = format!("[artifacts.repositories.\"{name}\"]");
            let (o, f) =
                Self::artifact_repository(r, (name, &label), path.as_deref(), None, &plugin_ctx)?;
            artifact_repositories.insert(name.clone(), o);
            artifact_key_formats.named.insert(name.clone(), f);
        }
        Ok(Config {
            cache_dir,
            home,
            store_url,
            power_durability,
            lease,
            drivers: file.drivers,
            log_format,
            log_level,
            plugins,
            semaphores: file.semaphores,
            server: file.server,
            artifact_repository,
            artifact_repositories,
            artifact_key_formats,
        })
    }

    /// One repository section (`label` names it in errors): a local
    /// directory (relative paths are to weft.toml's directory; without any
    /// kind, `<home>/artifacts` for the default and an error for a named
    /// one), an S3 bucket, an Azure container, a GCS bucket or an artifact
    /// plugin; and its `keyFormat`. `name` is the repository's (`default`
    /// or NAME), `label` its section.
    fn artifact_repository(
        r: &RepositorySection,
        (name, label): (&str, &str),
        path: Option<&Path>,
        home: Option<&Path>,
        plugins: &PluginContext<'_>,
    ) -> Result<(RepositoryOptions, Option<String>), ConfigError> {
        let file_err = |message: String| ConfigError::File {
            path: path.map(|p| p.display().to_string()).unwrap_or_default(),
            message,
        };
        let relative = |p: &Path| match path.and_then(Path::parent) {
            Some(d) if p.is_relative() => d.join(p),
            _ => p.to_path_buf(),
        };
        let from_env =
            |field: String, var: &Option<String>| -> Result<Option<String>, ConfigError> {
                let Some(var) = var else { return Ok(None) };
                std::env::var(var).map(Some).map_err(|_| ConfigError::Env {
                    name: var.clone(),
                    message: format!("not set ({label} {field} names it)"),
                })
            };
        let from_secret =
            |field: String, r: &Option<SecretRef>| -> Result<Option<String>, ConfigError> {
                let Some(r) = r else { return Ok(None) };
                from_env(field, &Some(r.env_var()))
            };
        let kinds = [
            r.local.is_some(),
            r.s3.is_some(),
            r.azure.is_some(),
            r.gcs.is_some(),
            r.plugin.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(file_err(format!(
                "{label}: set one of 'local', 's3', 'azure', 'gcs' and 'plugin', not both"
            )));
        }
        let mut inner_format = None;
        let opts = if let Some(p) = &r.plugin {
            RepositoryOptions::Plugin(Box::new(
                plugins.repository(name, label, p).map_err(file_err)?,
            ))
        } else if let Some(l) = &r.local {
            RepositoryOptions::Local {
                path: relative(&l.path),
            }
        } else if let Some(s) = &r.s3 {
            if s.bucket.is_empty() {
                return Err(file_err(format!("{label} s3: 'bucket' is empty")));
            }
            let access_key = match from_env("s3.access_key_env".into(), &s.access_key_env)? {
                Some(k) => Some(k),
                None => s.access_key.clone(),
            };
            let secret_key = match from_env("s3.secret_key_env".into(), &s.secret_key_env)? {
                Some(k) => Some(Secret(k)),
                None => s.secret_key.clone(),
            };
            if access_key.is_some() != secret_key.is_some() {
                return Err(file_err(format!(
                    "{label} s3: give both the access key and the secret key, or neither (then AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
                )));
            }
            inner_format = s.key_format.clone();
            RepositoryOptions::S3(S3Options {
                endpoint: s.endpoint.clone().filter(|e| !e.is_empty()),
                bucket: s.bucket.clone(),
                region: s.region.clone(),
                key_prefix: s.key_prefix.clone(),
                insecure: s.insecure,
                virtual_hosted: s.virtual_hosted,
                access_key,
                secret_key,
            })
        } else if let Some(a) = &r.azure {
            if a.container.is_empty() {
                return Err(file_err(format!("{label} azure: 'container' is empty")));
            }
            let given = [
                a.account_key.is_some(),
                a.account_key_env.is_some(),
                a.account_key_secret.is_some(),
            ];
            if given.iter().filter(|g| **g).count() > 1 {
                return Err(file_err(format!(
                    "{label} azure: give one of account_key, account_key_env and account_key_secret"
                )));
            }
            let account_key = match (
                from_env("azure.account_key_env".into(), &a.account_key_env)?,
                from_secret("azure.account_key_secret".into(), &a.account_key_secret)?,
            ) {
                (Some(k), _) | (None, Some(k)) => Some(Secret(k)),
                (None, None) => a.account_key.clone(),
            };
            if a.endpoint.is_none() && a.account.is_none() && !a.use_emulator {
                return Err(file_err(format!(
                    "{label} azure: give 'endpoint' (https://<account>.blob.core.windows.net) or 'account'"
                )));
            }
            inner_format = a.blob_name_format.clone();
            RepositoryOptions::Azure(AzureOptions {
                endpoint: a.endpoint.clone().filter(|e| !e.is_empty()),
                container: a.container.clone(),
                account: a.account.clone(),
                account_key,
                key_prefix: a.key_prefix.clone(),
                use_emulator: a.use_emulator,
                use_sdk_creds: a.use_sdk_creds,
            })
        } else if let Some(g) = &r.gcs {
            if g.bucket.is_empty() {
                return Err(file_err(format!("{label} gcs: 'bucket' is empty")));
            }
            let key = match (
                from_env(
                    "gcs.service_account_key_env".into(),
                    &g.service_account_key_env,
                )?,
                from_secret(
                    "gcs.service_account_key_secret".into(),
                    &g.service_account_key_secret,
                )?,
            ) {
                (Some(k), _) | (None, Some(k)) => Some(Secret(k)),
                (None, None) => g.service_account_key.clone(),
            };
            if key.is_some() && g.service_account_key_path.is_some() {
                return Err(file_err(format!(
                    "{label} gcs: give a service account key or a key path, not both"
                )));
            }
            inner_format = g.key_format.clone();
            RepositoryOptions::Gcs(GcsOptions {
                bucket: g.bucket.clone(),
                key_prefix: g.key_prefix.clone(),
                service_account_key: key,
                service_account_path: g.service_account_key_path.as_deref().map(relative),
                endpoint: g.endpoint.clone().filter(|e| !e.is_empty()),
            })
        } else if let Some(home) = home {
            RepositoryOptions::Local {
                path: home.join("artifacts"),
            }
        } else {
            return Err(file_err(format!(
                "{label}: set one of 'local', 's3', 'azure', 'gcs' and 'plugin'"
            )));
        };
        let key_format = match (&r.key_format, inner_format) {
            (Some(_), Some(_)) => {
                return Err(file_err(format!(
                    "{label}: 'key_format' is given twice (beside and inside the kind)"
                )));
            }
            (Some(f), None) => Some(f.clone()),
            (None, f) => f,
        };
        if let Some(f) = &key_format
            && f.trim_matches('/').is_empty()
        {
            return Err(file_err(format!("{label}: 'key_format' is empty")));
        }
        Ok((opts, key_format))
    }

    fn read_file(p: &Path, must_exist: bool) -> Result<FileConfig, ConfigError> {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileConfig::default());
            }
            Err(e) => {
                return Err(ConfigError::File {
                    path: p.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: p.display().to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("weft.toml");
        std::fs::write(&p, "[store]\nurll = \"x\"\n").unwrap();
        let err = Config::load(Some(&p), Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn file_values_apply() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("weft.toml");
        std::fs::write(
            &p,
            "[drivers]\ncpu_budget_ms = 5\n[semaphores]\n\"default/cm/k\" = 3\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), Some(dir.path())).unwrap();
        assert_eq!(c.drivers.cpu_budget_ms, 5);
        assert_eq!(c.semaphores["default/cm/k"], 3);
        assert!(c.store_url.ends_with("weft.db"));
    }

    #[test]
    fn s3_artifact_repository() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("weft.toml");
        std::fs::write(
            &p,
            "[artifacts.default]\ns3 = { endpoint = \"127.0.0.1:9000\", bucket = \"art\", insecure = true, key_prefix = \"weft\", access_key = \"AK\", secret_key = \"SECRET\" }\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), Some(dir.path())).unwrap();
        let RepositoryOptions::S3(o) = &c.artifact_repository else {
            panic!("{:?}", c.artifact_repository)
        };
        assert_eq!(o.bucket, "art");
        assert_eq!(o.endpoint_url().unwrap(), "http://127.0.0.1:9000");
        assert_eq!(o.secret_key.as_ref().unwrap().0, "SECRET");
        assert!(!format!("{c:?}").contains("SECRET"));
        // unknown keys and two kinds are errors
        for bad in [
            "[artifacts.default]\ns3 = { bucket = \"b\", buckit = \"x\" }\n",
            "[artifacts.default]\nlocal = { path = \"x\" }\ns3 = { bucket = \"b\" }\n",
            "[artifacts.default]\ns3 = { bucket = \"b\", access_key = \"only\" }\n",
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = Config::load(Some(&p), Some(dir.path()))
                .unwrap_err()
                .to_string();
            let expected = ["buckit", "not both", "both the access key"];
            assert!(expected.iter().any(|x| e.contains(x)), "{e}");
        }
    }

    #[test]
    fn azure_gcs_and_named_repositories_with_key_formats() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("weft.toml");
        // SAFETY: only this test reads this variable.
        unsafe { std::env::set_var("WEFT_SECRET_AZ_CREDS_KEY", "a2V5LWZyb20tc2VjcmV0") };
        std::fs::write(
            &p,
            r#"
[artifacts.default]
keyFormat = "runs/{{workflow.creationTimestamp.Y}}/{{workflow.name}}/{{pod.name}}"
azure = { endpoint = "http://127.0.0.1:10000/devstoreaccount1", container = "art", accountKeySecret = { name = "az-creds", key = "key" } }

[artifacts.repositories.team-a]
gcs = { bucket = "team-a", serviceAccountKeyPath = "sa.json", keyFormat = "a/{{pod.name}}" }

[artifacts.repositories."my-repos/b"]
s3 = { endpoint = "127.0.0.1:9000", bucket = "b", insecure = true }
"#,
        )
        .unwrap();
        let c = Config::load(Some(&p), Some(dir.path())).unwrap();
        let RepositoryOptions::Azure(a) = &c.artifact_repository else {
            panic!("{:?}", c.artifact_repository)
        };
        assert_eq!(a.container, "art");
        assert_eq!(a.account_key.as_ref().unwrap().0, "a2V5LWZyb20tc2VjcmV0");
        assert_eq!(a.account_name().unwrap(), "devstoreaccount1");
        let RepositoryOptions::Gcs(g) = &c.artifact_repositories["team-a"] else {
            panic!("{:?}", c.artifact_repositories)
        };
        assert_eq!(
            g.service_account_path.as_deref(),
            Some(dir.path().join("sa.json").as_path())
        );
        assert!(matches!(
            c.artifact_repositories["my-repos/b"],
            RepositoryOptions::S3(_)
        ));
        let f = &c.artifact_key_formats;
        assert_eq!(
            f.default_key_format.as_deref(),
            Some("runs/{{workflow.creationTimestamp.Y}}/{{workflow.name}}/{{pod.name}}")
        );
        assert_eq!(f.named["team-a"].as_deref(), Some("a/{{pod.name}}"));
        assert_eq!(f.named["my-repos/b"], None);
        assert!(!format!("{c:?}").contains("a2V5LWZyb20tc2VjcmV0"));
        for (bad, expected) in [
            (
                "[artifacts.repositories.x]\n",
                "[artifacts.repositories.\"x\"]: set one of",
            ),
            (
                "[artifacts.default]\nazure = { container = \"c\" }\n",
                "give 'endpoint'",
            ),
            (
                "[artifacts.default]\nazure = { container = \"c\", use_emulator = true, containr = 1 }\n",
                "containr",
            ),
            (
                "[artifacts.default]\nkey_format = \"x\"\ns3 = { bucket = \"b\", keyFormat = \"y\" }\n",
                "given twice",
            ),
            (
                "[artifacts.default]\nazure = { container = \"c\", account = \"a\", accountKeySecret = { name = \"nope\", key = \"k\" } }\n",
                "WEFT_SECRET_NOPE_K",
            ),
            (
                "[artifacts.default]\ngcs = { bucket = \"b\" }\nlocal = { path = \"x\" }\n",
                "not both",
            ),
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = Config::load(Some(&p), Some(dir.path()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{bad}: {e}");
        }
    }
    #[test]
    fn plugin_backed_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("weft.toml");
        let plugins = r#"
[[plugins]]
name = "vault"
path = "vault.wasm"
kind = "artifact"
config = { tenant = "acme" }
[plugins.grants]
object_store = { bucket = "bytes", prefix = "weft" }

[[plugins]]
name = "drv"
path = "drv.wasm"
kind = "driver"
"#;
        std::fs::write(
            &p,
            format!(
                "[drivers]\ncpu_budget_ms = 700\n[artifacts.default]\nplugin = \"vault\"\nkey_format = \"k/{{{{pod.name}}}}\"\n\
                 [artifacts.repositories.bytes]\nlocal = {{ path = \"b\" }}\n\
                 [artifacts.repositories.other]\nplugin = \"vault\"\n{plugins}"
            ),
        )
        .unwrap();
        let c = Config::load(Some(&p), Some(dir.path())).unwrap();
        let RepositoryOptions::Plugin(o) = &c.artifact_repository else {
            panic!("{:?}", c.artifact_repository)
        };
        assert_eq!(o.repository, "default");
        assert_eq!(o.plugin.name, "vault");
        // the plugin's path is resolved against weft.toml's directory, as in [[plugins]]
        assert_eq!(
            o.plugin.path.as_deref(),
            Some(dir.path().join("vault.wasm").as_path())
        );
        assert_eq!(o.cpu_budget, std::time::Duration::from_millis(700));
        assert_eq!(o.cache_dir, c.cache_dir);
        assert_eq!(
            c.artifact_key_formats.default_key_format.as_deref(),
            Some("k/{{pod.name}}")
        );
        let RepositoryOptions::Plugin(o) = &c.artifact_repositories["other"] else {
            panic!("{:?}", c.artifact_repositories)
        };
        assert_eq!(o.repository, "other");
        for (bad, expected) in [
            (
                "[artifacts.default]\nplugin = \"nope\"\n".to_string(),
                vec![
                    "[artifacts.default]",
                    "plugin 'nope' is not loaded",
                    "vault",
                ],
            ),
            (
                "[artifacts.repositories.x]\nplugin = \"drv\"\n".to_string(),
                vec![
                    "[artifacts.repositories.\"x\"]",
                    "plugin 'drv'",
                    "\"driver\"",
                    "not \"artifact\"",
                ],
            ),
            (
                "[artifacts.default]\nplugin = \"vault\"\nlocal = { path = \"x\" }\n".to_string(),
                vec!["not both"],
            ),
            (
                "[artifacts.default]\nplugin = \"vault\"\nplugn = 1\n".to_string(),
                vec!["plugn"],
            ),
        ] {
            std::fs::write(&p, format!("{bad}{plugins}")).unwrap();
            let e = Config::load(Some(&p), Some(dir.path()))
                .unwrap_err()
                .to_string();
            for x in expected {
                assert!(e.contains(x), "{bad}: {e} lacks {x}");
            }
        }
    }
}
