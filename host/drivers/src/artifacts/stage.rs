//! Moving a step's artifacts between its private root and a [`Repository`].
//!
//! Input artifacts arrive resolved by the engine: `from`/`fromExpression` are
//! already replaced by the producing step's location. A location is one of
//! - `raw: {data}`: the data is written to `path`;
//! - key-only `s3: {key}` (no bucket, no endpoint): an object, or a directory
//!   (the objects under `key/`), in the workflow's repository. Objects that are
//!   gzip'd tars are unpacked (one top-level entry becomes `path`, as in Argo);
//!   `subPath` selects inside the directory or the unpacked archive;
//! - `http: {url, headers}` (read-only, [`super::fetch`]): the body streamed to
//!   a scratch file, then unpacked by the same rule (unless `archive: {none:
//!   {}}`) and moved to `path`; a 404 is "not found" (an optional artifact is
//!   skipped, a required one fails naming the artifact and the URL);
//! - `git: {repo, revision, depth, …}` (read-only, [`super::fetch`]): cloned by
//!   the `git` CLI straight into `path` (into scratch first with `subPath`).
//!
//! A plain file from a repository on the step's filesystem, for a process
//! step, is not copied: it is staged as a copy-on-write layer
//! ([`crate::sandbox::layers`]) that the spawn mounts at its directory.
//!
//! `path` is resolved inside the step's root (`..` and symlinks out of it are
//! refused) before anything is fetched. Output artifacts go to repositories
//! only: an output with an `http` or `git` location is refused.
//!
//! Output artifacts carry their key (the engine fills the default
//! `<workflow>/<pod>/<name>.tgz`, or `<basename>` for `archive: {none: {}}`).

use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::archive::{is_tgz, pack_tgz, unpack_tgz};
use super::fetch::{self as remote, Http};
use super::{ArtifactError, Key, Located, Repositories, Repository, copy};
use crate::sandbox::layers;
use crate::sandbox::manager::join_inside;

/// Location fields of Argo's `Artifact`, besides `s3`, `oss` and `raw`, that need a
/// backend this version does not have.
const OTHER_LOCATIONS: &[&str] = &["hdfs", "artifactory"];

/// Locations that inputs are read from ([`super::fetch`]) but outputs cannot go to.
const READ_ONLY_LOCATIONS: &[&str] = &["http", "git"];

/// Whether a resolved template moves artifacts at all.
pub fn has_inputs(template: &Value) -> bool {
    list(template, "/inputs/artifacts").next().is_some()
}

pub fn has_outputs(template: &Value) -> bool {
    list(template, "/outputs/artifacts").next().is_some() || log_key(template).is_some()
}

fn list<'a>(template: &'a Value, ptr: &str) -> impl Iterator<Item = &'a Value> {
    template
        .pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// `archiveLocation.archiveLogs`: the key `main.log` is saved under.
pub fn log_key(template: &Value) -> Option<String> {
    let loc = template.get("archiveLocation")?;
    if loc.get("archiveLogs").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let prefix = loc.pointer("/s3/key").and_then(Value::as_str)?;
    Some(format!("{}/main.log", prefix.trim_end_matches('/')))
}

fn name_of(a: &Value) -> &str {
    a.get("name").and_then(Value::as_str).unwrap_or("?")
}

fn optional(a: &Value) -> bool {
    a.get("optional").and_then(Value::as_bool).unwrap_or(false)
}

/// The repository and key of an `s3`/`oss` location (key-only: the default
/// repository; full: that bucket); `Ok(None)` if there is none.
fn locate(repos: &Repositories, a: &Value, dir: &str) -> Result<Option<Located>, String> {
    let name = name_of(a);
    for other in OTHER_LOCATIONS {
        if a.get(*other).is_some() {
            return Err(format!(
                "{dir} artifact '{name}': '{other}' artifacts need a backend this version does not have (only S3/OSS, Azure, GCS, the configured repositories, raw, and http/git inputs)"
            ));
        }
    }
    for ro in READ_ONLY_LOCATIONS {
        if a.get(*ro).is_some() {
            return Err(format!(
                "{dir} artifact '{name}': '{ro}' locations are read-only (inputs only); save outputs to a repository"
            ));
        }
    }
    repos
        .locate(a)
        .map_err(|e| format!("{dir} artifact '{name}': {e}"))
}

