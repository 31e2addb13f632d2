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
async fn ungranted_capability_is_refused() {
    let h = misbehave_harness().await;
    let r = misbehave(&h, "probe-process").await.unwrap();
    let DriverPoll::Done(o) = r else { panic!() };
    assert_eq!(o.phase, OutcomePhase::Failed);
    assert!(o.message.unwrap().contains("not granted"));
}
