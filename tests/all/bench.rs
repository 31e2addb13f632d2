//! `weft bench` end to end, CI-safe: one run of W3, and small runs of the
//! server benchmarks (`bench submit`, `bench restart`) on SQLite and on
//! PostgreSQL (skipped when unreachable, required under `CI=true`), checked for
//! shape and a correct result — never for timing (these machines are shared
//! and noisy).

use super::support::*;

#[test]
fn bench_measures_w3_beside_its_bash_floor() {
    let home = Home::new();
    let w3 = repo().join("bench/workloads/w3-diamond-proc.yaml");
    let out = home.run(&[
        "bench",
        "--runs",
        "1",
        "--workloads",
        w3.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["runs"], 1);
    // timed runs open the store the warm-up created (see --fresh-home below)
    assert_eq!(v["fresh_home"], false);
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    let w = &v["workloads"][0];
    assert_eq!(w["workload"], "w3-diamond-proc");
    assert_eq!(w["kind"], "proc");
    let floor = &w["floor"];
    assert!(floor["median_s"].as_f64().unwrap() > 0.0, "{floor}");
    assert_eq!(floor["wrong_runs"], 0, "{floor}");
    let modes = w["weft"].as_array().unwrap();
    let names: Vec<&str> = modes
        .iter()
        .map(|m| m["durability"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["process", "power"]);
    for m in modes {
        assert_eq!(m["result_ok"], true, "{m}");
        assert_eq!(m["steps"], 4, "{m}");
        assert!(m["median_s"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["ratio"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["overhead_per_step_ms"].is_number(), "{m}");
        assert!(m["peak_rss_kib"].as_i64().unwrap() > 1024, "{m}");
        assert_eq!(m["target_ratio"], 1.5, "{m}");
        assert!(m["meets_target"].is_boolean(), "{m}");
    }
    // The human-readable table names the same things.
    let out = home.run(&[
        "bench",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--durability",
        "process",
        "--fresh-home",
        "--workloads",
        w3.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let table = stdout(&out);
    for word in [
        "WORKLOAD",
        "RATIO",
        "PEAK RSS",
        "w3-diamond-proc",
        "process",
        "ok",
        "a new, empty store per run",
    ] {
        assert!(table.contains(word), "{word} missing in:\n{table}");
    }
}

/// `--large` with a small generated DAG: it runs, checks its result, and the
/// report says it ran on a new store.
#[test]
fn bench_large_runs_a_generated_dag_on_a_new_store() {
    let home = Home::new();
    let w3 = repo().join("bench/workloads/w3-diamond-proc.yaml");
    let args = [
        "bench",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--durability",
        "process",
        "--no-floor",
        "--large",
        "--large-tasks",
        "200",
        "--workloads",
        w3.to_str().unwrap(),
    ];
    let out = home.run(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let v = json(&out);
    let large = &v["large"];
    assert_eq!(large["workload"], "large-dag200", "{large}");
    assert_eq!(large["fresh_home"], true, "{large}");
    let m = &large["weft"][0];
    assert_eq!(m["result_ok"], true, "{m}");
    assert_eq!(m["steps"], 200, "{m}");
    let out = home.run(&args);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("large-dag200") && table.contains("each on a new, empty store"),
        "{table}"
    );
}

#[test]
fn bench_rejects_a_missing_workload() {
    let home = Home::new();
    let out = home.run(&["bench", "--workloads", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("no/such/file.yaml"),
        "{}",
        stderr(&out)
    );
}

/// PostgreSQL for the server benchmarks: required under `CI=true`.
fn postgres_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The stores a server benchmark report covers, each checked for its shape:
/// every store measured (PostgreSQL may be skipped outside CI) and right.
fn check_stores<'a>(v: &'a serde_json::Value, keys: &[&str]) -> Vec<&'a serde_json::Value> {
    let stores = v["stores"].as_array().expect("stores");
    let names: Vec<&str> = stores
        .iter()
        .map(|s| s["store"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sqlite", "postgres"], "{v:#}");
    let mut measured = Vec::new();
    for s in stores {
        if s.get("skipped").is_some() {
            assert_eq!(s["store"], "postgres", "{s:#}");
            assert!(
                !postgres_required(),
                "PostgreSQL skipped under CI=true: {s:#}"
            );
            eprintln!("NOTICE: {}", s["skipped"]);
            continue;
        }
        assert_eq!(s["result_ok"], true, "{s:#}");
        for k in keys {
            assert!(s[*k].is_number(), "{k} missing: {s:#}");
        }
        assert!(s["meets_target"].is_boolean(), "{s:#}");
        measured.push(s);
    }
    measured
}

#[test]
fn bench_submit_through_a_server_child() {
    let home = Home::new();
    let out = home.run(&[
        "bench",
        "submit",
        "--n",
        "50",
        "--concurrency",
        "4",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["benchmark"], "submit");
    assert_eq!(v["n"], 50);
    assert_eq!(v["concurrency"], 4);
    let keys = [
        "submissions_per_s",
        "p50_ms",
        "p99_ms",
        "all_succeeded_s",
        "target_per_s",
        "ratio",
    ];
    for s in check_stores(&v, &keys) {
        assert_eq!(s["succeeded"], 50, "{s:#}");
        assert!(s["p50_ms"].as_f64() <= s["p99_ms"].as_f64(), "{s:#}");
        let target = if s["store"] == "sqlite" {
            1000.0
        } else {
            300.0
        };
        assert_eq!(s["target_per_s"], target, "{s:#}");
    }
}

#[test]
fn bench_restart_adopts_every_workflow_again() {
    let home = Home::new();
    let out = home.run(&["bench", "restart", "--n", "20", "--hold", "4", "-o", "json"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["benchmark"], "restart");
    assert_eq!(v["n"], 20);
    let keys = ["restart_s", "ready_s", "down_s", "target_s", "ratio"];
    for s in check_stores(&v, &keys) {
        assert_eq!(s["succeeded"], 20, "{s:#}");
        // Down until every suspend was overdue; the restart includes start-up.
        assert!(s["down_s"].as_f64().unwrap() >= 1.0, "{s:#}");
        assert!(s["restart_s"].as_f64() >= s["ready_s"].as_f64(), "{s:#}");
    }
}

#[test]
fn bench_artifacts_measures_local_and_s3_beside_cp() {
    let home = Home::new();
    let s3 = S3Server::start();
    let addr = s3.addr.to_string();
    let out = home.run(&[
        "bench",
        "artifacts",
        "--size-mib",
        "8",
        "--runs",
        "1",
        "-o",
        "json",
        "--s3-endpoint",
        &addr,
        "--s3-access-key",
        S3_ACCESS_KEY,
        "--s3-secret-key",
        S3_SECRET_KEY,
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["size_mib"], 8);
    assert_eq!(v["bytes"], 8 << 20);
    for floor in ["cp", "cp_sync", "cp_fresh", "cat"] {
        assert!(v[floor]["mb_s"].as_f64().unwrap() > 0.0, "{floor}: {v}");
    }
    assert!(
        v["sh_end_to_end"]["median_s"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    let repos = v["repositories"].as_array().unwrap();
    let names: Vec<&str> = repos
        .iter()
        .map(|r| r["repository"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "s3"]);
    for r in repos {
        assert_eq!(r["errors"], serde_json::json!([]), "{r}");
        assert_eq!(r["runs"], 1, "{r}");
        for k in [
            "save_mb_s",
            "load_mb_s",
            "through_mb_s",
            "ratio_to_cp",
            "ratio_to_cp_fresh",
            "wall_s",
            "wall_ratio_to_sh",
        ] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {r}");
        }
        assert!(r["peak_rss_kib"].as_i64().unwrap() > 1024, "{r}");
        assert!(r["meets_target"].is_boolean(), "{r}");
    }
    // The object really went through the S3 server (raw, under the key prefix).
    let mut found = Vec::new();
    let mut stack = vec![s3.bucket("weft")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.metadata().unwrap().len() == 8 << 20 {
                found.push(e.path());
            }
        }
    }
    assert!(!found.is_empty(), "no 8 MiB object in the S3 bucket");
}