/// The host path of an existing in-step path, following symlinks only while
/// they stay inside the root. `Ok(None)`: it does not exist.
fn existing_inside(root: &Path, path: &str) -> Result<Option<PathBuf>, String> {
    let joined = join_inside(root, path)?;
    let canon_root = root
        .canonicalize()
        .map_err(|e| format!("step root {}: {e}", root.display()))?;
    match joined.canonicalize() {
        Ok(c) if c.starts_with(&canon_root) => Ok(Some(c)),
        Ok(_) => Err(format!("'{path}' points outside the step's filesystem")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(format!("'{path}': {e}")),
    }
}

// ---------------------------------------------------------------- inputs

/// Place every input artifact of `template` at its `path` under `root`.
/// `scratch` is an empty directory on the same filesystem (for unpacking).
/// `layers`: the step's [`layers`] directory, when its files may be staged as
/// copy-on-write layers (a sandboxed process step) instead of copied.
pub fn place_inputs(
    repos: &Repositories,
    template: &Value,
    root: &Path,
    scratch: &Path,
    layers: Option<&Path>,
) -> Result<(), String> {
    if let Some(l) = layers {
        layers::reset(l).map_err(|e| format!("{}: {e}", l.display()))?;
    }
    for (i, a) in list(template, "/inputs/artifacts").enumerate() {
        let name = name_of(a);
        let Some(path) = a.get("path").and_then(Value::as_str) else {
            continue; // composite templates pass artifacts on without a path
        };
        let dest = prepare_dest(root, path).map_err(|e| format!("input artifact '{name}': {e}"))?;
        if let Some(data) = a.pointer("/raw/data").and_then(Value::as_str) {
            std::fs::write(&dest, data)
                .map_err(|e| format!("input artifact '{name}': writing {path}: {e}"))?;
            continue;
        }
        if let Some(f) = a.get("from").and_then(Value::as_str) {
            if optional(a) {
                continue;
            }
            return Err(format!(
                "input artifact '{name}': 'from: {f}' did not resolve to an artifact"
            ));
        }
        let sub = a
            .get("subPath")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let work = scratch.join(i.to_string());
        let t0 = std::time::Instant::now();
        let mkwork = || {
            std::fs::create_dir_all(&work)
                .map_err(|e| format!("input artifact '{name}': {}: {e}", work.display()))
        };
        if let Some(loc) = a.get("http") {
            mkwork()?;
            let none = a.pointer("/archive/none").is_some();
            match fetch_http(loc, none, sub, &work)
                .map_err(|e| format!("input artifact '{name}': {e}"))?
            {
                Ok(content) => place(name, &content, &dest, path, "http", t0)?,
                Err(_) if optional(a) => {}
                Err(missing) => return Err(format!("input artifact '{name}': {missing}")),
            }
            continue;
        }
        if let Some(loc) = a.get("git") {
            let home = work.join("home");
            std::fs::create_dir_all(&home)
                .map_err(|e| format!("input artifact '{name}': {}: {e}", home.display()))?;
            let fail = |e: ArtifactError| format!("input artifact '{name}': {e}");
            let Some(s) = sub else {
                remote::clone(loc, &dest, &home).map_err(fail)?;
                tracing::debug!(
                    artifact = name,
                    elapsed_us = t0.elapsed().as_micros() as u64,
                    "git input artifact cloned"
                );
                continue;
            };
            let clone = work.join("clone");
            remote::clone(loc, &clone, &home).map_err(fail)?;
            match select(clone, Some(s)).map_err(fail)? {
                Some(content) => place(name, &content, &dest, path, "git", t0)?,
                None if optional(a) => {}
                None => {
                    return Err(format!(
                        "input artifact '{name}': subPath '{s}' is not in the git repository"
                    ));
                }
            }
            continue;
        }
        let Some((repo, key)) = locate(repos, a, "input")? else {
            if optional(a) {
                continue;
            }
            return Err(format!(
                "input artifact '{name}' has no location (from, raw or key) and is not optional"
            ));
        };
        let repo = repo.as_ref();
        if let Some(l) = layers
            && sub.is_none()
            && let Some(lower) = layer(repo, &key, l, root, &dest).map_err(|e| {
                format!(
                    "input artifact '{name}': staging key '{key}' of the {}: {e}",
                    repo.describe()
                )
            })?
        {
            // `weft bench artifacts` reads these, as for `place`
            tracing::debug!(
                artifact = name,
                key = key.as_str(),
                bytes = file_len(&lower),
                elapsed_us = t0.elapsed().as_micros() as u64,
                layered = true,
                "input artifact placed"
            );
            continue;
        }
        mkwork()?;
        let found = fetch(repo, &key, sub, &work).map_err(|e| {
            format!(
                "input artifact '{name}': loading key '{key}' from the {}: {e}",
                repo.describe()
            )
        })?;
        match found {
            Some(content) => place(name, &content, &dest, path, key.as_str(), t0)?,
            None if optional(a) => {}
            None => {
                return Err(format!(
                    "input artifact '{name}': key '{key}'{} not found in the {}",
                    sub.map(|s| format!(" (subPath '{s}')")).unwrap_or_default(),
                    repo.describe()
                ));
            }
        }
    }
    Ok(())
}

/// Stage the object at `key` as a copy-on-write layer at `dest` (a host path
/// in `root`, its parent canonical): the staged file, or `None` when it must
/// be copied (an archive, not a file on this filesystem, a directory that
/// cannot be layered).
fn layer(
    repo: &dyn Repository,
    key: &Key,
    layers: &Path,
    root: &Path,
    dest: &Path,
) -> Result<Option<PathBuf>, ArtifactError> {
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name().and_then(|n| n.to_str()))
    else {
        return Ok(None);
    };
    let canon_root = root
        .canonicalize()
        .map_err(ArtifactError::io(format!("step root {}", root.display())))?;
    let Ok(rel) = parent.strip_prefix(&canon_root) else {
        return Ok(None);
    };
    // linked first, then looked at: a repository that cannot link (an object
    // store) costs no request here
    layers::stage(layers, root, rel, name, |lower| {
        if !repo.link_to(key, lower).map_err(std::io::Error::other)? {
            return Ok(false);
        }
        if is_tgz(File::open(lower)?) {
            // a gzip'd tar is unpacked, not layered
            std::fs::remove_file(lower)?;
            return Ok(false);
        }
        Ok(true)
    })
    .map_err(ArtifactError::io("staging an input artifact layer"))
}

