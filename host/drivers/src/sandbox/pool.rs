//! Recycled step directories.
//!
//! Every step root needs the same skeleton ([`ROOT_DIRS`], [`ROOT_SYMLINKS`]):
//! about fifteen inodes created, and deleted again after the step. Creating an
//! inode is the most expensive thing a trivial step does: on ext4 without a
//! journal (these machines) the allocator skips every recently deleted inode,
//! and a busy engine deletes thousands a second — a profile of 1,000 `sh -c`
//! steps spent 80 % of weft's CPU in `__ext4_new_inode`. So a finished step's
//! directory is emptied down to its skeleton and kept in `<work>/.pool/`, and
//! the next step takes it with one `rename`.
//!
//! A directory goes back to the pool only when cleaning proves it is nothing
//! but a skeleton again: every entry the step made is removed, skeleton
//! directories are emptied and get their modes back, the mount-point
//! directories (`usr`, `etc`, … which the step saw as read-only host mounts in
//! its own mount namespace) must already be empty, and everything must be
//! ours. Anything else and the directory is deleted as before. No step ever
//! sees another step's files.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::spawn::{ROOT_DIRS, ROOT_SYMLINKS, skeleton_mode};

/// Most directories kept for reuse.
const CAPACITY: usize = 256;
/// Skeleton directories that are mount points in the step (never written).
const MOUNT_POINTS: &[&str] = &["usr", "etc", "opt", "dev", "proc"];

/// The pool of clean step directories of one work directory.
#[derive(Debug)]
pub struct RootPool {
    dir: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    seq: AtomicU64,
    tag: String,
}

