//! tar+gzip, Argo's default artifact archive, streamed both ways.
//!
//! Packing never follows symlinks (a link is stored as a link). Unpacking
//! rejects, with a message naming the entry, any entry whose path is absolute
//! or contains `..`, and any link whose target would resolve outside the
//! directory being unpacked into.

use std::io::{Read, Write};
use std::path::{Component, Path};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use super::ArtifactError;

/// Pack the file or directory `src` as one top-level entry `name` (Argo's
/// layout: `/tmp/x.txt` → `x.txt`, `/tmp/dir/` → `dir/…`) into `out`.
pub fn pack_tgz(src: &Path, name: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let gz = GzEncoder::new(out, Compression::default());
    let mut b = tar::Builder::new(gz);
    b.follow_symlinks(false);
    if std::fs::symlink_metadata(src)?.is_dir() {
        b.append_dir_all(name, src)?;
    } else {
        b.append_path_with_name(src, name)?;
    }
    b.into_inner()?.finish()?;
    Ok(())
}

/// Whether the first bytes of an object are a gzip'd tar (gzip magic, then the
/// `ustar` magic of the first header), as Argo's executor decides before untarring.
pub fn is_tgz(r: impl Read) -> bool {
    let mut gz = GzDecoder::new(r);
    let mut head = [0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match gz.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return false,
        }
    }
    got >= 262 && &head[257..262] == b"ustar"
}

/// How deep `p` stays below its start; `None` if it is absolute or climbs above it.
fn depth_ok(start: usize, p: &Path) -> Option<usize> {
    let mut depth = start as isize;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(depth as usize)
}

/// Unpack a tar.gz stream into the existing directory `dest`.
pub fn unpack_tgz(r: impl Read, dest: &Path) -> Result<(), ArtifactError> {
    let mut ar = tar::Archive::new(GzDecoder::new(r));
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    let bad = |what: &str| ArtifactError::io(format!("unpacking {what}"));
    for entry in ar.entries().map_err(bad("the archive"))? {
        let mut entry = entry.map_err(bad("the archive"))?;
        let path = entry.path().map_err(bad("an entry"))?.into_owned();
        let shown = path.display().to_string();
        if path.components().any(|c| c == Component::ParentDir) || depth_ok(0, &path).is_none() {
            return Err(ArtifactError::Escape(format!(
                "tar entry '{shown}' escapes its directory (absolute or '..' paths are rejected)"
            )));
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(bad(&shown))?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            // a symlink resolves from its own directory, a hard link from the archive root
            let start = if kind.is_symlink() {
                path.components().count().saturating_sub(1)
            } else {
                0
            };
            if depth_ok(start, &target).is_none() {
                return Err(ArtifactError::Escape(format!(
                    "tar entry '{shown}' links to '{}', outside its directory",
                    target.display()
                )));
            }
        }
        match entry.unpack_in(dest) {
            Ok(true) => {}
            Ok(false) => {
                return Err(ArtifactError::Escape(format!(
                    "tar entry '{shown}' escapes its directory"
                )));
            }
            Err(e) => return Err(ArtifactError::io(format!("unpacking '{shown}'"))(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tar.gz with one entry of the given (possibly malicious) raw name.
    pub(crate) fn evil_tgz(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let gz = GzEncoder::new(&mut out, Compression::fast());
            let mut b = tar::Builder::new(gz);
            let data = b"pwned\n";
            let mut h = tar::Header::new_gnu();
            // write the name bytes directly: `set_path` refuses `..` itself
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, &data[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        out
    }

    #[test]
    fn round_trip_file_and_dir() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.txt"), "A").unwrap();
        std::fs::write(src.join("sub/b.txt"), "B").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let mut tgz = Vec::new();
        pack_tgz(&src, "src", &mut tgz).unwrap();
        assert!(is_tgz(&tgz[..]));
        assert!(!is_tgz(&b"plain"[..]));
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        // the absolute symlink is stored as a link and refused on the way back
        let err = unpack_tgz(&tgz[..], &out).unwrap_err().to_string();
        assert!(err.contains("links to '/etc/passwd'"), "{err}");
        std::fs::remove_file(src.join("link")).unwrap();
        let mut tgz = Vec::new();
        pack_tgz(&src, "src", &mut tgz).unwrap();
        let out = d.path().join("out2");
        std::fs::create_dir(&out).unwrap();
        unpack_tgz(&tgz[..], &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("src/sub/b.txt")).unwrap(),
            "B"
        );
    }

    #[test]
    fn escaping_entries_are_rejected() {
        let d = tempfile::tempdir().unwrap();
        for name in ["../escape.txt", "a/../../escape.txt", "/abs.txt"] {
            let err = unpack_tgz(&evil_tgz(name)[..], d.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains("escapes its directory"), "{name}: {err}");
        }
        assert!(!d.path().parent().unwrap().join("escape.txt").exists());
    }
}
