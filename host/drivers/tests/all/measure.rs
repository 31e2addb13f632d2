//! Measured figures (printed; run with `--nocapture`): sandboxed vs bare spawn,
//! fresh instance + call, component compile vs cached load.

use std::time::{Duration, Instant};

use serde_json::json;
use weft_drivers::runtime::{self, LoadPath};
use weft_drivers::sandbox::manager::prepare_root;
use weft_drivers::sandbox::spawn::{SpawnRequest, spawn_bare, spawn_sandboxed};
use weft_engine::runtime::StepDriver;

use crate::support::*;

fn per(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

#[test]
fn spawn_cost_sandboxed_vs_bare() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    prepare_root(&root, &[], "/").unwrap();
    let argv: Vec<String> = ["sh", "-c", "true"].iter().map(|s| s.to_string()).collect();
    let req = SpawnRequest {
        root,
        argv: argv.clone(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: "/".into(),
        hostname: "bench".into(),
        layers: None,
    };
    let n = 50;
    // Warm up both paths once.
    spawn_sandboxed(&req).unwrap().child.wait().unwrap();
    spawn_bare(&argv).unwrap().wait().unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let st = spawn_sandboxed(&req).unwrap().child.wait().unwrap();
        assert!(st.success());
    }
    let sandboxed = per(t.elapsed(), n);
    let t = Instant::now();
    for _ in 0..n {
        spawn_bare(&argv).unwrap().wait().unwrap();
    }
    let bare = per(t.elapsed(), n);
    eprintln!("MEASURE spawn+wait `sh -c true`: sandboxed {sandboxed:.0} µs, bare {bare:.0} µs");
}

#[tokio::test]
async fn instantiate_and_call_cost() {
    let h = harness_with(|o| {
        o.plugins.push(weft_drivers::PluginConfig {
            name: "misbehave".into(),
            path: Some(test_plugin("weft_plugin_misbehave")),
            kind: weft_drivers::PluginKind::Driver,
            grants: Default::default(),
            config: serde_json::Value::Null,
        });
    })
    .await;
    let req = request("ok", "misbehave", json!({"misbehave": "ok"}));
    for _ in 0..10 {
        h.drivers.start(&req).await.unwrap();
    }
    let n = 500;
    let t = Instant::now();
    for _ in 0..n {
        h.drivers.start(&req).await.unwrap();
    }
    eprintln!(
        "MEASURE fresh instance + start() call (JSON ctx): {:.1} µs",
        per(t.elapsed(), n)
    );
}

#[test]
fn compile_vs_cached_load() {
    let (engine, _guard) = runtime::engine(64 << 20).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (name, wasm) = weft_drivers::embedded::EMBEDDED[0];
    let t = Instant::now();
    let (_, _, how) = runtime::load_component(&engine, dir.path(), name, wasm).unwrap();
    let compile = t.elapsed();
    assert_eq!(how, LoadPath::Compiled);
    let t = Instant::now();
    let (_, _, how) = runtime::load_component(&engine, dir.path(), name, wasm).unwrap();
    let cached = t.elapsed();
    assert_eq!(how, LoadPath::Cached);
    eprintln!(
        "MEASURE local plugin ({} KiB): compile {:.1} ms, cached load {:.2} ms",
        wasm.len() / 1024,
        compile.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3
    );
}
