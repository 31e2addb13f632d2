//! Read-only input artifacts that live outside any repository: Argo's `http`
//! and `git` locations. [`super::stage`] decides where they go (and unpacks,
//! selects `subPath`); this module only gets the bytes. Blocking, like the
//! repositories: call it from `spawn_blocking`.
//!
//! - `http: {url, headers: [{name, value}]}`: a `GET` through the shared
//!   `reqwest` client of the http capability's module (rustls, the system's CA
//!   roots, redirects followed up to 10 times, credential headers dropped when a
//!   redirect changes host), its body streamed chunk by chunk into a file. A
//!   `404` is "not found" ([`Http::NotFound`]: an optional artifact is then
//!   skipped, as Argo's executor skips it); any other non-2xx, or a stall of
//!   [`IDLE`] waiting for the next bytes, fails naming the URL without its
//!   user, password or query. `auth.basicAuth: {usernameSecret,
//!   passwordSecret}` (both) is HTTP Basic authentication on the `GET`, each
//!   a [`SecretSelector`] `{name, key}` read from the host environment
//!   variable `WEFT_SECRET_<NAME>_<KEY>` (upper-cased, `-`/`.` as `_`); reqwest
//!   drops the `Authorization` header when a redirect changes host. A `401`
//!   or `403` names the secrets (never their values). `auth.oauth2:
//!   {clientIDSecret, clientSecretSecret, tokenURLSecret, scopes,
//!   endpointParams}`: a client-credentials token (HTTP Basic client
//!   authentication, then the form if the server refuses it, as Go's
//!   `clientcredentials` for Argo) sent as `Authorization: Bearer`, dropped on
//!   a redirect to another host like the basic header. `auth.clientCert:
//!   {clientCertSecret, clientKeySecret}` (PEM): presented in the TLS
//!   handshake by a client of that download's own.
//! - `git: {repo, revision, depth, fetch, singleBranch, branch,
//!   disableSubmodules, insecureIgnoreHostKey, usernameSecret, passwordSecret,
//!   sshPrivateKeySecret}`: the `git` CLI (no shell, args
//!   as a vector, `--` before the repository and directory): `clone` (with
//!   `--depth`, `--branch`, `--single-branch`, `--recurse-submodules` unless
//!   `disableSubmodules`), `fetch` of the refspecs, `checkout <revision>` (in a
//!   shallow clone that lacks it, the revision is fetched first). git runs as
//!   weft's user but with none of its credentials or configuration: `HOME` is a
//!   scratch directory, no system or global config, no ssh agent or identity
//!   files, no prompts (`GIT_TERMINAL_PROMPT=0`, ssh `BatchMode`), and the
//!   `ext::` transport is off. `usernameSecret` and `passwordSecret` (both,
//!   selectors as above; `http(s)://` repositories only) reach git through a
//!   credential helper given in `-c credential.<scheme://host>.helper=…`,
//!   scoped to the repository's host (a submodule or a redirect elsewhere
//!   gets nothing): a shell function that prints `$WEFT_GIT_USERNAME` and
//!   `$WEFT_GIT_PASSWORD`, variables set only in that git child's
//!   environment — never in argv (visible in `/proc`) or the URL, and cut
//!   from any message git prints. `sshPrivateKeySecret` (ssh repositories):
//!   the key is written to a 0600 file in the clone's scratch `HOME` (never
//!   the step's root), given to ssh as its only identity
//!   (`IdentitiesOnly`, no agent) and deleted when the clone ends; host keys
//!   are checked unless `insecureIgnoreHostKey` (a scratch `known_hosts`
//!   starts empty, so in practice an ssh repository needs it, as with Argo
//!   without a known-hosts config). A repository on the engine's own filesystem (`file://…` or a
//!   path) is refused, and so is the `file` transport for submodules: the
//!   clone runs outside the step's sandbox, so it would read what the step
//!   cannot. `WEFT_GIT_ALLOW_LOCAL_REPOS=1` in weft's environment allows it.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{ArtifactError, Secret, SecretSelector};
use crate::host::http::{artifact_client, artifact_client_with_identity, chain, redact};

/// The longest wait for a response's headers or its next bytes.
pub const IDLE: Duration = Duration::from_secs(120);

fn unsupported(m: impl Into<String>) -> ArtifactError {
    ArtifactError::Unsupported(m.into())
}

fn str_field<'a>(loc: &'a Value, f: &str) -> Option<&'a str> {
    loc.get(f).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Whether `v` says something (`{}`, `null`, `""` and `false` say nothing).
fn given(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => o.values().any(|v| given(Some(v))),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Bool(b)) => *b,
        Some(_) => true,
    }
}

/// Run `f` to completion from blocking code: on the runtime of the calling
/// `spawn_blocking` thread, else (a plain thread) on a runtime of its own.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ArtifactError> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => Ok(h.block_on(f)),
        Err(_) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ArtifactError::io("starting a runtime for an http artifact"))?;
            Ok(rt.block_on(f))
        }
    }
}

