//! The Azure Blob repository: blobs in a container, through `object_store`'s
//! `MicrosoftAzure` (the generic [`ObjectStoreRepository`] does the rest:
//! streamed block uploads, streamed reads, errors naming the repository,
//! the account key scrubbed from messages).
//!
//! The endpoint is Argo's `AzureArtifactRepository.endpoint`: the account's
//! blob URL, `https://<account>.blob.core.windows.net`, or for Azurite
//! `http://127.0.0.1:10000/devstoreaccount1` (the account is the first path
//! segment). The account is taken from the endpoint unless given.
//! Credentials: an account key (inline or from an environment variable, the
//! local counterpart of Argo's `accountKeySecret`), else with `use_sdk_creds`
//! (Argo's `useSDKCreds`) or without a key object_store's environment chain
//! (`AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`/
//! `AZURE_TENANT_ID`, workload identity, managed identity). `use_emulator`
//! without an endpoint means Azurite's default `http://127.0.0.1:10000` with
//! its well-known account and key.
//!
//! Tested against a real Azurite (`testing::Azurite`, installed from npm by
//! the tests themselves).

use std::sync::Arc;

use object_store::azure::MicrosoftAzureBuilder;
use tokio::runtime::Handle;

use super::objstore::{ObjectStoreRepository, client_options, retry, shown_prefix, store_error};
use super::{ArtifactError, Secret};

/// Azurite's account and its published key.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Where an Azure Blob repository is and how to sign for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AzureOptions {
    /// The account's blob endpoint URL (see the module doc). `None`:
    /// `https://<account>.blob.core.windows.net` (Azurite's default with
    /// `use_emulator`).
    pub endpoint: Option<String>,
    pub container: String,
    /// The storage account; default: from the endpoint.
    pub account: Option<String>,
    /// A shared key of the account; `None`: the environment's credentials.
    pub account_key: Option<Secret>,
    /// Prepended (with `/`) to every blob name; empty: none.
    pub key_prefix: String,
    /// Azurite: its default endpoint, account and key unless given.
    pub use_emulator: bool,
    /// Argo's `useSDKCreds`: ignore any key, use the environment's credential chain.
    pub use_sdk_creds: bool,
}

impl AzureOptions {
    /// The endpoint URL, without a trailing `/`.
    pub fn endpoint_url(&self) -> Result<String, String> {
        if let Some(e) = self.endpoint.as_deref().filter(|e| !e.is_empty()) {
            let e = e.trim_end_matches('/');
            return Ok(if e.contains("://") {
                e.to_string()
            } else {
                format!("https://{e}")
            });
        }
        if self.use_emulator {
            let a = self.account.as_deref().unwrap_or(EMULATOR_ACCOUNT);
            return Ok(format!("http://127.0.0.1:10000/{a}"));
        }
        match &self.account {
            Some(a) => Ok(format!("https://{a}.blob.core.windows.net")),
            None => Err("give an endpoint or an account".into()),
        }
    }

    /// The account: given, or the endpoint's (`<account>.blob.…` host, else
    /// the first path segment as with Azurite).
    pub fn account_name(&self) -> Result<String, String> {
        if let Some(a) = self.account.as_deref().filter(|a| !a.is_empty()) {
            return Ok(a.to_string());
        }
        let url = self.endpoint_url()?;
        let rest = url.split_once("://").map(|x| x.1).unwrap_or(&url);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = host.split(':').next().unwrap_or(host);
        if let Some((acct, _)) = host.split_once(".blob.") {
            return Ok(acct.to_string());
        }
        match path.split('/').find(|s| !s.is_empty()) {
            Some(a) => Ok(a.to_string()),
            None if self.use_emulator => Ok(EMULATOR_ACCOUNT.into()),
            None => Err(format!(
                "cannot tell the storage account from endpoint {url}: give 'account'"
            )),
        }
    }

    /// The host (and port) and account, for comparing locations.
    pub(crate) fn identity(&self) -> Option<(String, String)> {
        let url = self.endpoint_url().ok()?;
        let rest = url.split_once("://").map(|x| x.1).unwrap_or(&url);
        let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
        Some((host, self.account_name().ok()?))
    }
}

/// A container (and blob name prefix) as an artifact repository.
pub type AzureRepository = ObjectStoreRepository;

