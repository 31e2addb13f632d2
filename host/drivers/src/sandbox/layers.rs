//! Input artifacts placed as copy-on-write layers instead of copies.
//!
//! A file input from a repository on the step's filesystem (the local
//! repository, by default) is not copied into the step's root: the object is
//! hard-linked into a *lower* directory beside the root (`<step>/layers/<n>/`,
//! outside what the step can reach), and the directory that holds the
//! artifact's `path` is mounted in the step's mount namespace as an overlay —
//! that lower directory under the step's own directory (the upper). The step
//! sees an ordinary writable file; a write copies it up into the upper
//! directory first, so the repository's object is never changed. A 1 GiB
//! input costs a link, not a 1 GiB copy.
//!
//! - [`stage`] records a layered file (`manifest`: one `n\trel\tname` line
//!   per file, `rel` the directory inside the root).
//! - The spawn ([`super::spawn`]) mounts one overlay per directory (with
//!   `volatile`: the upper directory is the step's scratch, and without it the
//!   namespace's teardown syncs the whole upper filesystem — 2 s after a step
//!   that wrote 1 GiB); where
//!   overlayfs is not available it copies the staged files into the root
//!   instead (`copy_file_range`, in the child, which marks the group as
//!   copied), so a step never fails for it.
//! - [`finish`], when the step's process has exited: any process left in its
//!   mount namespace is killed, then every staged file the step did not change
//!   or delete is linked into the root (what output artifacts and parameters
//!   are read from), the overlay's whiteouts are removed, and the layers go.
//!   The root then holds exactly what the step saw.
//!
//! Directories that cannot be layered take the copy path: `/` itself, the
//! read-only host mounts, `/dev`, `/proc`, a directory nested in (or holding)
//! another layered directory, and paths with characters overlayfs's option
//! syntax reserves.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The layers directory, beside `root` in the step directory.
pub const DIR: &str = "layers";
const MANIFEST: &str = "manifest";

/// One overlay: the directory `rel` inside the root, and its staged files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub index: usize,
    /// Relative to the root, no leading `/`, never empty.
    pub rel: String,
    pub names: Vec<String>,
}

impl Group {
    pub fn lower(&self, layers: &Path) -> PathBuf {
        layers.join(self.index.to_string())
    }
    pub fn work(&self, layers: &Path) -> PathBuf {
        layers.join(format!("work-{}", self.index))
    }
    /// Created by a spawn that copied the files instead (no overlayfs): the
    /// root's files are then the step's own, deleted ones included.
    pub fn copied_marker(&self, layers: &Path) -> PathBuf {
        layers.join(format!("copied-{}", self.index))
    }
}

/// Top-level directories of the root that are mounts of their own.
const NOT_LAYERED: &[&str] = &["usr", "etc", "opt", "dev", "proc", ".weft"];

fn plain(s: &str) -> bool {
    !s.is_empty() && !s.contains([',', ':', '\\', '\t', '\n', '\0'])
}

/// Remove what an earlier placement staged (a step placed again after a restart).
pub fn reset(layers: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(layers) {
        Ok(_) => remove_tree(layers),
        Err(_) => Ok(()),
    }
}

/// Stage the file `name` of directory `rel` (inside `root`): `link(lower)`
/// puts the object's file at `lower` and returns false when it cannot (another
/// filesystem, an object store). The staged file, or `None`: not layered,
/// copy instead.
pub fn stage(
    layers: &Path,
    root: &Path,
    rel: &Path,
    name: &str,
    link: impl FnOnce(&Path) -> std::io::Result<bool>,
) -> std::io::Result<Option<PathBuf>> {
    let Some(rel) = rel.to_str().map(|r| r.trim_matches('/')) else {
        return Ok(None);
    };
    let top = rel.split('/').next().unwrap_or_default();
    if !plain(rel) || !plain(name) || NOT_LAYERED.contains(&top) {
        return Ok(None);
    }
    let (Some(l), Some(r)) = (layers.to_str(), root.to_str()) else {
        return Ok(None);
    };
    if !plain(l) || !plain(r) {
        return Ok(None);
    }
    let groups = read(layers)?;
    let index = match groups.iter().find(|g| g.rel == rel) {
        Some(g) if g.names.iter().any(|n| n == name) => return Ok(None),
        Some(g) => g.index,
        None => {
            let nested = groups.iter().any(|g| {
                rel.starts_with(&format!("{}/", g.rel)) || g.rel.starts_with(&format!("{rel}/"))
            });
            if nested {
                return Ok(None);
            }
            groups.iter().map(|g| g.index + 1).max().unwrap_or(0)
        }
    };
    let g = Group {
        index,
        rel: rel.to_string(),
        names: Vec::new(),
    };
    std::fs::create_dir_all(g.lower(layers))?;
    std::fs::create_dir_all(g.work(layers))?;
    let lower = g.lower(layers).join(name);
    if !link(&lower)? {
        return Ok(None);
    }
    let mut m = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layers.join(MANIFEST))?;
    writeln!(m, "{index}\t{rel}\t{name}")?;
    Ok(Some(lower))
}

/// The staged groups; none when nothing was staged.
pub fn read(layers: &Path) -> std::io::Result<Vec<Group>> {
    let text = match std::fs::read_to_string(layers.join(MANIFEST)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut groups: Vec<Group> = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, '\t');
        let (Some(i), Some(rel), Some(name)) = (f.next(), f.next(), f.next()) else {
            return Err(std::io::Error::other(format!(
                "bad layers manifest line {line:?}"
            )));
        };
        let index: usize = i
            .parse()
            .map_err(|_| std::io::Error::other(format!("bad layers manifest line {line:?}")))?;
        match groups.iter_mut().find(|g| g.index == index) {
            Some(g) => g.names.push(name.to_string()),
            None => groups.push(Group {
                index,
                rel: rel.to_string(),
                names: vec![name.to_string()],
            }),
        }
    }
    Ok(groups)
}