/// Move fetched `content` to `dest` (the step's `path`).
fn place(
    name: &str,
    content: &Path,
    dest: &Path,
    path: &str,
    from: &str,
    t0: std::time::Instant,
) -> Result<(), String> {
    std::fs::rename(content, dest)
        .map_err(|e| format!("input artifact '{name}': placing it at {path}: {e}"))?;
    // `weft bench artifacts` reads these (bytes: files only, 0 for a directory)
    tracing::debug!(
        artifact = name,
        key = from,
        bytes = file_len(dest),
        elapsed_us = t0.elapsed().as_micros() as u64,
        "input artifact placed"
    );
    Ok(())
}

/// Download the `http` location `loc` into `work`: `Ok(Ok(content))`, or
/// `Ok(Err(message))` when the server has nothing there (404) or `subPath`
/// is not in what it sent. `none`: `archive: {none: {}}`, never unpacked.
fn fetch_http(
    loc: &Value,
    none: bool,
    sub: Option<&str>,
    work: &Path,
) -> Result<Result<PathBuf, String>, ArtifactError> {
    let f = work.join("object");
    match remote::download(loc, &f)? {
        Http::NotFound { shown } => return Ok(Err(format!("GET {shown}: not found (404)"))),
        Http::Saved { .. } => {}
    }
    let tgz = !none && is_tgz(File::open(&f).map_err(ArtifactError::io("reading the download"))?);
    let content = if tgz {
        let r = File::open(&f).map_err(ArtifactError::io("reading the download"))?;
        let c = unpack(r, work)?;
        let _ = std::fs::remove_file(&f);
        c
    } else {
        f
    };
    Ok(select(content, sub)?.ok_or_else(|| {
        format!(
            "subPath '{}' is not in the download",
            sub.unwrap_or_default()
        )
    }))
}

