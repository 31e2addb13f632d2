//! Test support shared by this crate's unit tests and the integration tests
//! (`tests/all`): the contract every [`Repository`] is held to, and a real
//! Azurite (Azure Blob emulator) started from npm.
//!
//! Not part of weft's API: hidden from the docs, used by tests only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::objstore::CHUNK;
use super::{Key, Repository};

fn put(r: &dyn Repository, key: &str, data: &[u8]) {
    let mut w = r.create(&Key::parse(key).unwrap()).unwrap();
    for c in data.chunks(100_000) {
        w.write_all(c).unwrap();
    }
    w.commit()
        .unwrap_or_else(|e| panic!("{}: storing {key}: {e}", r.describe()));
}

fn get(r: &dyn Repository, key: &str) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    r.open(&Key::parse(key).unwrap())
        .unwrap_or_else(|e| panic!("{}: reading {key}: {e}", r.describe()))?
        .read_to_end(&mut v)
        .unwrap();
    Some(v)
}

fn keys(r: &dyn Repository, prefix: &str) -> Vec<String> {
    r.list(&Key::parse(prefix).unwrap())
        .unwrap()
        .into_iter()
        .map(|k| k.to_string())
        .collect()
}

/// The repository contract: a small object (one `PUT`) and a multipart one
/// (2.5 chunks) round-trip, a missing key is `None`, `list` is by prefix and
/// sorted, an uncommitted writer leaves nothing, `delete` is idempotent and
/// `delete_all` removes a "directory". Leaves the repository empty.
pub fn contract(r: &dyn Repository) {
    put(r, "a/small", b"hello");
    let big: Vec<u8> = (0..CHUNK * 5 / 2).map(|i| (i % 251) as u8).collect();
    put(r, "a/b/big", &big);
    put(r, "other", b"x");
    assert_eq!(get(r, "a/small").unwrap(), b"hello");
    assert!(get(r, "a/big-missing").is_none());
    assert!(
        get(r, "a/b/big").unwrap() == big,
        "multipart object differs"
    );
    assert_eq!(keys(r, "a"), ["a/b/big", "a/small"]);
    // replacing an object
    put(r, "a/small", b"hello again");
    assert_eq!(get(r, "a/small").unwrap(), b"hello again");
    // an uncommitted writer leaves no object
    let mut w = r.create(&Key::parse("gone").unwrap()).unwrap();
    w.write_all(&big).unwrap();
    drop(w);
    assert!(get(r, "gone").is_none());
    // delete: one object, then a "directory"; deleting again is no error
    r.delete(&Key::parse("a/small").unwrap()).unwrap();
    r.delete(&Key::parse("a/small").unwrap()).unwrap();
    assert!(get(r, "a/small").is_none());
    assert_eq!(r.delete_all(&Key::parse("a").unwrap()).unwrap(), 1);
    assert!(keys(r, "a").is_empty());
    assert_eq!(get(r, "other").unwrap(), b"x");
    assert_eq!(r.delete_all(&Key::parse("other").unwrap()).unwrap(), 1);
    assert!(get(r, "other").is_none());
}

/// With wrong credentials every call fails with a message naming the
/// repository (`names` are parts of its description) and never carrying
/// `secrets`.
pub fn wrong_credentials(r: &dyn Repository, names: &[&str], secrets: &[&str]) {
    let mut w = r.create(&Key::parse("k").unwrap()).unwrap();
    w.write_all(b"data").unwrap();
    let errors = [
        w.commit().unwrap_err().to_string(),
        r.open(&Key::parse("k").unwrap()).err().unwrap().to_string(),
        r.list(&Key::parse("x").unwrap()).unwrap_err().to_string(),
    ];
    refused(&errors, names, secrets);
}

/// Each error is an authorization failure naming the repository (every one
/// of `names`) without any of `secrets`.
fn refused(errors: &[String], names: &[&str], secrets: &[&str]) {
    for e in errors {
        for n in names {
            assert!(e.contains(n), "error does not name {n:?}: {e}");
        }
        for s in secrets {
            assert!(!e.contains(s), "error carries a secret: {e}");
        }
        assert!(
            e.contains("403") || e.to_lowercase().contains("signature"),
            "not an authorization failure: {e}"
        );
    }
}