/// The mount namespace of process `pid` (its nsfs inode), if it still runs.
pub fn mount_ns(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

/// SIGKILL every process in the mount namespace `ns` (a step's leftovers that
/// left its process group), until none is left.
fn kill_namespace(ns: u64) {
    for _ in 0..20 {
        let mut found = false;
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if mount_ns(pid) == Some(ns) {
                found = true;
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !found {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// After the step's process exited: make `root` hold what the step saw, and
/// remove the layers. `ns`: the step's mount namespace, whose remaining
/// processes are killed first (they could otherwise write through the links).
pub fn finish(layers: &Path, root: &Path, ns: Option<u64>) -> std::io::Result<()> {
    let groups = read(layers)?;
    if groups.is_empty() {
        return reset(layers);
    }
    if let Some(ns) = ns {
        kill_namespace(ns);
    }
    for g in &groups {
        if g.copied_marker(layers).exists() {
            continue;
        }
        let dir = root.join(&g.rel);
        for name in &g.names {
            let up = dir.join(name);
            match std::fs::symlink_metadata(&up) {
                // changed (copied up) or replaced by the step: the step's version stays
                Ok(m) if !is_whiteout(&m) => {}
                // deleted by the step
                Ok(_) => std::fs::remove_file(&up)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if dir.is_dir() {
                        std::fs::hard_link(g.lower(layers).join(name), &up)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    reset(layers)
}

/// overlayfs marks a deleted lower file with a 0/0 character device.
fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// `remove_dir_all` that first opens up overlayfs's mode-000 work directories.
fn remove_tree(p: &Path) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(p)?;
    if !m.is_dir() {
        return std::fs::remove_file(p);
    }
    if m.permissions().mode() & 0o700 != 0o700 {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
    }
    for e in std::fs::read_dir(p)? {
        remove_tree(&e?.path())?;
    }
    std::fs::remove_dir(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linker(src: PathBuf) -> impl FnOnce(&Path) -> std::io::Result<bool> {
        move |dst| std::fs::hard_link(src, dst).map(|_| true)
    }

    #[test]
    fn staging_groups_files_by_directory_and_refuses_what_cannot_be_layered() {
        let d = tempfile::tempdir().unwrap();
        let (layers, root) = (d.path().join(DIR), d.path().join("root"));
        std::fs::create_dir_all(&root).unwrap();
        let obj = d.path().join("obj");
        std::fs::write(&obj, "data").unwrap();
        let st = |rel: &str, name: &str| {
            stage(&layers, &root, Path::new(rel), name, linker(obj.clone()))
                .unwrap()
                .is_some()
        };
        assert!(st("in", "a"));
        assert!(st("in", "b"));
        assert!(st("tmp/x", "c"));
        assert!(!st("in", "a"), "the same file twice");
        assert!(!st("in/sub", "d"), "nested in a layered directory");
        assert!(!st("tmp", "e"), "holds a layered directory");
        assert!(!st("", "f"), "the root itself");
        assert!(!st("usr/share", "g"), "a read-only host mount");
        assert!(!st("in,lowerdir=/", "h"), "overlay option syntax");
        let refused = stage(&layers, &root, Path::new("mnt"), "i", |_| Ok(false));
        assert!(refused.unwrap().is_none());
        let g = read(&layers).unwrap();
        assert_eq!(
            g,
            vec![
                Group {
                    index: 0,
                    rel: "in".into(),
                    names: vec!["a".into(), "b".into()]
                },
                Group {
                    index: 1,
                    rel: "tmp/x".into(),
                    names: vec!["c".into()]
                },
            ]
        );
        assert_eq!(
            std::fs::read(g[0].lower(&layers).join("b")).unwrap(),
            b"data"
        );
        reset(&layers).unwrap();
        assert!(!layers.exists());
        assert!(read(&layers).unwrap().is_empty());
    }

    #[test]
    fn finish_links_unchanged_files_keeps_changed_ones_and_drops_deleted_ones() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let (layers, root) = (d.path().join(DIR), d.path().join("root"));
        std::fs::create_dir_all(root.join("in")).unwrap();
        for n in ["same", "changed", "deleted"] {
            let obj = d.path().join(format!("obj-{n}"));
            std::fs::write(&obj, n).unwrap();
            let staged = stage(&layers, &root, Path::new("in"), n, linker(obj)).unwrap();
            assert!(staged.is_some());
        }
        // what an overlay leaves in its upper directory: a copied-up file, a
        // whiteout (made here with mknod, as root only), a mode-000 work dir
        std::fs::write(root.join("in/changed"), "new").unwrap();
        // SAFETY: geteuid has no preconditions.
        let whiteout = unsafe { libc::geteuid() } == 0;
        if whiteout {
            let c = std::ffi::CString::new(root.join("in/deleted").to_str().unwrap()).unwrap();
            // SAFETY: valid C string.
            assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0);
        } else {
            symlink("elsewhere", root.join("in/deleted")).unwrap();
        }
        let work = layers.join("work-0/work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o000)).unwrap();
        finish(&layers, &root, None).unwrap();
        assert_eq!(std::fs::read(root.join("in/same")).unwrap(), b"same");
        assert_eq!(std::fs::read(root.join("in/changed")).unwrap(), b"new");
        assert_eq!(
            std::fs::read(d.path().join("obj-changed")).unwrap(),
            b"changed"
        );
        if whiteout {
            assert!(root.join("in/deleted").symlink_metadata().is_err());
        }
        assert!(!layers.exists(), "the layers are removed");
    }
}