/// The host path `path` will be placed at: parents created (and checked to be
/// inside the root), anything already there removed.
fn prepare_dest(root: &Path, path: &str) -> Result<PathBuf, String> {
    let dest = join_inside(root, path)?;
    if dest == root {
        return Err(format!("path '{path}' is the step's root"));
    }
    let parent = dest.parent().expect("below root");
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let canon_root = root.canonicalize().map_err(|e| e.to_string())?;
    let canon_parent = parent.canonicalize().map_err(|e| e.to_string())?;
    if !canon_parent.starts_with(&canon_root) {
        return Err(format!("'{path}' points outside the step's filesystem"));
    }
    let dest = canon_parent.join(dest.file_name().expect("normal component"));
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dest),
        Ok(_) => std::fs::remove_file(&dest),
        Err(_) => Ok(()),
    }
    .map_err(|e| format!("replacing {path}: {e}"))?;
    Ok(dest)
}

/// Fetch `key` into `work`: the host path of the content (file or directory),
/// or `None` if the repository has nothing there.
fn fetch(
    repo: &dyn Repository,
    key: &Key,
    sub: Option<&str>,
    work: &Path,
) -> Result<Option<PathBuf>, ArtifactError> {
    if let Some(r) = repo.open(key)? {
        let tgz = repo.open(key)?.map(is_tgz).unwrap_or(false);
        let content = if tgz {
            unpack(r, work)?
        } else {
            drop(r);
            let f = work.join("object");
            if !repo.get_to_file(key, &f)? {
                return Ok(None); // deleted since
            }
            f
        };
        return select(content, sub);
    }
    let k = match sub {
        Some(s) => key.join(s)?,
        None => key.clone(),
    };
    if sub.is_some() {
        let f = work.join("object");
        if repo.get_to_file(&k, &f)? {
            return Ok(Some(f));
        }
    }
    let members = repo.list(&k)?;
    if members.is_empty() {
        return Ok(None);
    }
    let dir = work.join("dir");
    for m in members {
        let rel = &m.as_str()[k.as_str().len() + 1..];
        let dest = dir.join(rel);
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(ArtifactError::io("creating a scratch dir"))?;
        }
        repo.get_to_file(&m, &dest)?; // false: deleted since listing
    }
    Ok(Some(dir))
}

