//! Helpers: run the `weft` binary against a private WEFT_HOME.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn weft_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A private engine home (store, caches, step dirs) for one test.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(weft_bin());
        c.env("WEFT_HOME", self.path());
        c.env_remove("WEFT_CONFIG");
        c.env_remove("WEFT_STORE_URL");
        // Compiled plugins are cached per machine, not per test home.
        c.env("WEFT_CACHE_DIR", repo().join("target/weft-test-cache"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("weft runs")
    }

    /// Write a workflow file into the home and return its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

/// Start `weft server` on a free loopback port from `cmd` (a [`Home::cmd`] with
/// any extra environment); the child and the base URL from its first line.
pub fn spawn_server(
    mut cmd: std::process::Command,
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd
        .args(["server", "--addr", "127.0.0.1:0"])
        .env_remove("WEFT_SERVER")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("weft server starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("server's first line");
    let url = line
        .trim()
        .strip_prefix("weft server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (child, url)
}
