//! Read-only input artifacts from outside any repository, through `weft run`:
//! `http` (a loopback server started here; basic auth, OAuth2 client
//! credentials and TLS client certificates from secrets) and `git` (a repository made here with `git
//! init`, cloned over `file://`, and over ssh through a stand-in for sshd).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use super::support::*;

/// A tgz of one directory `tree/` holding `a.txt` (`A`) and `sub/b.txt` (`B`).
fn tree_tgz() -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("tree/sub")).unwrap();
    std::fs::write(d.path().join("tree/a.txt"), "A").unwrap();
    std::fs::write(d.path().join("tree/sub/b.txt"), "B").unwrap();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    b.append_dir_all("tree", d.path().join("tree")).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// Bytes of the `/big` response: several MiB, so the body arrives in many chunks.
const BIG: usize = 5 * 1024 * 1024 + 7;

/// The basic-auth user and password `/private` accepts.
const HTTP_USER: &str = "weft-user";
const HTTP_PASSWORD: &str = "right-password";

/// An HTTP server on 127.0.0.1 (axum on its own runtime thread): `/hello.txt`,
/// `/tree.tgz`, `/header` (echoes `X-Weft-Test`), `/big`, `/redirect` (→
/// `/hello.txt`), `/teapot` (418), `/private` (basic auth as
/// [`HTTP_USER`]/[`HTTP_PASSWORD`], else 401), `/to-private` (→ `/private`),
/// `/to-other-host` (→ `http://localhost:<port>/private`: another host for
/// the client); anything else 404. Returns the port.
fn serve() -> u16 {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let tgz = tree_tgz();
    // base64("weft-user:right-password")
    let expected = "Basic d2VmdC11c2VyOnJpZ2h0LXBhc3N3b3Jk";
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(|h: HeaderMap, body: String| token(h, body, true)),
        )
        .route(
            "/token-form-only",
            axum::routing::post(|h: HeaderMap, body: String| token(h, body, false)),
        )
        .route(
            "/bearer",
            get(|h: HeaderMap| async move {
                match h.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some("Bearer tok-read+write") => (StatusCode::OK, "bearer data"),
                    _ => (StatusCode::UNAUTHORIZED, "no token"),
                }
            }),
        )
        .route(
            "/private",
            get(move |h: HeaderMap| async move {
                match h.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some(a) if a == expected => (StatusCode::OK, "private data"),
                    _ => (StatusCode::UNAUTHORIZED, "who are you?"),
                }
            }),
        )
        .route(
            "/to-private",
            get(|| async { axum::response::Redirect::temporary("/private") }),
        )
        .route(
            "/to-other-host",
            get(move || async move {
                axum::response::Redirect::temporary(&format!("http://localhost:{port}/private"))
            }),
        )
        .route("/hello.txt", get(|| async { "hello over http\n" }))
        .route("/tree.tgz", get(move || async move { tgz }))
        .route(
            "/header",
            get(|h: HeaderMap| async move {
                h.get("x-weft-test")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string()
            }),
        )
        .route("/big", get(|| async { vec![b'x'; BIG] }))
        .route(
            "/redirect",
            get(|| async { axum::response::Redirect::temporary("/hello.txt") }),
        )
        .route(
            "/teapot",
            get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }),
        );
    serve_in_background(
        l,
        move |l| async move { axum::serve(l, app).await.unwrap() },
    );
    port
}

/// An OAuth2 token endpoint (client credentials) for the client
/// `app-id`/`app-secret`: authenticated by HTTP Basic (when `basic`) or by the
/// form's `client_id`/`client_secret`; the token names the scope it was
/// asked for (`tok-read+write` for the scopes `read` and `write`).
async fn token(
    h: axum::http::HeaderMap,
    body: String,
    basic: bool,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let form: HashMap<&str, &str> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    if form.get("grant_type") != Some(&"client_credentials")
        || form.get("audience") != Some(&"weft")
    {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_request"}"#.into(),
        );
    }
    let by_header = basic
        && h.get("authorization").and_then(|v| v.to_str().ok())
            == Some("Basic YXBwLWlkOmFwcC1zZWNyZXQ="); // app-id:app-secret
    let by_form = form.get("client_id") == Some(&"app-id")
        && form.get("client_secret") == Some(&"app-secret");
    if !(by_header || by_form) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid_client"}"#.into(),
        );
    }
    let scope = form.get("scope").copied().unwrap_or("");
    (
        StatusCode::OK,
        format!(r#"{{"access_token":"tok-{scope}","token_type":"Bearer","expires_in":3600}}"#),
    )
}

