//! The local directory repository: key `a/b/c` is the file `<root>/a/b/c`.
//!
//! Writes go to `<root>/.tmp/` first and are renamed into place on commit, so a
//! reader never sees half an object and a crash leaves only temp files.
//!
//! Files move at the kernel's speed: [`Repository::put_file`] of a finished
//! step's file hard-links it into the repository (no bytes copied) when it is
//! on the same filesystem and has no other links, else copies it with
//! `copy_file_range` (through `std::fs::copy`, as `cp` does), and
//! [`Repository::get_to_file`] copies the same way (a step may change its
//! inputs, so they are never links into the repository).
//!
//! Durability follows the store's: objects are `fdatasync`ed before they
//! become visible only with `durability = "power"` ([`sync_by_default`], set
//! once at start-up, or [`LocalRepository::with_sync`]); by default a committed
//! object survives `kill -9` of weft (it is in the page cache) but not a power
//! cut, like the store's own rows.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{ArtifactError, Key, ObjectWriter, Repository};

/// Temp files of uncommitted writes live here (never a valid first key segment
/// for listing purposes: it is skipped).
const TMP: &str = ".tmp";

static SEQ: AtomicU64 = AtomicU64::new(0);
static SYNC: AtomicBool = AtomicBool::new(false);

/// Make every local repository created from now on sync its objects to disk
/// (the process runs with `durability = "power"`).
pub fn sync_by_default(on: bool) {
    SYNC.store(on, Ordering::Relaxed);
}

/// A repository in a host directory.
#[derive(Debug, Clone)]
pub struct LocalRepository {
    root: PathBuf,
    /// `fdatasync` each object before it becomes visible.
    sync: bool,
}

impl LocalRepository {
    pub fn new(root: impl Into<PathBuf>) -> LocalRepository {
        LocalRepository {
            root: root.into(),
            sync: SYNC.load(Ordering::Relaxed),
        }
    }

    /// Sync every object to disk before it becomes visible (power-loss durability).
    pub fn with_sync(mut self, sync: bool) -> LocalRepository {
        self.sync = sync;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path of a key (keys are validated: no `..`, so it stays under root).
    pub fn path_of(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// A fresh temp file name under `<root>/.tmp/` (unique per call: several
    /// threads of one process write at once).
    fn temp_path(&self) -> Result<PathBuf, ArtifactError> {
        let tmp_dir = self.root.join(TMP);
        std::fs::create_dir_all(&tmp_dir)
            .map_err(ArtifactError::io(format!("creating {}", tmp_dir.display())))?;
        Ok(tmp_dir.join(format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )))
    }

    /// Whether a regular file (an object) is at `p`.
    fn is_object(&self, p: &Path) -> Result<bool, ArtifactError> {
        match std::fs::metadata(p) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(false),
            Err(e) => Err(ArtifactError::io(format!("reading {}", p.display()))(e)),
        }
    }
}

struct LocalWriter {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<BufWriter<File>>,
    sync: bool,
}

/// Move the finished temp file `tmp` to `dest` (parents created, a directory
/// there replaced).
fn install(tmp: &Path, dest: &Path) -> Result<(), ArtifactError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(ArtifactError::io(format!("creating {}", parent.display())))?;
    }
    if dest.is_dir() {
        std::fs::remove_dir_all(dest)
            .map_err(ArtifactError::io(format!("replacing {}", dest.display())))?;
    }
    std::fs::rename(tmp, dest).map_err(ArtifactError::io(format!("storing {}", dest.display())))
}