/// What a download found.
#[derive(Debug, PartialEq, Eq)]
pub enum Http {
    /// The body is in the file.
    Saved { bytes: u64 },
    /// The server answered 404 (no file is left).
    NotFound { shown: String },
}

/// `GET` the `http` location `loc` into the new file `dest`, streamed.
pub fn download(loc: &Value, dest: &Path) -> Result<Http, ArtifactError> {
    let raw = str_field(loc, "url").ok_or_else(|| unsupported("http location without a url"))?;
    let url = reqwest::Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            unsupported(format!(
                "http location: url '{}' is not an absolute http(s) URL",
                raw.split('?')
                    .next()
                    .and_then(|r| r.rsplit('@').next())
                    .unwrap_or("")
            ))
        })?;
    let shown = redact(&url);
    let auth = http_auth(loc, &shown)?;
    let mut headers = reqwest::header::HeaderMap::new();
    for h in loc
        .get("headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let n = h.get("name").and_then(Value::as_str).unwrap_or("");
        let name = reqwest::header::HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| unsupported(format!("GET {shown}: bad header name {n:?}")))?;
        let v = h.get("value").and_then(Value::as_str).unwrap_or("");
        let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
            unsupported(format!(
                "GET {shown}: header {n:?} has a value not valid in HTTP"
            ))
        })?;
        headers.append(name, value);
    }
    let client = match &auth {
        Some(Auth::ClientCert(c)) => {
            let pem = format!("{}\n{}\n", c.cert.0.trim_end(), c.key.0.trim_end());
            let id = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
                ArtifactError::Secret(format!(
                    "GET {shown}: clientCert ({}) is not a PEM certificate and key: {}",
                    c.refs,
                    chain(&e)
                ))
            })?;
            artifact_client_with_identity(id)
        }
        _ => artifact_client(),
    }
    .map_err(|e| unsupported(format!("GET {shown}: {e}")))?;
    let failed = |what: String| ArtifactError::Store {
        repo: shown.clone(),
        message: format!("GET {shown}: {what}"),
    };
    let stalled = || failed(format!("no data for {}s", IDLE.as_secs()));
    block_on(async {
        let mut req = client.get(url.clone()).headers(headers);
        // both marked sensitive: reqwest drops them on a redirect to another host
        match &auth {
            Some(Auth::Basic(b)) => req = req.basic_auth(&b.username.0, Some(&b.password.0)),
            Some(Auth::OAuth2(o)) => {
                let token = o
                    .token(&client)
                    .await
                    .map_err(|e| failed(format!("oauth2: {e}")))?;
                req = req.bearer_auth(token);
            }
            // presented in the TLS handshake, by this request's own client
            Some(Auth::ClientCert(_)) | None => {}
        }
        let send = req.send();
        let mut resp = tokio::time::timeout(IDLE, send)
            .await
            .map_err(|_| stalled())?
            .map_err(|e| failed(chain(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Http::NotFound {
                shown: shown.clone(),
            });
        }
        if !status.is_success() {
            let auth = match &auth {
                // reqwest's rule for dropping sensitive headers on a redirect
                Some(_)
                    if matches!(status.as_u16(), 401 | 403)
                        && (resp.url().host_str() != url.host_str()
                            || resp.url().port_or_known_default()
                                != url.port_or_known_default()) =>
                {
                    " (after a redirect to another host, which gets no credentials)".to_string()
                }
                Some(Auth::Basic(b)) if matches!(status.as_u16(), 401 | 403) => format!(
                    " (basic auth with usernameSecret {} and passwordSecret {})",
                    b.username_ref, b.password_ref
                ),
                Some(Auth::OAuth2(o)) if matches!(status.as_u16(), 401 | 403) => {
                    format!(" (an oauth2 token from {})", o.refs)
                }
                Some(Auth::ClientCert(c)) if matches!(status.as_u16(), 401 | 403) => {
                    format!(" (client certificate {})", c.refs)
                }
                _ => String::new(),
            };
            return Err(failed(format!("the server answered {status}{auth}")));
        }
        let mut out = std::fs::File::create(dest)
            .map_err(ArtifactError::io(format!("creating {}", dest.display())))?;
        let mut bytes = 0u64;
        loop {
            let chunk = tokio::time::timeout(IDLE, resp.chunk())
                .await
                .map_err(|_| stalled())?
                .map_err(|e| failed(format!("reading the body: {}", chain(&e))))?;
            let Some(chunk) = chunk else { break };
            // a blocking write: this runs on a blocking thread, not a worker
            out.write_all(&chunk)
                .map_err(ArtifactError::io(format!("writing {}", dest.display())))?;
            bytes += chunk.len() as u64;
        }
        Ok(Http::Saved { bytes })
    })?
    .inspect_err(|_| {
        let _ = std::fs::remove_file(dest);
    })
}

/// Basic-auth credentials, and the selectors they came from (for messages).
struct BasicAuth {
    username: Secret,
    password: Secret,
    username_ref: SecretSelector,
    password_ref: SecretSelector,
}

