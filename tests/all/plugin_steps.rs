//! The embedded `http` plugin (Argo http templates, against a loopback server
//! started here) and user Wasm steps (`plugin: {wasm: …}`), through `weft run`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::support::*;

/// A tiny HTTP/1.1 server on 127.0.0.1: `/ok` → 200 `hello`, `/created` → 201,
/// `/echo-auth` → 200 with the request's Authorization header as body, else 404.
/// Returns the port; the thread lives until the test process exits.
fn serve() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "authorization" => auth = v.trim().to_string(),
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let (status, text) = match path.as_str() {
                "/ok" => ("200 OK", "hello".to_string()),
                "/created" => ("201 Created", "made".to_string()),
                "/echo-auth" => ("200 OK", auth),
                _ => ("404 Not Found", "no such thing".to_string()),
            };
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    port
}

/// Run `yaml` (with `cwd` as working directory) and return (exit code, workflow JSON).
fn run_in(home: &Home, cwd: &Path, file: &Path, env: &[(&str, &str)]) -> (Option<i32>, Value) {
    let mut c = home.cmd();
    c.current_dir(cwd)
        .args(["run", file.to_str().unwrap(), "-o", "json"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("weft runs");
    assert!(
        out.status.code() != Some(2),
        "invalid input: {}",
        stderr(&out)
    );
    (out.status.code(), json(&out))
}

fn http_workflow(port: u16) -> String {
    format!(
        r#"kind: Workflow
metadata: {{generateName: http-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: ok, template: get, arguments: {{parameters: [{{name: path, value: ok}}]}}}}
    - - {{name: created, template: post-created}}
    - - {{name: cond-false, template: expect-404, continueOn: {{failed: true}}}}
    - - {{name: not-2xx, template: get, arguments: {{parameters: [{{name: path, value: missing}}]}}, continueOn: {{failed: true}}}}
    - - {{name: uses, template: get, arguments: {{parameters: [{{name: path, value: "{{{{steps.ok.outputs.result}}}}x"}}]}}, continueOn: {{failed: true}}}}
  - name: get
    inputs: {{parameters: [{{name: path}}]}}
    http:
      url: "http://127.0.0.1:{port}/{{{{inputs.parameters.path}}}}"
      timeoutSeconds: 10
  - name: post-created
    http:
      method: POST
      url: "http://127.0.0.1:{port}/created"
      body: '{{"k": 1}}'
      headers: [{{name: Content-Type, value: application/json}}]
      successCondition: 'response.statusCode == 201 && response.body == "made" && response.headers["Content-Type"][0] == "text/plain"'
  - name: expect-404
    http:
      url: "http://127.0.0.1:{port}/ok"
      successCondition: "response.statusCode == 404"
"#
    )
}

#[test]
fn http_template_success_condition_and_default() {
    let port = serve();
    let home = Home::new();
    let f = home.file("http.yaml", &http_workflow(port));
    let (code, wf) = run_in(&home, home.path(), &f, &[]);
    assert_eq!(code, Some(0), "{wf:#}");
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf:#}");
    let ok = node(&wf, "ok");
    assert_eq!(ok["phase"], "Succeeded", "{ok:#}");
    assert_eq!(ok["outputs"]["result"], "hello");
    assert_eq!(node(&wf, "created")["phase"], "Succeeded");
    assert_eq!(node(&wf, "created")["outputs"]["result"], "made");
    let c = node(&wf, "cond-false");
    assert_eq!(c["phase"], "Failed", "{c:#}");
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains("successCondition") && msg.contains("200"),
        "{msg}"
    );
    let n = node(&wf, "not-2xx");
    assert_eq!(n["phase"], "Failed", "{n:#}");
    assert!(n["message"].as_str().unwrap().contains("404"), "{n:#}");
    // the previous step's body substituted into the URL
    assert_eq!(node(&wf, "uses")["phase"], "Failed");
    assert!(
        node(&wf, "uses")["message"]
            .as_str()
            .unwrap()
            .contains("/hellox")
    );
}

#[test]
fn http_grants_restrict_hosts_and_substitute_secrets() {
    let port = serve();
    let yaml = format!(
        r#"kind: Workflow
metadata: {{generateName: http-auth-}}
spec:
  entrypoint: main
  templates:
  - name: main
    http:
      url: "http://127.0.0.1:{port}/echo-auth"
      headers:
      - name: Authorization
        valueFrom: {{secretKeyRef: {{name: api, key: token}}}}
"#
    );
    // denied: the allow-list names another host
    let home = Home::new();
    home.file(
        "weft.toml",
        "[[plugins]]\nname = \"http\"\nkind = \"driver\"\n[plugins.grants]\nhttp_hosts = [\"api.example.com\"]\nsecrets = [\"api.token\"]\n",
    );
    let f = home.file("auth.yaml", &yaml);
    let (code, wf) = run_in(
        &home,
        home.path(),
        &f,
        &[("WEFT_SECRET_API_TOKEN", "Bearer s3cret")],
    );
    assert_ne!(code, Some(0));
    assert_eq!(wf["status"]["phase"], "Failed", "{wf:#}");
    let msg = node(&wf, wf["metadata"]["name"].as_str().unwrap())["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("not granted") && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );

    // allowed: the loopback port is granted; the secret reaches the server, not the plugin
    let home = Home::new();
    home.file(
        "weft.toml",
        &format!(
            "[[plugins]]\nname = \"http\"\nkind = \"driver\"\n[plugins.grants]\nhttp_hosts = [\"127.0.0.1:{port}\"]\nsecrets = [\"api.token\"]\n"
        ),
    );
    let f = home.file("auth.yaml", &yaml);
    let (code, wf) = run_in(
        &home,
        home.path(),
        &f,
        &[("WEFT_SECRET_API_TOKEN", "Bearer s3cret")],
    );
    assert_eq!(code, Some(0), "{wf:#}");
    let n = node(&wf, wf["metadata"]["name"].as_str().unwrap());
    assert_eq!(n["outputs"]["result"], "Bearer s3cret", "{wf:#}");

    // granted host, secret not granted: the step fails naming the secret
    let home = Home::new();
    home.file(
        "weft.toml",
        &format!(
            "[[plugins]]\nname = \"http\"\nkind = \"driver\"\n[plugins.grants]\nhttp_hosts = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let f = home.file("auth.yaml", &yaml);
    let (_, wf) = run_in(
        &home,
        home.path(),
        &f,
        &[("WEFT_SECRET_API_TOKEN", "Bearer s3cret")],
    );
    assert_eq!(wf["status"]["phase"], "Failed", "{wf:#}");
    let n = node(&wf, wf["metadata"]["name"].as_str().unwrap());
    assert!(
        n["message"].as_str().unwrap().contains("api.token"),
        "{n:#}"
    );
}

/// `https` through the http capability: trusted through the grant's
/// `http_ca_certs` (a path relative to weft.toml), refused without it, and a
/// host outside the allow-list is refused before any connection is made.
#[test]
fn https_templates_trust_granted_cas_and_keep_the_allow_list() {
    let TlsServer {
        port,
        ca_pem,
        accepted,
        ..
    } = serve_tls(false);
    let yaml = format!(
        r#"kind: Workflow
metadata: {{generateName: https-}}
spec:
  entrypoint: main
  templates:
  - name: main
    http:
      url: "https://127.0.0.1:{port}/ok"
      timeoutSeconds: 20
"#
    );
    let run = |grants: &str| {
        let home = Home::new();
        home.file("ca.pem", &ca_pem);
        home.file(
            "weft.toml",
            &format!("[[plugins]]\nname = \"http\"\nkind = \"driver\"\n[plugins.grants]\n{grants}"),
        );
        let f = home.file("https.yaml", &yaml);
        let (code, wf) = run_in(&home, home.path(), &f, &[]);
        let n = node(&wf, wf["metadata"]["name"].as_str().unwrap()).clone();
        (code, n)
    };

    // the internal CA is granted: the request goes through over TLS
    let (code, n) = run(&format!(
        "http_hosts = [\"127.0.0.1:{port}\"]\nhttp_ca_certs = [\"ca.pem\"]\n"
    ));
    assert_eq!(code, Some(0), "{n:#}");
    assert_eq!(n["phase"], "Succeeded", "{n:#}");
    assert_eq!(n["outputs"]["result"], "hello over tls", "{n:#}");

    // without it the certificate is not trusted (no silent fallback to insecure)
    let (code, n) = run(&format!("http_hosts = [\"127.0.0.1:{port}\"]\n"));
    assert_ne!(code, Some(0), "{n:#}");
    let msg = n["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("https://127.0.0.1:{port}/ok"))
            && msg.to_ascii_lowercase().contains("certificate"),
        "{msg}"
    );

    // a host outside the allow-list: refused, and the server never sees a connection
    let before = accepted.load(Ordering::SeqCst);
    let (code, n) = run("http_hosts = [\"api.example.com\"]\nhttp_ca_certs = [\"ca.pem\"]\n");
    assert_ne!(code, Some(0), "{n:#}");
    let msg = n["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("not granted") && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        before,
        "a refused host was connected to"
    );

    // a CA file that is not there is named
    let (code, n) = run(&format!(
        "http_hosts = [\"127.0.0.1:{port}\"]\nhttp_ca_certs = [\"missing-ca.pem\"]\n"
    ));
    assert_ne!(code, Some(0), "{n:#}");
    let msg = n["message"].as_str().unwrap_or_default();
    assert!(msg.contains("missing-ca.pem"), "{msg}");
}

const WASM: &str = r#"kind: Workflow
metadata: {generateName: wasm-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: add
        template: add
        arguments: {parameters: [{name: b, value: "2"}]}
    - - {name: trap, template: misbehave, arguments: {parameters: [{name: op, value: trap}]}, continueOn: {failed: true}}
      - {name: loop, template: misbehave, arguments: {parameters: [{name: op, value: loop}]}, continueOn: {failed: true}}
      - {name: err, template: misbehave, arguments: {parameters: [{name: op, value: nope}]}, continueOn: {failed: true}}
      - {name: missing, template: missing, continueOn: {failed: true, error: true}}
    - - name: after
        template: add
        arguments: {parameters: [{name: b, value: "{{steps.add.outputs.parameters.sum}}"}]}
  - name: add
    inputs: {parameters: [{name: b}]}
    plugin:
      wasm:
        component: steps/add.wasm
        args: {op: add, a: "40", b: "{{inputs.parameters.b}}"}
    outputs: {parameters: [{name: sum}]}
  - name: misbehave
    inputs: {parameters: [{name: op}]}
    plugin: {wasm: {component: steps/add.wasm}}
  - name: missing
    plugin: {wasm: {component: steps/nope.wasm}}
"#;

fn arith_wasm() -> std::path::PathBuf {
    repo().join("plugins/target/wasm32-wasip2/release/weft_step_arith.wasm")
}

#[test]
fn wasm_steps_output_and_failures() {
    let home = Home::new();
    std::fs::create_dir_all(home.path().join("steps")).unwrap();
    std::fs::copy(arith_wasm(), home.path().join("steps/add.wasm")).unwrap();
    home.file("weft.toml", "[drivers]\ncpu_budget_ms = 300\n");
    let f = home.file("wasm.yaml", WASM);
    let (code, wf) = run_in(&home, home.path(), &f, &[]);
    assert_eq!(code, Some(0), "{wf:#}");
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf:#}");
    let add = node(&wf, "add");
    assert_eq!(add["phase"], "Succeeded", "{add:#}");
    assert_eq!(add["outputs"]["result"], "42");
    assert_eq!(add["outputs"]["parameters"][0]["name"], "sum");
    assert_eq!(add["outputs"]["parameters"][0]["value"], "42");
    assert_eq!(node(&wf, "after")["outputs"]["result"], "82");

    let msg = |step: &str| {
        let n = node(&wf, step);
        (
            n["phase"].as_str().unwrap().to_string(),
            n["message"].as_str().unwrap_or("").to_string(),
        )
    };
    let (phase, m) = msg("trap");
    assert_eq!(phase, "Failed");
    assert!(
        m.contains("steps/add.wasm") && m.contains("unreachable"),
        "{m}"
    );
    let (phase, m) = msg("loop");
    assert_eq!(phase, "Failed");
    assert!(m.contains("CPU budget"), "{m}");
    let (phase, m) = msg("err");
    assert_eq!(phase, "Failed");
    assert!(m.contains("unknown op \"nope\""), "{m}");
    let (phase, m) = msg("missing");
    assert_eq!(phase, "Error");
    assert!(m.contains("steps/nope.wasm"), "{m}");
}

#[test]
fn wasm_example_runs_from_the_repository_root() {
    let home = Home::new();
    let f = repo().join("examples/wasm-add.yaml");
    let (code, wf) = run_in(&home, &repo(), &f, &[]);
    assert_eq!(code, Some(0), "{wf:#}");
    assert_eq!(node(&wf, "add")["outputs"]["result"], "42");
    assert_eq!(node(&wf, "again")["outputs"]["result"], "84");
}
