//! Fakes of the engine ports and helpers to run a step to completion.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use weft_drivers::{DriverOptions, Drivers};
use weft_engine::runtime::{
    DriverPoll, EventNotifier, LogLine, LogSink, StepDriver, StepOutcome, StepRequest,
};

#[derive(Default)]
pub struct MemLogs(pub Mutex<Vec<LogLine>>);

impl LogSink for MemLogs {
    fn append(&self, line: LogLine) {
        self.0.lock().unwrap().push(line);
    }
}

#[derive(Default)]
pub struct Notifier {
    pub keys: Mutex<Vec<String>>,
    pub notify: Notify,
}

impl EventNotifier for Notifier {
    fn notify(&self, event_key: &str) {
        self.keys.lock().unwrap().push(event_key.to_string());
        self.notify.notify_waiters();
    }
}

pub struct Harness {
    pub drivers: Drivers,
    pub logs: Arc<MemLogs>,
    pub notifier: Arc<Notifier>,
    /// Holds the cache and work directories alive.
    pub _dir: tempfile::TempDir,
}

pub fn test_plugin(stem: &str) -> PathBuf {
    PathBuf::from(env!("WEFT_TEST_PLUGIN_DIR")).join(format!("{stem}.wasm"))
}

pub async fn harness_with(f: impl FnOnce(&mut DriverOptions)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = DriverOptions::new(dir.path().join("cache"), dir.path().join("work"));
    f(&mut opts);
    let logs = Arc::new(MemLogs::default());
    let notifier = Arc::new(Notifier::default());
    let drivers = Drivers::new(opts, logs.clone(), notifier.clone())
        .await
        .unwrap();
    Harness {
        drivers,
        logs,
        notifier,
        _dir: dir,
    }
}

pub async fn harness() -> Harness {
    harness_with(|_| {}).await
}

pub fn request(node: &str, driver: &str, template: Value) -> StepRequest {
    StepRequest {
        workflow: "wf".into(),
        namespace: "default".into(),
        workflow_uid: "uid-1".into(),
        node_id: node.into(),
        node_name: format!("wf.{node}"),
        attempt: 0,
        template,
        driver: driver.into(),
    }
}

/// Start and poll (on the event key or after the wake delay) until done.
pub async fn run(h: &Harness, req: &StepRequest) -> StepOutcome {
    let mut r = h.drivers.start(req).await.expect("start");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match r {
            DriverPoll::Done(o) => return o,
            DriverPoll::Pending {
                state, event_key, ..
            } => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "step did not finish"
                );
                if let Some(key) = &event_key {
                    let notified = h.notifier.notify.notified();
                    if !h.notifier.keys.lock().unwrap().contains(key) {
                        let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
                    }
                }
                r = h.drivers.poll(req, &state).await.expect("poll");
            }
        }
    }
}