/// OAuth2 client credentials (Argo's `auth.oauth2`): a token is fetched from
/// the token URL and sent as `Authorization: Bearer`.
struct OAuth2 {
    client_id: Secret,
    client_secret: Secret,
    token_url: Secret,
    scopes: Vec<String>,
    params: Vec<(String, String)>,
    /// The selectors, for messages: never the values.
    refs: String,
}

/// A TLS client certificate and its key (PEM), from `auth.clientCert`.
struct ClientCert {
    cert: Secret,
    key: Secret,
    refs: String,
}

/// How a download authenticates.
enum Auth {
    Basic(BasicAuth),
    OAuth2(OAuth2),
    ClientCert(ClientCert),
}

/// The `auth` of an `http` location: `basicAuth`, `oauth2` or `clientCert`
/// resolved. `shown`: the URL as messages show it.
fn http_auth(loc: &Value, shown: &str) -> Result<Option<Auth>, ArtifactError> {
    let Some(auth) = loc.get("auth").filter(|a| given(Some(a))) else {
        return Ok(None);
    };
    let kinds: Vec<&str> = auth
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| given(Some(v)))
        .map(|(k, _)| k.as_str())
        .collect();
    let refused: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| !matches!(*k, "basicAuth" | "oauth2" | "clientCert"))
        .collect();
    if !refused.is_empty() || !auth.is_object() {
        return Err(unsupported(format!(
            "GET {shown}: auth {} is not supported (basicAuth: {{usernameSecret, \
             passwordSecret}}, oauth2: {{clientIDSecret, clientSecretSecret, \
             tokenURLSecret, scopes, endpointParams}} and clientCert: {{clientCertSecret, \
             clientKeySecret}} are)",
            if refused.is_empty() {
                format!("{auth}")
            } else {
                refused.join(", ")
            }
        )));
    }
    if kinds.len() > 1 {
        return Err(unsupported(format!(
            "GET {shown}: give one of auth.basicAuth, auth.oauth2 and auth.clientCert, not {}",
            kinds.join(" and ")
        )));
    }
    if let Some(c) = auth.get("clientCert").filter(|b| given(Some(b))) {
        let in_auth =
            |e: ArtifactError| ArtifactError::Secret(format!("GET {shown}: clientCert {e}"));
        let (Some(cert), Some(key)) = (
            SecretSelector::of(c, "clientCertSecret").map_err(in_auth)?,
            SecretSelector::of(c, "clientKeySecret").map_err(in_auth)?,
        ) else {
            return Err(ArtifactError::Secret(format!(
                "GET {shown}: clientCert needs both clientCertSecret and clientKeySecret"
            )));
        };
        return Ok(Some(Auth::ClientCert(ClientCert {
            cert: cert.value("clientCertSecret").map_err(in_auth)?,
            key: key.value("clientKeySecret").map_err(in_auth)?,
            refs: format!("clientCertSecret {cert}, clientKeySecret {key}"),
        })));
    }
    if let Some(o) = auth.get("oauth2").filter(|b| given(Some(b))) {
        return oauth2(o, shown).map(|o| Some(Auth::OAuth2(o)));
    }
    let Some(basic) = auth.get("basicAuth").filter(|b| given(Some(b))) else {
        return Ok(None);
    };
    let in_auth = |e: ArtifactError| ArtifactError::Secret(format!("GET {shown}: basicAuth {e}"));
    let user = SecretSelector::of(basic, "usernameSecret").map_err(in_auth)?;
    let pass = SecretSelector::of(basic, "passwordSecret").map_err(in_auth)?;
    let (Some(username_ref), Some(password_ref)) = (user, pass) else {
        return Err(ArtifactError::Secret(format!(
            "GET {shown}: basicAuth needs both usernameSecret and passwordSecret"
        )));
    };
    Ok(Some(Auth::Basic(BasicAuth {
        username: username_ref.value("usernameSecret").map_err(in_auth)?,
        password: password_ref.value("passwordSecret").map_err(in_auth)?,
        username_ref,
        password_ref,
    })))
}

fn oauth2(o: &Value, shown: &str) -> Result<OAuth2, ArtifactError> {
    let in_auth = |e: ArtifactError| ArtifactError::Secret(format!("GET {shown}: oauth2 {e}"));
    let sel = |f: &str| -> Result<SecretSelector, ArtifactError> {
        SecretSelector::of(o, f).map_err(in_auth)?.ok_or_else(|| {
            ArtifactError::Secret(format!(
                "GET {shown}: oauth2 needs clientIDSecret, clientSecretSecret and tokenURLSecret \
                 ({f} is missing)"
            ))
        })
    };
    let (id, secret, url) = (
        sel("clientIDSecret")?,
        sel("clientSecretSecret")?,
        sel("tokenURLSecret")?,
    );
    let strings = |f: &str| -> Vec<String> {
        o.get(f)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let params = o
        .get("endpointParams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let k = p.get("key").and_then(Value::as_str)?;
            Some((
                k.to_string(),
                p.get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ))
        })
        .collect();
    Ok(OAuth2 {
        client_id: id.value("clientIDSecret").map_err(in_auth)?,
        client_secret: secret.value("clientSecretSecret").map_err(in_auth)?,
        token_url: url.value("tokenURLSecret").map_err(in_auth)?,
        scopes: strings("scopes"),
        params,
        refs: format!("clientIDSecret {id}, clientSecretSecret {secret}, tokenURLSecret {url}"),
    })
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse("weft:form").expect("a valid URL");
    u.query_pairs_mut().extend_pairs(pairs);
    u.query().unwrap_or_default().to_string()
}