impl RootPool {
    /// The pool under `<work_dir>/.pool`, with the entries a previous process
    /// left there (entries are renamed in only once clean).
    pub fn new(work_dir: &Path) -> RootPool {
        let dir = work_dir.join(".pool");
        let free = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.path()).take(CAPACITY).collect())
            .unwrap_or_default();
        RootPool {
            dir,
            free: Mutex::new(free),
            seq: AtomicU64::new(0),
            // unique among processes sharing the work directory
            tag: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
        }
    }

    /// The step roots of the (at most) `n` entries [`RootPool::take`] hands
    /// out next.
    pub fn next(&self, n: usize) -> Vec<PathBuf> {
        let free = self.free.lock().unwrap();
        free.iter().rev().take(n).map(|e| e.join("root")).collect()
    }

    /// Entries ready for reuse.
    pub fn len(&self) -> usize {
        self.free.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Put a clean directory at `step_dir` if nothing is there yet; true when
    /// it did (its `root/` is then a complete skeleton). Best effort: without
    /// one (pool empty, or another process sharing the work directory took it
    /// first) the caller creates the skeleton itself.
    pub fn take(&self, step_dir: &Path) -> bool {
        if step_dir.symlink_metadata().is_ok() {
            return false;
        }
        let Some(parent) = step_dir.parent() else {
            return false;
        };
        while let Some(entry) = self.free.lock().unwrap().pop() {
            if std::fs::create_dir_all(parent).is_err() {
                self.free.lock().unwrap().push(entry);
                return false;
            }
            if std::fs::rename(&entry, step_dir).is_ok() {
                // a skeleton kept by an older weft lacks `run/shm`
                return complete_skeleton(&step_dir.join("root"));
            }
            // gone (another process took it): try the next one
        }
        false
    }

    /// A finished step's directory: cleaned and kept, or deleted. Blocking.
    pub fn give(&self, step_dir: &Path) {
        let kept = self.len() < CAPACITY
            && clean(step_dir)
            && std::fs::create_dir_all(&self.dir).is_ok()
            && {
                let entry = self.dir.join(format!(
                    "{}-{}",
                    self.tag,
                    self.seq.fetch_add(1, Ordering::Relaxed)
                ));
                let ok = std::fs::rename(step_dir, &entry).is_ok();
                if ok {
                    self.free.lock().unwrap().push(entry);
                }
                ok
            };
        if !kept {
            let _ = std::fs::remove_dir_all(step_dir);
        }
        // The workflow's directory goes with its last step (fails while others remain).
        if let Some(parent) = step_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Add the skeleton directories that `root` lacks, as `run/shm`, which
/// skeletons kept before it was one of them lack; false if that fails.
fn complete_skeleton(root: &Path) -> bool {
    const ADDED: &str = "run/shm";
    let dir = root.join(ADDED);
    dir.is_dir()
        || std::fs::create_dir_all(&dir).is_ok()
            && std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(skeleton_mode(ADDED)))
                .is_ok()
}

/// Empty `step_dir` down to a fresh skeleton; false if it cannot be proved
/// clean (then it must be deleted instead).
fn clean(step_dir: &Path) -> bool {
    clean_inner(step_dir).unwrap_or(false)
}

fn clean_inner(step_dir: &Path) -> std::io::Result<bool> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    // our directory or symlink: its metadata
    let ours = |p: &Path| -> std::io::Result<Option<std::fs::Metadata>> {
        let m = p.symlink_metadata()?;
        Ok((m.uid() == me && (m.is_dir() || m.file_type().is_symlink())).then_some(m))
    };
    // a chmod dirties the inode: only where the step changed the mode
    let set_mode = |p: &Path, m: &std::fs::Metadata, mode: u32| -> std::io::Result<()> {
        if m.mode() & 0o7777 == mode {
            return Ok(());
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    };
    if ours(step_dir)?.is_none() {
        return Ok(false);
    }
    for e in std::fs::read_dir(step_dir)? {
        let e = e?;
        if e.file_name() != "root" {
            remove(&e.path())?;
        }
    }
    let root = step_dir.join("root");
    let Some(root_meta) = ours(&root)?.filter(|m| m.is_dir()) else {
        return Ok(false);
    };
    let mut top: Vec<&str> = ROOT_DIRS
        .iter()
        .map(|d| d.split('/').next().unwrap_or(d))
        .collect();
    top.dedup();
    let (mut seen, mut links) = (0, 0);
    for e in std::fs::read_dir(&root)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            remove(&e.path())?;
            continue;
        };
        let p = e.path();
        let ft = e.file_type()?;
        if let Some((_, target)) = ROOT_SYMLINKS.iter().find(|(l, _)| *l == name) {
            // a link the step changed is made again
            if !(ft.is_symlink()
                && std::fs::read_link(&p)? == Path::new(target)
                && ours(&p)?.is_some())
            {
                remove(&p)?;
                std::os::unix::fs::symlink(target, &p)?;
            }
            links += 1;
            continue;
        }
        if !top.contains(&name) {
            remove(&p)?;
            continue;
        }
        let Some(meta) = ours(&p)?.filter(|m| ft.is_dir() && m.is_dir()) else {
            return Ok(false);
        };
        seen += 1;
        if MOUNT_POINTS.contains(&name) {
            if std::fs::read_dir(&p)?.next().is_some() {
                return Ok(false);
            }
            set_mode(&p, &meta, 0o755)?;
            continue;
        }
        // keep the nested skeleton dirs (`var/tmp`), empty everything else
        let nested: Vec<&str> = ROOT_DIRS
            .iter()
            .filter_map(|d| d.strip_prefix(name).and_then(|r| r.strip_prefix('/')))
            .collect();
        for c in std::fs::read_dir(&p)? {
            let c = c?;
            let keep = c.file_type()?.is_dir()
                && c.file_name().to_str().is_some_and(|n| nested.contains(&n));
            if keep {
                empty(&c.path())?;
                let rel = format!("{name}/{}", c.file_name().to_string_lossy());
                set_mode(
                    &c.path(),
                    &c.path().symlink_metadata()?,
                    skeleton_mode(&rel),
                )?;
            } else {
                remove(&c.path())?;
            }
        }
        for n in &nested {
            if !p.join(n).is_dir() {
                return Ok(false);
            }
        }
        set_mode(&p, &meta, skeleton_mode(name))?;
    }
    // a link the step deleted is made again
    if links < ROOT_SYMLINKS.len() {
        for (link, target) in ROOT_SYMLINKS {
            let l = root.join(link);
            if l.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(target, &l)?;
            }
        }
    }
    set_mode(&root, &root_meta, 0o755)?;
    Ok(seen == top.len())
}

/// Remove a file, symlink or whole directory (symlinks are never followed).
fn remove(p: &Path) -> std::io::Result<()> {
    if p.symlink_metadata()?.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
}

