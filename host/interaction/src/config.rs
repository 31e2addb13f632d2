//! Configuration: defaults → `weft.toml` → `WEFT_*` environment → flags.
//!
//! One `*Options` struct per subsystem; unknown keys in `weft.toml` are an
//! error that names the key, never silently ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weft_drivers::artifacts::{S3Options, Secret};
use weft_drivers::{PluginConfig, RepositoryOptions};

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
}

/// One artifact repository: exactly one kind, `local` or `s3`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepositorySection {
    pub local: Option<LocalRepositorySection>,
    pub s3: Option<S3RepositorySection>,
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
}

/// `local = { path = "…" }`: a host directory (relative: to weft.toml's directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRepositorySection {
    pub path: PathBuf,
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
            }
        }
        let artifact_repository =
            Self::artifact_repository(&file.artifacts.default, path.as_deref(), &home)?;
        let cache_dir = std::env::var_os("WEFT_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("cache"));
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
        })
    }

    /// `[artifacts.default]`: a local directory (default `<home>/artifacts`;
    /// relative paths are to weft.toml's directory) or an S3 bucket.
    fn artifact_repository(
        r: &RepositorySection,
        path: Option<&Path>,
        home: &Path,
    ) -> Result<RepositoryOptions, ConfigError> {
        let file_err = |message: String| ConfigError::File {
            path: path.map(|p| p.display().to_string()).unwrap_or_default(),
            message,
        };
        match (&r.local, &r.s3) {
            (Some(_), Some(_)) => Err(file_err(
                "[artifacts.default]: set one of 'local' and 's3', not both".into(),
            )),
            (Some(l), None) => Ok(RepositoryOptions::Local {
                path: match path.and_then(Path::parent) {
                    Some(d) if l.path.is_relative() => d.join(&l.path),
                    _ => l.path.clone(),
                },
            }),
            (None, None) => Ok(RepositoryOptions::Local {
                path: home.join("artifacts"),
            }),
            (None, Some(s)) => {
                if s.bucket.is_empty() {
                    return Err(file_err("[artifacts.default] s3: 'bucket' is empty".into()));
                }
                let from_env =
                    |field: &str, var: &Option<String>| -> Result<Option<String>, ConfigError> {
                        let Some(var) = var else { return Ok(None) };
                        std::env::var(var).map(Some).map_err(|_| ConfigError::Env {
                            name: var.clone(),
                            message: format!("not set ([artifacts.default] s3.{field} names it)"),
                        })
                    };
                let access_key = match from_env("access_key_env", &s.access_key_env)? {
                    Some(k) => Some(k),
                    None => s.access_key.clone(),
                };
                let secret_key = match from_env("secret_key_env", &s.secret_key_env)? {
                    Some(k) => Some(Secret(k)),
                    None => s.secret_key.clone(),
                };
                if access_key.is_some() != secret_key.is_some() {
                    return Err(file_err(
                        "[artifacts.default] s3: give both the access key and the secret key, or neither (then AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)".into(),
                    ));
                }
                Ok(RepositoryOptions::S3(S3Options {
                    endpoint: s.endpoint.clone().filter(|e| !e.is_empty()),
                    bucket: s.bucket.clone(),
                    region: s.region.clone(),
                    key_prefix: s.key_prefix.clone(),
                    insecure: s.insecure,
                    virtual_hosted: s.virtual_hosted,
                    access_key,
                    secret_key,
                }))
            }
        }
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
}