/// Whole files through [`Repository::put_file`] and [`Repository::get_to_file`]
/// (in parallel parts and ranges where the repository does so): empty, one
/// byte, either side of one [`CHUNK`] and an odd multi-part size round-trip
/// byte for byte, also through `open`; a missing key and a "directory" give
/// `false` and no file; a missing source and an unwritable destination fail
/// naming the path. `scratch` is a directory for the files. Leaves the
/// repository empty.
pub fn files(r: &dyn Repository, scratch: &Path) {
    let sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 12_345];
    for (i, n) in sizes.into_iter().enumerate() {
        // a different pattern per size, so parts written at a wrong offset show
        let data: Vec<u8> = (0..n).map(|j| ((j * 7 + i) % 253) as u8).collect();
        let src = scratch.join(format!("src-{n}"));
        std::fs::write(&src, &data).unwrap();
        let key = Key::parse(&format!("files/f{n}")).unwrap();
        r.put_file(&key, &src, i % 2 == 0)
            .unwrap_or_else(|e| panic!("{}: put_file of {n} bytes: {e}", r.describe()));
        let dest = scratch.join(format!("dest-{n}"));
        assert!(
            r.get_to_file(&key, &dest)
                .unwrap_or_else(|e| panic!("{}: get_to_file of {n} bytes: {e}", r.describe())),
            "{n} bytes: not found"
        );
        let back = std::fs::read(&dest).unwrap();
        assert!(
            back.len() == n && back == data,
            "{n} bytes: got {} bytes, differing",
            back.len()
        );
        assert!(
            get(r, &format!("files/f{n}")).unwrap() == data,
            "{n} bytes: open differs"
        );
    }
    // replacing a multipart object with a smaller one: the file is the new one
    let src = scratch.join("src-small");
    std::fs::write(&src, b"replaced").unwrap();
    let big = Key::parse(&format!("files/f{}", 2 * CHUNK + 12_345)).unwrap();
    r.put_file(&big, &src, false).unwrap();
    let dest = scratch.join("dest-replaced");
    assert!(r.get_to_file(&big, &dest).unwrap());
    assert_eq!(std::fs::read(&dest).unwrap(), b"replaced");
    // missing key, and a prefix with objects below it: false and no file
    for k in ["files/none", "files"] {
        let dest = scratch.join("dest-none");
        assert!(
            !r.get_to_file(&Key::parse(k).unwrap(), &dest).unwrap(),
            "{k}"
        );
        assert!(!dest.exists(), "{k}: a file was left");
    }
    // a source that does not exist; a destination that cannot be created
    let e = r
        .put_file(
            &Key::parse("files/x").unwrap(),
            &scratch.join("no-such-src"),
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-src"), "{e}");
    assert!(get(r, "files/x").is_none());
    let bad = scratch.join("no-such-dir/dest");
    let e = r.get_to_file(&big, &bad).unwrap_err().to_string();
    assert!(e.contains("no-such-dir"), "{e}");
    assert_eq!(
        r.delete_all(&Key::parse("files").unwrap()).unwrap(),
        sizes.len()
    );
    assert!(keys(r, "files").is_empty());
}

/// With wrong credentials `put_file` and `get_to_file` fail naming the
/// repository, never carrying `secrets`, and leave no file behind.
pub fn wrong_credentials_files(
    r: &dyn Repository,
    scratch: &Path,
    names: &[&str],
    secrets: &[&str],
) {
    let small = scratch.join("small");
    std::fs::write(&small, b"data").unwrap();
    let big = scratch.join("big");
    std::fs::write(&big, vec![7u8; CHUNK + 1]).unwrap();
    let k = Key::parse("k").unwrap();
    let dest = scratch.join("dest");
    let errors = [
        r.put_file(&k, &small, false).unwrap_err().to_string(),
        r.put_file(&k, &big, true).unwrap_err().to_string(),
        r.get_to_file(&k, &dest).unwrap_err().to_string(),
    ];
    assert!(!dest.exists());
    refused(&errors, names, secrets);
}

// ---------------------------------------------------------------- Azurite

/// The emulator's well-known account and key (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const AZURITE_VERSION: &str = "3.35.0";

/// A running `azurite-blob` on 127.0.0.1, killed on drop.
pub struct Azurite {
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Cargo's target directory (the one holding this test binary).
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("weft-target"))
}

/// `azurite-blob` from `target/azurite-<version>/` (installed with npm the
/// first time; a concurrent installer's result is reused).
fn azurite_bin() -> Result<PathBuf, String> {
    // Tests of one binary run in parallel threads: one installs, the others
    // wait for it and reuse the result (they shared one temp dir before).
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir().join(format!("azurite-{AZURITE_VERSION}"));
    let bin = dir.join("node_modules/.bin/azurite-blob");
    if bin.exists() {
        return Ok(bin);
    }
    let tmp = target_dir().join(format!(
        "azurite-{AZURITE_VERSION}.install-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .arg("--prefix")
        .arg(&tmp)
        .arg(format!("azurite@{AZURITE_VERSION}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running npm: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "npm install azurite@{AZURITE_VERSION}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp); // another process won the race
    }
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} missing after npm install", bin.display()))
    }
}

impl Azurite {
    /// Install (once) and start Azurite's blob service on a free port.
    pub fn start() -> Result<Azurite, String> {
        let bin = azurite_bin()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-azurite-{}-{port}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&dir)
            .args(["--silent", "--skipApiVersionCheck"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let mut az = Azurite {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            dir,
        };
        let t0 = Instant::now();
        loop {
            if TcpStream::connect_timeout(&az.addr, Duration::from_millis(200)).is_ok() {
                return Ok(az);
            }
            if let Ok(Some(st)) = az.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = az.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("azurite-blob exited ({st}): {err}"));
            }
            if t0.elapsed() > Duration::from_secs(60) {
                return Err("azurite-blob did not listen within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start Azurite, or: under `CI=true` panic, otherwise print a visible
    /// skip notice and return `None`.
    pub fn start_or_skip(test: &str) -> Option<Azurite> {
        match Azurite::start() {
            Ok(a) => Some(a),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("{test}: Azurite is required under CI=true: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED {test}: Azurite could not be started: {e}");
                None
            }
        }
    }

    /// The account's endpoint, Argo's form for Azurite: `http://127.0.0.1:P/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/{AZURITE_ACCOUNT}", self.addr)
    }

    /// Create `container` (object_store has no call for it): a SharedKey-signed
    /// `PUT /devstoreaccount1/NAME?restype=container`. An existing one is fine.
    pub fn create_container(&self, container: &str) -> Result<(), String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
        );
        let key = b64.decode(AZURITE_KEY).expect("the emulator key is base64");
        let sig = b64.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let req = format!(
            "PUT /{AZURITE_ACCOUNT}/{container}?restype=container HTTP/1.1\r\nHost: {}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {AZURITE_ACCOUNT}:{sig}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut s = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let status = resp.split_whitespace().nth(1).unwrap_or("");
        match status {
            "201" | "409" => Ok(()),
            _ => Err(format!(
                "creating container {container}: {}",
                resp.lines().next().unwrap_or("no response")
            )),
        }
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hmac_sha256_matches_rfc4231() {
        // RFC 4231 test case 2
        let mac = super::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