/// Remove everything inside the directory `p`.
fn empty(p: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(p)? {
        remove(&e?.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::manager::prepare_root;

    fn skeleton(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                let m = e.path().symlink_metadata().unwrap();
                out.push(format!("{rel} {:o}", m.mode() & 0o7777));
                if m.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_used_root_comes_back_as_a_fresh_skeleton() {
        let work = tempfile::tempdir().unwrap();
        let fresh = work.path().join("fresh");
        prepare_root(&fresh.join("root"), &[], "/").unwrap();
        let expected = skeleton(&fresh);

        let pool = RootPool::new(work.path());
        let step = work.path().join("wf1/node-0");
        assert!(!pool.take(&step), "empty pool: nothing");
        assert!(!step.exists());
        prepare_root(&step.join("root"), &[], "/work").unwrap();
        // what a step leaves behind
        let root = step.join("root");
        std::fs::write(root.join("out.txt"), "secret").unwrap();
        std::fs::write(root.join("tmp/t"), "x").unwrap();
        std::fs::create_dir_all(root.join("var/tmp/deep/er")).unwrap();
        std::fs::write(root.join("var/log"), "x").unwrap();
        std::fs::create_dir_all(root.join("root/.cache")).unwrap();
        std::fs::set_permissions(root.join("mnt"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::remove_file(root.join("lib64")).unwrap();
        std::fs::remove_file(root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("bin")).unwrap();
        std::fs::write(step.join("main.log"), "log").unwrap();
        // `/dev/shm` leads to `run/shm`
        std::fs::write(root.join("run/shm/sem.x"), "x").unwrap();
        std::fs::set_permissions(root.join("run/shm"), std::fs::Permissions::from_mode(0o700))
            .unwrap();

        pool.give(&step);
        assert!(!step.exists());
        assert!(
            !work.path().join("wf1").exists(),
            "the workflow dir goes with its last step"
        );
        assert_eq!(pool.len(), 1);

        let next = work.path().join("wf2/node-0");
        assert!(pool.take(&next));
        assert_eq!(pool.len(), 0);
        // a complete skeleton again: the link the step replaced is restored
        assert_eq!(skeleton(&next), expected);

        // a new pool (another process) finds what this one left
        pool.give(&next);
        assert_eq!(RootPool::new(work.path()).len(), 1);
    }

    #[test]
    fn a_skeleton_kept_by_an_older_weft_gets_what_it_lacks() {
        let work = tempfile::tempdir().unwrap();
        let entry = work.path().join(".pool/old-1");
        prepare_root(&entry.join("root"), &[], "/").unwrap();
        std::fs::remove_dir(entry.join("root/run/shm")).unwrap();
        let pool = RootPool::new(work.path());
        assert_eq!(pool.next(4), vec![entry.join("root")]);
        let step = work.path().join("wf/a-0");
        assert!(pool.take(&step));
        let shm = step.join("root/run/shm").symlink_metadata().unwrap();
        assert!(shm.is_dir());
        assert_eq!(shm.mode() & 0o7777, 0o1777);
    }

    #[test]
    fn a_root_that_cannot_be_proved_clean_is_deleted() {
        let work = tempfile::tempdir().unwrap();
        let pool = RootPool::new(work.path());
        // a mount point that is not empty
        let step = work.path().join("wf/a-0");
        prepare_root(&step.join("root"), &[], "/").unwrap();
        std::fs::write(step.join("root/usr/x"), "?").unwrap();
        pool.give(&step);
        assert!(!step.exists());
        assert!(pool.is_empty());
        // a skeleton directory replaced by a file
        let step = work.path().join("wf/b-0");
        prepare_root(&step.join("root"), &[], "/").unwrap();
        std::fs::remove_dir_all(step.join("root/run")).unwrap();
        std::fs::write(step.join("root/run"), "?").unwrap();
        pool.give(&step);
        assert!(!step.exists());
        assert!(pool.is_empty());
        // no root at all
        let step = work.path().join("wf/c-0");
        std::fs::create_dir_all(&step).unwrap();
        pool.give(&step);
        assert!(!step.exists());
        assert!(pool.is_empty());
    }
}
