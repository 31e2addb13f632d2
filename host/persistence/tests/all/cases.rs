//! The test cases, each written once against `&Store` and run on both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use weft_engine::runtime::{
    CommitBatch, LogLine, LogStream, MemoEntry, NodeRecord, StateStore, StoreError, TemplateRecord,
    WorkflowFilter, WorkflowRecord,
};
use weft_store::Store;

use crate::harness::Harness;

pub fn workflow(uid: &str, namespace: &str, name: &str, created_ms: i64) -> WorkflowRecord {
    WorkflowRecord {
        uid: uid.into(),
        namespace: namespace.into(),
        name: name.into(),
        phase: "Pending".into(),
        created_ms,
        started_ms: None,
        finished_ms: None,
        message: None,
        labels: serde_json::Map::new(),
        workflow: json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "alpine"}}]},
        }),
        status: json!({}),
    }
}

pub fn node(i: usize, phase: &str) -> NodeRecord {
    NodeRecord {
        node_id: format!("wf-{i:08}"),
        phase: phase.into(),
        data: json!({
            "id": format!("wf-{i:08}"),
            "name": format!("wf[{i}].step"),
            "displayName": "step",
            "type": "Pod",
            "templateName": "main",
            "phase": phase,
            "startedAt": "2025-01-01T00:00:00Z",
            "inputs": {"parameters": [{"name": "i", "value": i.to_string()}]},
            "children": [],
        }),
    }
}

fn nodes_for(uid: &str, range: std::ops::Range<usize>, phase: &str) -> Vec<(String, NodeRecord)> {
    range.map(|i| (uid.to_owned(), node(i, phase))).collect()
}