impl OAuth2 {
    /// The client-credentials grant (RFC 6749 §4.4), as Go's `clientcredentials`
    /// does it for Argo: the client authenticates with HTTP Basic, and if the
    /// server refuses that, again with the credentials in the form.
    async fn token(&self, client: &reqwest::Client) -> Result<String, String> {
        let scope = self.scopes.join(" ");
        let mut base: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            base.push(("scope", &scope));
        }
        base.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let url = reqwest::Url::parse(&self.token_url.0)
            .map_err(|_| format!("the token URL ({}) is not a URL", self.refs))?;
        let mut last = String::new();
        for in_body in [false, true] {
            let mut pairs = base.clone();
            if in_body {
                pairs.push(("client_id", &self.client_id.0));
                pairs.push(("client_secret", &self.client_secret.0));
            }
            let mut req = client
                .post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .body(form(&pairs));
            if !in_body {
                req = req.basic_auth(&self.client_id.0, Some(&self.client_secret.0));
            }
            let resp = tokio::time::timeout(IDLE, req.send())
                .await
                .map_err(|_| format!("no answer from the token URL for {}s", IDLE.as_secs()))?
                .map_err(|e| format!("fetching the oauth2 token ({}): {}", self.refs, chain(&e)))?;
            let status = resp.status();
            if status.is_success() {
                let bytes = resp.bytes().await.map_err(|e| {
                    format!(
                        "reading the oauth2 token answer ({}): {}",
                        self.refs,
                        chain(&e)
                    )
                })?;
                let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    format!("the oauth2 token answer is not JSON ({}): {e}", self.refs)
                })?;
                return body
                    .get("access_token")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        format!(
                            "the oauth2 token answer has no access_token ({})",
                            self.refs
                        )
                    });
            }
            last = format!("the token URL answered {status} ({})", self.refs);
            if !matches!(status.as_u16(), 400 | 401) {
                break;
            }
        }
        Err(last)
    }
}

// ---------------------------------------------------------------- git

/// A `git` location's fields.
#[derive(Debug, Default)]
struct Git<'a> {
    repo: &'a str,
    revision: Option<&'a str>,
    depth: Option<u64>,
    fetch: Vec<&'a str>,
    single_branch: bool,
    branch: Option<&'a str>,
    disable_submodules: bool,
    insecure_ignore_host_key: bool,
    /// `usernameSecret` and `passwordSecret` (both, or neither).
    credentials: Option<(SecretSelector, SecretSelector)>,
    /// `sshPrivateKeySecret`: the key ssh authenticates with.
    ssh_key: Option<SecretSelector>,
}

/// Set to `1` to let git artifacts name repositories on the engine's own
/// filesystem (`file://…` or a path).
pub const ALLOW_LOCAL_REPOS_VAR: &str = "WEFT_GIT_ALLOW_LOCAL_REPOS";

/// A repository on the engine's own filesystem: `file://…`, or what git
/// takes for a path (no `scheme://`, and no `host:` before the first `/`, which
/// would be scp-like ssh). The host clones it, so a workflow could read any
/// repository on the engine's machine, which its steps' sandbox cannot see:
/// refused unless [`ALLOW_LOCAL_REPOS_VAR`] is `1` (as in Argo, where the clone
/// runs in the pod and sees nothing of the node's disk).
fn is_local_repo(repo: &str) -> bool {
    if let Some((scheme, _)) = repo.split_once("://") {
        return scheme.eq_ignore_ascii_case("file");
    }
    let colon = repo.find(':');
    let slash = repo.find('/');
    !matches!((colon, slash), (Some(c), Some(s)) if c < s)
        && !matches!((colon, slash), (Some(_), None))
}

fn local_repos_allowed() -> bool {
    std::env::var(ALLOW_LOCAL_REPOS_VAR).is_ok_and(|v| v == "1")
}

