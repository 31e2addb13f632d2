//! The Google Cloud Storage repository: objects in a bucket, through
//! `object_store`'s `GoogleCloudStorage` (the generic
//! [`ObjectStoreRepository`] does the rest).
//!
//! Credentials: a service-account key (JSON, inline or from an environment
//! variable: the local counterpart of Argo's `serviceAccountKeySecret`) or a
//! key file, else object_store's environment chain
//! (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS`, application
//! default credentials, the instance metadata server).
//!
//! **Testing:** no GCS emulator works here with object_store (it writes
//! through the XML API, which fake-gcs-server lacks). The builder wiring is
//! unit-tested below; the repository code is the generic one, held to the
//! same contract as S3 and Azure against `object_store::memory::InMemory`
//! (`objstore.rs`). Nothing has been run against real GCS.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::gcp::GoogleCloudStorageBuilder;
use tokio::runtime::Handle;

use super::objstore::{ObjectStoreRepository, client_options, retry, shown_prefix, store_error};
use super::{ArtifactError, Secret};

/// Where a GCS repository is and how to sign for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcsOptions {
    pub bucket: String,
    /// Prepended (with `/`) to every key; empty: none.
    pub key_prefix: String,
    /// A service-account key, JSON.
    pub service_account_key: Option<Secret>,
    /// …or the path of a service-account key file.
    pub service_account_path: Option<PathBuf>,
    /// Another endpoint than `https://storage.googleapis.com` (a proxy, a fake).
    pub endpoint: Option<String>,
}

/// A bucket (and key prefix) of GCS as an artifact repository.
pub type GcsRepository = ObjectStoreRepository;

impl ObjectStoreRepository {
    /// A GCS bucket. Builds the client only (credentials are read now; they
    /// are checked by the first request).
    pub fn gcs(opts: &GcsOptions, handle: Handle) -> Result<ObjectStoreRepository, ArtifactError> {
        let described = format!(
            "GCS repository gs://{}/{}{}",
            opts.bucket,
            shown_prefix(&opts.key_prefix),
            opts.endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default()
        );
        let secret = opts.service_account_key.as_ref().map(|s| s.0.clone());
        let fail = |e: &dyn std::fmt::Display| {
            store_error(&described, "configuring".into(), e, secret.as_deref())
        };
        if opts.bucket.is_empty() {
            return Err(fail(&"no bucket configured"));
        }
        let mut b = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(&opts.bucket)
            .with_retry(retry())
            .with_client_options(
                client_options().with_allow_http(
                    opts.endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                ),
            );
        if let Some(k) = &opts.service_account_key {
            b = b.with_service_account_key(&k.0);
        }
        if let Some(p) = &opts.service_account_path {
            b = b.with_service_account_path(p.to_string_lossy());
        }
        if let Some(e) = &opts.endpoint {
            b = b.with_base_url(e.trim_end_matches('/'));
        }
        let store = b.build().map_err(|e| fail(&e))?;
        ObjectStoreRepository::new(
            Arc::new(store),
            handle,
            &opts.key_prefix,
            described.clone(),
            secret,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Key, Repository};
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn builder_wiring_names_the_repository_never_the_key() {
        let rt = rt();
        // a key that is not JSON: refused at build, the key not shown
        let o = GcsOptions {
            bucket: "art".into(),
            key_prefix: "weft/runs".into(),
            service_account_key: Some(Secret("{not json, private-very-secret".into())),
            ..Default::default()
        };
        let e = ObjectStoreRepository::gcs(&o, rt.handle().clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("GCS repository gs://art/weft/runs/"), "{e}");
        assert!(!e.contains("private-very-secret"), "{e}");
        // both a key and a key file: object_store refuses
        let e = ObjectStoreRepository::gcs(
            &GcsOptions {
                service_account_key: Some(Secret("{}".into())),
                service_account_path: Some("/nonexistent/key.json".into()),
                ..o.clone()
            },
            rt.handle().clone(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("gs://art/"), "{e}");
        let e = ObjectStoreRepository::gcs(
            &GcsOptions {
                bucket: String::new(),
                ..o.clone()
            },
            rt.handle().clone(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no bucket"), "{e}");
        // the fake-server form of a service account (no OAuth) and an endpoint
        // that refuses connections: the request goes there, the error names
        // the repository
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let sa = format!(
            r#"{{"gcs_base_url": "http://{dead}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#
        );
        let r = ObjectStoreRepository::gcs(
            &GcsOptions {
                service_account_key: Some(Secret(sa)),
                endpoint: Some(format!("http://{dead}")),
                ..o
            },
            rt.handle().clone(),
        )
        .unwrap();
        assert_eq!(
            r.describe(),
            format!("GCS repository gs://art/weft/runs/ at http://{dead}")
        );
        let e = r.list(&Key::parse("x").unwrap()).unwrap_err().to_string();
        assert!(
            e.contains("gs://art/weft/runs/") && e.contains("listing"),
            "{e}"
        );
    }
}
