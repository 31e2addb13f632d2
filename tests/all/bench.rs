//! `weft bench` end to end, CI-safe: one run of W3, checked for shape and a
//! correct result — never for timing (these machines are shared and noisy).

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
    ] {
        assert!(table.contains(word), "{word} missing in:\n{table}");
    }
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
