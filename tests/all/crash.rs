//! Crash recovery: `kill -9` during `weft run`, then `weft resume` finishes the
//! workflow without running finished steps again.

use std::time::{Duration, Instant};

use super::support::*;

const WF: &str = r#"kind: Workflow
metadata: {name: crashy}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: first, template: say, arguments: {parameters: [{name: m, value: once}]}}
    - - {name: slow, template: sleep}
    - - {name: last, template: say, arguments: {parameters: [{name: m, value: done}]}}
  - name: say
    inputs: {parameters: [{name: m}]}
    container: {image: busybox, command: [echo, "{{inputs.parameters.m}}"]}
  - name: sleep
    container: {image: busybox, command: [sh, -c, "sleep 2; echo slept"]}
"#;

fn node_phase(home: &Home, display: &str) -> Option<String> {
    let out = home.run(&["get", "crashy", "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let v = json(&out);
    v["status"]["nodes"]
        .as_object()?
        .values()
        .find(|n| n["displayName"] == display)
        .and_then(|n| n["phase"].as_str().map(str::to_string))
}

#[test]
fn kill_dash_nine_then_resume_finishes_without_rerunning() {
    let home = Home::new();
    let file = home.file("crash.yaml", WF);
    let mut child = home
        .cmd()
        .args(["run", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the slow step runs, then kill the engine hard.
    let t0 = Instant::now();
    while node_phase(&home, "slow").as_deref() != Some("Running") {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "slow step never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(node_phase(&home, "first").as_deref(), Some("Succeeded"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        node_phase(&home, "last"),
        None,
        "the engine died before the last step"
    );

    let out = home.run(&["resume", "crashy", "-o", "json"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(json(&out)["status"]["phase"], "Succeeded");
    // `first` ran exactly once: one log line.
    let logs = stdout(&home.run(&["logs", "crashy", "--node", "first"]));
    assert_eq!(logs.matches("once").count(), 1, "{logs}");
    let logs = stdout(&home.run(&["logs", "crashy", "--node", "last"]));
    assert!(logs.contains("done"), "{logs}");
}
