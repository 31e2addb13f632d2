//! End to end: engine port → embedded local plugin → sandboxed process → outcome.

use std::time::Instant;

use serde_json::json;
use weft_engine::runtime::{LogStream, OutcomePhase, StepDriver};

use crate::support::*;

#[tokio::test]
async fn argosay_echo_succeeds_with_result() {
    let h = harness().await;
    let req = request(
        "echo",
        "local",
        json!({"container": {"image": "argoproj/argosay:v2", "args": ["echo", "hello"]}}),
    );
    let o = run(&h, &req).await;
    assert_eq!(o.phase, OutcomePhase::Succeeded, "{o:?}");
    assert_eq!(o.result.as_deref(), Some("hello"));
    assert_eq!(o.exit_code, Some(0));
    let logs = h.logs.0.lock().unwrap();
    assert!(
        logs.iter()
            .any(|l| l.line == "hello" && l.stream == LogStream::Stdout && l.node_id == "echo")
    );
}

#[tokio::test]
async fn python_script_result() {
    let h = harness().await;
    let req = request(
        "script",
        "local",
        json!({"script": {"image": "python:alpine3.6", "command": ["python"], "source": "import random\nprint(42)\n"}}),
    );
    let o = run(&h, &req).await;
    assert_eq!(o.phase, OutcomePhase::Succeeded, "{o:?}");
    assert_eq!(o.result.as_deref(), Some("42"));
}

#[tokio::test]
async fn output_parameter_from_file_and_default() {
    let h = harness().await;
    let req = request(
        "params",
        "local",
        json!({
            "container": {"image": "busybox", "command": ["sh", "-c"], "args": ["echo -n hello world > /tmp/out.txt"]},
            "outputs": {"parameters": [
                {"name": "msg", "valueFrom": {"path": "/tmp/out.txt"}},
                {"name": "dflt", "valueFrom": {"path": "/tmp/missing", "default": "fallback"}}
            ]}
        }),
    );
    let o = run(&h, &req).await;
    assert_eq!(o.phase, OutcomePhase::Succeeded, "{o:?}");
    assert_eq!(
        o.parameters,
        vec![
            ("msg".to_string(), "hello world".to_string()),
            ("dflt".into(), "fallback".into())
        ]
    );

    let req = request(
        "params-missing",
        "local",
        json!({
            "container": {"image": "busybox", "command": ["true"]},
            "outputs": {"parameters": [{"name": "msg", "valueFrom": {"path": "/tmp/nope.txt"}}]}
        }),
    );
    let o = run(&h, &req).await;
    assert_eq!(o.phase, OutcomePhase::Error, "{o:?}");
    assert!(o.message.unwrap().contains("'msg'"));
}

#[tokio::test]
async fn exit_code_fails_step() {
    let h = harness().await;
    let req = request(
        "exit3",
        "local",
        json!({"container": {"image": "argoproj/argosay:v2", "args": ["exit", "3"]}}),
    );
    let o = run(&h, &req).await;
    assert_eq!(o.phase, OutcomePhase::Failed);
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.message.as_deref(), Some("Error (exit code 3)"));
}

#[tokio::test]
async fn unknown_image_without_command_is_error() {
    let h = harness().await;
    let req = request(
        "mystery",
        "local",
        json!({"container": {"image": "example.com/mystery:1.0"}}),
    );
    let o = run(&h, &req).await;
    assert_eq!(o.phase, OutcomePhase::Error);
    let m = o.message.unwrap();
    assert!(
        m.contains("cannot be emulated locally") && m.contains("command"),
        "{m}"
    );
}

