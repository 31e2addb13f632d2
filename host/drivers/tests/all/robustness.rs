//! A misbehaving plugin fails its step with a clear message; the host lives on.

use std::time::Duration;

use serde_json::json;
use weft_drivers::{PluginConfig, PluginKind};
use weft_engine::runtime::{DriverPoll, OutcomePhase, StepDriver};

use crate::support::*;

async fn misbehave_harness() -> Harness {
    harness_with(|o| {
        o.cpu_budget = Duration::from_millis(300);
        o.memory_limit_bytes = 32 << 20;
        o.plugins.push(PluginConfig {
            name: "misbehave".into(),
            path: Some(test_plugin("weft_plugin_misbehave")),
            kind: PluginKind::Driver,
            grants: Default::default(),
            config: serde_json::Value::Null,
        });
    })
    .await
}

async fn misbehave(h: &Harness, how: &str) -> Result<DriverPoll, String> {
    let req = request(how, "misbehave", json!({"misbehave": how}));
    h.drivers.start(&req).await.map_err(|e| e.message)
}

#[tokio::test]
async fn trap_loop_oom_panic_fail_the_step_not_the_host() {
    let h = misbehave_harness().await;
    let e = misbehave(&h, "trap").await.unwrap_err();
    assert!(
        e.contains("plugin 'misbehave'") && e.contains("trapped"),
        "{e}"
    );

    let e = misbehave(&h, "loop").await.unwrap_err();
    assert!(e.contains("CPU budget"), "{e}");

    let e = misbehave(&h, "oom").await.unwrap_err();
    assert!(
        e.contains("plugin 'misbehave'") && e.contains("memory"),
        "{e}"
    );

    let e = misbehave(&h, "panic").await.unwrap_err();
    assert!(e.contains("panicked on purpose"), "{e}");

    // Still serving: the same plugin and the local driver.
    let ok = misbehave(&h, "ok").await.unwrap();
    assert!(
        matches!(ok, DriverPoll::Done(ref o) if o.phase == OutcomePhase::Succeeded),
        "{ok:?}"
    );
    let req = request(
        "after",
        "local",
        json!({"container": {"image": "argoproj/argosay:v2"}}),
    );
    let o = run(&h, &req).await;
    assert_eq!(o.result.as_deref(), Some("hello argo"));
}

#[tokio::test]
async fn runaway_loop_does_not_starve_other_calls() {
    // tokio::test is single-threaded: only epoch yields let the other call run.
    let h = misbehave_harness().await;
    let looping = async {
        let r = misbehave(&h, "loop").await;
        (r, std::time::Instant::now())
    };
    let other = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        misbehave(&h, "ok").await.unwrap();
        std::time::Instant::now()
    };
    let ((e, loop_done), other_done) = tokio::join!(looping, other);
    assert!(e.is_err());
    assert!(
        other_done < loop_done,
        "a looping plugin starved a concurrent call"
    );
}

#[tokio::test]
async fn cpu_budget_counts_cpu_not_waiting_turns() {
    // Six runaway loops share one thread: each runs only one turn in six, and
    // each turn it is resumed long after its previous epoch deadline. Each must
    // still get its whole budget of CPU before it is stopped (counting epoch
    // deadlines instead would stop all six after ~300 ms of wall time in all),
    // so the six together take at least 6 × the budget of one thread's time.
    let h = misbehave_harness().await;
    let t0 = std::time::Instant::now();
    let loops = (0..6).map(|_| misbehave(&h, "loop"));
    let results = futures::future::join_all(loops).await;
    let wall = t0.elapsed();
    for r in results {
        let e = r.unwrap_err();
        assert!(e.contains("CPU budget of 300ms"), "{e}");
        let used: u64 = e
            .split("used ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no CPU figure in {e}"));
        assert!((300..600).contains(&used), "{e}");
    }
    assert!(
        wall >= Duration::from_millis(6 * 300 * 9 / 10),
        "six loops of 300 ms CPU each finished in {wall:?}: the budget counted waiting"
    );
}

