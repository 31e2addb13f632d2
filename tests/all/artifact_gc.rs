//! Artifact garbage collection (`artifactGC`) and the server's artifact
//! download endpoints, through `weft run`, `weft delete` (embedded and client
//! mode) and `weft server`'s HTTP API, on the local repository and on S3.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::support::*;

/// One artifact per strategy (workflow default OnWorkflowCompletion), a raw
/// directory, and an input that is someone else's object (`shared/ext.txt`).
const GC: &str = r#"kind: Workflow
metadata: {generateName: gc-}
spec:
  entrypoint: main
  artifactGC: {strategy: OnWorkflowCompletion}
  templates:
  - name: main
    steps:
    - - name: make
        template: make
    - - name: use
        template: use
        arguments:
          artifacts:
          - {name: d, from: "{{steps.make.outputs.artifacts.kept}}"}
          - {name: ext, s3: {key: shared/ext.txt}}
  - name: make
    container:
      image: alpine
      command: [sh, -c, 'mkdir -p /out/d/sub && echo file-content > /out/f.txt && echo A > /out/d/a.txt && echo B > /out/d/sub/b.txt && cp -r /out/d /out/e']
    outputs:
      artifacts:
      - {name: done, path: /out/f.txt}
      - {name: rawdir, path: /out/d, archive: {none: {}}}
      - {name: later, path: /out/f.txt, artifactGC: {strategy: OnWorkflowDeletion}}
      - {name: kept, path: /out/d, artifactGC: {strategy: Never}}
      - {name: rawkept, path: /out/e, archive: {none: {}}, artifactGC: {strategy: Never}}
  - name: use
    inputs:
      artifacts:
      - {name: d, path: /in/d}
      - {name: ext, path: /in/ext.txt}
    container:
      image: alpine
      command: [sh, -c, 'echo "a=$(cat /in/d/a.txt) ext=$(cat /in/ext.txt)"']
"#;

/// The keys of the `make` node's artifacts, by name.
fn key_of(wf: &Value, artifact: &str) -> String {
    let arts = node(wf, "make")["outputs"]["artifacts"].as_array().unwrap();
    let a = arts
        .iter()
        .find(|a| a["name"] == artifact)
        .unwrap_or_else(|| panic!("no artifact {artifact}: {arts:#?}"));
    a["s3"]["key"].as_str().unwrap().to_string()
}

fn deleted(wf: &Value, artifact: &str) -> bool {
    node(wf, "make")["outputs"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == artifact && a["deleted"] == json!(true))
}

/// Some object at or below `p` (s3s-fs leaves empty directories behind).
fn has_objects(p: &Path) -> bool {
    if p.is_file() {
        return true;
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().any(|e| has_objects(&e.path())))
        .unwrap_or(false)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// After completion: OnWorkflowCompletion objects gone (the raw directory
/// too), the others and the foreign input kept.
fn check_completion(repo: &Path, wf: &Value) {
    for gone in ["done", "rawdir"] {
        let p = repo.join(key_of(wf, gone));
        assert!(
            !has_objects(&p),
            "{gone} should be collected: {}",
            p.display()
        );
        assert!(deleted(wf, gone), "{gone} not marked deleted");
    }
    for kept in ["later", "kept", "rawkept"] {
        let p = repo.join(key_of(wf, kept));
        assert!(has_objects(&p), "{kept} should be kept: {}", p.display());
        assert!(!deleted(wf, kept), "{kept} marked deleted");
    }
    assert!(
        repo.join("shared/ext.txt").is_file(),
        "an input was deleted"
    );
}

/// After deletion: OnWorkflowDeletion gone too; Never and the input stay.
fn check_deletion(repo: &Path, keys: &[(String, String)]) {
    for (name, key) in keys {
        let exists = has_objects(&repo.join(key));
        let never = name == "kept" || name == "rawkept";
        assert_eq!(exists, never, "{name} ({key}) exists: {exists}");
    }
    assert!(
        repo.join("shared/ext.txt").is_file(),
        "an input was deleted"
    );
}

fn all_keys(wf: &Value) -> Vec<(String, String)> {
    ["done", "rawdir", "later", "kept", "rawkept"]
        .iter()
        .map(|n| (n.to_string(), key_of(wf, n)))
        .collect()
}

fn run_gc(home: &Home) -> Value {
    let f = home.file("gc.yaml", GC);
    let out = home.run(&["run", f.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let wf = json(&out);
    assert_eq!(
        node(&wf, "use")["outputs"]["result"],
        "a=A ext=external",
        "{wf:#}"
    );
    wf
}

#[test]
fn artifact_gc_local_on_completion_then_on_deletion() {
    let home = Home::new();
    let repo = home.path().join("artifacts");
    write(&repo.join("shared/ext.txt"), "external");
    let wf = run_gc(&home);
    check_completion(&repo, &wf);
    let name = wf["metadata"]["name"].as_str().unwrap();
    // recorded in the store, not only in run's output
    let got = json(&home.run(&["get", name, "-o", "json"]));
    assert!(deleted(&got, "done") && !deleted(&got, "later"), "{got:#}");
    assert!(got["status"].get("conditions").is_none(), "{got:#}");
    let keys = all_keys(&wf);
    let out = home.run(&["delete", name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    check_deletion(&repo, &keys);
    assert_ne!(home.run(&["get", name]).status.code(), Some(0));
}

/// A running `weft server` in a home; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(home: &Home) -> Server {
        let (child, url) = spawn_server(home.cmd(), Stdio::inherit());
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP call: (status, headers, body bytes).
fn http(method: &str, url: &str, body: Option<Value>) -> (u16, hyper::HeaderMap, Bytes) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let resp = c.request(req).await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes)
    })
}

fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let (s, _, b) = http(method, url, body);
    let v = serde_json::from_slice(&b)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into()));
    (s, v)
}