/// Unpack the gzip'd tar `r` into `work/unpacked`: its single top-level
/// entry, else the directory (Argo's executor's rule).
fn unpack(r: impl std::io::Read, work: &Path) -> Result<PathBuf, ArtifactError> {
    let dir = work.join("unpacked");
    std::fs::create_dir(&dir).map_err(ArtifactError::io("creating a scratch dir"))?;
    unpack_tgz(r, &dir)?;
    let mut top: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(ArtifactError::io("listing the unpacked archive"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    Ok(if top.len() == 1 {
        top.pop().expect("one")
    } else {
        dir
    })
}

/// `subPath` `sub` inside fetched `content` (`None`: not there); an escape
/// (`..`, a symlink out of it) is an error.
fn select(content: PathBuf, sub: Option<&str>) -> Result<Option<PathBuf>, ArtifactError> {
    let Some(s) = sub else {
        return Ok(Some(content));
    };
    let Ok(p) = join_inside(&content, s) else {
        return Err(ArtifactError::Escape(format!(
            "subPath '{s}' escapes the artifact"
        )));
    };
    match existing_inside(&content, s) {
        Ok(Some(_)) => Ok(Some(p)),
        Ok(None) => Ok(None),
        Err(m) => Err(ArtifactError::Escape(m)),
    }
}

// ---------------------------------------------------------------- outputs

/// What saving a step's outputs produced.
#[derive(Debug, Default)]
pub struct Saved {
    /// The saved artifacts, Argo JSON (each with its `s3.key`).
    pub artifacts: Vec<Value>,
    /// The first failure (a missing non-optional artifact, an IO error).
    pub error: Option<String>,
}

/// Save every output artifact of `template` from `root`, and `main.log`
/// (`log_file`) when the template archives logs.
///
/// `disposable`: the step has exited and `root` is deleted afterwards, so its
/// files may be taken into the repository rather than copied.
pub fn save_outputs(
    repos: &Repositories,
    template: &Value,
    root: &Path,
    log_file: &Path,
    disposable: bool,
) -> Saved {
    let mut saved = Saved::default();
    for a in list(template, "/outputs/artifacts") {
        match save_one(repos, a, root, disposable) {
            Ok(true) => saved.artifacts.push(a.clone()),
            Ok(false) => {}
            Err(e) => {
                saved.error.get_or_insert(e);
            }
        }
    }
    if let Some(k) = log_key(template) {
        // the logs go to the workflow's repository, as key-only outputs do
        let loc = template
            .pointer("/archiveLocation/s3")
            .cloned()
            .unwrap_or_default();
        let repo = match repos.workflow_repo(&loc) {
            Ok(r) => r,
            Err(e) => {
                saved
                    .error
                    .get_or_insert(format!("archiving the logs: {e}"));
                return saved;
            }
        };
        let r = Key::parse(&k).map_err(|e| e.to_string()).and_then(|key| {
            let Ok(mut f) = File::open(log_file) else {
                return Ok(false); // the step printed nothing
            };
            let mut w = repo.create(&key).map_err(|e| e.to_string())?;
            copy(&mut f, &mut w).map_err(|e| format!("saving main.log: {e}"))?;
            w.commit().map_err(|e| e.to_string())?;
            Ok(true)
        });
        match r {
            Ok(true) => {
                let mut s3 = json!({ "key": k });
                if let Some(n) = loc.get(super::REPOSITORY_FIELD) {
                    s3[super::REPOSITORY_FIELD] = n.clone();
                }
                saved.artifacts.push(json!({"name": "main-logs", "s3": s3}));
            }
            Ok(false) => {}
            Err(e) => {
                saved.error.get_or_insert(format!(
                    "archiving the logs to the {}: {e}",
                    repo.describe()
                ));
            }
        }
    }
    saved
}

/// `Ok(false)`: optional and missing.
fn save_one(
    repos: &Repositories,
    a: &Value,
    root: &Path,
    disposable: bool,
) -> Result<bool, String> {
    let name = name_of(a);
    let Some(path) = a.get("path").and_then(Value::as_str) else {
        return Err(format!("output artifact '{name}' has no path"));
    };
    let Some((repo, key)) = locate(repos, a, "output")? else {
        return Err(format!("output artifact '{name}' has no key"));
    };
    let repo = repo.as_ref();
    let archive = a.get("archive");
    let none = archive.is_some_and(|x| x.get("none").is_some());
    if archive.is_some_and(|x| x.get("zip").is_some()) {
        return Err(format!(
            "output artifact '{name}': zip archives are not supported yet (use tar or none)"
        ));
    }
    let src = match existing_inside(root, path) {
        Ok(Some(p)) => p,
        Ok(None) if optional(a) => return Ok(false),
        Ok(None) => {
            return Err(format!(
                "output artifact '{name}': '{path}' does not exist in the step, so nothing was saved to the {} (mark it optional: true if it may be missing)",
                repo.describe()
            ));
        }
        Err(e) => return Err(format!("output artifact '{name}': {e}")),
    };
    let fail = |e: String| {
        format!(
            "output artifact '{name}': saving to the {}: {e}",
            repo.describe()
        )
    };
    let t0 = std::time::Instant::now();
    if !none {
        let entry = Path::new(path)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        let mut w = repo.create(&key).map_err(|e| fail(e.to_string()))?;
        pack_tgz(&src, &entry, &mut w).map_err(|e| fail(e.to_string()))?;
        w.commit().map_err(|e| fail(e.to_string()))?;
    } else if src.is_dir() {
        put_dir(repo, &src, &key, disposable).map_err(|e| fail(e.to_string()))?;
    } else {
        repo.put_file(&key, &src, disposable)
            .map_err(|e| fail(e.to_string()))?;
    }
    tracing::debug!(
        artifact = name,
        key = %key,
        bytes = file_len(&src),
        elapsed_us = t0.elapsed().as_micros() as u64,
        "output artifact saved"
    );
    Ok(true)
}

/// The size of a regular file; 0 for anything else.
fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len())
}

