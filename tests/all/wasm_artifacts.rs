//! The default artifact repository backed by an artifact plugin written
//! entirely in Wasm (`plugins/testing/checksum-store`), configured in
//! weft.toml and driven by `weft run`: the plugin stores every object through
//! its object-store grant (a local repository, under a prefix) under a
//! tenant prefix with a SHA-256 sidecar, and verifies it on every read.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::artifacts::PASS;
use super::support::*;

fn store_wasm() -> PathBuf {
    repo().join("plugins/target/wasm32-wasip2/release/weft_artifact_checksum_store.wasm")
}

/// Where the grant puts the plugin's objects: `<home>/vault/<grant prefix>/<tenant>`.
fn tenant_dir(home: &Home) -> PathBuf {
    home.path().join("vault/weft/artifacts/acme")
}

/// A home whose weft.toml makes the checksum store the default repository,
/// its bytes in the local repository `vault-bytes` under `weft/artifacts`.
fn plugin_home() -> Home {
    let home = Home::new();
    home.file(
        "weft.toml",
        &format!(
            r#"
[artifacts.default]
plugin = "checksum-store"

[artifacts.repositories.vault-bytes]
local = {{ path = "vault" }}

[[plugins]]
name = "checksum-store"
path = "{}"
kind = "artifact"
config = {{ tenant = "acme" }}
[plugins.grants]
object_store = {{ bucket = "vault-bytes", prefix = "weft/artifacts" }}
"#,
            store_wasm().display()
        ),
    );
    home
}

