//! `weft:plugin/http`: outbound HTTP and HTTPS to allow-listed hosts only.
//!
//! The transport is `reqwest` (rustls on aws-lc-rs; the system's CA roots,
//! which honour `SSL_CERT_FILE`/`SSL_CERT_DIR`, plus the PEM files of the
//! grant's `http_ca_certs`). The allow-list is checked before any connection
//! is made, and redirects are never followed: a `3xx` goes back to the plugin,
//! whose next request is checked again. `${secret:NAME}` in headers and body
//! is replaced host-side with granted secrets; no message names a value.
//!
//! Clients are process-wide, one per set of extra CA files (built at first
//! use: loading the system roots costs milliseconds), so calls share
//! connections and TLS sessions. [`artifact_client`] is the same for the
//! `http` input artifacts (there redirects are followed, as Argo's executor does).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use weft_bindings::driver::weft::plugin::http::{Host, Request, Response};
use weft_bindings::driver::weft::plugin::types::CapabilityError;

use crate::runtime::HostState;

/// Responses are capped at this size.
const MAX_BODY: usize = 16 * 1024 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting (TCP and TLS handshake) may take this long, whatever the call's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client is for: the capability (no redirects) or artifacts (redirects followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Purpose {
    Capability,
    Artifact,
}

type ClientKey = (Purpose, Vec<PathBuf>);

fn clients() -> &'static Mutex<HashMap<ClientKey, reqwest::Client>> {
    static CLIENTS: OnceLock<Mutex<HashMap<ClientKey, reqwest::Client>>> = OnceLock::new();
    CLIENTS.get_or_init(Mutex::default)
}

/// A client for `purpose`: its timeouts, redirect policy and user agent.
fn client_builder(purpose: Purpose) -> reqwest::ClientBuilder {
    let b = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(match purpose {
            Purpose::Capability => reqwest::redirect::Policy::none(),
            Purpose::Artifact => reqwest::redirect::Policy::limited(10),
        });
    match purpose {
        Purpose::Capability => b,
        Purpose::Artifact => b.user_agent(concat!("weft/", env!("CARGO_PKG_VERSION"))),
    }
}

/// The shared client for `purpose` trusting the system roots and `extra_ca`
/// (PEM files, each one or more certificates). An error names the file.
fn shared(purpose: Purpose, extra_ca: &[PathBuf]) -> Result<reqwest::Client, String> {
    let key = (purpose, extra_ca.to_vec());
    if let Some(c) = clients().lock().expect("client cache").get(&key) {
        return Ok(c.clone());
    }
    let mut certs = Vec::new();
    for p in extra_ca {
        let pem =
            std::fs::read(p).map_err(|e| format!("CA certificate file {}: {e}", p.display()))?;
        let found = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("CA certificate file {}: {}", p.display(), chain(&e)))?;
        if found.is_empty() {
            return Err(format!(
                "CA certificate file {}: no PEM certificate in it",
                p.display()
            ));
        }
        certs.extend(found);
    }
    let builder = |certs: Vec<reqwest::Certificate>, only: bool| {
        let b = client_builder(purpose);
        if only {
            b.tls_certs_only(certs)
        } else {
            b.tls_certs_merge(certs)
        }
        .build()
    };
    let client = match builder(certs.clone(), false) {
        Ok(c) => c,
        // A machine without any system CA roots: plain http still works, and
        // https reaches the hosts the extra CAs vouch for.
        Err(e) => {
            tracing::warn!(
                "no system CA roots for https ({}); trusting only the configured CA files",
                chain(&e)
            );
            builder(certs, true).map_err(|e| format!("building the HTTP client: {}", chain(&e)))?
        }
    };
    clients()
        .lock()
        .expect("client cache")
        .insert(key, client.clone());
    Ok(client)
}

/// The shared client for `http` input artifacts: system CA roots, up to 10
/// redirects (credentials headers dropped when a redirect changes host).
pub(crate) fn artifact_client() -> Result<reqwest::Client, String> {
    shared(Purpose::Artifact, &[])
}

/// A client for one `http` input artifact that presents a TLS client
/// certificate (`auth.clientCert`): as [`artifact_client`], not shared.
pub(crate) fn artifact_client_with_identity(
    identity: reqwest::Identity,
) -> Result<reqwest::Client, String> {
    client_builder(Purpose::Artifact)
        .identity(identity)
        .build()
        .map_err(|e| format!("building the HTTP client: {}", chain(&e)))
}

/// An error with its causes (`reqwest`'s own message alone says little: the
/// refused certificate, the refused connection, are in its sources). The
/// request's URL is left out: callers name what they fetched.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = match e.downcast_ref::<reqwest::Error>() {
        Some(r) if r.url().is_some() => {
            let mut r = format!("{r}");
            // reqwest appends " for url (…)"; the caller names the (redacted) URL
            if let Some(i) = r.find(" for url (") {
                r.truncate(i);
            }
            r
        }
        _ => e.to_string(),
    };
    let mut source = e.source();
    while let Some(s) = source {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        source = s.source();
    }
    out
}

/// `url` as messages show it: no user or password, no query (signed URLs
/// carry their signature there).
pub(crate) fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let had_query = u.query().is_some();
    u.set_query(None);
    u.set_fragment(None);
    let mut s = u.to_string();
    if had_query {
        s.push_str("?…");
    }
    s
}

/// The parsed URL and its `host`, `port` (as the allow-list sees them).
fn target(url: &str) -> Result<(reqwest::Url, String, u16), CapabilityError> {
    let bad = || CapabilityError::Invalid(format!("not an absolute http(s) URL: {url}"));
    let u = reqwest::Url::parse(url).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad());
    }
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let port = u.port_or_known_default().ok_or_else(bad)?;
    Ok((u.clone(), host.to_ascii_lowercase(), port))
}

