//! Artifacts through the default local repository (`$WEFT_HOME/artifacts`),
//! driven by `weft run` on small workflow files.

use serde_json::Value;

use super::support::*;

fn logs(home: &Home, wf: &Value) -> String {
    let name = wf["metadata"]["name"].as_str().unwrap();
    stdout(&home.run(&["logs", name]))
}

pub(crate) const PASS: &str = r#"kind: Workflow
metadata: {generateName: pass-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: make
        template: make
    - - name: use
        template: use
        arguments:
          artifacts:
          - {name: file, from: "{{steps.make.outputs.artifacts.file}}"}
          - {name: dir, from: "{{steps.make.outputs.artifacts.dir}}"}
          - {name: raw, from: "{{steps.make.outputs.artifacts.raw}}"}
          - {name: rawdir, from: "{{steps.make.outputs.artifacts.rawdir}}"}
          - {name: one, from: "{{steps.make.outputs.artifacts.rawdir}}", subPath: sub/b.txt}
  - name: make
    container:
      image: alpine
      command: [sh, -c, 'mkdir -p /out/d/sub && echo file-content > /out/f.txt && echo A > /out/d/a.txt && echo B > /out/d/sub/b.txt']
    outputs:
      artifacts:
      - {name: file, path: /out/f.txt}
      - {name: dir, path: /out/d}
      - {name: raw, path: /out/f.txt, archive: {none: {}}}
      - {name: rawdir, path: /out/d, archive: {none: {}}}
      - {name: maybe, path: /out/missing, optional: true}
  - name: use
    inputs:
      artifacts:
      - {name: file, path: /in/file}
      - {name: dir, path: /in/dir}
      - {name: raw, path: /in/raw}
      - {name: rawdir, path: /in/rawdir}
      - {name: one, path: /in/one}
    container:
      image: alpine
      command: [sh, -c, 'echo "file=$(cat /in/file) a=$(cat /in/dir/a.txt) b=$(cat /in/dir/sub/b.txt) raw=$(cat /in/raw) rawdir=$(cat /in/rawdir/sub/b.txt) one=$(cat /in/one)"']
"#;

#[test]
fn file_and_directory_artifacts_pass_between_steps() {
    let home = Home::new();
    let (code, wf) = run_file(&home, "pass.yaml", PASS);
    assert_eq!(code, Some(0), "{wf:#}");
    let name = wf["metadata"]["name"].as_str().unwrap();
    let make = node(&wf, "make");
    let arts = make["outputs"]["artifacts"].as_array().unwrap();
    // optional and missing: no artifact, no failure
    let names: Vec<&str> = arts.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["file", "dir", "raw", "rawdir"], "{arts:#?}");
    // Argo's key-only location and default keys: <wf>/<pod>/<name>.tgz, or the basename with archive none
    let key = |i: usize| arts[i]["s3"]["key"].as_str().unwrap().to_string();
    let pod = key(0).split('/').nth(1).unwrap().to_string();
    assert_eq!(key(0), format!("{name}/{pod}/file.tgz"));
    assert_eq!(key(2), format!("{name}/{pod}/f.txt"));
    assert_eq!(key(3), format!("{name}/{pod}/d"));
    let repo = home.path().join("artifacts");
    // archive none stores the raw file / the files under the key prefix
    assert_eq!(
        std::fs::read_to_string(repo.join(key(2))).unwrap(),
        "file-content\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join(key(3)).join("sub/b.txt")).unwrap(),
        "B\n"
    );
    // the default archive is tar+gzip
    let tgz = std::fs::read(repo.join(key(0))).unwrap();
    assert_eq!(&tgz[..2], &[0x1f, 0x8b]);
    let out = node(&wf, "use")["outputs"]["result"].as_str().unwrap();
    assert_eq!(
        out,
        "file=file-content a=A b=B raw=file-content rawdir=B one=B"
    );
}