fn sha256_of(p: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The sidecar of `key`, checked against the object's bytes.
fn check_sidecar(home: &Home, key: &str) {
    let t = tenant_dir(home);
    let object = t.join("objects").join(key);
    let sidecar = t.join("sha256").join(format!("{key}.sha256"));
    let s: Value = serde_json::from_slice(
        &std::fs::read(&sidecar).unwrap_or_else(|e| panic!("{}: {e}", sidecar.display())),
    )
    .unwrap();
    let len = std::fs::metadata(&object).unwrap().len();
    assert_eq!(s["key"], key);
    assert_eq!(s["size"], len, "{s}");
    // small objects are one part: its digest is the file's
    assert_eq!(s["parts"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["parts"][0]["sha256"], sha256_of(&object), "{s}");
}

#[test]
fn a_wasm_plugin_is_the_default_repository() {
    let home = plugin_home();
    let (code, wf) = run_file(&home, "pass.yaml", PASS);
    assert_eq!(code, Some(0), "{wf:#}");
    let out = node(&wf, "use")["outputs"]["result"].as_str().unwrap();
    assert_eq!(
        out,
        "file=file-content a=A b=B raw=file-content rawdir=B one=B"
    );
    let make = node(&wf, "make");
    let arts = make["outputs"]["artifacts"].as_array().unwrap();
    let key = |i: usize| arts[i]["s3"]["key"].as_str().unwrap().to_string();
    // Argo's key-only locations, as for any default repository
    assert!(key(0).ends_with("/file.tgz") && key(1).ends_with("/dir.tgz"));
    assert!(key(2).ends_with("/f.txt") && key(3).ends_with("/d"));
    // the objects are where the grant and the plugin put them...
    let objects = tenant_dir(&home).join("objects");
    for k in [key(0), key(1)] {
        let tgz = std::fs::read(objects.join(&k)).unwrap();
        assert_eq!(&tgz[..2], &[0x1f, 0x8b], "{k} is not a gzip");
        check_sidecar(&home, &k);
    }
    assert_eq!(
        std::fs::read_to_string(objects.join(key(2))).unwrap(),
        "file-content\n"
    );
    check_sidecar(&home, &key(2));
    // a raw directory is one object (and one sidecar) per file
    for (f, content) in [("a.txt", "A\n"), ("sub/b.txt", "B\n")] {
        let k = format!("{}/{f}", key(3));
        assert_eq!(std::fs::read_to_string(objects.join(&k)).unwrap(), content);
        check_sidecar(&home, &k);
    }
    // ...and nowhere else: not in the local default directory, not outside the prefix
    assert!(!home.path().join("artifacts").join(key(2)).exists());
    let vault: Vec<String> = std::fs::read_dir(home.path().join("vault"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".tmp")
        .collect();
    assert_eq!(vault, ["weft"]);

    // A corrupted object fails the step that consumes it, naming the
    // artifact and the repository; an intact one beside it still loads.
    let raw = objects.join(key(2));
    std::fs::write(&raw, "file-CONTENT\n").unwrap();
    let consume = format!(
        r#"kind: Workflow
metadata: {{generateName: consume-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: intact, template: cat, arguments: {{artifacts: [{{name: report, s3: {{key: "{good}"}}}}]}}}}
      - {{name: corrupted, template: cat, arguments: {{artifacts: [{{name: report, s3: {{key: "{bad}"}}}}]}}}}
  - name: cat
    inputs:
      artifacts:
      - {{name: report, path: /in/report}}
    container: {{image: alpine, command: [sh, -c, 'cat /in/report/a.txt 2>/dev/null || cat /in/report']}}
"#,
        good = key(1),
        bad = key(2),
    );
    let (code, wf) = run_file(&home, "consume.yaml", &consume);
    assert_eq!(code, Some(1), "{wf:#}");
    let intact = node(&wf, "intact");
    assert_eq!(intact["phase"], "Succeeded", "{intact:#}");
    assert_eq!(intact["outputs"]["result"], "A");
    let bad = node(&wf, "corrupted");
    assert_eq!(bad["phase"], "Error", "{bad:#}");
    let msg = bad["message"].as_str().unwrap_or_default();
    for part in [
        "input artifact 'report'",
        "repository 'default' (artifact plugin 'checksum-store')",
        &format!("object '{}' is corrupted: SHA-256 mismatch", key(2)),
    ] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
}

#[test]
fn a_repository_plugin_that_is_not_an_artifact_plugin_is_refused() {
    let home = Home::new();
    home.file(
        "weft.toml",
        "[artifacts.default]\nplugin = \"http\"\n[[plugins]]\nname = \"http\"\nkind = \"driver\"\n",
    );
    let f = home.file("pass.yaml", PASS);
    let out = home.run(&["run", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("[artifacts.default]")
            && e.contains("plugin 'http'")
            && e.contains("\"driver\""),
        "{e}"
    );
    // a grant naming a repository that does not exist is refused at start, naming it
    let home = Home::new();
    home.file(
        "weft.toml",
        &format!(
            "[artifacts.default]\nplugin = \"s\"\n[[plugins]]\nname = \"s\"\npath = \"{}\"\nkind = \"artifact\"\n\
             [plugins.grants]\nobject_store = {{ bucket = \"nowhere\" }}\n",
            store_wasm().display()
        ),
    );
    let out = home.run(&["run", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("plugin 's'")
            && e.contains("bucket 'nowhere'")
            && e.contains("not a configured repository"),
        "{e}"
    );
}

/// Some file at or below `p`.
fn has_files(p: &Path) -> bool {
    p.is_file()
        || std::fs::read_dir(p)
            .map(|rd| rd.flatten().any(|e| has_files(&e.path())))
            .unwrap_or(false)
}

/// Artifact GC (`weft run`'s completion GC and `weft delete`) builds its
/// repositories from the same configuration: it deletes through the plugin,
/// objects and sidecars alike.
#[test]
fn artifact_gc_deletes_through_the_plugin() {
    let home = plugin_home();
    let (code, wf) = run_file(
        &home,
        "gc.yaml",
        r#"kind: Workflow
metadata: {generateName: gc-}
spec:
  entrypoint: make
  artifactGC: {strategy: OnWorkflowCompletion}
  templates:
  - name: make
    container:
      image: alpine
      command: [sh, -c, 'mkdir -p /out/d/sub && echo f > /out/f.txt && echo A > /out/d/a.txt && echo B > /out/d/sub/b.txt']
    outputs:
      artifacts:
      - {name: done, path: /out/f.txt}
      - {name: rawdir, path: /out/d, archive: {none: {}}}
      - {name: later, path: /out/d, artifactGC: {strategy: OnWorkflowDeletion}}
"#,
    );
    assert_eq!(code, Some(0), "{wf:#}");
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let arts = node(&wf, &name)["outputs"]["artifacts"].clone();
    let key = |n: &str| {
        arts.as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == n)
            .unwrap()["s3"]["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let t = tenant_dir(&home);
    let (objects, sums) = (t.join("objects"), t.join("sha256"));
    for k in [key("done"), key("rawdir")] {
        assert!(!has_files(&objects.join(&k)), "{k} was not collected");
    }
    assert!(!sums.join(format!("{}.sha256", key("done"))).exists());
    assert!(!has_files(&sums.join(key("rawdir"))));
    let later = objects.join(key("later"));
    assert!(later.is_file() && sums.join(format!("{}.sha256", key("later"))).is_file());
    let got = json(&home.run(&["get", &name, "-o", "json"]));
    let done = node(&got, &name)["outputs"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "done")
        .cloned()
        .unwrap();
    assert_eq!(done["deleted"], true, "{done:#}");
    // OnWorkflowDeletion: `weft delete` removes the rest
    let out = home.run(&["delete", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!later.exists(), "{} survived weft delete", later.display());
    assert!(!has_files(&objects), "objects left after delete");
    assert!(!has_files(&sums), "sidecars left after delete");
}