/// Is `host:port` allowed by the allow-list (`example.com`, `*.example.com`, `host:port`, `*`)?
pub fn host_allowed(allow: &[String], host: &str, port: u16) -> bool {
    allow.iter().any(|a| {
        if a == "*" {
            return true;
        }
        let a = a.to_ascii_lowercase();
        let (pat, pport) = match a.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (h.to_string(), p.parse::<u16>().ok())
            }
            _ => (a.clone(), None),
        };
        if pport.is_some_and(|p| p != port) {
            return false;
        }
        match pat.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => pat == host,
        }
    })
}

fn substitute(state: &HostState, s: &str) -> Result<String, CapabilityError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${secret:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 9..];
        let end = after
            .find('}')
            .ok_or_else(|| CapabilityError::Invalid("unterminated ${secret:…}".into()))?;
        out.push_str(&super::secrets::lookup(state, &after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The request `req` describes, secrets substituted.
fn build(
    state: &HostState,
    client: &reqwest::Client,
    url: reqwest::Url,
    req: Request,
) -> Result<reqwest::RequestBuilder, CapabilityError> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| CapabilityError::Invalid(format!("bad HTTP method {:?}", req.method)))?;
    let mut headers = HeaderMap::new();
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| CapabilityError::Invalid(format!("bad header name {k:?}")))?;
        let value = HeaderValue::from_str(&substitute(state, v)?).map_err(|_| {
            // the value may hold a secret: only the header is named
            CapabilityError::Invalid(format!(
                "header {k:?} has a value that is not valid in HTTP"
            ))
        })?;
        headers.append(name, value);
    }
    let body = match req.body {
        Some(b) => match String::from_utf8(b) {
            Ok(s) => substitute(state, &s)?.into_bytes(),
            Err(e) => e.into_bytes(),
        },
        None => Vec::new(),
    };
    let mut r = client.request(method, url).headers(headers);
    if !body.is_empty() {
        r = r.body(body);
    }
    Ok(r)
}

/// Send `r` and read the response (the plugin names the request in its messages).
async fn exchange(r: reqwest::RequestBuilder) -> Result<Response, CapabilityError> {
    let failed = |e: reqwest::Error| CapabilityError::Failed(chain(&e));
    let mut resp = r.send().await.map_err(failed)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(CapabilityError::Failed(format!(
                "the response body is larger than the {} MiB limit",
                MAX_BODY >> 20
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

impl Host for HostState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, CapabilityError>> {
        let (url, host, port) = match target(&req.url) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if !host_allowed(&self.call.grants.http_hosts, &host, port) {
            return Ok(Err(super::not_granted(format!(
                "plugin '{}' may not reach {host}:{port}",
                self.call.plugin
            ))));
        }
        let client = match shared(Purpose::Capability, &self.call.grants.http_ca_certs) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Err(CapabilityError::NotConfigured(format!(
                    "plugin '{}': {e}",
                    self.call.plugin
                ))));
            }
        };
        let timeout = req
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT);
        let r = match build(self, &client, url, req) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match tokio::time::timeout(timeout, exchange(r)).await {
            Ok(r) => r,
            Err(_) => Err(CapabilityError::Failed(format!(
                "timed out after {timeout:?}"
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let allow = vec![
            "example.com".to_string(),
            "*.svc.local".into(),
            "127.0.0.1:8080".into(),
        ];
        assert!(host_allowed(&allow, "example.com", 443));
        assert!(host_allowed(&allow, "a.svc.local", 80));
        assert!(!host_allowed(&allow, "svc.local", 80));
        assert!(host_allowed(&allow, "127.0.0.1", 8080));
        assert!(!host_allowed(&allow, "127.0.0.1", 8081));
        assert!(!host_allowed(&allow, "evil.com", 80));
        assert!(host_allowed(&["*".to_string()], "anything.example", 1));
        assert!(!host_allowed(&[], "anything.example", 1));
        assert!(host_allowed(&["[::1]:8443".to_string()], "[::1]", 8443));
        assert!(!host_allowed(&["[::1]:8443".to_string()], "[::1]", 443));
    }

    #[test]
    fn targets_are_what_the_allow_list_sees() {
        let (_, host, port) = target("http://h:81/x?y").unwrap();
        assert_eq!((host.as_str(), port), ("h", 81));
        let (_, host, port) = target("HTTPS://Example.COM/x").unwrap();
        assert_eq!((host.as_str(), port), ("example.com", 443));
        // userinfo is not the host
        let (_, host, _) = target("http://evil.com@good.example/").unwrap();
        assert_eq!(host, "good.example");
        let (_, host, port) = target("http://[::1]:8443/").unwrap();
        assert_eq!((host.as_str(), port), ("[::1]", 8443));
        for bad in ["ftp://h/x", "h/x", "http://", "file:///etc/passwd"] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redacted_urls_keep_no_credentials() {
        let u = reqwest::Url::parse("https://user:pw@h.example/a/b?X-Signature=abc#f").unwrap();
        assert_eq!(redact(&u), "https://h.example/a/b?…");
        let u = reqwest::Url::parse("http://h:8080/x").unwrap();
        assert_eq!(redact(&u), "http://h:8080/x");
    }

    #[test]
    fn bad_ca_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing.pem");
        let e = shared(Purpose::Capability, std::slice::from_ref(&missing)).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        let junk = d.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = shared(Purpose::Capability, std::slice::from_ref(&junk)).unwrap_err();
        assert!(e.contains("junk.pem") && e.contains("no PEM"), "{e}");
    }
}