#[test]
fn missing_non_optional_output_fails_naming_artifact_and_repository() {
    let home = Home::new();
    let (code, wf) = run_file(
        &home,
        "missing.yaml",
        r#"kind: Workflow
metadata: {generateName: missing-}
spec:
  entrypoint: m
  templates:
  - name: m
    container: {image: alpine, command: [sh, -c, 'true']}
    outputs:
      artifacts:
      - {name: report, path: /tmp/report.txt}
"#,
    );
    assert_eq!(code, Some(1));
    let msg = node(&wf, wf["metadata"]["name"].as_str().unwrap())["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("'report'") && msg.contains("local repository"),
        "{msg}"
    );
}

#[test]
fn dotdot_keys_are_rejected() {
    let home = Home::new();
    let (code, wf) = run_file(
        &home,
        "dotdot.yaml",
        r#"kind: Workflow
metadata: {generateName: dotdot-}
spec:
  entrypoint: m
  templates:
  - name: m
    container: {image: alpine, command: [sh, -c, 'echo x > /tmp/x']}
    outputs:
      artifacts:
      - {name: x, path: /tmp/x, s3: {key: ../../escaped}}
"#,
    );
    assert_eq!(code, Some(1));
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let msg = node(&wf, &name)["message"].as_str().unwrap_or_default();
    assert!(msg.contains("'..' is not allowed"), "{msg}");
    assert!(!home.path().join("escaped").exists());
}

/// A one-entry ustar archive with a raw (unchecked) member name, gzip'd by the
/// system's `gzip` (no tar library needed in this test binary).
fn evil_tgz(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = h.to_vec();
    tar.extend_from_slice(data);
    tar.resize(512 + data.len().div_ceil(512) * 512 + 1024, 0);
    let mut gz = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    use std::io::Write;
    gz.stdin.take().unwrap().write_all(&tar).unwrap();
    gz.wait_with_output().unwrap().stdout
}

#[test]
fn a_malicious_tar_is_rejected() {
    let home = Home::new();
    // a gzip'd tar whose one entry climbs out with `..`, put in the repository by hand
    let repo = home.path().join("artifacts");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("evil.tgz"),
        evil_tgz(b"../../../pwned.txt", b"pwned\n"),
    )
    .unwrap();
    let (code, wf) = run_file(
        &home,
        "evil.yaml",
        r#"kind: Workflow
metadata: {generateName: evil-}
spec:
  entrypoint: m
  templates:
  - name: m
    inputs:
      artifacts:
      - {name: evil, path: /tmp/in, s3: {key: evil.tgz}}
    container: {image: alpine, command: [sh, -c, 'cat /tmp/in']}
"#,
    );
    assert_eq!(code, Some(1));
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let msg = node(&wf, &name)["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("'evil'") && msg.contains("escapes its directory"),
        "{msg}"
    );
    assert!(!home.path().join("pwned.txt").exists());
}

#[test]
fn archive_logs_saves_main_log() {
    let home = Home::new();
    let (code, wf) = run_file(
        &home,
        "logs.yaml",
        r#"kind: Workflow
metadata: {generateName: logs-}
spec:
  archiveLogs: true
  entrypoint: m
  templates:
  - name: m
    container: {image: alpine, command: [sh, -c, 'echo to-stdout; echo to-stderr >&2']}
"#,
    );
    assert_eq!(code, Some(0), "{wf:#}");
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let arts = &node(&wf, &name)["outputs"]["artifacts"];
    assert_eq!(arts[0]["name"], "main-logs", "{arts:#}");
    let key = arts[0]["s3"]["key"].as_str().unwrap();
    assert!(key.starts_with(&format!("{name}/")) && key.ends_with("/main.log"));
    let log = std::fs::read_to_string(home.path().join("artifacts").join(key)).unwrap();
    assert!(
        log.contains("to-stdout") && log.contains("to-stderr"),
        "{log}"
    );
    assert!(logs(&home, &wf).contains("to-stdout"));
}