impl ObjectStoreRepository {
    /// An Azure Blob container. Builds the client only (no request is made:
    /// a missing container or bad key shows at first use).
    pub fn azure(
        opts: &AzureOptions,
        handle: Handle,
    ) -> Result<ObjectStoreRepository, ArtifactError> {
        let endpoint = opts.endpoint_url();
        let described = format!(
            "Azure repository azure://{}/{}{}",
            opts.container,
            shown_prefix(&opts.key_prefix),
            endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default()
        );
        let key = match (&opts.account_key, opts.use_sdk_creds, opts.use_emulator) {
            (_, true, _) => None,
            (Some(k), _, _) => Some(k.0.clone()),
            (None, _, true) => Some(EMULATOR_KEY.to_string()),
            (None, _, false) => None,
        };
        let secret = key
            .clone()
            .or_else(|| std::env::var("AZURE_STORAGE_ACCOUNT_KEY").ok())
            .or_else(|| std::env::var("AZURE_CLIENT_SECRET").ok());
        let fail = |e: &dyn std::fmt::Display| {
            store_error(&described, "configuring".into(), e, secret.as_deref())
        };
        if opts.container.is_empty() {
            return Err(fail(&"no container configured"));
        }
        let endpoint = endpoint.map_err(|e| fail(&e))?;
        let account = opts.account_name().map_err(|e| fail(&e))?;
        // from_env: AZURE_STORAGE_*, AZURE_CLIENT_*…; what is configured wins.
        // Not `with_use_emulator`: it ignores the endpoint (it reads
        // AZURITE_BLOB_STORAGE_URL); an Azurite URL with the account in its
        // path signs and addresses the same.
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_account(&account)
            .with_container_name(&opts.container)
            .with_endpoint(endpoint.clone())
            .with_retry(retry())
            .with_client_options(client_options())
            .with_allow_http(endpoint.starts_with("http://"));
        if let Some(k) = &key {
            b = b.with_access_key(k);
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
    use super::super::{Key, Repository, testing};
    use super::*;

    #[test]
    fn endpoint_and_account() {
        let o = AzureOptions {
            endpoint: Some("https://myacct.blob.core.windows.net/".into()),
            container: "c".into(),
            ..Default::default()
        };
        assert_eq!(
            o.endpoint_url().unwrap(),
            "https://myacct.blob.core.windows.net"
        );
        assert_eq!(o.account_name().unwrap(), "myacct");
        let o = AzureOptions {
            endpoint: Some("http://127.0.0.1:10000/devstoreaccount1".into()),
            ..Default::default()
        };
        assert_eq!(o.account_name().unwrap(), "devstoreaccount1");
        let o = AzureOptions {
            use_emulator: true,
            ..Default::default()
        };
        assert_eq!(
            o.endpoint_url().unwrap(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        let o = AzureOptions {
            account: Some("acct".into()),
            ..Default::default()
        };
        assert_eq!(
            o.endpoint_url().unwrap(),
            "https://acct.blob.core.windows.net"
        );
        let o = AzureOptions {
            endpoint: Some("http://10.0.0.1:9999".into()),
            ..Default::default()
        };
        assert!(o.account_name().unwrap_err().contains("give 'account'"));
    }

    #[test]
    fn bad_configuration_names_the_repository_never_the_key() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let o = AzureOptions {
            endpoint: Some("https://acct.blob.core.windows.net".into()),
            container: "art".into(),
            account_key: Some(Secret("not base64 !!! very-secret".into())),
            ..Default::default()
        };
        let e = ObjectStoreRepository::azure(&o, rt.handle().clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("Azure repository azure://art/"), "{e}");
        assert!(!e.contains("very-secret"), "{e}");
        let e = ObjectStoreRepository::azure(
            &AzureOptions {
                container: String::new(),
                ..o
            },
            rt.handle().clone(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no container"), "{e}");
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// The repository contract against a real Azurite.
    #[test]
    fn contract_on_azurite() {
        let Some(az) = testing::Azurite::start_or_skip("contract_on_azurite") else {
            return;
        };
        az.create_container("weft").unwrap();
        let rt = runtime();
        let o = AzureOptions {
            endpoint: Some(az.endpoint()),
            container: "weft".into(),
            account_key: Some(Secret(testing::AZURITE_KEY.into())),
            key_prefix: "runs".into(),
            ..Default::default()
        };
        let r = ObjectStoreRepository::azure(&o, rt.handle().clone()).unwrap();
        testing::contract(&r);
        assert!(
            r.describe().contains("azure://weft/runs/"),
            "{}",
            r.describe()
        );
        // a container that does not exist: an error naming the repository
        let r = ObjectStoreRepository::azure(
            &AzureOptions {
                container: "missing".into(),
                ..o.clone()
            },
            rt.handle().clone(),
        )
        .unwrap();
        let e = r.list(&Key::parse("x").unwrap()).unwrap_err().to_string();
        assert!(e.contains("azure://missing/"), "{e}");
        // a wrong key (valid base64): refused, the key never shown
        let wrong = "d3JvbmctYWNjb3VudC1rZXktdmFsdWUtMDEyMzQ1Njc4OQ==";
        let r = ObjectStoreRepository::azure(
            &AzureOptions {
                account_key: Some(Secret(wrong.into())),
                ..o
            },
            rt.handle().clone(),
        )
        .unwrap();
        testing::wrong_credentials(
            &r,
            &["Azure repository azure://weft/runs/", "127.0.0.1"],
            &[wrong, testing::AZURITE_KEY],
        );
    }
}