#[tokio::test]
async fn ungranted_capability_is_refused() {
    let h = misbehave_harness().await;
    let r = misbehave(&h, "probe-process").await.unwrap();
    let DriverPoll::Done(o) = r else { panic!() };
    assert_eq!(o.phase, OutcomePhase::Failed);
    assert!(o.message.unwrap().contains("not granted"));
}

/// A loopback HTTP server that answers every request with `secret-page` until
/// dropped with the test; its `host:port`.
fn tiny_http_server() -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\nsecret-page",
            );
        }
    });
    addr
}

fn probe_with(how: &str, fields: serde_json::Value) -> weft_engine::runtime::StepRequest {
    let mut t = json!({"misbehave": how});
    t.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    request(how, "misbehave", t)
}

async fn probe(h: &Harness, how: &str, fields: serde_json::Value) -> (OutcomePhase, String) {
    let r = h.drivers.start(&probe_with(how, fields)).await.unwrap();
    let DriverPoll::Done(o) = r else {
        panic!("{how}: not done")
    };
    let text = o.message.or(o.result).unwrap_or_default();
    (o.phase, text)
}

/// Without grants a plugin reaches nothing: no host file, no socket, no
/// environment variable, no HTTP host, no secret. With grants it reaches
/// exactly what was granted and nothing beside it.
#[tokio::test]
async fn sandbox_denies_what_is_not_granted_and_allows_only_what_is() {
    let server = tiny_http_server();
    let other = tiny_http_server();
    // SAFETY: tests in this binary read WEFT_SECRET_* only through the host's
    // secrets capability; set before any plugin runs.
    unsafe {
        std::env::set_var("WEFT_SECRET_API_TOKEN", "s3cr3t-value");
        std::env::set_var("WEFT_SECRET_OTHER", "not-for-you");
    }
    let denied = misbehave_harness().await;
    let cases = [
        ("probe-file", json!({"path": "/etc/hostname"})),
        ("probe-env", json!({})),
        ("probe-socket", json!({"addr": server})),
        ("probe-http", json!({"url": format!("http://{server}/")})),
        ("probe-secret", json!({"secret": "api.token"})),
    ];
    for (how, fields) in &cases {
        let (phase, text) = probe(&denied, how, fields.clone()).await;
        assert_eq!(phase, OutcomePhase::Failed, "{how} reached {text:?}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("secret-page"),
            "{how}: {text}"
        );
    }

    let granted = harness_with(|o| {
        o.plugins.push(PluginConfig {
            name: "misbehave".into(),
            path: Some(test_plugin("weft_plugin_misbehave")),
            kind: PluginKind::Driver,
            grants: weft_drivers::Grants {
                http_hosts: vec![server.clone()],
                secrets: vec!["api.token".into()],
                env: [("GREETING".to_string(), "hi".to_string())].into(),
                ..Default::default()
            },
            config: serde_json::Value::Null,
        });
    })
    .await;
    let ok = |r: (OutcomePhase, String), want: &str| {
        assert_eq!(r.0, OutcomePhase::Succeeded, "{}", r.1);
        assert_eq!(r.1, want);
    };
    ok(
        probe(
            &granted,
            "probe-http",
            json!({"url": format!("http://{server}/")}),
        )
        .await,
        "secret-page",
    );
    ok(
        probe(&granted, "probe-secret", json!({"secret": "api.token"})).await,
        "s3cr3t-value",
    );
    ok(probe(&granted, "probe-env", json!({})).await, "GREETING=hi");
    // Beside the grants: still nothing.
    for (how, fields) in [
        ("probe-http", json!({"url": format!("http://{other}/")})),
        ("probe-secret", json!({"secret": "other"})),
        ("probe-socket", json!({"addr": server})),
        ("probe-file", json!({"path": "/etc/hostname"})),
    ] {
        let (phase, text) = probe(&granted, how, fields).await;
        assert_eq!(phase, OutcomePhase::Failed, "{how} reached {text:?}");
    }
}