// ------------------------------------------------ S3 as the default repository

/// A home whose weft.toml makes bucket `weft` of `s3` the default repository.
fn s3_home(s3: &S3Server, secret: &str) -> Home {
    let home = Home::new();
    home.file("weft.toml", &s3.toml(secret));
    home
}

#[test]
fn s3_default_repository_passes_file_and_directory_artifacts() {
    let s3 = S3Server::start();
    let home = s3_home(&s3, S3_SECRET_KEY);
    let (code, wf) = run_file(&home, "pass.yaml", PASS);
    assert_eq!(code, Some(0), "{wf:#}");
    let out = node(&wf, "use")["outputs"]["result"].as_str().unwrap();
    assert_eq!(
        out,
        "file=file-content a=A b=B raw=file-content rawdir=B one=B"
    );
    // the objects are in the bucket, under the key prefix; nothing went local
    let arts = node(&wf, "make")["outputs"]["artifacts"]
        .as_array()
        .unwrap();
    let key = |i: usize| arts[i]["s3"]["key"].as_str().unwrap().to_string();
    let bucket = s3.bucket("weft").join("runs");
    assert_eq!(
        &std::fs::read(bucket.join(key(0))).unwrap()[..2],
        &[0x1f, 0x8b]
    );
    assert_eq!(
        std::fs::read_to_string(bucket.join(key(2))).unwrap(),
        "file-content\n"
    );
    assert_eq!(
        std::fs::read_to_string(bucket.join(key(3)).join("sub/b.txt")).unwrap(),
        "B\n"
    );
    assert!(!home.path().join("artifacts").exists());
}

#[test]
fn s3_full_location_uses_that_bucket() {
    let s3 = S3Server::start();
    std::fs::create_dir(s3.bucket("other")).unwrap();
    let home = s3_home(&s3, S3_SECRET_KEY);
    let yaml = format!(
        r#"kind: Workflow
metadata: {{generateName: full-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: make, template: make}}
    - - name: use
        template: use
        arguments:
          artifacts:
          - {{name: f, from: "{{{{steps.make.outputs.artifacts.f}}}}"}}
  - name: make
    container: {{image: alpine, command: [sh, -c, 'echo elsewhere > /tmp/f']}}
    outputs:
      artifacts:
      - {{name: f, path: /tmp/f, archive: {{none: {{}}}}, s3: {{endpoint: "{addr}", insecure: true, bucket: other, key: exact/f.txt}}}}
  - name: use
    inputs:
      artifacts:
      - {{name: f, path: /in/f}}
    container: {{image: alpine, command: [sh, -c, 'cat /in/f']}}
"#,
        addr = s3.addr
    );
    let (code, wf) = run_file(&home, "full.yaml", &yaml);
    assert_eq!(code, Some(0), "{wf:#}");
    assert_eq!(node(&wf, "use")["outputs"]["result"], "elsewhere");
    assert_eq!(
        std::fs::read_to_string(s3.bucket("other").join("exact/f.txt")).unwrap(),
        "elsewhere\n"
    );
}