#[tokio::test]
async fn concurrent_steps_have_private_filesystems() {
    let h = harness().await;
    // Each step writes its own value, waits for the other to have written, reads back.
    let script = |v: &str| {
        format!(
            "echo {v} > /tmp/num; echo {v} > /result.txt; mkdir -p /mnt/out; echo {v} > /mnt/out/x; sleep 0.3; cat /tmp/num /result.txt /mnt/out/x"
        )
    };
    let a = request(
        "a",
        "local",
        json!({"container": {"image": "alpine", "command": ["sh", "-c", script("1")]}}),
    );
    let b = request(
        "b",
        "local",
        json!({"container": {"image": "alpine", "command": ["sh", "-c", script("2")]}}),
    );
    let (oa, ob) = tokio::join!(run(&h, &a), run(&h, &b));
    assert_eq!(oa.result.as_deref(), Some("1\n1\n1"), "{oa:?}");
    assert_eq!(ob.result.as_deref(), Some("2\n2\n2"), "{ob:?}");
    // Nothing leaked onto the host.
    for p in ["/result.txt", "/mnt/out/x"] {
        assert!(
            !std::path::Path::new(p).exists(),
            "{p} leaked onto the host"
        );
    }
    if let Ok(s) = std::fs::read_to_string("/tmp/num") {
        assert!(s != "1\n" && s != "2\n", "/tmp/num leaked onto the host");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_steps_exec_their_freshly_written_files() {
    // Each argosay step gets `/argosay` written into its root and execs it.
    // Another step's child being set up while that file is open for writing
    // would hold it open and make the exec fail with ETXTBSY (spawn.rs).
    let h = harness().await;
    let reqs: Vec<_> = (0..48)
        .map(|i| {
            request(
                &format!("s{i}"),
                "local",
                json!({"container": {"image": "argoproj/argosay:v2", "args": ["echo", format!("n{i}")]}}),
            )
        })
        .collect();
    let outs = futures::future::join_all(reqs.iter().map(|r| run(&h, r))).await;
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(o.phase, OutcomePhase::Succeeded, "step {i}: {o:?}");
        assert_eq!(o.result.as_deref(), Some(format!("n{i}").as_str()), "{o:?}");
    }
}

#[tokio::test]
async fn sandbox_has_no_capabilities_and_readonly_usr() {
    let h = harness().await;
    let req = request(
        "caps",
        "local",
        json!({"container": {"image": "alpine", "command": ["sh", "-c",
            "grep ^Cap /proc/self/status; touch /usr/x 2>/dev/null && echo usr-writable || echo usr-ro; hostname; pwd"],
            "workingDir": "/work/dir"}}),
    );
    let o = run(&h, &req).await;
    let r = o.result.unwrap();
    // none in any set: the bounding set too (the spawner thread empties its
    // own once; the children inherit it), so an exec cannot regain any
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            r.contains(&format!("{set}:\t0000000000000000")),
            "{set}: {r}"
        );
    }
    assert!(r.contains("usr-ro"), "{r}");
    assert!(r.contains("/work/dir"), "{r}");
}

/// The step's own /dev has the usual character devices, working, with the
/// host's modes (made with mknod as root, bound from the host in a user
/// namespace), and nothing written there reaches the host.
#[tokio::test]
async fn sandbox_dev_has_working_devices() {
    let h = harness().await;
    let req = request(
        "devs",
        "local",
        json!({"container": {"image": "alpine", "command": ["sh", "-c",
            "for d in null zero full random urandom tty; do [ -c /dev/$d ] && echo \"$d $(stat -c %a /dev/$d)\"; done; \
             echo gone > /dev/null && echo null-ok; \
             head -c 5 /dev/zero | od -An -tx1 | tr -d ' '; \
             head -c 16 /dev/urandom | wc -c; \
             echo x > /dev/full 2>/dev/null || echo full-refuses; \
             echo s > /dev/shm/mine && [ -s /dev/shm/mine ] && echo shm-writable; \
             touch /dev/mine 2>/dev/null; echo done"]}}),
    );
    let o = run(&h, &req).await;
    assert_eq!(o.phase, OutcomePhase::Succeeded, "{o:?}");
    let r = o.result.unwrap();
    for d in ["null", "zero", "full", "random", "urandom"] {
        assert!(
            r.contains(&format!("{d} 666")),
            "/dev/{d} missing or wrong mode: {r}"
        );
    }
    for line in [
        "null-ok",
        "0000000000",
        "16",
        "full-refuses",
        "shm-writable",
    ] {
        assert!(r.lines().any(|l| l.trim() == line), "{line} missing: {r}");
    }
    assert!(!std::path::Path::new("/dev/mine").exists());
    assert!(!std::path::Path::new("/dev/shm/mine").exists());
}

