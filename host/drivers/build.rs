//! Builds the guests in `plugins/` for `wasm32-wasip2` and exposes them:
//! `OUT_DIR/plugins.rs` defines `EMBEDDED` (name, bytes) for the plugins shipped
//! in the binary, and the env var `WEFT_TEST_PLUGIN_DIR` points at the built
//! `.wasm` files for tests.
//!
//! Nested cargo inherits variables that break it (jobserver fds, the outer
//! target dir, clippy's `RUSTC_WORKSPACE_WRAPPER`, rustflags for the host
//! target), so it runs with a cleared environment and a short allow-list.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// Plugins embedded in the binary: (registry name, crate file stem).
const EMBEDDED: &[(&str, &str)] = &[("local", "weft_plugin_local"), ("http", "weft_plugin_http")];
/// The example Wasm step, embedded for `weft bench`'s wasm workloads.
const ARITH_STEP: &str = "weft_step_arith";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let repo = manifest.join("../..").canonicalize().unwrap();
    let plugins = repo.join("plugins");
    for p in [
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/local",
        "plugins/http",
        "plugins/testing",
        "sdk-guest/Cargo.toml",
        "sdk-guest/src",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", repo.join(p).display());
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ensure_target(&cargo);
    let target_dir = plugins.join("target");
    let mut cmd = Command::new(&cargo);
    cmd.env_clear();
    for (k, v) in env::vars_os() {
        let k_str = k.to_string_lossy();
        let keep = matches!(
            k_str.as_ref(),
            "PATH"
                | "HOME"
                | "USER"
                | "TMPDIR"
                | "LANG"
                | "CARGO_HOME"
                | "RUSTUP_HOME"
                | "RUSTUP_TOOLCHAIN"
                | "SSL_CERT_FILE"
                | "SSL_CERT_DIR"
                | "http_proxy"
                | "https_proxy"
                | "HTTP_PROXY"
                | "HTTPS_PROXY"
                | "NO_PROXY"
                | "no_proxy"
        ) || k_str.starts_with("CARGO_NET_")
            || k_str.starts_with("CARGO_HTTP_")
            || k_str.starts_with("CARGO_REGISTRIES_")
            || k_str.starts_with("CARGO_REGISTRY_");
        if keep {
            cmd.env(k, v);
        }
    }
    cmd.current_dir(&plugins)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    let status = cmd.status().expect("run cargo for plugins/");
    assert!(status.success(), "building plugins/ for {TARGET} failed");

    let built = target_dir.join(TARGET).join("release");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut src = String::from(
        "/// Plugins embedded in the binary: (name, component bytes).\npub const EMBEDDED: &[(&str, &[u8])] = &[\n",
    );
    for (name, stem) in EMBEDDED {
        let wasm = built.join(format!("{stem}.wasm"));
        let copy = out.join(format!("{stem}.wasm"));
        std::fs::copy(&wasm, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", wasm.display()));
        src.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            copy.display().to_string()
        ));
    }
    src.push_str("];\n");
    let arith = built.join(format!("{ARITH_STEP}.wasm"));
    let copy = out.join(format!("{ARITH_STEP}.wasm"));
    std::fs::copy(&arith, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", arith.display()));
    src.push_str(&format!(
        "/// The example step `plugins/testing/arith` (step-component world), for `weft bench`.\npub const ARITH_STEP: &[u8] = include_bytes!({:?});\n",
        copy.display().to_string()
    ));
    std::fs::write(out.join("plugins.rs"), src).unwrap();
    println!("cargo:rustc-env=WEFT_TEST_PLUGIN_DIR={}", built.display());
}

/// `rustup target add wasm32-wasip2` when the target's std is missing.
fn ensure_target(_cargo: &str) {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    let present = sysroot
        .as_deref()
        .map(|s: &Path| s.join("lib/rustlib").join(TARGET).exists())
        .unwrap_or(false);
    if !present {
        let ok = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed"
        );
    }
}
