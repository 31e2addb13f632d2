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
//!   user, password or query. `auth` (`basicAuth`, `oauth2`, `clientCert`)
//!   names Kubernetes secrets, which weft does not have: refused, not ignored.
//! - `git: {repo, revision, depth, fetch, singleBranch, branch,
//!   disableSubmodules, insecureIgnoreHostKey}`: the `git` CLI (no shell, args
//!   as a vector, `--` before the repository and directory): `clone` (with
//!   `--depth`, `--branch`, `--single-branch`, `--recurse-submodules` unless
//!   `disableSubmodules`), `fetch` of the refspecs, `checkout <revision>` (in a
//!   shallow clone that lacks it, the revision is fetched first). git runs as
//!   weft's user but with none of its credentials or configuration: `HOME` is a
//!   scratch directory, no system or global config, no ssh agent or identity
//!   files, no prompts (`GIT_TERMINAL_PROMPT=0`, ssh `BatchMode`), and the
//!   `ext::` transport is off. `usernameSecret`/`passwordSecret`/
//!   `sshPrivateKeySecret` are refused like `auth` above.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::ArtifactError;
use crate::host::http::{artifact_client, chain, redact};

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
    if given(loc.get("auth")) {
        return Err(unsupported(format!(
            "GET {shown}: 'auth' (basicAuth, oauth2, clientCert) names Kubernetes secrets, \
             which weft does not have; it is not supported yet"
        )));
    }
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
    let client = artifact_client().map_err(|e| unsupported(format!("GET {shown}: {e}")))?;
    let failed = |what: String| ArtifactError::Store {
        repo: shown.clone(),
        message: format!("GET {shown}: {what}"),
    };
    let stalled = || failed(format!("no data for {}s", IDLE.as_secs()));
    block_on(async {
        let send = client.get(url.clone()).headers(headers).send();
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
            return Err(failed(format!("the server answered {status}")));
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
}

fn parse_git(loc: &Value) -> Result<Git<'_>, ArtifactError> {
    let repo = str_field(loc, "repo").ok_or_else(|| unsupported("git location without a repo"))?;
    let shown = shown_repo(repo);
    for f in ["usernameSecret", "passwordSecret", "sshPrivateKeySecret"] {
        if given(loc.get(f)) {
            return Err(unsupported(format!(
                "git {shown}: '{f}' names a Kubernetes secret, which weft does not have; \
                 git credentials are not supported yet"
            )));
        }
    }
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

/// [`clone`] with another `git` program (tests: one that is not installed).
fn clone_with(git: &OsStr, loc: &Value, dest: &Path, home: &Path) -> Result<(), ArtifactError> {
    let g = parse_git(loc)?;
    let shown = shown_repo(g.repo);
    let password = reqwest::Url::parse(g.repo)
        .ok()
        .and_then(|u| u.password().map(str::to_string));
    let mut ssh = String::from(
        "ssh -o BatchMode=yes -o ConnectTimeout=30 -o IdentitiesOnly=yes \
         -o IdentityAgent=none -o IdentityFile=/dev/null",
    );
    if g.insecure_ignore_host_key {
        ssh.push_str(" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null");
    }
    let run = |dir: Option<&Path>, args: &[&OsStr]| -> Result<(), String> {
        let mut c = Command::new(git);
        c.args([
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "advice.detachedHead=false",
        ]);
        if let Some(d) = dir {
            c.arg("-C").arg(d);
        }
        c.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", home)
            .env("GIT_SSH_COMMAND", &ssh)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(Stdio::null());
        let out = c.output().map_err(|e| match e.kind() {
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
        if let Some(p) = password.as_deref().filter(|p| !p.is_empty()) {
            err = err.replace(p, "<redacted>");
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
    fn secrets_and_options_are_refused_not_ignored() {
        for loc in [
            json!({"repo": "https://h.example/r.git", "usernameSecret": {"name": "s", "key": "u"}}),
            json!({"repo": "https://h.example/r.git", "sshPrivateKeySecret": {"name": "s", "key": "k"}}),
        ] {
            let e = parse_git(&loc).unwrap_err().to_string();
            assert!(e.contains("not supported") && e.contains("Secret"), "{e}");
        }
        let e = parse_git(&json!({"repo": "--upload-pack=evil"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("may not start with '-'"), "{e}");
        let e = parse_git(&json!({"repo": "r", "revision": "--orphan"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("revision"), "{e}");
        let e = parse_git(&json!({"repo": "r", "singleBranch": true}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("singleBranch needs a branch"), "{e}");
        // empty secret selectors say nothing
        let loc = json!({"repo": "r", "passwordSecret": {}, "depth": 2});
        let g = parse_git(&loc).unwrap();
        assert_eq!(g.depth, Some(2));
        let e = download(
            &json!({"url": "https://h.example/x", "auth": {"basicAuth": {"usernameSecret": {"name": "s", "key": "u"}}}}),
            Path::new("/nonexistent/x"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("not supported") && e.contains("h.example/x"),
            "{e}"
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