fn parse_git(loc: &Value) -> Result<Git<'_>, ArtifactError> {
    let repo = str_field(loc, "repo").ok_or_else(|| unsupported("git location without a repo"))?;
    let shown = shown_repo(repo);
    let in_repo = |e: ArtifactError| ArtifactError::Secret(format!("git {shown}: {e}"));
    let ssh_key = SecretSelector::of(loc, "sshPrivateKeySecret").map_err(in_repo)?;
    let credentials = match (
        SecretSelector::of(loc, "usernameSecret").map_err(in_repo)?,
        SecretSelector::of(loc, "passwordSecret").map_err(in_repo)?,
    ) {
        (None, None) => None,
        (Some(u), Some(p)) => {
            if credential_scope(repo).is_none() {
                return Err(ArtifactError::Secret(format!(
                    "git {shown}: usernameSecret and passwordSecret are for http(s) \
                     repositories (an ssh repository takes sshPrivateKeySecret)"
                )));
            }
            Some((u, p))
        }
        _ => {
            return Err(ArtifactError::Secret(format!(
                "git {shown}: give both usernameSecret and passwordSecret, or neither"
            )));
        }
    };
    let flag = |f: &str| loc.get(f).and_then(Value::as_bool).unwrap_or(false);
    let g = Git {
        repo,
        revision: str_field(loc, "revision"),
        depth: match loc.get("depth") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|d| *d > 0).ok_or_else(|| {
                unsupported(format!(
                    "git {shown}: depth must be a positive integer, not {v}"
                ))
            })?),
        },
        fetch: loc
            .get("fetch")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect(),
        single_branch: flag("singleBranch"),
        branch: str_field(loc, "branch"),
        disable_submodules: flag("disableSubmodules"),
        insecure_ignore_host_key: flag("insecureIgnoreHostKey"),
        credentials,
        ssh_key,
    };
    if g.single_branch && g.branch.is_none() {
        return Err(unsupported(format!(
            "git {shown}: singleBranch needs a branch"
        )));
    }
    // none of these may pass for an option
    for (what, v) in [
        ("repo", Some(g.repo)),
        ("revision", g.revision),
        ("branch", g.branch),
    ]
    .into_iter()
    .chain(g.fetch.iter().map(|f| ("fetch", Some(*f))))
    {
        if let Some(v) = v
            && v.starts_with('-')
        {
            return Err(unsupported(format!(
                "git {shown}: {what} {v:?} may not start with '-'"
            )));
        }
    }
    if is_local_repo(repo) && !local_repos_allowed() {
        return Err(unsupported(format!(
            "git {}: a repository on the engine's own filesystem is refused (the clone runs \
             outside the step's sandbox); use a remote URL, or set {ALLOW_LOCAL_REPOS_VAR}=1 for \
             the weft process to allow it",
            shown_repo(repo)
        )));
    }
    Ok(g)
}

/// The repository as messages show it (an URL's user and password cut).
fn shown_repo(repo: &str) -> String {
    match reqwest::Url::parse(repo) {
        Ok(u) if u.has_host() => redact(&u),
        _ => repo.to_string(),
    }
}

/// Clone the `git` location `loc` into the directory `dest` (which must not
/// exist; its parent must). `home` is an empty scratch directory, git's `HOME`.
pub fn clone(loc: &Value, dest: &Path, home: &Path) -> Result<(), ArtifactError> {
    clone_with(OsStr::new("git"), loc, dest, home)
}

/// `scheme://host[:port]` of an http(s) repository URL: what the credential
/// helper is scoped to. `None`: not http(s).
fn credential_scope(repo: &str) -> Option<String> {
    let u = reqwest::Url::parse(repo).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let host = u.host_str().filter(|h| !h.is_empty())?;
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// The environment variables the credential helper reads.
const USERNAME_VAR: &str = "WEFT_GIT_USERNAME";
const PASSWORD_VAR: &str = "WEFT_GIT_PASSWORD";

/// git's credential helper (run by git through `sh`): reads the request,
/// prints the variables for `get`, nothing for `store`/`erase`. Shell code naming variables: the
/// values are never in argv.
const CREDENTIAL_HELPER: &str = r#"!f() { while read -r _; do :; done; if [ "$1" = get ]; then printf 'username=%s\npassword=%s\n' "$WEFT_GIT_USERNAME" "$WEFT_GIT_PASSWORD"; fi; }; f"#;

/// Credentials for one repository's host.
struct GitCredentials {
    /// `scheme://host[:port]`: the helper answers for that URL only.
    scope: String,
    username: Secret,
    password: Secret,
}

/// What every git child of one clone shares.
struct GitRun<'a> {
    git: &'a OsStr,
    home: &'a Path,
    ssh: String,
    credentials: Option<GitCredentials>,
}

impl GitRun<'_> {
    /// `git [config…] [-C dir] args…` with weft's credentials and config kept
    /// out and the location's (if any) in the child's environment only.
    fn command(&self, dir: Option<&Path>, args: &[&OsStr]) -> Command {
        let mut c = Command::new(self.git);
        c.args([
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "advice.detachedHead=false",
        ]);
        if !local_repos_allowed() {
            // submodules too may not point at the engine's disk
            c.args(["-c", "protocol.file.allow=never"]);
        }
        if let Some(cr) = &self.credentials {
            c.arg("-c")
                .arg(format!(
                    "credential.{}.helper={CREDENTIAL_HELPER}",
                    cr.scope
                ))
                .env(USERNAME_VAR, &cr.username.0)
                .env(PASSWORD_VAR, &cr.password.0);
        } else {
            c.env_remove(USERNAME_VAR).env_remove(PASSWORD_VAR);
        }
        if let Some(d) = dir {
            c.arg("-C").arg(d);
        }
        c.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", self.home)
            .env("GIT_SSH_COMMAND", &self.ssh)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(Stdio::null());
        c
    }
}

