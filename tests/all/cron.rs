//! CronWorkflow scheduling in `weft server`, through the REST API.
//!
//! A `* * * * *` schedule would take a minute to fire, so these tests use the
//! missed-schedule path instead: a CronWorkflow created with
//! `status.lastScheduledTime` in the past and a `startingDeadlineSeconds`
//! long enough that the latest slot of a yearly schedule is still within it.
//! The server's first look at it runs that slot once. "Nothing ran" is shown
//! causally, never by waiting: sentinel CronWorkflows created after the one
//! under test prove the loop has finished a whole tick that included it.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{Datelike, TimeZone, Utc};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::support::*;

/// Long enough for the latest 1 January to be within the deadline.
const TWO_YEARS: i64 = 2 * 366 * 24 * 3600;
const YEARLY: &str = "0 0 1 1 *";

struct Server {
    child: Child,
    url: String,
    home: Home,
}

impl Server {
    fn start(home: Home) -> Server {
        let (child, url) = spawn_server(home.cmd(), Stdio::inherit());
        Server { child, url, home }
    }

    /// SIGTERM, wait, and hand the home back for a restart.
    fn stop(mut self) -> Home {
        // SAFETY: signalling our own child process by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "server did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::mem::replace(&mut self.home, Home::new())
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = Client::builder(TokioExecutor::new()).build_http();
            let req = Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    body.map(|b| b.to_string()).unwrap_or_default(),
                )))
                .unwrap();
            let resp = c.request(req).await.expect("request");
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let v = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
            (status, v)
        })
    }

    fn create_cron(&self, cron: Value) {
        let (s, v) = self.call(
            "POST",
            "/api/v1/cron-workflows/default",
            Some(json!({ "cronWorkflow": cron })),
        );
        assert_eq!(s, 200, "{v}");
    }

    fn cron(&self, name: &str) -> Value {
        let (s, v) = self.call(
            "GET",
            &format!("/api/v1/cron-workflows/default/{name}"),
            None,
        );
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Poll until `f` holds (failing after a generous limit, never asserting on time).
    fn until<T>(&self, what: &str, mut f: impl FnMut(&Server) -> Option<T>) -> T {
        let t0 = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "gave up waiting: {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The workflow, once it exists and has finished.
    fn finished(&self, name: &str) -> Value {
        self.until(&format!("{name} finished"), |s| {
            let (st, v) = s.call("GET", &format!("/api/v1/workflows/default/{name}"), None);
            let phase = v["status"]["phase"].as_str().unwrap_or("");
            (st == 200 && !matches!(phase, "" | "Pending" | "Running")).then_some(v)
        })
    }

    /// Names of the workflows a CronWorkflow created.
    fn children(&self, cron: &str) -> Vec<String> {
        let (s, v) = self.call(
            "GET",
            &format!(
                "/api/v1/workflows/default?listOptions.labelSelector=workflows.argoproj.io/cron-workflow%3D{cron}"
            ),
            None,
        );
        assert_eq!(s, 200, "{v}");
        let mut names: Vec<String> = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["metadata"]["name"].as_str().map(String::from))
            .collect();
        names.sort();
        names
    }

    /// Create a sentinel CronWorkflow (missed once, runs at first look) and wait
    /// for its workflow: every CronWorkflow created before it has then had a look.
    fn sentinel(&self, name: &str) {
        self.create_cron(missed_once(name, json!({})));
        self.finished(&expected_name(name));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unix seconds of the latest 1 January 00:00 UTC (the last slot of [`YEARLY`]).
fn last_new_year() -> i64 {
    let now = Utc::now();
    Utc.with_ymd_and_hms(now.year(), 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp()
}

fn expected_name(cron: &str) -> String {
    format!("{cron}-{}", last_new_year())
}

/// A yearly CronWorkflow last scheduled in 2000, whose latest slot is within
/// its starting deadline; `spec` fields are merged over the defaults.
fn missed_once(name: &str, spec: Value) -> Value {
    let mut c = json!({
        "metadata": {"name": name, "labels": {"workflows.argoproj.io/creator": "tester"}},
        "spec": {
            "schedules": [YEARLY],
            "timezone": "UTC",
            "startingDeadlineSeconds": TWO_YEARS,
            "workflowMetadata": {"labels": {"team": "a"}},
            "workflowSpec": {"entrypoint": "main", "templates": [
                {"name": "main", "container": {"image": "busybox", "command": ["echo"], "args": ["tick"]}}]}
        },
        "status": {"lastScheduledTime": "2000-01-01T00:00:00Z"}
    });
    for (k, v) in spec.as_object().unwrap() {
        c["spec"][k] = v.clone();
    }
    c
}

#[test]
fn missed_schedule_runs_once() {
    let s = Server::start(Home::new());
    s.create_cron(missed_once("nightly", json!({})));
    let name = expected_name("nightly");

    let wf = s.finished(&name);
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    let labels = &wf["metadata"]["labels"];
    assert_eq!(
        labels["workflows.argoproj.io/cron-workflow"], "nightly",
        "{wf}"
    );
    assert_eq!(labels["workflows.argoproj.io/creator"], "tester", "{wf}");
    assert_eq!(labels["team"], "a", "{wf}");
    let scheduled = Utc
        .timestamp_opt(last_new_year(), 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        wf["metadata"]["annotations"]["workflows.argoproj.io/scheduled-time"],
        json!(scheduled),
        "{wf}"
    );

    // The CronWorkflow's status: scheduled at the slot, then one success, nothing active.
    let cron = s.until("nightly's status counts the success", |s| {
        let c = s.cron("nightly");
        (c["status"]["succeeded"] == 1).then_some(c)
    });
    let st = &cron["status"];
    assert_eq!(st["lastScheduledTime"], json!(scheduled), "{cron}");
    assert_eq!(st["active"], json!([]), "{cron}");
    assert_eq!(st["failed"], 0, "{cron}");
    assert_eq!(s.children("nightly"), std::slice::from_ref(&name));

    // A restart does not run the slot again (lastScheduledTime moved on).
    let s = Server::start(s.stop());
    s.sentinel("after-restart");
    assert_eq!(s.children("nightly"), [name]);
}

#[test]
fn suspend_and_forbid_run_nothing() {
    let s = Server::start(Home::new());
    // A running workflow that belongs to the Forbid cron.
    let (st, v) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": {
            "metadata": {"name": "held", "labels": {"workflows.argoproj.io/cron-workflow": "strict"}},
            "spec": {"entrypoint": "main", "templates": [{"name": "main",
                "container": {"image": "alpine", "command": ["sh", "-c", "sleep 600"]}}]}}})),
    );
    assert_eq!(st, 200, "{v}");
    s.create_cron(missed_once("paused", json!({"suspend": true})));
    s.create_cron(missed_once(
        "strict",
        json!({"concurrencyPolicy": "Forbid"}),
    ));
    // Two sentinels in turn: when the second has run, the loop finished a whole
    // tick after the one that first saw "paused" and "strict".
    s.sentinel("first");
    s.sentinel("second");

    assert_eq!(s.children("paused"), Vec::<String>::new());
    assert_eq!(s.children("strict"), ["held"]);
    let strict = s.cron("strict");
    assert_eq!(
        strict["status"]["active"][0]["name"], "held",
        "the running workflow is the cron's active one: {strict}"
    );
    assert!(
        strict["status"].get("lastScheduledTime") == Some(&json!("2000-01-01T00:00:00Z")),
        "nothing was scheduled: {strict}"
    );

    // Resumed (a spec change, as in Argo), the slot missed while suspended is
    // still within the deadline: it runs once.
    let (st, v) = s.call("PUT", "/api/v1/cron-workflows/default/paused/resume", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["spec"]["suspend"], false, "{v}");
    let wf = s.finished(&expected_name("paused"));
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    s.sentinel("third");
    assert_eq!(s.children("paused"), [expected_name("paused")]);
}

#[test]
fn bad_schedules_and_time_zones_are_rejected() {
    let s = Server::start(Home::new());
    for (spec, field) in [
        (json!({"schedules": ["0 0 * * * *"]}), "spec.schedules[0]"),
        (
            json!({"schedules": ["@hourly", "99 * * * *"]}),
            "spec.schedules[1]",
        ),
        (json!({"schedule": "daily"}), "spec.schedule"),
        (json!({"timezone": "Mars/Olympus"}), "spec.timezone"),
        (
            json!({"concurrencyPolicy": "Sometimes"}),
            "spec.concurrencyPolicy",
        ),
    ] {
        let (st, v) = s.call(
            "POST",
            "/api/v1/cron-workflows/default",
            Some(json!({"cronWorkflow": missed_once("bad", spec.clone())})),
        );
        assert_eq!(st, 400, "{spec}: {v}");
        let msg = v["message"].as_str().unwrap_or("");
        assert!(msg.contains(field), "{spec}: {msg}");
    }
    // The loop keeps running: a good one still runs after the bad attempts.
    s.sentinel("good");
}