fn http_workflow(port: u16) -> String {
    format!(
        r#"kind: Workflow
metadata: {{generateName: http-in-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: use, template: use}}
      - {{name: missing, template: missing, continueOn: {{failed: true, error: true}}}}
      - {{name: teapot, template: teapot, continueOn: {{failed: true, error: true}}}}
  - name: use
    inputs:
      artifacts:
      - {{name: hello, path: /in/hello.txt, http: {{url: "http://127.0.0.1:{port}/hello.txt"}}}}
      - {{name: tree, path: /in/tree, http: {{url: "http://127.0.0.1:{port}/tree.tgz"}}}}
      - {{name: one, path: /in/one, subPath: sub/b.txt, http: {{url: "http://127.0.0.1:{port}/tree.tgz"}}}}
      - {{name: packed, path: /in/packed.tgz, archive: {{none: {{}}}}, http: {{url: "http://127.0.0.1:{port}/tree.tgz"}}}}
      - name: header
        path: /in/header
        http:
          url: "http://127.0.0.1:{port}/header"
          headers: [{{name: X-Weft-Test, value: sent-along}}]
      - {{name: big, path: /in/big, http: {{url: "http://127.0.0.1:{port}/big"}}}}
      - {{name: moved, path: /in/moved, http: {{url: "http://127.0.0.1:{port}/redirect"}}}}
      - {{name: maybe, path: /in/maybe, optional: true, http: {{url: "http://127.0.0.1:{port}/nothing-here"}}}}
    script:
      image: alpine
      command: [sh]
      source: |
        echo "hello=$(cat /in/hello.txt)"
        echo "tree=$(cat /in/tree/a.txt)$(cat /in/tree/sub/b.txt) one=$(cat /in/one)"
        echo "packed=$(gzip -dc /in/packed.tgz | tar -xOf - tree/sub/b.txt)"
        echo "header=$(cat /in/header) big=$(wc -c < /in/big | tr -d ' ') moved=$(cat /in/moved)"
        if [ -e /in/maybe ]; then echo maybe=present; else echo maybe=absent; fi
  - name: missing
    inputs:
      artifacts:
      - {{name: needed, path: /in/needed, http: {{url: "http://weft:hunter2@127.0.0.1:{port}/nothing-here?token=s3cret"}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
  - name: teapot
    inputs:
      artifacts:
      - {{name: brew, path: /in/brew, optional: true, http: {{url: "http://127.0.0.1:{port}/teapot"}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
"#
    )
}

#[test]
fn http_input_artifacts_stream_unpack_and_fail_by_name() {
    let port = serve();
    let home = Home::new();
    let (code, wf) = run_file(&home, "http-in.yaml", &http_workflow(port));
    assert_eq!(code, Some(0), "{wf:#}");
    let used = node(&wf, "use");
    assert_eq!(used["phase"], "Succeeded", "{used:#}");
    let out = used["outputs"]["result"].as_str().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "hello=hello over http",
            // a gzip'd tar is unpacked, its one top-level entry becoming the path
            "tree=AB one=B",
            // unless archive: none says to leave it packed
            "packed=B",
            &format!("header=sent-along big={BIG} moved=hello over http"),
            // optional, and 404: skipped, as Argo does
            "maybe=absent",
        ],
        "{out}"
    );

    // required and 404: the step fails before it runs, naming the artifact and
    // the URL, without the URL's credentials or query
    let missing = node(&wf, "missing");
    assert_eq!(missing["phase"], "Error", "{missing:#}");
    let msg = missing["message"].as_str().unwrap();
    assert!(
        msg.contains("'needed'")
            && msg.contains(&format!("http://127.0.0.1:{port}/nothing-here"))
            && msg.contains("404"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2") && !msg.contains("s3cret"), "{msg}");
    assert!(missing["outputs"]["result"].is_null(), "{missing:#}");

    // optional does not excuse another failure than not-found (Argo: only 404 is not-found)
    let teapot = node(&wf, "teapot");
    assert_eq!(teapot["phase"], "Error", "{teapot:#}");
    let msg = teapot["message"].as_str().unwrap();
    assert!(msg.contains("'brew'") && msg.contains("418"), "{msg}");
}

/// `auth.basicAuth` from secrets: `{name, key}` is weft's environment variable
/// `WEFT_SECRET_<NAME>_<KEY>`. The right password gets the object (also after
/// a same-host redirect); a wrong one is a 401 naming the artifact and the URL,
/// never the password; a redirect to another host drops the credentials;
/// other auth kinds are refused.
#[test]
fn http_basic_and_oauth2_auth_from_secrets() {
    let port = serve();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let auth = |pass: &str| {
        format!(
            "{{basicAuth: {{usernameSecret: {{name: web-creds, key: user}}, passwordSecret: {{name: web-creds, key: {pass}}}}}}}"
        )
    };
    let yaml = format!(
        r#"kind: Workflow
metadata: {{generateName: http-auth-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: ok, template: ok}}
      - {{name: wrong, template: wrong, continueOn: {{failed: true, error: true}}}}
      - {{name: elsewhere, template: elsewhere, continueOn: {{failed: true, error: true}}}}
      - {{name: unset, template: unset, continueOn: {{failed: true, error: true}}}}
      - {{name: oauth, template: oauth}}
      - {{name: badclient, template: badclient, continueOn: {{failed: true, error: true}}}}
  - name: ok
    inputs:
      artifacts:
      - {{name: direct, path: /in/direct, http: {{url: "{private}", auth: {right}}}}}
      - {{name: moved, path: /in/moved, http: {{url: "{to_private}", auth: {right}}}}}
    script: {{image: alpine, command: [sh], source: 'echo "$(cat /in/direct) $(cat /in/moved)"'}}
  - name: wrong
    inputs:
      artifacts:
      - {{name: guarded, path: /in/g, http: {{url: "{private}", auth: {wrong}}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
  - name: elsewhere
    inputs:
      artifacts:
      - {{name: hop, path: /in/h, http: {{url: "{to_other}", auth: {right}}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
  - name: unset
    inputs:
      artifacts:
      - {{name: nokey, path: /in/n, http: {{url: "{private}", auth: {unset}}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
  - name: oauth
    inputs:
      artifacts:
      - name: token
        path: /in/t
        http:
          url: "{bearer}"
          auth: {{oauth2: {{clientIDSecret: {{name: app, key: id}}, clientSecretSecret: {{name: app, key: secret}}, tokenURLSecret: {{name: app, key: url}}, scopes: [read, write], endpointParams: [{{key: audience, value: weft}}]}}}}
      - name: form
        path: /in/f
        http:
          url: "{bearer}"
          auth: {{oauth2: {{clientIDSecret: {{name: app, key: id}}, clientSecretSecret: {{name: app, key: secret}}, tokenURLSecret: {{name: app, key: formurl}}, scopes: [read, write], endpointParams: [{{key: audience, value: weft}}]}}}}
    script: {{image: alpine, command: [sh], source: 'echo "$(cat /in/t) $(cat /in/f)"'}}
  - name: badclient
    inputs:
      artifacts:
      - name: token
        path: /in/t
        http:
          url: "{bearer}"
          auth: {{oauth2: {{clientIDSecret: {{name: app, key: id}}, clientSecretSecret: {{name: app, key: wrong}}, tokenURLSecret: {{name: app, key: url}}, endpointParams: [{{key: audience, value: weft}}]}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
"#,
        bearer = url("/bearer"),
        private = url("/private"),
        to_private = url("/to-private"),
        to_other = url("/to-other-host"),
        right = auth("pass"),
        wrong = auth("wrong"),
        unset = auth("nope"),
    );
    let home = Home::new();
    let f = home.file("http-auth.yaml", &yaml);
    let wrong_password = "wrong-password-7f3e9a";
    let out = home
        .cmd()
        .env("WEFT_SECRET_WEB_CREDS_USER", HTTP_USER)
        .env("WEFT_SECRET_WEB_CREDS_PASS", HTTP_PASSWORD)
        .env("WEFT_SECRET_WEB_CREDS_WRONG", wrong_password)
        .env_remove("WEFT_SECRET_WEB_CREDS_NOPE")
        .env("WEFT_SECRET_APP_ID", "app-id")
        .env("WEFT_SECRET_APP_SECRET", "app-secret")
        .env("WEFT_SECRET_APP_WRONG", "not-the-app-secret")
        .env("WEFT_SECRET_APP_URL", url("/token"))
        .env("WEFT_SECRET_APP_FORMURL", url("/token-form-only"))
        .args(["run", f.to_str().unwrap(), "-o", "json"])
        .output()
        .expect("weft runs");
    let wf = json(&out);
    let ok = node(&wf, "ok");
    assert_eq!(ok["phase"], "Succeeded", "{ok:#}");
    assert_eq!(
        ok["outputs"]["result"], "private data private data",
        "{ok:#}"
    );

    let msg = |step: &str| {
        let n = node(&wf, step);
        assert_eq!(n["phase"], "Error", "{n:#}");
        n["message"].as_str().unwrap().to_string()
    };
    let m = msg("wrong");
    assert!(
        m.contains("'guarded'")
            && m.contains(&url("/private"))
            && m.contains("401")
            && m.contains("secret 'web-creds' (key 'wrong')"),
        "{m}"
    );
    // the Authorization header does not follow a redirect to another host
    let m = msg("elsewhere");
    assert!(
        m.contains("'hop'")
            && m.contains(&url("/to-other-host"))
            && m.contains("401")
            && m.contains("redirect to another host"),
        "{m}"
    );
    let m = msg("unset");
    assert!(
        m.contains("'nokey'")
            && m.contains("secret 'web-creds' (key 'nope')")
            && m.contains("WEFT_SECRET_WEB_CREDS_NOPE"),
        "{m}"
    );
    // oauth2 client credentials: by HTTP Basic, and where the token URL wants
    // them in the form, there; the token (for the scopes asked) as a bearer
    let oauth = node(&wf, "oauth");
    assert_eq!(oauth["phase"], "Succeeded", "{oauth:#}");
    assert_eq!(
        oauth["outputs"]["result"], "bearer data bearer data",
        "{oauth:#}"
    );
    let m = msg("badclient");
    assert!(
        m.contains("'token'")
            && m.contains("oauth2")
            && m.contains("401")
            && m.contains("clientSecretSecret secret 'app' (key 'wrong')"),
        "{m}"
    );
    assert!(
        !m.contains("not-the-app-secret") && !m.contains("/token"),
        "{m}"
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !all.contains(wrong_password) && !all.contains(HTTP_PASSWORD),
        "a password leaked: {all}"
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=weft test",
            "-c",
            "user.email=test@weft.invalid",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// A new repository in `r` (branch `main`) whose first commit has `file.txt`.
fn first_commit(r: &Path, file: &str) {
    git(r, &["init", "-q", "-b", "main"]);
    std::fs::write(r.join("file.txt"), file).unwrap();
    git(r, &["add", "file.txt"]);
    git(r, &["commit", "-q", "-m", "first"]);
}

#[test]
fn git_input_artifacts_check_out_revisions() {
    let src = tempfile::tempdir().unwrap();
    let r = src.path();
    first_commit(r, "one\n");
    let first = git(r, &["rev-parse", "HEAD"]);
    std::fs::write(r.join("file.txt"), "two\n").unwrap();
    std::fs::create_dir(r.join("docs")).unwrap();
    std::fs::write(r.join("docs/readme"), "docs\n").unwrap();
    git(r, &["add", "."]);
    git(r, &["commit", "-q", "-m", "second"]);
    let url = format!("file://{}", r.display());

    let yaml = format!(
        r#"kind: Workflow
metadata: {{generateName: git-in-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: use, template: use}}
      - {{name: creds, template: creds, continueOn: {{failed: true, error: true}}}}
      - {{name: nowhere, template: nowhere, continueOn: {{failed: true, error: true}}}}
  - name: use
    inputs:
      artifacts:
      - {{name: old, path: /src/old, git: {{repo: "{url}", revision: "{first}"}}}}
      - {{name: shallow, path: /src/shallow, git: {{repo: "{url}", revision: "{first}", depth: 1}}}}
      - {{name: tip, path: /src/tip, git: {{repo: "{url}", branch: main, singleBranch: true, depth: 1}}}}
      - {{name: docs, path: /src/docs, subPath: docs, git: {{repo: "{url}"}}}}
    script:
      image: alpine
      command: [sh]
      source: |
        echo "old=$(cat /src/old/file.txt) shallow=$(cat /src/shallow/file.txt) tip=$(cat /src/tip/file.txt) docs=$(cat /src/docs/readme)"
        if [ -e /src/old/docs ]; then echo old-has-docs; else echo old-has-no-docs; fi
        if [ -d /src/old/.git ]; then echo old-is-a-clone; fi
  - name: creds
    inputs:
      artifacts:
      - {{name: private, path: /src/p, git: {{repo: "{url}", usernameSecret: {{name: git, key: user}}}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
  - name: nowhere
    inputs:
      artifacts:
      - {{name: gone, path: /src/g, git: {{repo: "file://{}/no-such-repo"}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
"#,
        r.display()
    );
    let home = Home::new();
    // By default a repository on the engine's own disk is refused: the clone
    // runs outside the step's sandbox, which cannot see that disk.
    let (code, refused) = run_file(&home, "git-in.yaml", &yaml);
    assert_eq!(code, Some(1), "{refused:#}");
    let msg = node(&refused, "use")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("'old'")
            && msg.contains("engine's own filesystem")
            && msg.contains("WEFT_GIT_ALLOW_LOCAL_REPOS=1"),
        "{msg}"
    );
    // Allowed for this weft process:
    let f = home.file("git-in.yaml", &yaml);
    let out = home
        .cmd()
        .env("WEFT_GIT_ALLOW_LOCAL_REPOS", "1")
        .args(["run", f.to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let (code, wf) = (out.status.code(), json(&out));
    assert_eq!(code, Some(0), "{wf:#}");
    let used = node(&wf, "use");
    assert_eq!(used["phase"], "Succeeded", "{used:#}");
    let out = used["outputs"]["result"].as_str().unwrap();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "old=one shallow=one tip=two docs=docs",
            "old-has-no-docs",
            "old-is-a-clone"
        ],
        "{out}"
    );

    // half a pair of credentials: refused, not ignored
    let creds = node(&wf, "creds");
    assert_eq!(creds["phase"], "Error", "{creds:#}");
    let msg = creds["message"].as_str().unwrap();
    assert!(
        msg.contains("'private'") && msg.contains("both usernameSecret and passwordSecret"),
        "{msg}"
    );

    // a repository that is not there: the step fails naming the artifact and git's reason
    let nowhere = node(&wf, "nowhere");
    assert_eq!(nowhere["phase"], "Error", "{nowhere:#}");
    let msg = nowhere["message"].as_str().unwrap();
    assert!(
        msg.contains("'gone'") && msg.contains("no-such-repo") && msg.contains("clone failed"),
        "{msg}"
    );
}

/// A stand-in for an ssh server, put first on weft's `PATH` as `ssh` (no sshd
/// here): it records the options it was given and the identity file's mode,
/// accepts only the key in `$FAKE_SSH_KEY`, and then runs the git command it
/// was asked to (`git-upload-pack '<path>'`) locally, as sshd would.
const FAKE_SSH: &str = r#"#!/bin/sh
key=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) case "$2" in IdentityFile=*) key="${2#IdentityFile=}";; esac
        echo "opt $2" >> "$FAKE_SSH_LOG"; shift 2;;
    -p) shift 2;;
    -*) shift;;
    *) break;;
  esac
done
echo "host $1" >> "$FAKE_SSH_LOG"; shift
echo "mode $(stat -c %a "$key")" >> "$FAKE_SSH_LOG"
if ! cmp -s "$key" "$FAKE_SSH_KEY"; then echo "Permission denied (publickey)." >&2; exit 255; fi
exec sh -c "$*"
"#;

#[test]
fn git_over_ssh_takes_its_key_from_a_secret() {
    let src = tempfile::tempdir().unwrap();
    let r = src.path();
    first_commit(r, "over ssh\n");
    let home = Home::new();
    let bin = home.path().join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ssh = bin.join("ssh");
    std::fs::write(&ssh, FAKE_SSH).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
    let expected = home.file("expected-key", &format!("{KEY}\n"));
    let log = home.path().join("ssh.log");
    let repo = format!("ssh://git@weft-test.invalid{}", r.display());
    let yaml = format!(
        r#"kind: Workflow
metadata: {{generateName: git-ssh-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: use, template: use}}
      - {{name: wrong, template: wrong, continueOn: {{failed: true, error: true}}}}
  - name: use
    inputs:
      artifacts:
      - {{name: src, path: /src, git: {{repo: "{repo}", sshPrivateKeySecret: {{name: deploy, key: id}}, insecureIgnoreHostKey: true}}}}
    script: {{image: alpine, command: [sh], source: "cat /src/file.txt"}}
  - name: wrong
    inputs:
      artifacts:
      - {{name: src, path: /src, git: {{repo: "{repo}", sshPrivateKeySecret: {{name: other, key: id}}, insecureIgnoreHostKey: true}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
"#
    );
    let f = home.file("git-ssh.yaml", &yaml);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = home
        .cmd()
        .env("PATH", path)
        .env("FAKE_SSH_LOG", &log)
        .env("FAKE_SSH_KEY", &expected)
        .env("WEFT_SECRET_DEPLOY_ID", KEY)
        .env("WEFT_SECRET_OTHER_ID", "not-the-deploy-key")
        .args(["run", f.to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let wf = json(&out);
    let used = node(&wf, "use");
    assert_eq!(used["phase"], "Succeeded", "{used:#}\n{}", stderr(&out));
    assert_eq!(used["outputs"]["result"], "over ssh");
    // the wrong key: the step fails naming the artifact and ssh's reason, never the key
    let wrong = node(&wf, "wrong");
    assert_eq!(wrong["phase"], "Error", "{wrong:#}");
    let msg = wrong["message"].as_str().unwrap();
    assert!(
        msg.contains("'src'") && msg.contains("clone failed") && msg.contains("Permission denied"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-deploy-key"), "{msg}");
    // ssh got the key as its only identity, in a 0600 file, and the host key
    // check was off as asked
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("host git@weft-test.invalid"), "{log}");
    assert!(log.contains("opt IdentitiesOnly=yes"), "{log}");
    assert!(log.contains("opt StrictHostKeyChecking=no"), "{log}");
    assert!(
        log.lines()
            .filter(|l| l.starts_with("mode "))
            .all(|l| l == "mode 600"),
        "{log}"
    );
    // and the key file is gone: nowhere under weft's home
    let mut stack = vec![home.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            assert_ne!(e.file_name(), "weft-ssh-key", "{}", e.path().display());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

/// `auth.clientCert`: a server that admits only clients with a certificate
/// from its CA (weft trusts the CA through `SSL_CERT_FILE`, as the system's
/// roots would) serves the artifact to weft presenting the secret's
/// certificate and key, and not without them.
#[test]
fn http_client_certificates_from_secrets() {
    let tls = serve_tls(true);
    let (cert, key) = tls.client.clone().unwrap();
    let url = format!("https://127.0.0.1:{}/ok", tls.port);
    let yaml = format!(
        r#"kind: Workflow
metadata: {{generateName: http-mtls-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: with, template: with}}
      - {{name: without, template: without, continueOn: {{failed: true, error: true}}}}
  - name: with
    inputs:
      artifacts:
      - {{name: page, path: /in/p, http: {{url: "{url}", auth: {{clientCert: {{clientCertSecret: {{name: tls, key: crt}}, clientKeySecret: {{name: tls, key: key}}}}}}}}}}
    script: {{image: alpine, command: [sh], source: "cat /in/p"}}
  - name: without
    inputs:
      artifacts:
      - {{name: page, path: /in/p, http: {{url: "{url}"}}}}
    script: {{image: alpine, command: [sh], source: "echo ran anyway"}}
"#
    );
    let home = Home::new();
    let ca = home.file("ca.pem", &tls.ca_pem);
    let f = home.file("mtls.yaml", &yaml);
    let out = home
        .cmd()
        .env("SSL_CERT_FILE", &ca)
        .env("WEFT_SECRET_TLS_CRT", &cert)
        .env("WEFT_SECRET_TLS_KEY", &key)
        .args(["run", f.to_str().unwrap(), "-o", "json"])
        .output()
        .expect("weft runs");
    let wf = json(&out);
    let with = node(&wf, "with");
    assert_eq!(with["phase"], "Succeeded", "{with:#}\n{}", stderr(&out));
    assert_eq!(with["outputs"]["result"], "hello over tls");
    let without = node(&wf, "without");
    assert_eq!(without["phase"], "Error", "{without:#}");
    let m = without["message"].as_str().unwrap();
    assert!(m.contains("'page'") && m.contains(&url), "{m}");
    let all = format!("{}{}", stdout(&out), stderr(&out));
    let key_body = key.lines().nth(1).unwrap();
    assert!(!all.contains(key_body), "the key leaked: {all}");
}