pub async fn create_and_duplicate_name(h: &Harness) {
    let store = &h.store;
    let wf = workflow("u1", "ns", "hello", 1);
    store.create_workflow(&wf).await.unwrap();

    let dup = store
        .create_workflow(&workflow("u2", "ns", "hello", 2))
        .await;
    match dup {
        Err(StoreError::AlreadyExists {
            kind,
            namespace,
            name,
        }) => {
            assert_eq!(
                (kind, namespace.as_str(), name.as_str()),
                ("workflow", "ns", "hello")
            );
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // Same uid again is a duplicate too.
    assert!(matches!(
        store
            .create_workflow(&workflow("u1", "other", "x", 3))
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    // Same name in another namespace is fine.
    store
        .create_workflow(&workflow("u3", "other", "hello", 4))
        .await
        .unwrap();

    let (loaded, nodes) = store.load_workflow("ns", "hello").await.unwrap().unwrap();
    assert_eq!(loaded, wf);
    assert!(nodes.is_empty());
    assert!(
        store
            .load_workflow("ns", "missing")
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn commit_and_load_1000_nodes(h: &Harness) {
    let store = &h.store;
    let mut wf = workflow("u1", "ns", "big", 1);
    store.create_workflow(&wf).await.unwrap();

    wf.phase = "Running".into();
    wf.started_ms = Some(10);
    wf.message = Some("going".into());
    wf.labels.insert("team".into(), json!("a"));
    wf.status =
        json!({"outputs": {"parameters": [{"name": "x", "value": "1"}]}, "storedTemplates": {}});
    let batch = CommitBatch {
        owner: None,
        workflows: vec![wf.clone()],
        nodes: nodes_for("u1", 0..1000, "Running"),
    };
    store.commit(batch.clone()).await.unwrap();

    let (loaded, nodes) = store.load_workflow("ns", "big").await.unwrap().unwrap();
    assert_eq!(loaded, wf);
    let expected: Vec<NodeRecord> = batch.nodes.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(nodes, expected, "nodes come back whole, ordered by id");

    // Upsert: change 10 nodes, add 5, finish the workflow.
    wf.phase = "Succeeded".into();
    wf.finished_ms = Some(20);
    let mut changed = nodes_for("u1", 0..10, "Succeeded");
    changed.extend(nodes_for("u1", 1000..1005, "Pending"));
    store
        .commit(CommitBatch {
            owner: None,
            workflows: vec![wf.clone()],
            nodes: changed,
        })
        .await
        .unwrap();
    let (loaded, nodes) = store.load_workflow("ns", "big").await.unwrap().unwrap();
    assert_eq!(loaded, wf);
    assert_eq!(nodes.len(), 1005);
    // The row alone (no nodes) is the same record.
    assert_eq!(
        store.get_workflow("ns", "big").await.unwrap(),
        Some(wf.clone())
    );
    assert_eq!(store.get_workflow("ns", "nope").await.unwrap(), None);
    assert_eq!(store.get_workflow("other", "big").await.unwrap(), None);
    assert_eq!(nodes[3], node(3, "Succeeded"));
    assert_eq!(nodes[500], node(500, "Running"));
    assert_eq!(nodes[1004], node(1004, "Pending"));

    // The same node twice in one batch: the last one wins.
    store
        .commit(CommitBatch {
            owner: None,
            workflows: vec![],
            nodes: vec![
                ("u1".into(), node(7, "Failed")),
                ("u1".into(), node(7, "Error")),
            ],
        })
        .await
        .unwrap();
    let (_, nodes) = store.load_workflow("ns", "big").await.unwrap().unwrap();
    assert_eq!(nodes[7].phase, "Error");

    store.commit(CommitBatch::default()).await.unwrap();
}

pub async fn json_bodies_round_trip_verbatim(h: &Harness) {
    let store = &h.store;
    // Key order of the submitted manifest is kept (PostgreSQL `json`, not `jsonb`).
    let text = r#"{"metadata":{"name":"k","generateName":"k-"},"spec":{"z":1,"a":[1.5,"x",null,true]},"apiVersion":"argoproj.io/v1alpha1","kind":"Workflow"}"#;
    let mut wf = workflow("u1", "ns", "k", 1);
    wf.workflow = serde_json::from_str(text).unwrap();
    wf.status = json!("a bare string is valid JSON too");
    store.create_workflow(&wf).await.unwrap();
    let (loaded, _) = store.load_workflow("ns", "k").await.unwrap().unwrap();
    assert_eq!(serde_json::to_string(&loaded.workflow).unwrap(), text);
    assert_eq!(loaded.status, wf.status);

    // Scalars that look like numbers stay what they were.
    let entry = MemoEntry {
        outputs: json!("123"),
        created_ms: 5,
    };
    store.memo_put("ns", "c", "k", &entry).await.unwrap();
    assert_eq!(store.memo_get("ns", "c", "k").await.unwrap(), Some(entry));
    let entry = MemoEntry {
        outputs: json!(123),
        created_ms: 6,
    };
    store.memo_put("ns", "c", "k", &entry).await.unwrap();
    assert_eq!(store.memo_get("ns", "c", "k").await.unwrap(), Some(entry));
}

pub async fn list_filters(h: &Harness) {
    let store = &h.store;
    let rows = [
        (
            "u1",
            "a",
            "w1",
            "Succeeded",
            1,
            &[("app.kubernetes.io/name", "x"), ("team", "red")][..],
        ),
        (
            "u2",
            "a",
            "w2",
            "Running",
            2,
            &[("app.kubernetes.io/name", "y")][..],
        ),
        (
            "u3",
            "b",
            "w3",
            "Running",
            3,
            &[("app.kubernetes.io/name", "x")][..],
        ),
        (
            "u4",
            "a",
            "w4",
            "Failed",
            4,
            &[("app.kubernetes.io/name", "x"), ("team", "blue")][..],
        ),
        ("u5", "b", "w5", "Succeeded", 5, &[][..]),
        ("u6", "a", "w6", "Running", 6, &[("team", "red")][..]),
    ];
    for (uid, ns, name, phase, created, labels) in rows {
        let mut wf = workflow(uid, ns, name, created);
        wf.phase = phase.into();
        for (k, v) in labels {
            wf.labels.insert((*k).into(), json!(v));
        }
        store.create_workflow(&wf).await.unwrap();
    }
    let names = |v: Vec<WorkflowRecord>| v.into_iter().map(|w| w.name).collect::<Vec<_>>();
    let list = |f: WorkflowFilter| async move { names(store.list_workflows(&f).await.unwrap()) };

    assert_eq!(
        list(WorkflowFilter::default()).await,
        ["w6", "w5", "w4", "w3", "w2", "w1"]
    );
    let ns_a = || WorkflowFilter {
        namespace: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(list(ns_a()).await, ["w6", "w4", "w2", "w1"]);
    assert_eq!(
        list(WorkflowFilter {
            phases: vec!["Running".into(), "Failed".into()],
            ..ns_a()
        })
        .await,
        ["w6", "w4", "w2"]
    );
    assert_eq!(
        list(WorkflowFilter {
            labels: vec![("app.kubernetes.io/name".into(), "x".into())],
            ..Default::default()
        })
        .await,
        ["w4", "w3", "w1"]
    );
    assert_eq!(
        list(WorkflowFilter {
            labels: vec![
                ("app.kubernetes.io/name".into(), "x".into()),
                ("team".into(), "red".into())
            ],
            ..Default::default()
        })
        .await,
        ["w1"]
    );
    assert_eq!(
        list(WorkflowFilter {
            labels: vec![("team".into(), "red".into())],
            limit: Some(1),
            ..ns_a()
        })
        .await,
        ["w6"]
    );
    assert_eq!(
        list(WorkflowFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await,
        ["w6", "w5"]
    );
    assert!(
        list(WorkflowFilter {
            labels: vec![("team".into(), "green".into())],
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert!(
        list(WorkflowFilter {
            namespace: Some("none".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    // A key the SQLite path cannot push into SQL still filters correctly.
    assert!(
        list(WorkflowFilter {
            labels: vec![("we\"ird".into(), "x".into())],
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

fn log_line(uid: &str, node: &str, i: usize) -> LogLine {
    LogLine {
        workflow_uid: uid.into(),
        node_id: node.into(),
        attempt: (i % 2) as u32,
        stream: if i.is_multiple_of(3) {
            LogStream::Stderr
        } else {
            LogStream::Stdout
        },
        ts_ms: 1_000 + i as i64,
        line: format!("{node} line {i}"),
    }
}

pub async fn delete_cascades_to_nodes_and_logs(h: &Harness) {
    let store = &h.store;
    for (uid, name) in [("u1", "doomed"), ("u2", "kept")] {
        store
            .create_workflow(&workflow(uid, "ns", name, 1))
            .await
            .unwrap();
        store
            .commit(CommitBatch {
                owner: None,
                workflows: vec![],
                nodes: nodes_for(uid, 0..50, "Succeeded"),
            })
            .await
            .unwrap();
        let lines: Vec<LogLine> = (0..20).map(|i| log_line(uid, "wf-00000001", i)).collect();
        store.append_logs(&lines).await.unwrap();
    }

    store.delete_workflow("ns", "doomed").await.unwrap();
    assert!(store.load_workflow("ns", "doomed").await.unwrap().is_none());
    assert!(store.logs("u1", None).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_workflow("ns", "doomed").await,
        Err(StoreError::NotFound {
            kind: "workflow",
            ..
        })
    ));

    // The name is free again, and the new workflow starts with no nodes.
    store
        .create_workflow(&workflow("u3", "ns", "doomed", 2))
        .await
        .unwrap();
    let (_, nodes) = store.load_workflow("ns", "doomed").await.unwrap().unwrap();
    assert!(nodes.is_empty());
    // Committing nodes to the deleted uid fails: no orphans can appear.
    assert!(
        store
            .commit(CommitBatch {
                owner: None,
                workflows: vec![],
                nodes: nodes_for("u1", 0..1, "Running"),
            })
            .await
            .is_err()
    );

    let (_, nodes) = store.load_workflow("ns", "kept").await.unwrap().unwrap();
    assert_eq!(nodes.len(), 50);
    assert_eq!(store.logs("u2", None).await.unwrap().len(), 20);
}

pub async fn templates_crud(h: &Harness) {
    let store = &h.store;
    let t = |kind: &str, ns: &str, name: &str, v: i64| TemplateRecord {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
        body: json!({"metadata": {"name": name}, "spec": {"v": v}}),
    };
    store
        .put_template(&t("WorkflowTemplate", "a", "t1", 1))
        .await
        .unwrap();
    store
        .put_template(&t("WorkflowTemplate", "b", "t2", 1))
        .await
        .unwrap();
    store
        .put_template(&t("WorkflowTemplate", "a", "t0", 1))
        .await
        .unwrap();
    store
        .put_template(&t("ClusterWorkflowTemplate", "", "c1", 1))
        .await
        .unwrap();
    store
        .put_template(&t("CronWorkflow", "a", "t1", 1))
        .await
        .unwrap();

    assert_eq!(
        store
            .get_template("WorkflowTemplate", "a", "t1")
            .await
            .unwrap(),
        Some(t("WorkflowTemplate", "a", "t1", 1))
    );
    // Upsert replaces the body.
    store
        .put_template(&t("WorkflowTemplate", "a", "t1", 2))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_template("WorkflowTemplate", "a", "t1")
            .await
            .unwrap(),
        Some(t("WorkflowTemplate", "a", "t1", 2))
    );
    assert_eq!(
        store
            .get_template("WorkflowTemplate", "b", "t1")
            .await
            .unwrap(),
        None
    );

    let names = |v: Vec<TemplateRecord>| {
        v.into_iter()
            .map(|t| format!("{}/{}", t.namespace, t.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            store
                .list_templates("WorkflowTemplate", None)
                .await
                .unwrap()
        ),
        ["a/t0", "a/t1", "b/t2"]
    );
    assert_eq!(
        names(
            store
                .list_templates("WorkflowTemplate", Some("a"))
                .await
                .unwrap()
        ),
        ["a/t0", "a/t1"]
    );
    assert_eq!(
        names(
            store
                .list_templates("ClusterWorkflowTemplate", None)
                .await
                .unwrap()
        ),
        ["/c1"]
    );
    assert_eq!(
        names(
            store
                .list_templates("ClusterWorkflowTemplate", Some(""))
                .await
                .unwrap()
        ),
        ["/c1"]
    );

    store
        .delete_template("WorkflowTemplate", "a", "t1")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_template("WorkflowTemplate", "a", "t1")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .get_template("CronWorkflow", "a", "t1")
            .await
            .unwrap()
            .is_some()
    );
    match store.delete_template("WorkflowTemplate", "a", "t1").await {
        Err(StoreError::NotFound {
            kind,
            namespace,
            name,
        }) => {
            assert_eq!(
                (kind, namespace.as_str(), name.as_str()),
                ("WorkflowTemplate", "a", "t1")
            );
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

pub async fn memo_get_put(h: &Harness) {
    let store = &h.store;
    assert_eq!(store.memo_get("ns", "cache", "k1").await.unwrap(), None);
    let e1 = MemoEntry {
        outputs: json!({"parameters": [{"name": "out", "value": "1"}]}),
        created_ms: 100,
    };
    store.memo_put("ns", "cache", "k1", &e1).await.unwrap();
    assert_eq!(
        store.memo_get("ns", "cache", "k1").await.unwrap(),
        Some(e1.clone())
    );
    // Keys are scoped by namespace and cache.
    assert_eq!(store.memo_get("other", "cache", "k1").await.unwrap(), None);
    assert_eq!(store.memo_get("ns", "other", "k1").await.unwrap(), None);
    let e2 = MemoEntry {
        outputs: json!({"result": "two"}),
        created_ms: 200,
    };
    store.memo_put("ns", "cache", "k1", &e2).await.unwrap();
    assert_eq!(store.memo_get("ns", "cache", "k1").await.unwrap(), Some(e2));
}

/// 20 tasks contend for `limit` slots; an in-memory counter of current holders
/// must never exceed the limit, and must reach it.
async fn contend(stores: &[Store], lock: &str, limit: u32) {
    const TASKS: usize = 20;
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, current, peak, lock) = (
            stores[t % stores.len()].clone(),
            current.clone(),
            peak.clone(),
            lock.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let holder = format!("wf-{t}/node");
            for _round in 0..2 {
                while !store.try_acquire(&lock, &holder, limit).await.unwrap() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                current.fetch_sub(1, Ordering::SeqCst);
                store.release(&lock, &holder).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= limit as usize,
        "{peak} holders of a lock limited to {limit}"
    );
    assert_eq!(peak, limit as usize, "20 contenders should fill every slot");
}

pub async fn mutex_limit_1_under_20_tasks(h: &Harness) {
    contend(std::slice::from_ref(&h.store), "ns/mutex/m", 1).await;
}

pub async fn semaphore_limit_3_under_20_tasks(h: &Harness) {
    contend(std::slice::from_ref(&h.store), "ns/semaphore/s", 3).await;
}

/// Two stores on one database, as two engine replicas (PostgreSQL) or two
/// processes on one file (SQLite) would be: the limit still holds.
pub async fn semaphore_limit_2_across_two_store_instances(h: &Harness) {
    let other = h.open_another().await;
    contend(&[h.store.clone(), other.clone()], "ns/semaphore/shared", 2).await;
    other.close().await;
}

pub async fn lock_reacquire_and_limit_change(h: &Harness) {
    let store = &h.store;
    let l = "ns/sem";
    for h in ["a", "b", "c"] {
        assert!(store.try_acquire(l, h, 3).await.unwrap());
    }
    assert!(!store.try_acquire(l, "d", 3).await.unwrap());
    // A holder re-acquiring keeps its slot without taking another.
    assert!(store.try_acquire(l, "a", 3).await.unwrap());
    store.release(l, "b").await.unwrap();
    // The limit dropped to 1: existing holders keep theirs, nobody new gets in.
    assert!(store.try_acquire(l, "c", 1).await.unwrap());
    assert!(!store.try_acquire(l, "d", 1).await.unwrap());
    store.release(l, "a").await.unwrap();
    store.release(l, "c").await.unwrap();
    assert!(store.try_acquire(l, "d", 1).await.unwrap());
    // Locks are independent; releasing what one does not hold is a no-op.
    assert!(store.try_acquire("other", "a", 1).await.unwrap());
    store.release("other", "zzz").await.unwrap();
    assert!(!store.try_acquire("other", "b", 1).await.unwrap());
}

pub async fn logs_through_sink_and_flush(h: &Harness) {
    let store = &h.store;
    let sink = store.log_sink();
    let per_node = 700; // more than one group of 500
    for i in 0..per_node {
        sink.append(log_line("u1", "n1", i));
        sink.append(log_line("u1", "n2", i));
        if i.is_multiple_of(100) {
            sink.append(log_line("u2", "n1", i));
        }
    }
    store.flush_logs().await;

    let n1 = store.logs("u1", Some("n1")).await.unwrap();
    let expected: Vec<LogLine> = (0..per_node).map(|i| log_line("u1", "n1", i)).collect();
    assert_eq!(
        n1, expected,
        "one node's lines, oldest first, fields intact"
    );
    assert_eq!(store.logs("u1", Some("n2")).await.unwrap().len(), per_node);
    let all = store.logs("u1", None).await.unwrap();
    assert_eq!(all.len(), 2 * per_node);
    assert!(all.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
    assert_eq!(store.logs("u2", None).await.unwrap().len(), 7);
    assert!(store.logs("u1", Some("n3")).await.unwrap().is_empty());

    // A cursor over what was stored: everything, then only what came after.
    let page = store.logs_after("u1", Some("n1"), 0).await.unwrap();
    let lines: Vec<LogLine> = page.iter().map(|(_, l)| l.clone()).collect();
    assert_eq!(lines, expected);
    assert!(page.windows(2).all(|w| w[0].0 < w[1].0), "ids ascend");
    let last = page.last().unwrap().0;
    assert!(
        store
            .logs_after("u1", Some("n1"), last)
            .await
            .unwrap()
            .is_empty()
    );
    // A line stored late with an *earlier* timestamp is still after the cursor.
    let mut late = log_line("u1", "n1", 0);
    late.line = "late".into();
    store.append_logs(&[late.clone()]).await.unwrap();
    let more = store.logs_after("u1", Some("n1"), last).await.unwrap();
    assert_eq!(more.iter().map(|(_, l)| l).collect::<Vec<_>>(), [&late]);
    let everything = store.logs_after("u1", None, 0).await.unwrap();
    assert_eq!(everything.len(), 2 * per_node + 1);

    // A single line arrives within a group interval without an explicit flush.
    sink.append(log_line("u3", "n1", 0));
    let mut seen = false;
    for _ in 0..100 {
        if !store.logs("u3", None).await.unwrap().is_empty() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "a lone line is written after the group delay");
    assert_eq!(store.dropped_log_lines(), 0);
}

pub async fn failed_commit_rolls_back_entirely(h: &Harness) {
    let store = &h.store;
    let wf = workflow("u1", "ns", "atomic", 1);
    store.create_workflow(&wf).await.unwrap();

    let mut running = wf.clone();
    running.phase = "Running".into();
    // 600 good rows (two statements), then one row whose workflow does not exist.
    let mut nodes = nodes_for("u1", 0..600, "Running");
    nodes.push(("no-such-uid".into(), node(0, "Running")));
    let err = store
        .commit(CommitBatch {
            owner: None,
            workflows: vec![running],
            nodes,
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("nodes"), "the error names the table: {msg}");

    let (loaded, nodes) = store.load_workflow("ns", "atomic").await.unwrap().unwrap();
    assert_eq!(
        loaded.phase, "Pending",
        "the workflow update was rolled back"
    );
    assert!(nodes.is_empty(), "no node of the failed batch was kept");

    // The store is still usable afterwards.
    store
        .commit(CommitBatch {
            owner: None,
            workflows: vec![],
            nodes: nodes_for("u1", 0..3, "Running"),
        })
        .await
        .unwrap();
    let (_, nodes) = store.load_workflow("ns", "atomic").await.unwrap().unwrap();
    assert_eq!(nodes.len(), 3);
}

pub async fn commit_to_unknown_workflow_rolls_back(h: &Harness) {
    let store = &h.store;
    store
        .create_workflow(&workflow("u1", "ns", "real", 1))
        .await
        .unwrap();
    let mut real = workflow("u1", "ns", "real", 1);
    real.phase = "Running".into();
    let ghost = workflow("ghost", "ns", "ghost", 1);
    let res = store
        .commit(CommitBatch {
            owner: None,
            workflows: vec![real, ghost],
            nodes: nodes_for("u1", 0..5, "Running"),
        })
        .await;
    assert!(
        matches!(&res, Err(StoreError::NotFound { kind: "workflow", name, .. }) if name == "ghost"),
        "{res:?}"
    );
    let (loaded, nodes) = store.load_workflow("ns", "real").await.unwrap().unwrap();
    assert_eq!(loaded.phase, "Pending");
    assert!(nodes.is_empty());
    let _: Value = loaded.status;
}

/// Replicas: a leased workflow is not claimable until its lease expires; a fenced
/// commit by a replica that lost the lease fails whole with `LeaseLost`; only
/// unfinished workflows are claimed.
pub async fn leases_claim_renew_expire_and_fence(h: &Harness) {
    let store = &h.store;
    store
        .create_workflow_leased(&workflow("u1", "ns", "leased", 1), "a", 1_000)
        .await
        .unwrap();
    store
        .create_workflow(&workflow("u2", "ns", "free", 2))
        .await
        .unwrap();
    let mut done = workflow("u3", "ns", "done", 3);
    done.phase = "Succeeded".into();
    store.create_workflow(&done).await.unwrap();

    // At t=500 only the unleased, unfinished one is claimable.
    let names = |v: Vec<(String, String, String)>| v.into_iter().map(|t| t.2).collect::<Vec<_>>();
    assert_eq!(names(store.claimable(500, 10).await.unwrap()), ["free"]);
    assert!(!store.acquire_lease("u1", "b", 500, 2_000).await.unwrap());
    assert!(store.acquire_lease("u2", "b", 500, 2_000).await.unwrap());
    assert!(!store.acquire_lease("u3", "b", 500, 2_000).await.unwrap());
    // a's lease expires at 1000; b claims it at 1500.
    assert_eq!(names(store.claimable(1_500, 10).await.unwrap()), ["leased"]);
    assert!(store.acquire_lease("u1", "b", 1_500, 3_000).await.unwrap());
    let mut owned = store.renew_leases("b", 4_000).await.unwrap();
    owned.sort();
    assert_eq!(owned, ["u1", "u2"]);
    assert!(store.renew_leases("a", 4_000).await.unwrap().is_empty());

    // a wakes up and tries to commit: fenced, nothing written.
    let mut stale = workflow("u1", "ns", "leased", 1);
    stale.phase = "Failed".into();
    let res = store
        .commit(CommitBatch {
            owner: Some("a".into()),
            workflows: vec![stale],
            nodes: nodes_for("u1", 0..3, "Failed"),
        })
        .await;
    assert!(
        matches!(&res, Err(StoreError::LeaseLost { uid }) if uid == "u1"),
        "{res:?}"
    );
    let (loaded, nodes) = store.load_workflow("ns", "leased").await.unwrap().unwrap();
    assert_eq!(loaded.phase, "Pending");
    assert!(nodes.is_empty());
    // b's fenced commit goes through.
    let mut fresh = workflow("u1", "ns", "leased", 1);
    fresh.phase = "Running".into();
    store
        .commit(CommitBatch {
            owner: Some("b".into()),
            workflows: vec![fresh],
            nodes: nodes_for("u1", 0..3, "Running"),
        })
        .await
        .unwrap();
    // Released: claimable again at once.
    store.release_lease("u2", "b").await.unwrap();
    assert_eq!(names(store.claimable(1_600, 10).await.unwrap()), ["free"]);
}
