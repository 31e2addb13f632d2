//! The CLI on the embedded defaults: run, exit codes, output shapes, logs, lint.

use super::support::*;

#[test]
fn hello_world_runs_and_prints_argo_json() {
    let home = Home::new();
    let wf = repo().join("examples/hello-world.yaml");
    let out = home.run(&["run", wf.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["kind"], "Workflow");
    assert_eq!(v["status"]["phase"], "Succeeded");
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("hello-world-"), "{name}");
    let root = &v["status"]["nodes"][&name];
    assert_eq!(root["type"], "Pod");
    assert_eq!(root["outputs"]["result"], "hello world");
    // The run is stored: get, list and logs see it.
    let got = json(&home.run(&["get", &name, "-o", "json"]));
    assert_eq!(got["status"]["phase"], "Succeeded");
    let list = json(&home.run(&["list", "-o", "json"]));
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let logs = stdout(&home.run(&["logs", &name]));
    assert!(logs.contains("hello world"), "{logs}");
}

#[test]
fn exit_codes_follow_the_final_phase() {
    let home = Home::new();
    let failing = home.file(
        "fail.yaml",
        "kind: Workflow\nmetadata: {generateName: f-}\nspec:\n  entrypoint: m\n  templates:\n  - name: m\n    container: {image: alpine, command: [sh, -c, 'exit 3']}\n",
    );
    let out = home.run(&["run", failing.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["status"]["phase"], "Failed");
    let name = v["metadata"]["name"].as_str().unwrap();
    assert_eq!(v["status"]["nodes"][name]["outputs"]["exitCode"], "3");

    let bad = home.file(
        "bad.yaml",
        "kind: Workflow\nspec:\n  entrypoint: [unclosed\n",
    );
    let out = home.run(&["run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.yaml:"), "names the file: {err}");
}

#[test]
fn parameters_from_flags_reach_steps() {
    let home = Home::new();
    let wf = home.file(
        "p.yaml",
        r#"kind: Workflow
metadata: {generateName: p-}
spec:
  entrypoint: m
  arguments: {parameters: [{name: msg, value: default}]}
  templates:
  - name: m
    inputs: {parameters: [{name: msg}]}
    script:
      image: python:3
      command: [python3]
      source: |
        print("got {{inputs.parameters.msg}}")
"#,
    );
    let out = home.run(&[
        "run",
        wf.to_str().unwrap(),
        "-p",
        "msg=from-flag",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let v = json(&out);
    let name = v["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        v["status"]["nodes"][name]["outputs"]["result"],
        "got from-flag"
    );
}

#[test]
fn lint_reports_file_line_and_json() {
    let home = Home::new();
    let wf = home.file(
        "l.yaml",
        "kind: Workflow\nmetadata: {name: l}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: a\n        template: nope\n",
    );
    let out = home.run(&["lint", wf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(text.contains("l.yaml:9:"), "{text}");
    assert!(text.contains("nope"), "{text}");
    let out = home.run(&["lint", wf.to_str().unwrap(), "-o", "json"]);
    let v = json(&out);
    assert_eq!(v[0]["line"], 9);
}

/// `weft logs NAME -f --timestamps` while the workflow runs: every line,
/// those written after the follow began included, carries its timestamp, and
/// the command returns once the workflow is done.
#[test]
fn logs_follow_prints_timestamps_until_the_workflow_ends() {
    let home = Home::new();
    let wf = home.path().join("slow.yaml");
    std::fs::write(
        &wf,
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: slow}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    script: {image: busybox, command: [sh], source: 'echo one; sleep 1; echo two; sleep 0.3; echo three'}\n",
    )
    .unwrap();
    let mut run = home
        .cmd()
        .args(["run", wf.to_str().unwrap(), "-o", "name"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !stdout(&home.run(&["list"])).contains("slow") {
        assert!(t0.elapsed().as_secs() < 30, "the workflow never appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = home.run(&["logs", "slow", "-f", "--timestamps"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert!(run.wait().unwrap().success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let said: Vec<&str> = lines.iter().filter_map(|l| l.rsplit(' ').next()).collect();
    assert_eq!(said, ["one", "two", "three"], "{text}");
    for l in &lines {
        // `<node>: <RFC 3339 time> <line>`
        let ts = l.split(' ').nth(1).unwrap_or_default();
        assert!(
            ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T'),
            "no timestamp in {l:?}:\n{text}"
        );
    }
}

/// `weft run` ends its process without tearing the engine down
/// (`cli::exit_now`): its lock file must still be gone, and the store it
/// leaves (WAL not checkpointed) must open and hold every run.
#[test]
fn a_finished_run_exits_quickly_and_leaves_a_clean_home() {
    let home = Home::new();
    let wf = repo().join("examples/hello-world.yaml");
    for _ in 0..2 {
        let out = home.run(&["run", wf.to_str().unwrap(), "-o", "name"]);
        assert!(out.status.success(), "stderr: {}", stderr(&out));
        let locks: Vec<_> = std::fs::read_dir(home.path().join("locks"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(locks.is_empty(), "lock files left behind: {locks:?}");
    }
    let list = json(&home.run(&["list", "-o", "json"]));
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    for wf in items {
        assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    }
}

/// On Linux/glibc the `weft` executable is linked position-dependent
/// (`host/interaction/build.rs`): no start-up relocation of its 2 MB of
/// read-only data. ELF `e_type` 2 is ET_EXEC (3, ET_DYN, is a PIE).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_weft_executable_is_not_position_independent() {
    if std::env::var_os("WEFT_PIE").is_some_and(|v| v == "1") {
        eprintln!("WEFT_PIE=1: a position-independent build was asked for");
        return;
    }
    use std::io::Read;
    let mut bytes = [0u8; 18];
    std::fs::File::open(weft_bin())
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    let e_type = u16::from_le_bytes([bytes[16], bytes[17]]);
    assert_eq!(e_type, 2, "ELF type {e_type}: expected ET_EXEC");
}
