//! Throughput figures, `#[ignore]`d: run with
//! `cargo test -p weft-store --release --test all bench -- --ignored --nocapture`.

use std::time::Instant;

use weft_engine::runtime::{CommitBatch, StateStore};
use weft_store::{Durability, Store, StoreOptions};

use crate::cases::{node, workflow};
use crate::harness::{pg_admin, random_u64, with_search_path};

/// Commit `commits` batches of 100 fresh node rows each; returns commits/s.
async fn commits_per_sec(store: &Store, commits: usize) -> f64 {
    let mut wf = workflow("bench-uid", "ns", "bench", 1);
    store.create_workflow(&wf).await.unwrap();
    wf.phase = "Running".into();
    // Build the batches first: the figure is the store's, not serde_json's.
    let batches: Vec<CommitBatch> = (0..commits)
        .map(|c| CommitBatch {
            owner: None,
            workflows: vec![wf.clone()],
            nodes: (c * 100..(c + 1) * 100)
                .map(|i| ("bench-uid".to_owned(), node(i, "Running")))
                .collect(),
        })
        .collect();
    let start = Instant::now();
    for batch in batches {
        store.commit(batch).await.unwrap();
    }
    commits as f64 / start.elapsed().as_secs_f64()
}

/// One 100,000-node batch, then a load of it.
async fn big_workflow(store: &Store) -> (f64, f64) {
    store
        .create_workflow(&workflow("big-uid", "ns", "big", 1))
        .await
        .unwrap();
    let nodes = (0..100_000)
        .map(|i| ("big-uid".to_owned(), node(i, "Succeeded")))
        .collect();
    let start = Instant::now();
    store
        .commit(CommitBatch {
            owner: None,
            workflows: vec![],
            nodes,
        })
        .await
        .unwrap();
    let commit = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (_, nodes) = store.load_workflow("ns", "big").await.unwrap().unwrap();
    assert_eq!(nodes.len(), 100_000);
    (commit, start.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_commit_100_node_batches() {
    for (durability, commits) in [(Durability::Process, 1000), (Durability::Power, 200)] {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            durability,
            ..StoreOptions::sqlite(&dir.path().join("weft.db"))
        };
        let store = Store::open(&opts).await.unwrap();
        let rate = commits_per_sec(&store, commits).await;
        eprintln!("sqlite   {durability:?}: {rate:8.0} commits/s of 100 nodes ({commits} commits)");
        if durability == Durability::Process {
            let (commit, load) = big_workflow(&store).await;
            eprintln!("sqlite   100,000-node batch: commit {commit:.2} s, load {load:.2} s");
        }
        store.close().await;
    }

    let Some((mut admin, url)) = pg_admin().await else {
        return;
    };
    // The third run shows how much of a PostgreSQL commit is the server's WAL
    // flush: the same Process durability with `synchronous_commit=off`.
    let runs = [
        (Durability::Process, 500, ""),
        (Durability::Power, 500, ""),
        (
            Durability::Process,
            500,
            "&options=-c%20synchronous_commit%3Doff",
        ),
    ];
    for (durability, commits, extra) in runs {
        let schema = format!("bench_{:016x}", random_u64());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let opts = StoreOptions {
            durability,
            ..StoreOptions::postgres(format!("{}{extra}", with_search_path(&url, &schema)))
        };
        let store = Store::open(&opts).await.unwrap();
        let rate = commits_per_sec(&store, commits).await;
        let note = if extra.is_empty() {
            ""
        } else {
            ", synchronous_commit=off"
        };
        eprintln!(
            "postgres {durability:?}{note}: {rate:8.0} commits/s of 100 nodes ({commits} commits)"
        );
        if durability == Durability::Process && extra.is_empty() {
            let (commit, load) = big_workflow(&store).await;
            eprintln!("postgres 100,000-node batch: commit {commit:.2} s, load {load:.2} s");
        }
        store.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
