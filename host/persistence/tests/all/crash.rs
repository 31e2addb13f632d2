//! The durability contract under `kill -9`: a child process commits batches and
//! prints an acknowledgement after each `Ok`; the parent kills it mid-stream,
//! reopens the file, and finds every acknowledged batch — and no partial one.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_engine::runtime::{CommitBatch, StateStore};
use weft_store::Store;

use crate::cases::{node, workflow};

const CHILD_ENV: &str = "WEFT_STORE_CRASH_CHILD";
const NODES_PER_BATCH: usize = 10;

#[test]
fn kill_9_loses_no_acknowledged_commit() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        return child(path.into());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash::kill_9_loses_no_acknowledged_commit"])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked: Option<u64> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            acked = Some(n.parse().unwrap());
        }
        if acked >= Some(150) || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no flush, no close
    child.wait().unwrap();
    let acked = acked.expect("the child acknowledged no commit");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open_sqlite(&path).await.unwrap();
        let (wf, nodes) = store.load_workflow("ns", "crash").await.unwrap().unwrap();
        let batches = nodes.len() / NODES_PER_BATCH;
        assert_eq!(nodes.len() % NODES_PER_BATCH, 0, "a partial batch survived");
        assert!(
            batches as u64 > acked,
            "acknowledged {} batches, found {batches}",
            acked + 1
        );
        eprintln!("crash test: acknowledged {}, found {batches}", acked + 1);
        // The workflow row moved in the same transactions as its nodes.
        assert_eq!(wf.status["commits"], json!(batches as u64 - 1));
        store.close().await;
    });
}

fn child(path: std::path::PathBuf) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open_sqlite(&path).await.unwrap();
        let mut wf = workflow("crash-uid", "ns", "crash", 1);
        store.create_workflow(&wf).await.unwrap();
        for i in 0..100_000u64 {
            wf.status = json!({ "commits": i });
            let first = i as usize * NODES_PER_BATCH;
            let nodes = (first..first + NODES_PER_BATCH)
                .map(|n| ("crash-uid".to_owned(), node(n, "Running")))
                .collect();
            store
                .commit(CommitBatch {
                    owner: None,
                    workflows: vec![wf.clone()],
                    nodes,
                })
                .await
                .unwrap();
            println!("ack {i}");
        }
    });
}