#[test]
fn s3_wrong_credentials_fail_naming_the_repository_never_the_secret() {
    let s3 = S3Server::start();
    let wrong = "not-the-secret-4242424242";
    let home = s3_home(&s3, wrong);
    let f = home.file(
        "creds.yaml",
        r#"kind: Workflow
metadata: {generateName: creds-}
spec:
  entrypoint: m
  templates:
  - name: m
    container: {image: alpine, command: [sh, -c, 'echo x > /tmp/x']}
    outputs:
      artifacts:
      - {name: x, path: /tmp/x}
"#,
    );
    let out = home.run(&["run", f.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let wf = json(&out);
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let msg = node(&wf, &name)["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("'x'") && msg.contains("s3://weft/") && msg.contains(&s3.addr.to_string()),
        "{msg}"
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !all.contains(wrong) && !all.contains(S3_SECRET_KEY),
        "{all}"
    );
}

/// A workflow whose artifact `f` is saved to, passed by `from` and loaded
/// again (by the location itself) from bucket `other` of `s3`, signed with
/// the location's own `accessKeySecret`/`secretKeySecret`.
fn secret_location_workflow(s3: &S3Server) -> String {
    let loc = format!(
        "{{endpoint: \"{}\", insecure: true, bucket: other, key: with-secrets/f.txt, \
         accessKeySecret: {{name: s3-creds, key: access-key}}, \
         secretKeySecret: {{name: s3-creds, key: secret.key}}}}",
        s3.addr
    );
    format!(
        r#"kind: Workflow
metadata: {{generateName: s3-secrets-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: make, template: make}}
    - - name: use
        template: use
        arguments:
          artifacts:
          - {{name: f, from: "{{{{steps.make.outputs.artifacts.f}}}}"}}
      - {{name: direct, template: direct}}
  - name: make
    container: {{image: alpine, command: [sh, -c, 'echo signed-with-secrets > /tmp/f']}}
    outputs:
      artifacts:
      - {{name: f, path: /tmp/f, archive: {{none: {{}}}}, s3: {loc}}}
  - name: use
    inputs:
      artifacts:
      - {{name: f, path: /in/f}}
    container: {{image: alpine, command: [sh, -c, 'cat /in/f']}}
  - name: direct
    inputs:
      artifacts:
      - {{name: g, path: /in/g, s3: {loc}}}
    container: {{image: alpine, command: [sh, -c, 'cat /in/g']}}
"#
    )
}

/// `weft run -o json` of `yaml` with `env` added to (and the AWS credential
/// variables removed from) weft's environment.
fn run_with_env(home: &Home, yaml: &str, env: &[(&str, &str)]) -> std::process::Output {
    let f = home.file("wf.yaml", yaml);
    let mut c = home.cmd();
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied())
        .args(["run", f.to_str().unwrap(), "-o", "json"])
        .output()
        .expect("weft runs")
}

/// Per-artifact credentials: a full `s3` location's `accessKeySecret` and
/// `secretKeySecret` are weft's environment variables
/// `WEFT_SECRET_<NAME>_<KEY>`. The default repository is local (no
/// credentials to borrow), and the AWS variables are unset: only the secrets
/// can sign for the bucket.
#[test]
fn s3_full_location_with_credentials_from_secrets() {
    let s3 = S3Server::start();
    std::fs::create_dir(s3.bucket("other")).unwrap();
    let home = Home::new();
    let yaml = secret_location_workflow(&s3);
    let out = run_with_env(
        &home,
        &yaml,
        &[
            ("WEFT_SECRET_S3_CREDS_ACCESS_KEY", S3_ACCESS_KEY),
            ("WEFT_SECRET_S3_CREDS_SECRET_KEY", S3_SECRET_KEY),
        ],
    );
    let wf = json(&out);
    assert_eq!(out.status.code(), Some(0), "{wf:#}\n{}", stderr(&out));
    assert_eq!(node(&wf, "use")["outputs"]["result"], "signed-with-secrets");
    assert_eq!(
        node(&wf, "direct")["outputs"]["result"],
        "signed-with-secrets"
    );
    assert_eq!(
        std::fs::read_to_string(s3.bucket("other").join("with-secrets/f.txt")).unwrap(),
        "signed-with-secrets\n"
    );
    assert!(!home.path().join("artifacts").exists());

    // a wrong secret value: the save fails naming the artifact and the
    // repository, and the value is nowhere in weft's output
    let wrong = "wrong-secret-value-5150";
    let home = Home::new();
    let out = run_with_env(
        &home,
        &yaml,
        &[
            ("WEFT_SECRET_S3_CREDS_ACCESS_KEY", S3_ACCESS_KEY),
            ("WEFT_SECRET_S3_CREDS_SECRET_KEY", wrong),
        ],
    );
    let msg = make_failed(&out);
    assert!(
        msg.contains("'f'") && msg.contains("s3://other/") && msg.contains(&s3.addr.to_string()),
        "{msg}"
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !all.contains(wrong) && !all.contains(S3_SECRET_KEY),
        "{all}"
    );

    // no value for a secret: the error names the secret and the variable to set
    let home = Home::new();
    let out = run_with_env(
        &home,
        &yaml,
        &[("WEFT_SECRET_S3_CREDS_ACCESS_KEY", S3_ACCESS_KEY)],
    );
    let msg = make_failed(&out);
    assert!(
        msg.contains("'f'")
            && msg.contains("s3://other/")
            && msg.contains("secret 's3-creds' (key 'secret.key')")
            && msg.contains("WEFT_SECRET_S3_CREDS_SECRET_KEY"),
        "{msg}"
    );

    // one selector alone: refused naming the artifact, whatever the environment
    let half = yaml.replace(", secretKeySecret: {name: s3-creds, key: secret.key}", "");
    assert_ne!(half, yaml);
    let out = run_with_env(
        &home,
        &half,
        &[
            ("WEFT_SECRET_S3_CREDS_ACCESS_KEY", S3_ACCESS_KEY),
            ("WEFT_SECRET_S3_CREDS_SECRET_KEY", S3_SECRET_KEY),
        ],
    );
    let msg = make_failed(&out);
    assert!(
        msg.contains("'f'") && msg.contains("'accessKeySecret' without 'secretKeySecret'"),
        "{msg}"
    );
}

/// A full `azure` location's `accountKeySecret`, against Azurite; the default
/// repository is local and the Azure variables are unset, so only the secret
/// can sign. A wrong key fails naming the container, never a key.
#[test]
fn azure_full_location_with_account_key_from_a_secret() {
    use weft_drivers::artifacts::testing::{AZURITE_KEY, Azurite};
    let Some(az) = Azurite::start_or_skip("azure_full_location_with_account_key_from_a_secret")
    else {
        return;
    };
    az.create_container("other").unwrap();
    let loc = format!(
        "{{endpoint: \"{}\", container: other, blob: with-secret/f.txt, \
         accountKeySecret: {{name: az-creds, key: account-key}}}}",
        az.endpoint()
    );
    let yaml = format!(
        r#"kind: Workflow
metadata: {{generateName: az-secret-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: make, template: make}}
    - - {{name: direct, template: direct}}
  - name: make
    container: {{image: alpine, command: [sh, -c, 'echo signed-by-secret > /tmp/f']}}
    outputs:
      artifacts:
      - {{name: f, path: /tmp/f, archive: {{none: {{}}}}, azure: {loc}}}
  - name: direct
    inputs:
      artifacts:
      - {{name: g, path: /in/g, azure: {loc}}}
    container: {{image: alpine, command: [sh, -c, 'cat /in/g']}}
"#
    );
    let run = |key: &str| {
        let home = Home::new();
        let f = home.file("az.yaml", &yaml);
        let mut c = home.cmd();
        for v in [
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_ACCESS_KEY",
            "AZURE_STORAGE_KEY",
            "AZURE_CLIENT_SECRET",
        ] {
            c.env_remove(v);
        }
        c.env("WEFT_SECRET_AZ_CREDS_ACCOUNT_KEY", key)
            .args(["run", f.to_str().unwrap(), "-o", "json"])
            .output()
            .expect("weft runs")
    };
    let out = run(AZURITE_KEY);
    let wf = json(&out);
    assert_eq!(out.status.code(), Some(0), "{wf:#}\n{}", stderr(&out));
    assert_eq!(node(&wf, "direct")["outputs"]["result"], "signed-by-secret");

    let wrong = "d3JvbmctYWNjb3VudC1rZXktdmFsdWUtOTg3NjU0MzIxMA==";
    let out = run(wrong);
    let msg = make_failed(&out);
    assert!(
        msg.contains("'f'") && msg.contains("azure://other/") && msg.contains(&az.addr.to_string()),
        "{msg}"
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains(wrong) && !all.contains(AZURITE_KEY), "{all}");
}

/// `artifactRepositoryRef` → `[artifacts.repositories.NAME]`, each repository
/// with its own `keyFormat`; an unknown ref is refused at submission.
#[test]
fn named_repositories_and_key_formats() {
    let home = Home::new();
    home.file(
        "weft.toml",
        r#"[artifacts.default]
key_format = "d/{{workflow.name}}/{{pod.name}}"
[artifacts.repositories."team-repos/a"]
local = { path = "team-a" }
key_format = "{{workflow.creationTimestamp.Y}}/{{workflow.namespace}}/{{workflow.name}}/{{pod.name}}"
"#,
    );
    // default repository, its keyFormat
    let (code, wf) = run_file(&home, "pass.yaml", PASS);
    assert_eq!(code, Some(0), "{wf:#}");
    let name = wf["metadata"]["name"].as_str().unwrap();
    let a = &node(&wf, "make")["outputs"]["artifacts"][0];
    let key = a["s3"]["key"].as_str().unwrap();
    assert!(key.starts_with(&format!("d/{name}/")), "{a}");
    assert!(a["s3"].get("repository").is_none(), "{a}");
    assert!(home.path().join("artifacts").join(key).is_file());
    // the named repository: another ConfigMap than Argo's default, so NAME is configMap/key
    let yaml = PASS.replacen(
        "spec:\n",
        "spec:\n  artifactRepositoryRef: {configMap: team-repos, key: a}\n",
        1,
    );
    let (code, wf) = run_file(&home, "ref.yaml", &yaml);
    assert_eq!(code, Some(0), "{wf:#}");
    let out = node(&wf, "use")["outputs"]["result"].as_str().unwrap();
    assert_eq!(
        out,
        "file=file-content a=A b=B raw=file-content rawdir=B one=B"
    );
    let name = wf["metadata"]["name"].as_str().unwrap();
    let year = &wf["metadata"]["creationTimestamp"].as_str().unwrap()[..4];
    let a = &node(&wf, "make")["outputs"]["artifacts"][0];
    assert_eq!(a["s3"]["repository"], "team-repos/a", "{a}");
    let key = a["s3"]["key"].as_str().unwrap();
    assert!(key.starts_with(&format!("{year}/default/{name}/")), "{key}");
    assert!(home.path().join("team-a").join(key).is_file(), "{key}");
    assert!(!home.path().join("artifacts").join(year).exists());
    // artifact GC finds the named repository too
    let gc = r#"kind: Workflow
metadata: {generateName: gc-ref-}
spec:
  entrypoint: m
  artifactRepositoryRef: {configMap: team-repos, key: a}
  artifactGC: {strategy: OnWorkflowCompletion}
  templates:
  - name: m
    container: {image: alpine, command: [sh, -c, 'echo x > /tmp/x']}
    outputs:
      artifacts:
      - {name: x, path: /tmp/x}
"#;
    let (code, wf) = run_file(&home, "gc.yaml", gc);
    assert_eq!(code, Some(0), "{wf:#}");
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let a = &node(&wf, &name)["outputs"]["artifacts"][0];
    let key = a["s3"]["key"].as_str().unwrap();
    assert_eq!(a["s3"]["repository"], "team-repos/a", "{a}");
    assert!(
        !home.path().join("team-a").join(key).exists(),
        "{key} not collected"
    );
    // an unknown ref: refused before anything runs, naming the ref
    let yaml = PASS.replacen(
        "spec:\n",
        "spec:\n  artifactRepositoryRef: {configMap: team-repos, key: nope}\n",
        1,
    );
    let f = home.file("bad-ref.yaml", &yaml);
    let out = home.run(&["run", f.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let e = stderr(&out);
    assert!(
        e.contains("artifactRepositoryRef")
            && e.contains("\"team-repos/nope\"")
            && e.contains("team-repos/a"),
        "{e}"
    );
}

/// A run that failed (exit 1): the message of its `make` step.
fn make_failed(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    node(&json(out), "make")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Raw file inputs from the local repository are copy-on-write layers, not
/// copies (`sandbox::layers`): a step may change or delete its input, and
/// what it leaves is its output, while the repository's object — read again
/// by a later step — stays as it was.
const LAYERED: &str = r#"kind: Workflow
metadata: {generateName: layered-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: make, template: make}
    - - name: change
        template: change
        arguments:
          artifacts:
          - {name: a, from: "{{steps.make.outputs.artifacts.a}}"}
          - {name: b, from: "{{steps.make.outputs.artifacts.b}}"}
          - {name: c, from: "{{steps.make.outputs.artifacts.c}}"}
    - - name: check
        template: check
        arguments:
          artifacts:
          - {name: a, from: "{{steps.make.outputs.artifacts.a}}"}
          - {name: dir, from: "{{steps.change.outputs.artifacts.dir}}"}
          - {name: same, from: "{{steps.change.outputs.artifacts.same}}"}
  - name: make
    container:
      image: alpine
      command: [sh, -c, 'mkdir -p /out && echo A > /out/a && echo B > /out/b && echo C > /out/c']
    outputs:
      artifacts:
      - {name: a, path: /out/a, archive: {none: {}}}
      - {name: b, path: /out/b, archive: {none: {}}}
      - {name: c, path: /out/c, archive: {none: {}}}
  - name: change
    inputs:
      artifacts:
      - {name: a, path: /in/a}
      - {name: b, path: /in/b}
      - {name: c, path: /tmp/c}
    container:
      image: alpine
      command: [sh, -c, 'echo more >> /in/a && rm /in/b && echo new > /in/new && echo "a=$(cat /in/a | tr "\n" " ")b=$(test -e /in/b && echo kept || echo gone) c=$(cat /tmp/c)"']
    outputs:
      artifacts:
      - {name: dir, path: /in, archive: {none: {}}}
      - {name: same, path: /tmp/c, archive: {none: {}}}
  - name: check
    inputs:
      artifacts:
      - {name: a, path: /in/a}
      - {name: dir, path: /in/dir}
      - {name: same, path: /in/same}
    container:
      image: alpine
      command: [sh, -c, 'echo "a=$(cat /in/a) dir=$(ls /in/dir | tr "\n" " ")dir/a=$(cat /in/dir/a | tr "\n" " ")same=$(cat /in/same)"']
"#;

#[test]
fn raw_file_inputs_are_copy_on_write_layers() {
    let home = Home::new();
    let out = run_with_env(
        &home,
        LAYERED,
        &[
            ("WEFT_LOG", "warn,weft_drivers::artifacts::stage=debug"),
            ("WEFT_LOG_FORMAT", "json"),
        ],
    );
    let wf: Value = serde_json::from_slice(&out.stdout).expect("a Workflow");
    assert_eq!(out.status.code(), Some(0), "{wf:#}");
    let result = |n: &str| {
        node(&wf, n)["outputs"]["result"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(result("change"), "a=A more b=gone c=C");
    assert_eq!(result("check"), "a=A dir=a new dir/a=A more same=C");
    // the objects change read are as make left them
    let make = node(&wf, "make");
    let key = make["outputs"]["artifacts"][0]["s3"]["key"]
        .as_str()
        .unwrap();
    let repo = home.path().join("artifacts");
    assert_eq!(std::fs::read_to_string(repo.join(key)).unwrap(), "A\n");
    // and they were layered, not copied (the placement events say so)
    let log = String::from_utf8_lossy(&out.stderr);
    let layered = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["fields"]["message"] == "input artifact placed" && e["fields"]["layered"] == true
        })
        .count();
    // a, b and c into change; a and same into check (dir, a directory, is copied)
    assert_eq!(layered, 5, "{log}");
}