/// Removes a temp file unless disarmed.
struct TempGuard<'a>(Option<&'a Path>);

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("open until commit").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(mut self: Box<Self>) -> Result<(), ArtifactError> {
        let f = self.file.take().expect("committed once");
        let f = f.into_inner().map_err(|e| ArtifactError::Io {
            what: format!("writing {}", self.dest.display()),
            source: e.into_error(),
        })?;
        if self.sync {
            f.sync_data()
                .map_err(ArtifactError::io(format!("syncing {}", self.tmp.display())))?;
        }
        drop(f);
        install(&self.tmp, &self.dest)
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Repository for LocalRepository {
    fn describe(&self) -> String {
        format!("local repository {}", self.root.display())
    }

    fn create(&self, key: &Key) -> Result<Box<dyn ObjectWriter>, ArtifactError> {
        let tmp = self.temp_path()?;
        let file =
            File::create(&tmp).map_err(ArtifactError::io(format!("creating {}", tmp.display())))?;
        Ok(Box::new(LocalWriter {
            tmp,
            dest: self.path_of(key),
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            sync: self.sync,
        }))
    }

    fn put_file(&self, key: &Key, src: &Path, disposable: bool) -> Result<(), ArtifactError> {
        let meta = std::fs::symlink_metadata(src)
            .map_err(ArtifactError::io(format!("reading {}", src.display())))?;
        let tmp = self.temp_path()?;
        let mut guard = TempGuard(Some(&tmp));
        // A file with other links may be changed through them: copy it.
        let linked = disposable
            && meta.is_file()
            && meta.nlink() == 1
            && std::fs::hard_link(src, &tmp).is_ok();
        if !linked {
            std::fs::copy(src, &tmp).map_err(ArtifactError::io(format!(
                "saving '{key}' from {}",
                src.display()
            )))?;
        }
        if self.sync {
            File::open(&tmp)
                .and_then(|f| f.sync_data())
                .map_err(ArtifactError::io(format!("syncing {}", tmp.display())))?;
        }
        install(&tmp, &self.path_of(key))?;
        guard.0 = None;
        Ok(())
    }

    fn get_to_file(&self, key: &Key, dest: &Path) -> Result<bool, ArtifactError> {
        let p = self.path_of(key);
        if !self.is_object(&p)? {
            return Ok(false);
        }
        std::fs::copy(&p, dest).map_err(ArtifactError::io(format!(
            "copying {} to {}",
            p.display(),
            dest.display()
        )))?;
        Ok(true)
    }

    fn link_to(&self, key: &Key, dest: &Path) -> Result<bool, ArtifactError> {
        let p = self.path_of(key);
        // objects are replaced by rename, never written in place: a link sees
        // the object as it was
        Ok(self.is_object(&p)? && std::fs::hard_link(&p, dest).is_ok())
    }

    fn open(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, ArtifactError> {
        let p = self.path_of(key);
        if !self.is_object(&p)? {
            return Ok(None);
        }
        let f = File::open(&p).map_err(ArtifactError::io(format!("reading {}", p.display())))?;
        Ok(Some(Box::new(f)))
    }

    fn list(&self, prefix: &Key) -> Result<Vec<Key>, ArtifactError> {
        let base = self.path_of(prefix);
        let mut out = Vec::new();
        if !base.is_dir() {
            return Ok(out);
        }
        let mut stack = vec![(base, prefix.as_str().to_string())];
        while let Some((dir, key)) = stack.pop() {
            let rd = std::fs::read_dir(&dir)
                .map_err(ArtifactError::io(format!("listing {}", dir.display())))?;
            for e in rd {
                let e = e.map_err(ArtifactError::io(format!("listing {}", dir.display())))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if key.is_empty() && name == TMP {
                    continue;
                }
                let ft = e
                    .file_type()
                    .map_err(ArtifactError::io(format!("listing {}", dir.display())))?;
                let k = format!("{key}/{name}");
                if ft.is_dir() {
                    stack.push((e.path(), k));
                } else if ft.is_file() {
                    out.push(Key::parse(&k)?);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &Key) -> Result<(), ArtifactError> {
        let p = self.path_of(key);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(()),
            // a directory is no object (its members are deleted by key)
            Err(_) if p.is_dir() => return Ok(()),
            Err(e) => return Err(ArtifactError::io(format!("deleting {}", p.display()))(e)),
        }
        // Drop the directories the key left empty, up to the repository root.
        let mut dir = p.parent();
        while let Some(d) = dir {
            if d == self.root() || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_open_list() {
        let d = tempfile::tempdir().unwrap();
        let r = LocalRepository::new(d.path());
        for k in ["a/b/one", "a/b/c/two", "a/x"] {
            let mut w = r.create(&Key::parse(k).unwrap()).unwrap();
            w.write_all(k.as_bytes()).unwrap();
            w.commit().unwrap();
        }
        let mut s = String::new();
        r.open(&Key::parse("a/b/one").unwrap())
            .unwrap()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "a/b/one");
        assert!(r.open(&Key::parse("a/b").unwrap()).unwrap().is_none());
        assert!(r.open(&Key::parse("a/x/y").unwrap()).unwrap().is_none());
        let l: Vec<String> = r
            .list(&Key::parse("a/b").unwrap())
            .unwrap()
            .into_iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(l, ["a/b/c/two", "a/b/one"]);
        // delete_all takes the directory's objects and the empty directories
        assert_eq!(r.delete_all(&Key::parse("a/b").unwrap()).unwrap(), 2);
        assert!(r.list(&Key::parse("a/b").unwrap()).unwrap().is_empty());
        assert!(!d.path().join("a/b").exists());
        assert!(r.open(&Key::parse("a/x").unwrap()).unwrap().is_some());
        r.delete(&Key::parse("a/x").unwrap()).unwrap();
        r.delete(&Key::parse("a/x").unwrap()).unwrap(); // again: no error
        assert!(!d.path().join("a").exists());
        // an uncommitted writer leaves nothing
        drop(r.create(&Key::parse("gone").unwrap()).unwrap());
        assert!(r.open(&Key::parse("gone").unwrap()).unwrap().is_none());
        assert_eq!(std::fs::read_dir(d.path().join(TMP)).unwrap().count(), 0);
    }

    #[test]
    fn put_file_links_only_disposable_single_link_files_and_get_copies() {
        let d = tempfile::tempdir().unwrap();
        let r = LocalRepository::new(d.path().join("repo")).with_sync(true);
        let src = d.path().join("out.bin");
        std::fs::write(&src, b"payload").unwrap();
        let nlink = |p: &Path| std::fs::metadata(p).unwrap().nlink();

        // not disposable: the bytes are copied
        let k = Key::parse("wf/copied").unwrap();
        r.put_file(&k, &src, false).unwrap();
        assert_eq!(nlink(&r.path_of(&k)), 1);
        // disposable with no other link: taken as a link, no copy
        let k = Key::parse("wf/linked").unwrap();
        r.put_file(&k, &src, true).unwrap();
        assert_eq!(nlink(&r.path_of(&k)), 2);
        assert_eq!(std::fs::read(r.path_of(&k)).unwrap(), b"payload");
        // a file with another link could change through it: copied
        let src2 = d.path().join("other.bin");
        std::fs::write(&src2, b"two").unwrap();
        std::fs::hard_link(&src2, d.path().join("alias")).unwrap();
        let k2 = Key::parse("wf/aliased").unwrap();
        r.put_file(&k2, &src2, true).unwrap();
        assert_eq!(nlink(&r.path_of(&k2)), 1);
        // replacing an object replaces it
        r.put_file(&k2, &src, false).unwrap();
        assert_eq!(std::fs::read(r.path_of(&k2)).unwrap(), b"payload");

        // get_to_file copies (a step may change its input): the object stays
        let dest = d.path().join("in.bin");
        assert!(r.get_to_file(&k, &dest).unwrap());
        std::fs::write(&dest, b"changed by the step").unwrap();
        assert_eq!(std::fs::read(r.path_of(&k)).unwrap(), b"payload");
        assert!(
            !r.get_to_file(&Key::parse("wf/none").unwrap(), &d.path().join("x"))
                .unwrap()
        );
        assert!(!d.path().join("x").exists());
        assert!(
            !r.get_to_file(&Key::parse("wf").unwrap(), &d.path().join("x"))
                .unwrap()
        );
        // a missing source is an error naming it; no temp file is left
        let e = r
            .put_file(
                &Key::parse("wf/m").unwrap(),
                &d.path().join("missing"),
                true,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        assert_eq!(
            std::fs::read_dir(d.path().join("repo").join(TMP))
                .unwrap()
                .count(),
            0
        );
    }
}