/// Every regular file under `dir` as `key/<relative path>`; symlinks are not followed.
fn put_dir(
    repo: &dyn Repository,
    dir: &Path,
    key: &Key,
    disposable: bool,
) -> Result<(), ArtifactError> {
    let mut stack = vec![(dir.to_path_buf(), key.clone())];
    while let Some((d, k)) = stack.pop() {
        let rd =
            std::fs::read_dir(&d).map_err(ArtifactError::io(format!("listing {}", d.display())))?;
        for e in rd {
            let e = e.map_err(ArtifactError::io(format!("listing {}", d.display())))?;
            let ft = e
                .file_type()
                .map_err(ArtifactError::io(format!("listing {}", d.display())))?;
            let sub = k.join(&e.file_name().to_string_lossy())?;
            if ft.is_dir() {
                stack.push((e.path(), sub));
            } else if ft.is_file() {
                repo.put_file(&sub, &e.path(), disposable)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::LocalRepository;
    use super::super::archive::tests::evil_tgz;
    use super::*;

    fn r(repo: &LocalRepository) -> Repositories {
        Repositories::new(std::sync::Arc::new(repo.clone()), None)
    }

    fn setup() -> (tempfile::TempDir, LocalRepository, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let repo = LocalRepository::new(d.path().join("repo"));
        let root = d.path().join("step/root");
        let scratch = d.path().join("step/scratch");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&scratch).unwrap();
        (d, repo, root, scratch)
    }

    #[test]
    fn file_and_dir_round_trip_with_archive_and_none() {
        let (_d, repo, root, scratch) = setup();
        std::fs::create_dir_all(root.join("out/dir/sub")).unwrap();
        std::fs::write(root.join("out/f.txt"), "file").unwrap();
        std::fs::write(root.join("out/dir/sub/x"), "x").unwrap();
        let t = json!({"outputs": {"artifacts": [
            {"name": "f", "path": "/out/f.txt", "s3": {"key": "wf/pod/f.tgz"}},
            {"name": "d", "path": "/out/dir", "s3": {"key": "wf/pod/d.tgz"}},
            {"name": "n", "path": "/out/dir", "archive": {"none": {}}, "s3": {"key": "wf/pod/dir"}},
            {"name": "r", "path": "/out/f.txt", "archive": {"none": {}}, "s3": {"key": "wf/pod/f.txt"}},
            {"name": "o", "path": "/nope", "optional": true, "s3": {"key": "wf/pod/o.tgz"}},
        ]}});
        let s = save_outputs(&r(&repo), &t, &root, Path::new("/nonexistent"), false);
        assert_eq!(s.error, None);
        assert_eq!(s.artifacts.len(), 4);
        assert_eq!(
            std::fs::read_to_string(repo.root().join("wf/pod/f.txt")).unwrap(),
            "file"
        );
        assert_eq!(
            std::fs::read_to_string(repo.root().join("wf/pod/dir/sub/x")).unwrap(),
            "x"
        );
        let root2 = root.parent().unwrap().join("root2");
        std::fs::create_dir_all(&root2).unwrap();
        let t = json!({"inputs": {"artifacts": [
            {"name": "f", "path": "/in/f", "s3": {"key": "wf/pod/f.tgz"}},
            {"name": "d", "path": "/in/d", "s3": {"key": "wf/pod/d.tgz"}},
            {"name": "n", "path": "/in/n", "s3": {"key": "wf/pod/dir"}},
            {"name": "s", "path": "/in/s", "subPath": "sub/x", "s3": {"key": "wf/pod/dir"}},
            {"name": "t", "path": "/in/t", "subPath": "sub/x", "s3": {"key": "wf/pod/d.tgz"}},
            {"name": "raw", "path": "/in/raw", "raw": {"data": "R"}},
            {"name": "opt", "path": "/in/opt", "optional": true, "s3": {"key": "missing"}},
        ]}});
        place_inputs(&r(&repo), &t, &root2, &scratch, None).unwrap();
        let rd = |p: &str| std::fs::read_to_string(root2.join(p)).unwrap();
        assert_eq!(rd("in/f"), "file");
        assert_eq!(rd("in/d/sub/x"), "x");
        assert_eq!(rd("in/n/sub/x"), "x");
        assert_eq!(rd("in/s"), "x");
        assert_eq!(rd("in/t"), "x");
        assert_eq!(rd("in/raw"), "R");
        assert!(!root2.join("in/opt").exists());
    }

    #[test]
    fn missing_non_optional_names_artifact_and_repository() {
        let (_d, repo, root, scratch) = setup();
        let t = json!({"outputs": {"artifacts": [
            {"name": "result", "path": "/nope", "s3": {"key": "k.tgz"}}]}});
        let e = save_outputs(&r(&repo), &t, &root, Path::new("/x"), false)
            .error
            .unwrap();
        assert!(
            e.contains("'result'") && e.contains("local repository"),
            "{e}"
        );
        let t = json!({"inputs": {"artifacts": [
            {"name": "in", "path": "/in", "s3": {"key": "nothing/here"}}]}});
        let e = place_inputs(&r(&repo), &t, &root, &scratch, None).unwrap_err();
        assert!(e.contains("'in'") && e.contains("local repository"), "{e}");
    }

    #[test]
    fn dotdot_keys_and_escaping_tars_are_rejected() {
        let (_d, repo, root, scratch) = setup();
        std::fs::write(root.join("f"), "f").unwrap();
        let t = json!({"outputs": {"artifacts": [
            {"name": "a", "path": "/f", "s3": {"key": "../../etc/x"}}]}});
        let e = save_outputs(&r(&repo), &t, &root, Path::new("/x"), false)
            .error
            .unwrap();
        assert!(e.contains("'..' is not allowed"), "{e}");
        std::fs::create_dir_all(repo.root()).unwrap();
        std::fs::write(repo.root().join("evil.tgz"), evil_tgz("../../evil")).unwrap();
        let t = json!({"inputs": {"artifacts": [
            {"name": "a", "path": "/in", "s3": {"key": "evil.tgz"}}]}});
        let e = place_inputs(&r(&repo), &t, &root, &scratch, None).unwrap_err();
        assert!(e.contains("escapes its directory"), "{e}");
    }

    #[test]
    fn http_and_git_are_inputs_only() {
        let (_d, repo, root, _scratch) = setup();
        std::fs::write(root.join("f"), "f").unwrap();
        let t = json!({"outputs": {"artifacts": [
            {"name": "up", "path": "/f", "http": {"url": "http://127.0.0.1:1/x"}},
            {"name": "push", "path": "/f", "git": {"repo": "file:///tmp/r"}}]}});
        let e = save_outputs(&r(&repo), &t, &root, Path::new("/x"), false)
            .error
            .unwrap();
        assert!(e.contains("'up'") && e.contains("read-only"), "{e}");
    }

    #[test]
    fn outputs_through_symlinks_out_of_the_root_are_refused() {
        let (_d, repo, root, _scratch) = setup();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        let t = json!({"outputs": {"artifacts": [
            {"name": "a", "path": "/etc-link/hostname", "s3": {"key": "k"}}]}});
        let e = save_outputs(&r(&repo), &t, &root, Path::new("/x"), false)
            .error
            .unwrap();
        assert!(e.contains("outside"), "{e}");
    }
}
