//! Integration tests of the store against real databases: every case runs on
//! SQLite (a temp dir) and on PostgreSQL (its own schema per test; see
//! `harness.rs` for `WEFT_TEST_PG_URL` and the `CI` rule).

mod bench;
mod cases;
mod crash;
mod harness;

/// One `#[tokio::test]` per case and backend: `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = crate::harness::Harness::sqlite().await;
                    crate::cases::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = crate::harness::Harness::postgres().await else { return };
                    crate::cases::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

on_both_backends!(
    create_and_duplicate_name,
    commit_and_load_1000_nodes,
    json_bodies_round_trip_verbatim,
    list_filters,
    delete_cascades_to_nodes_and_logs,
    templates_crud,
    memo_get_put,
    mutex_limit_1_under_20_tasks,
    semaphore_limit_3_under_20_tasks,
    semaphore_limit_2_across_two_store_instances,
    lock_reacquire_and_limit_change,
    logs_through_sink_and_flush,
    failed_commit_rolls_back_entirely,
    commit_to_unknown_workflow_rolls_back,
    leases_claim_renew_expire_and_fence,
);

mod sqlite_only {
    use weft_engine::runtime::StateStore;
    use weft_store::{Durability, Store, StoreOptions};

    use crate::cases::{node, workflow};

    #[tokio::test]
    async fn data_survives_reopen_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/weft.db");
        {
            let store = Store::open_sqlite(&path).await.unwrap();
            assert_eq!(store.backend(), "sqlite");
            let wf = workflow("u1", "ns", "wf", 1);
            store.create_workflow(&wf).await.unwrap();
            let batch = weft_engine::runtime::CommitBatch {
                owner: None,
                nodes: (0..10)
                    .map(|i| ("u1".to_owned(), node(i, "Succeeded")))
                    .collect(),
                ..Default::default()
            };
            store.commit(batch).await.unwrap();
            // Dropped without close(): what commit returned must be on disk.
        }
        let store = Store::open_sqlite(&path).await.unwrap();
        let (wf, nodes) = store.load_workflow("ns", "wf").await.unwrap().unwrap();
        assert_eq!(wf.uid, "u1");
        assert_eq!(nodes.len(), 10);
        store.close().await;
    }

    #[tokio::test]
    async fn power_durability_opens_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            durability: Durability::Power,
            ..StoreOptions::sqlite(&dir.path().join("weft.db"))
        };
        let store = Store::open(&opts).await.unwrap();
        store
            .create_workflow(&workflow("u1", "ns", "wf", 1))
            .await
            .unwrap();
        store.close().await;
        let store = Store::open(&opts).await.unwrap();
        assert!(store.load_workflow("ns", "wf").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn bad_urls_are_rejected_without_secrets() {
        let err = Store::open(&StoreOptions::postgres("mysql://root:hunter2@db/weft"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported store URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = Store::open(&StoreOptions::postgres(
            "postgres://weft:hunter2@127.0.0.1:1/weft",
        ))
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("connecting to postgres://weft@127.0.0.1:1/weft"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}
