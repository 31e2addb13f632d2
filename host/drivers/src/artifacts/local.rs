//! The local directory repository: key `a/b/c` is the file `<root>/a/b/c`.
//!
//! Writes go to `<root>/.tmp/` first and are renamed into place on commit, so a
//! reader never sees half an object and a crash leaves only temp files.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ArtifactError, Key, ObjectWriter, Repository};

/// Temp files of uncommitted writes live here (never a valid first key segment
/// for listing purposes: it is skipped).
const TMP: &str = ".tmp";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A repository in a host directory.
#[derive(Debug, Clone)]
pub struct LocalRepository {
    root: PathBuf,
}

impl LocalRepository {
    pub fn new(root: impl Into<PathBuf>) -> LocalRepository {
        LocalRepository { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path of a key (keys are validated: no `..`, so it stays under root).
    pub fn path_of(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }
}

struct LocalWriter {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<BufWriter<File>>,
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
        f.sync_data()
            .map_err(ArtifactError::io(format!("syncing {}", self.tmp.display())))?;
        drop(f);
        if let Some(parent) = self.dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(ArtifactError::io(format!("creating {}", parent.display())))?;
        }
        if self.dest.is_dir() {
            std::fs::remove_dir_all(&self.dest).map_err(ArtifactError::io(format!(
                "replacing {}",
                self.dest.display()
            )))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(ArtifactError::io(format!(
            "storing {}",
            self.dest.display()
        )))
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
        let tmp_dir = self.root.join(TMP);
        std::fs::create_dir_all(&tmp_dir)
            .map_err(ArtifactError::io(format!("creating {}", tmp_dir.display())))?;
        let tmp = tmp_dir.join(format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file =
            File::create(&tmp).map_err(ArtifactError::io(format!("creating {}", tmp.display())))?;
        Ok(Box::new(LocalWriter {
            tmp,
            dest: self.path_of(key),
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
        }))
    }

    fn open(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, ArtifactError> {
        let p = self.path_of(key);
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
            Err(e) => return Err(ArtifactError::io(format!("reading {}", p.display()))(e)),
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
}