/// An ssh private key written for one clone; removed on drop.
struct KeyFile(String);

impl KeyFile {
    fn write(home: &Path, key: &str) -> std::io::Result<KeyFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let p = home.join("weft-ssh-key");
        let _ = std::fs::remove_file(&p);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)?;
        // ssh refuses a key without its final newline (a secret often lacks it)
        f.write_all(key.trim_end().as_bytes())?;
        f.write_all(b"\n")?;
        Ok(KeyFile(p.to_string_lossy().into_owned()))
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `s` as one word for the shell git runs `GIT_SSH_COMMAND` with.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// [`clone`] with another `git` program (tests: one that is not installed).
fn clone_with(git: &OsStr, loc: &Value, dest: &Path, home: &Path) -> Result<(), ArtifactError> {
    let g = parse_git(loc)?;
    let shown = shown_repo(g.repo);
    let credentials = match &g.credentials {
        None => None,
        Some((u, p)) => {
            let in_repo = |e: ArtifactError| ArtifactError::Secret(format!("git {shown}: {e}"));
            Some(GitCredentials {
                scope: credential_scope(g.repo).expect("checked by parse_git"),
                username: u.value("usernameSecret").map_err(in_repo)?,
                password: p.value("passwordSecret").map_err(in_repo)?,
            })
        }
    };
    // cut from whatever git prints
    let secrets: Vec<String> = reqwest::Url::parse(g.repo)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .into_iter()
        .chain(credentials.as_ref().map(|c| c.password.0.clone()))
        .filter(|p| !p.is_empty())
        .collect();
    // The key, in a file of the clone's scratch home only ssh reads (0600,
    // deleted when the clone is done; never in the step's root).
    let key_file = match &g.ssh_key {
        None => None,
        Some(sel) => {
            let in_repo = |e: ArtifactError| ArtifactError::Secret(format!("git {shown}: {e}"));
            let key = sel.value("sshPrivateKeySecret").map_err(in_repo)?;
            Some(
                KeyFile::write(home, &key.0).map_err(|e| ArtifactError::Store {
                    repo: shown.clone(),
                    message: format!("git {shown}: writing the ssh key for the clone: {e}"),
                })?,
            )
        }
    };
    let identity = key_file
        .as_ref()
        .map_or_else(|| "/dev/null".to_string(), |k| shell_quote(&k.0));
    let mut ssh = format!(
        "ssh -o BatchMode=yes -o ConnectTimeout=30 -o IdentitiesOnly=yes \
         -o IdentityAgent=none -o IdentityFile={identity}"
    );
    if g.insecure_ignore_host_key {
        ssh.push_str(" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null");
    }
    let git_run = GitRun {
        git,
        home,
        ssh,
        credentials,
    };
    let run = |dir: Option<&Path>, args: &[&OsStr]| -> Result<(), String> {
        let out = git_run
            .command(dir, args)
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "the git command-line tool ({}) is not installed; git artifacts need it",
                    git.to_string_lossy()
                ),
                _ => format!("running {}: {e}", git.to_string_lossy()),
            })?;
        if out.status.success() {
            return Ok(());
        }
        let mut err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        for p in &secrets {
            err = err.replace(p.as_str(), "<redacted>");
        }
        if err.len() > 2000 {
            let cut = err.floor_char_boundary(err.len() - 2000);
            err = format!("…{}", &err[cut..]);
        }
        Err(format!("({}) {err}", out.status))
    };
    let failed = |what: &str, e: String| ArtifactError::Store {
        repo: shown.clone(),
        message: format!("git {shown}: {what} failed: {e}"),
    };
    let depth = g.depth.map(|d| format!("--depth={d}"));
    let branch = g.branch.map(|b| format!("--branch={b}"));
    let mut args: Vec<&OsStr> = vec![OsStr::new("clone"), OsStr::new("--quiet")];
    args.extend(depth.as_deref().map(OsStr::new));
    args.extend(branch.as_deref().map(OsStr::new));
    if g.single_branch {
        args.push(OsStr::new("--single-branch"));
    }
    if !g.disable_submodules {
        args.push(OsStr::new("--recurse-submodules"));
    }
    args.extend([OsStr::new("--"), OsStr::new(g.repo), dest.as_os_str()]);
    run(None, &args).map_err(|e| failed("clone", e))?;
    if !g.fetch.is_empty() {
        let mut args: Vec<&OsStr> = vec![OsStr::new("fetch"), OsStr::new("--quiet")];
        args.extend(depth.as_deref().map(OsStr::new));
        args.push(OsStr::new("origin"));
        args.extend(g.fetch.iter().map(OsStr::new));
        run(Some(dest), &args).map_err(|e| failed("fetch", e))?;
    }
    if let Some(rev) = g.revision {
        let checkout = |what: &str| {
            run(
                Some(dest),
                &[
                    OsStr::new("checkout"),
                    OsStr::new("--quiet"),
                    OsStr::new(what),
                    OsStr::new("--"),
                ],
            )
        };
        if let Err(e) = checkout(rev) {
            // a shallow or single-branch clone may lack it: fetch just that
            let mut args: Vec<&OsStr> = vec![OsStr::new("fetch"), OsStr::new("--quiet")];
            args.extend(depth.as_deref().map(OsStr::new));
            args.extend([OsStr::new("origin"), OsStr::new(rev)]);
            if run(Some(dest), &args).is_err() {
                return Err(failed(&format!("checkout of revision '{rev}'"), e));
            }
            checkout("FETCH_HEAD")
                .map_err(|e| failed(&format!("checkout of revision '{rev}'"), e))?;
        }
        if !g.disable_submodules && dest.join(".gitmodules").exists() {
            run(
                Some(dest),
                &[
                    OsStr::new("submodule"),
                    OsStr::new("update"),
                    OsStr::new("--init"),
                    OsStr::new("--recursive"),
                    OsStr::new("--force"),
                ],
            )
            .map_err(|e| failed("submodule update", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_options_are_checked_not_ignored() {
        let e = parse_git(&json!({"repo": "https://h.example/r.git", "usernameSecret": {"name": "s", "key": "u"}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("h.example/r.git") && e.contains("both usernameSecret and passwordSecret"),
            "{e}"
        );
        let e = parse_git(
            &json!({"repo": "git@h.example:r.git", "sshPrivateKeySecret": {"name": "s"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("h.example:r.git") && e.contains("sshPrivateKeySecret"),
            "{e}"
        );
        let loc = json!({"repo": "git@h.example:r.git", "sshPrivateKeySecret": {"name": "s", "key": "k"}});
        let g = parse_git(&loc).unwrap();
        assert_eq!(
            g.ssh_key.map(|k| k.env_var()).as_deref(),
            Some("WEFT_SECRET_S_K")
        );
        let both = json!({"usernameSecret": {"name": "s", "key": "u"}, "passwordSecret": {"name": "s", "key": "p"}});
        let with = |repo: &str| {
            let mut l = both.clone();
            l["repo"] = json!(repo);
            l
        };
        let e = parse_git(&with("git@h.example:r.git"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http(s)"), "{e}");
        let loc = with("https://h.example:8443/r.git");
        let g = parse_git(&loc).unwrap();
        let (u, p) = g.credentials.unwrap();
        assert_eq!(
            (u.env_var(), p.env_var()),
            ("WEFT_SECRET_S_U".into(), "WEFT_SECRET_S_P".into())
        );
        assert_eq!(
            credential_scope("https://user@h.example:8443/r.git").as_deref(),
            Some("https://h.example:8443")
        );
        assert_eq!(
            credential_scope("http://h.example/r.git").as_deref(),
            Some("http://h.example")
        );
        assert!(credential_scope("file:///srv/r.git").is_none());
        // a selector with no value fails naming the secret and the variable, before git runs
        let d = tempfile::tempdir().unwrap();
        let e = clone_with(
            OsStr::new("/nonexistent/bin/git"),
            &json!({"repo": "https://h.example/r.git",
                    "usernameSecret": {"name": "weft-unit-unset", "key": "user"},
                    "passwordSecret": {"name": "weft-unit-unset", "key": "pass"}}),
            &d.path().join("out"),
            d.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("h.example/r.git")
                && e.contains("secret 'weft-unit-unset' (key 'user')")
                && e.contains("set WEFT_SECRET_WEFT_UNIT_UNSET_USER"),
            "{e}"
        );
        let e = parse_git(&json!({"repo": "--upload-pack=evil"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("may not start with '-'"), "{e}");
        let e = parse_git(&json!({"repo": "https://h.example/r", "revision": "--orphan"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("revision"), "{e}");
        let e = parse_git(&json!({"repo": "https://h.example/r", "singleBranch": true}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("singleBranch needs a branch"), "{e}");
        // empty secret selectors say nothing
        let loc = json!({"repo": "https://h.example/r", "passwordSecret": {}, "depth": 2});
        let g = parse_git(&loc).unwrap();
        assert_eq!(g.depth, Some(2));
        assert!(g.credentials.is_none());
        // http: basicAuth and clientCert need both selectors, oauth2 all three; other kinds are refused
        let get = |auth: Value| {
            download(
                &json!({"url": "https://h.example/x?sig=abc", "auth": auth}),
                Path::new("/nonexistent/x"),
            )
            .unwrap_err()
            .to_string()
        };
        let e = get(json!({"basicAuth": {"usernameSecret": {"name": "s", "key": "u"}}}));
        assert!(e.contains("needs both") && e.contains("h.example/x"), "{e}");
        assert!(!e.contains("sig=abc"), "{e}");
        let e = get(json!({"oauth2": {"clientIDSecret": {"name": "s", "key": "i"}}}));
        assert!(
            e.contains("oauth2 needs") && e.contains("clientSecretSecret is missing"),
            "{e}"
        );
        let e = get(
            json!({"oauth2": {"clientIDSecret": {"name": "s", "key": "i"}},
            "basicAuth": {"usernameSecret": {"name": "s", "key": "u"}}}),
        );
        assert!(
            e.contains("give one of") && e.contains("not oauth2 and basicAuth"),
            "{e}"
        );
        let e = get(
            json!({"clientCert": {"clientCertSecret": {"name": "s", "key": "c"}}, "basicAuth": {}}),
        );
        assert!(
            e.contains("clientCert needs both clientCertSecret and clientKeySecret"),
            "{e}"
        );
        let e = get(json!({"digest": {"user": "u"}}));
        assert!(e.contains("digest") && e.contains("not supported"), "{e}");
        let e = get(json!({"basicAuth": {
            "usernameSecret": {"name": "weft-unit-unset", "key": "u"},
            "passwordSecret": {"name": "weft-unit-unset", "key": "p"}}}));
        assert!(
            e.contains("'usernameSecret' names secret 'weft-unit-unset' (key 'u')")
                && e.contains("WEFT_SECRET_WEFT_UNIT_UNSET_U"),
            "{e}"
        );
        let e = get(
            json!({"basicAuth": {"usernameSecret": {"name": "s"}, "passwordSecret": {"name": "s", "key": "p"}}}),
        );
        assert!(
            e.contains("'usernameSecret' must name a secret and its key"),
            "{e}"
        );
    }

    /// The credentials reach git through the scoped helper and the child's
    /// environment, never argv: asked with `git credential fill`, the real
    /// git gets them for the repository's host and nothing for another.
    #[test]
    fn local_repositories_are_told_from_remote_ones() {
        for local in [
            "file:///srv/r.git",
            "FILE:///srv/r.git",
            "/srv/r.git",
            "./r",
            "../r.git",
            "r",
            "dir/r.git",
        ] {
            assert!(is_local_repo(local), "{local}");
        }
        for remote in [
            "https://h.example/r.git",
            "ssh://git@h.example/r.git",
            "git://h.example/r",
            "git@github.com:org/r.git",
            "h.example:r.git",
        ] {
            assert!(!is_local_repo(remote), "{remote}");
        }
    }

    #[test]
    fn git_credentials_are_in_the_childs_environment_not_argv() {
        let home = tempfile::tempdir().unwrap();
        let run = GitRun {
            git: OsStr::new("git"),
            home: home.path(),
            ssh: "ssh".into(),
            credentials: Some(GitCredentials {
                scope: credential_scope("https://h.example:8443/team/r.git").unwrap(),
                username: Secret("user-from-secret".into()),
                password: Secret("pw-from-secret-123".into()),
            }),
        };
        let fill = |host: &str| {
            let mut c = run.command(None, &[OsStr::new("credential"), OsStr::new("fill")]);
            for a in c.get_args() {
                let a = a.to_string_lossy();
                assert!(
                    !a.contains("pw-from-secret") && !a.contains("user-from-secret"),
                    "{a}"
                );
            }
            let envs: Vec<_> = c
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
                .collect();
            assert!(envs.contains(&(PASSWORD_VAR.into(), Some("pw-from-secret-123".into()))));
            let mut child = c
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("git runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("protocol=https\nhost={host}\n\n").as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        let out = fill("h.example:8443");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            got.contains("username=user-from-secret\n")
                && got.contains("password=pw-from-secret-123\n"),
            "{got}"
        );
        // another host (a submodule elsewhere, a redirect): no helper, no prompt
        let out = fill("other.example");
        assert!(!out.status.success());
        assert!(!String::from_utf8_lossy(&out.stdout).contains("pw-from-secret"));
        // without credentials, the variables are not inherited from weft
        let none = GitRun {
            credentials: None,
            ..run
        };
        let c = none.command(None, &[OsStr::new("version")]);
        assert!(c.get_envs().any(|(k, v)| k == PASSWORD_VAR && v.is_none()));
        assert!(
            !c.get_args()
                .any(|a| a.to_string_lossy().contains("credential"))
        );
    }

    #[test]
    fn a_missing_git_is_named() {
        let d = tempfile::tempdir().unwrap();
        let e = clone_with(
            OsStr::new("/nonexistent/bin/git"),
            &json!({"repo": "https://user:pw@h.example/r.git"}),
            &d.path().join("out"),
            d.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("not installed") && e.contains("h.example/r.git"),
            "{e}"
        );
        assert!(!e.contains("pw"), "{e}");
    }
}