/// The next step in a recycled root finds none of the last one's files (its
/// `/dev/shm` included), and the roots' mounts never show on the host (as
/// root they live in the spawner thread's own mount namespace).
#[tokio::test]
async fn a_recycled_root_keeps_nothing_of_its_last_step_and_no_mount_reaches_the_host() {
    let h = harness().await;
    // an `alpine` step running `script` with `sh -c`
    let sh = |node: &str, script: &str| {
        request(
            node,
            "local",
            json!({"container": {"image": "alpine", "command": ["sh", "-c", script]}}),
        )
    };
    let write = sh(
        "writer",
        "echo s > /dev/shm/secret && echo s > /tmp/secret && echo s > /secret && stat -c %i /",
    );
    let o = run(&h, &write).await;
    assert_eq!(o.phase, OutcomePhase::Succeeded, "{o:?}");
    let writer_root = o.result.unwrap();
    // the root goes back to the pool on a blocking thread
    let pool = h._dir.path().join("work/.pool");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&pool).map_or(0, |d| d.count()) == 0 {
        assert!(
            Instant::now() < deadline,
            "the root never came back to the pool"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let read = sh(
        "reader",
        "stat -c %i /; ls -A /dev/shm /tmp; ls / | grep -c secret; \
         touch /usr/x 2>/dev/null || echo usr-ro; echo s > /dev/shm/x && echo shm-ok",
    );
    let o = run(&h, &read).await;
    assert_eq!(o.phase, OutcomePhase::Succeeded, "{o:?}");
    let r = o.result.unwrap();
    assert_eq!(
        r.lines().next(),
        Some(writer_root.as_str()),
        "the reader runs in the writer's recycled root: {r}"
    );
    assert!(
        !r.contains("secret"),
        "a file of the last step is visible: {r}"
    );
    for line in ["0", "usr-ro", "shm-ok"] {
        assert!(r.lines().any(|l| l.trim() == line), "{line} missing: {r}");
    }
    let work = h._dir.path().join("work");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*work.to_string_lossy()),
        "a step root's mount shows on the host: {mounts}"
    );
}

#[tokio::test]
async fn whalesay_and_cowsay_on_path() {
    let h = harness().await;
    let req = request(
        "cow",
        "local",
        json!({"container": {"image": "docker/whalesay:latest", "command": ["cowsay"], "args": ["hello world"]}}),
    );
    let o = run(&h, &req).await;
    assert_eq!(o.phase, OutcomePhase::Succeeded, "{o:?}");
    assert!(o.result.unwrap().contains("< hello world >"));
}

#[tokio::test]
async fn repeated_start_adopts_and_cancel_kills() {
    let h = harness().await;
    let req = request(
        "sleepy",
        "local",
        json!({"container": {"image": "argoproj/argosay:v2", "args": ["sleep", "30s"]}}),
    );
    let first = h.drivers.start(&req).await.unwrap();
    let second = h.drivers.start(&req).await.unwrap();
    assert_eq!(first, second, "a repeated start adopts the same process");
    let weft_engine::runtime::DriverPoll::Pending { state, .. } = first else {
        panic!("expected pending")
    };
    let t = Instant::now();
    h.drivers.cancel(&req, &state).await.unwrap();
    // The poll after cancel finds the process gone (released), never hangs.
    let after = h.drivers.poll(&req, &state).await.unwrap();
    assert!(matches!(after, weft_engine::runtime::DriverPoll::Done(_)));
    // The kill is observed: the exit notification arrives promptly.
    let key = "process:uid-1/sleepy-0/main".to_string();
    while !h.notifier.keys.lock().unwrap().contains(&key) {
        assert!(t.elapsed().as_secs() < 5, "killed process did not exit");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn plugin_list_shows_embedded_local() {
    let h = harness().await;
    let list = h.drivers.plugins().await.unwrap();
    let local = list.iter().find(|p| p.name == "local").unwrap();
    assert_eq!(local.source, weft_drivers::PluginSource::Embedded);
    assert!(local.grants.process);
    assert_eq!(local.version, "0.1.0");
}

#[tokio::test]
async fn unknown_driver_is_named() {
    let h = harness().await;
    let req = request("x", "nosuch", json!({}));
    let e = h.drivers.start(&req).await.unwrap_err();
    assert!(e.message.contains("'nosuch'"), "{}", e.message);
}