/// Submit `GC` to the server and wait until it finished and its completion
/// GC is recorded (the server collects asynchronously, right after the commit).
fn submit_and_collect(url: &str) -> Value {
    let wf: Value = serde_yaml_ng::from_str(GC).unwrap();
    let (s, v) = call(
        "POST",
        &format!("{url}/api/v1/workflows/default"),
        Some(json!({"workflow": wf})),
    );
    assert_eq!(s, 200, "{v}");
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    loop {
        let (s, v) = call(
            "GET",
            &format!("{url}/api/v1/workflows/default/{name}"),
            None,
        );
        assert_eq!(s, 200, "{v}");
        let phase = v["status"]["phase"].as_str().unwrap_or_default();
        if phase == "Succeeded" && deleted(&v, "done") {
            return v;
        }
        assert!(
            !matches!(phase, "Failed" | "Error"),
            "workflow {phase}: {v:#}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not collected: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn artifact_gc_through_the_server_api() {
    let home = Home::new();
    let repo = home.path().join("artifacts");
    write(&repo.join("shared/ext.txt"), "external");
    let server = Server::start(&home);
    let wf = submit_and_collect(&server.url);
    check_completion(&repo, &wf);
    let name = wf["metadata"]["name"].as_str().unwrap();
    let keys = all_keys(&wf);
    downloads(&server.url, &wf);
    let url = format!("{}/api/v1/workflows/default/{name}", server.url);
    let (s, v) = call("DELETE", &url, None);
    assert_eq!(s, 200, "{v}");
    check_deletion(&repo, &keys);
    let (s, v) = call("GET", &url, None);
    assert_eq!(s, 404, "{v}");
}

fn bucket_root(s3: &S3Server) -> PathBuf {
    s3.bucket("weft").join("runs")
}

#[test]
fn artifact_gc_on_s3_and_a_failing_gc_keeps_the_workflow_until_forced() {
    let s3 = S3Server::start();
    let home = Home::new();
    home.file("weft.toml", &s3.toml(S3_SECRET_KEY));
    let root = bucket_root(&s3);
    write(&root.join("shared/ext.txt"), "external");
    let wf = run_gc(&home);
    check_completion(&root, &wf);
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let keys = all_keys(&wf);

    // The repository refuses (wrong secret): the workflow stays, with a
    // condition naming the artifact and the repository, never the secret.
    let wrong = "not-the-secret-4242424242";
    home.file("weft.toml", &s3.toml(wrong));
    let out = home.run(&["delete", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("'later'") && err.contains("S3 repository") && !err.contains(wrong),
        "{err}"
    );
    let got = json(&home.run(&["get", &name, "-o", "json"]));
    let cond = &got["status"]["conditions"][0];
    assert_eq!(cond["type"], "ArtifactGCError", "{got:#}");
    let msg = cond["message"].as_str().unwrap();
    assert!(
        msg.contains("'later'") && msg.contains("s3://weft/"),
        "{msg}"
    );
    assert!(root.join(&keys[2].1).is_file(), "later went anyway");

    // The same through the server (client mode): refused, then forced.
    let server = Server::start(&home);
    let remote = |args: &[&str]| {
        home.cmd()
            .env("WEFT_SERVER", &server.url)
            .args(args)
            .output()
            .unwrap()
    };
    let out = remote(&["delete", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("artifact GC failed"),
        "{}",
        stderr(&out)
    );
    let (s, _) = call(
        "GET",
        &format!("{}/api/v1/workflows/default/{name}", server.url),
        None,
    );
    assert_eq!(s, 200, "the workflow was deleted although GC failed");
    let out = remote(&["delete", "--force", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (s, _) = call(
        "GET",
        &format!("{}/api/v1/workflows/default/{name}", server.url),
        None,
    );
    assert_eq!(s, 404);
    drop(server);

    // With the right secret again, a second workflow's deletion collects on S3.
    home.file("weft.toml", &s3.toml(S3_SECRET_KEY));
    let wf = run_gc(&home);
    check_completion(&root, &wf);
    let keys = all_keys(&wf);
    let name = wf["metadata"]["name"].as_str().unwrap();
    let out = home.run(&["delete", name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    check_deletion(&root, &keys);
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Argo's download endpoints on a finished `GC` workflow.
fn downloads(url: &str, wf: &Value) {
    let name = wf["metadata"]["name"].as_str().unwrap();
    let uid = wf["metadata"]["uid"].as_str().unwrap();
    let make = node(wf, "make")["id"].as_str().unwrap();
    // /artifacts/: the stored object as is, named by its key
    for base in [
        format!("{url}/artifacts/default/{name}/{make}"),
        format!("{url}/artifacts-by-uid/{uid}/{make}"),
    ] {
        let (s, h, b) = http("GET", &format!("{base}/later"), None);
        assert_eq!(s, 200, "{}", text(&b));
        assert_eq!(&b[..2], &[0x1f, 0x8b], "not the stored tgz");
        assert_eq!(
            h["content-disposition"], "attachment; filename=\"later.tgz\"",
            "{h:?}"
        );
    }
    // /artifact-files/: the file inside the tgz; a directory is listed
    for files in [
        format!("{url}/artifact-files/default/workflows/{name}/{make}/outputs"),
        format!("{url}/artifact-files/default/archived-workflows/{uid}/{make}/outputs"),
    ] {
        let (s, _, b) = http("GET", &format!("{files}/later"), None);
        assert_eq!((s, text(&b).as_str()), (200, "file-content\n"));
        for dir in ["kept", "rawkept"] {
            let (s, h, _) = http("GET", &format!("{files}/{dir}"), None);
            assert_eq!(s, 307, "{dir}");
            assert!(
                h["location"]
                    .to_str()
                    .unwrap()
                    .ends_with(&format!("/{dir}/"))
            );
            let (s, h, b) = http("GET", &format!("{files}/{dir}/"), None);
            let html = text(&b);
            assert_eq!(s, 200, "{html}");
            assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
            assert!(
                html.contains("href=\"a.txt\"") && html.contains("href=\"sub/\""),
                "{dir}: {html}"
            );
            let (s, h, b) = http("GET", &format!("{files}/{dir}/sub/b.txt"), None);
            assert_eq!((s, text(&b).as_str()), (200, "B\n"), "{dir}");
            assert_eq!(h["content-security-policy"], "sandbox");
            let (s, _, b) = http("GET", &format!("{files}/{dir}/nope.txt"), None);
            assert_eq!(s, 404, "{dir}: {}", text(&b));
        }
    }
    // A node's inputs, where they were taken from: `d` is make's `kept`
    // (a tgz, GC Never), `ext` an object nobody in this workflow made.
    let used = node(wf, "use")["id"].as_str().unwrap();
    let (s, _, b) = http(
        "GET",
        &format!("{url}/input-artifacts/default/{name}/{used}/d"),
        None,
    );
    assert_eq!(s, 200, "{}", text(&b));
    assert_eq!(&b[..2], &[0x1f, 0x8b], "not the stored tgz of make's kept");
    let (s, _, b) = http(
        "GET",
        &format!("{url}/input-artifacts-by-uid/{uid}/{used}/ext"),
        None,
    );
    assert_eq!((s, text(&b).as_str()), (200, "external"));
    let (s, _, b) = http(
        "GET",
        &format!("{url}/artifact-files/default/workflows/{name}/{used}/inputs/d/sub/b.txt"),
        None,
    );
    assert_eq!((s, text(&b).as_str()), (200, "B\n"));
    // 404s in Argo's shape: unknown workflow, node, artifact; collected by GC
    let not_found = |path: &str, says: &str| {
        let (s, v) = call("GET", &format!("{url}{path}"), None);
        assert_eq!(s, 404, "{path}: {v}");
        assert_eq!(v["code"], 5, "{v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(says), "{path}: {m}");
    };
    not_found(
        &format!("/artifacts/default/nope/{make}/later"),
        "not found",
    );
    not_found(
        &format!("/artifacts/default/{name}/nope/later"),
        "node \"nope\"",
    );
    not_found(
        &format!("/artifacts/default/{name}/{make}/nope"),
        "artifact \"nope\"",
    );
    not_found(
        &format!("/artifacts/default/{name}/{make}/done"),
        "artifact GC",
    );
    not_found(
        &format!("/input-artifacts/default/{name}/{used}/later"),
        "not found in the inputs",
    );
    not_found(
        &format!("/artifact-files/default/workflows/{name}/{make}/outputs/rawdir/a.txt"),
        "artifact GC",
    );
}
