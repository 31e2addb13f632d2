//! Guests in other languages: the Python step (`examples/python-step`, built
//! with componentize-py) and the JavaScript step (`examples/js-step`, built with
//! componentize-js), built here and run through `weft run`.
//!
//! The tools are installed by this harness and cached under `target/weft-guests/`
//! keyed by version (a venv with `componentize-py==0.25.1`, an npm directory with
//! `@bytecodealliance/componentize-js@0.23.0`); built components are cached there
//! keyed by a hash of their sources, the WIT and the tool version. A fresh clone
//! installs and builds (about a minute each on 2 cores, plus 11–13 s of
//! Cranelift per component, cached in `target/weft-test-cache`); a second run
//! finds everything. Without python3/npm the tests print a skip notice, except
//! under `CI=true`, where a missing tool is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use super::support::*;

const COMPONENTIZE_PY: &str = "0.25.1";
const COMPONENTIZE_JS: &str = "0.23.0";

fn guests_dir() -> PathBuf {
    repo().join("target/weft-guests")
}

/// Tests of this binary share the installs; other processes are kept out by a file lock.
static INSTALL: Mutex<()> = Mutex::new(());

/// Run `f` holding both the in-process and a cross-process lock named `name`.
fn locked<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(guests_dir()).unwrap();
    let lock = std::fs::File::create(guests_dir().join(format!("{name}.lock"))).unwrap();
    lock.lock().expect("lock the guest tool directory");
    f()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `None` (after a visible notice) when `tool` is missing and this is not CI.
fn require(tool: &str, test: &str) -> Option<()> {
    if have(tool) {
        return Some(());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: `{tool}` is not installed, and CI=true requires it");
    }
    eprintln!("SKIPPED {test}: `{tool}` is not installed (set CI=true to make this a failure)");
    None
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
}

/// FNV-1a over the given files: the build cache key (stable across runs and toolchains).
fn key_of(files: &[PathBuf], salt: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(salt.as_bytes());
    for f in files {
        feed(f.to_string_lossy().as_bytes());
        feed(&std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    format!("{h:016x}")
}

fn wit_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("wit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wit"))
        .collect();
    v.sort();
    v
}

/// Build (or find in the cache) a component: `build(out)` writes it to `out`.
fn cached_build(stem: &str, sources: &[PathBuf], salt: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let mut files = sources.to_vec();
    files.extend(wit_files());
    let out = guests_dir()
        .join("build")
        .join(format!("{stem}-{}.wasm", key_of(&files, salt)));
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let tmp = out.with_extension(format!("{}.tmp.wasm", std::process::id()));
    let t0 = Instant::now();
    build(&tmp);
    std::fs::rename(&tmp, &out).unwrap();
    eprintln!(
        "guests: built {} in {:.1} s",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    out
}

/// componentize-py in its venv, installed on first use.
fn componentize_py() -> PathBuf {
    locked("py", || {
        let venv = guests_dir().join(format!("py-componentize-py-{COMPONENTIZE_PY}"));
        let bin = venv.join("bin/componentize-py");
        let pin = format!("componentize-py=={COMPONENTIZE_PY}");
        install_pinned(&venv, &bin, Pinned::Pip(&[&pin])).unwrap_or_else(|e| panic!("{e}"));
        bin
    })
}

/// componentize-js in its npm directory, installed on first use.
fn componentize_js() -> PathBuf {
    locked("js", || {
        let dir = guests_dir().join(format!("js-componentize-js-{COMPONENTIZE_JS}"));
        let bin = dir.join("node_modules/.bin/componentize-js");
        let pin = format!("@bytecodealliance/componentize-js@{COMPONENTIZE_JS}");
        install_pinned(&dir, &bin, Pinned::Npm(&[&pin])).unwrap_or_else(|e| panic!("{e}"));
        bin
    })
}

fn python_step() -> PathBuf {
    let tool = componentize_py();
    let src = repo().join("examples/python-step");
    locked("py-build", || {
        cached_build("wordcount", &[src.join("app.py")], COMPONENTIZE_PY, |out| {
            run_ok(
                Command::new(&tool)
                    .arg("-d")
                    .arg(repo().join("wit"))
                    .args(["-w", "step-component", "componentize", "-p"])
                    .arg(&src)
                    .arg("app")
                    .arg("-o")
                    .arg(out),
                "componentize-py",
            )
        })
    })
}

fn js_step() -> PathBuf {
    let tool = componentize_js();
    let src = repo().join("examples/js-step");
    locked("js-build", || {
        cached_build("csvsum", &[src.join("app.js")], COMPONENTIZE_JS, |out| {
            run_ok(
                Command::new(&tool)
                    .arg(src.join("app.js"))
                    .arg("-w")
                    .arg(repo().join("wit"))
                    .args(["-n", "step-component", "-d", "http", "fetch-event", "-o"])
                    .arg(out),
                "componentize-js",
            )
        })
    })
}

/// A home whose working directory holds `component` as `name` (what the workflows name).
fn home_with(component: &Path, name: &str) -> Home {
    let home = Home::new();
    std::os::unix::fs::symlink(component, home.path().join(name)).unwrap();
    home
}

fn run(home: &Home, file: &Path) -> (Option<i32>, Value) {
    let out = home
        .cmd()
        .current_dir(home.path())
        .args(["run", file.to_str().unwrap(), "-o", "json"])
        .output()
        .expect("weft runs");
    assert_ne!(
        out.status.code(),
        Some(2),
        "invalid input: {}",
        stderr(&out)
    );
    (out.status.code(), json(&out))
}

fn param<'a>(n: &'a Value, name: &str) -> &'a str {
    n["outputs"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("no output parameter {name}: {n:#}"))
}

/// The raw data of the first input artifact named `name` of step `step` in a workflow file.
fn raw_input(file: &Path, step: &str, name: &str) -> String {
    let y: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let steps = y["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["steps"].as_array().into_iter().flatten())
        .flat_map(|g| g.as_array().into_iter().flatten());
    for s in steps {
        if s["name"] == step {
            for a in s["arguments"]["artifacts"].as_array().into_iter().flatten() {
                if a["name"] == name {
                    return a["raw"]["data"].as_str().unwrap().to_string();
                }
            }
        }
    }
    panic!("{}: step {step} has no raw artifact {name}", file.display())
}

/// What the word count must report, computed here: words of ≥ `min` chars
/// (letters, digits, `_`, `'`), lower-cased; the most frequent (ties alphabetically).
fn count_words(text: &str, min: usize) -> (usize, usize, usize, String) {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\''))
        .filter(|w| !w.is_empty() && w.chars().count() >= min)
        .collect();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for w in &words {
        *counts.entry(w).or_default() += 1;
    }
    let top = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(w, _)| w.to_string())
        .unwrap_or_default();
    (words.len(), text.lines().count(), counts.len(), top)
}

#[test]
fn python_step_counts_words_of_an_input_artifact() {
    let Some(()) = require("python3", "python_step_counts_words_of_an_input_artifact") else {
        return;
    };
    let wasm = python_step();
    let home = home_with(&wasm, "wordcount.wasm");
    let file = repo().join("examples/python-step/wordcount.yaml");
    let (code, wf) = run(&home, &file);
    assert_eq!(code, Some(0), "{wf:#}");
    let n = node(&wf, "count");
    assert_eq!(n["phase"], "Succeeded", "{n:#}");
    let text = raw_input(&file, "count", "text");
    let (words, lines, distinct, top) = count_words(&text, 3);
    assert_eq!(param(n, "words"), words.to_string(), "{n:#}");
    assert_eq!(param(n, "lines"), lines.to_string());
    assert_eq!(param(n, "distinct"), distinct.to_string());
    assert_eq!(param(n, "top"), top);
    let result: Value = serde_json::from_str(n["outputs"]["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["words"], words, "{result}");
    assert_eq!(
        result["top"].as_array().unwrap().len(),
        2,
        "top: 2 → {result}"
    );
    assert_eq!(result["top"][0][0], top.as_str());
    // the step's log line went through the `log` import to `weft logs`
    let name = wf["metadata"]["name"].as_str().unwrap();
    let logs = home.run(&["logs", name]);
    assert!(
        stdout(&logs).contains(&format!("wordcount: {words} words, {distinct} distinct")),
        "{}{}",
        stdout(&logs),
        stderr(&logs)
    );
}

const PY_FAILURES: &str = r#"kind: Workflow
metadata: {generateName: py-fail-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: bad-top, template: wc, arguments: {parameters: [{name: top, value: lots}, {name: mode, value: count}]}, continueOn: {failed: true}}
      - {name: oom, template: wc, arguments: {parameters: [{name: top, value: "1"}, {name: mode, value: oom}]}, continueOn: {failed: true}}
    - - {name: after, template: wc, arguments: {parameters: [{name: top, value: "1"}, {name: mode, value: count}]}}
  - name: wc
    inputs:
      parameters: [{name: top}, {name: mode}]
      artifacts: [{name: text, raw: {data: "zeta zeta eta ZETA eta theta\nzeta\n"}}]
    plugin: {wasm: {component: wordcount.wasm}}
    outputs: {parameters: [{name: words}, {name: top}]}
"#;

#[test]
fn python_step_errors_and_oom_fail_the_step_not_the_host() {
    let Some(()) = require(
        "python3",
        "python_step_errors_and_oom_fail_the_step_not_the_host",
    ) else {
        return;
    };
    let wasm = python_step();
    let home = home_with(&wasm, "wordcount.wasm");
    home.file("weft.toml", "[drivers]\nmemory_limit_mb = 96\n");
    let f = home.file("fail.yaml", PY_FAILURES);
    let (code, wf) = run(&home, &f);
    assert_eq!(code, Some(0), "{wf:#}");
    let bad = node(&wf, "bad-top");
    assert_eq!(bad["phase"], "Failed", "{bad:#}");
    let m = bad["message"].as_str().unwrap();
    assert!(
        m.contains("parameter 'top' = 'lots' is not an integer"),
        "{m}"
    );
    let oom = node(&wf, "oom");
    assert_eq!(oom["phase"], "Failed", "{oom:#}");
    assert!(
        oom["message"].as_str().unwrap().contains("memory"),
        "{oom:#}"
    );
    // the same weft process ran the next step after the trap
    let after = node(&wf, "after");
    assert_eq!(after["phase"], "Succeeded", "{after:#}");
    let (words, _, _, top) = count_words("zeta zeta eta ZETA eta theta\nzeta\n", 1);
    assert_eq!(param(after, "words"), words.to_string());
    assert_eq!(param(after, "top"), top);
}

/// Column `col` of a CSV text, summed and scaled, and the data row count.
fn csv_sum(text: &str, col: &str, scale: f64) -> (f64, usize) {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').map(str::trim).collect();
    let i = header.iter().position(|h| *h == col).unwrap();
    let (mut total, mut rows) = (0.0, 0);
    for l in lines {
        total += l.split(',').nth(i).unwrap().trim().parse::<f64>().unwrap() * scale;
        rows += 1;
    }
    (total, rows)
}

/// JavaScript prints integral numbers without a fraction.
fn js_number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[test]
fn js_step_sums_a_csv_column_and_chains() {
    let Some(()) = require("npm", "js_step_sums_a_csv_column_and_chains") else {
        return;
    };
    let wasm = js_step();
    let home = home_with(&wasm, "csvsum.wasm");
    let file = repo().join("examples/js-step/csvsum.yaml");
    let (code, wf) = run(&home, &file);
    assert_eq!(code, Some(0), "{wf:#}");
    let sum = node(&wf, "sum");
    assert_eq!(sum["phase"], "Succeeded", "{sum:#}");
    let (total, rows) = csv_sum(&raw_input(&file, "sum", "table"), "qty", 2.0);
    assert_eq!(sum["outputs"]["result"], js_number(total), "{sum:#}");
    assert_eq!(param(sum, "rows"), rows.to_string());
    assert_eq!(param(sum, "total"), js_number(total));
    // the second step sums the first one's outputs
    let check = node(&wf, "check");
    assert_eq!(check["phase"], "Succeeded", "{check:#}");
    assert_eq!(check["outputs"]["result"], js_number(total + rows as f64));
    let name = wf["metadata"]["name"].as_str().unwrap();
    let logs = home.run(&["logs", name]);
    assert!(
        stdout(&logs).contains(&format!(
            "csvsum: {rows} rows, qty total {}",
            js_number(total)
        )),
        "{}{}",
        stdout(&logs),
        stderr(&logs)
    );
}

const JS_FAILURES: &str = r#"kind: Workflow
metadata: {generateName: js-fail-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: no-column, template: sum, arguments: {parameters: [{name: column, value: weight}, {name: mode, value: sum}]}, continueOn: {failed: true}}
      - {name: oom, template: sum, arguments: {parameters: [{name: column, value: n}, {name: mode, value: oom}]}, continueOn: {failed: true}}
    - - {name: after, template: sum, arguments: {parameters: [{name: column, value: n}, {name: mode, value: sum}]}}
  - name: sum
    inputs:
      parameters: [{name: column}, {name: mode}]
      artifacts: [{name: table, raw: {data: "k,n\na,19\nb,23\n"}}]
    plugin: {wasm: {component: csvsum.wasm}}
"#;

#[test]
fn js_step_errors_and_oom_fail_the_step_not_the_host() {
    let Some(()) = require("npm", "js_step_errors_and_oom_fail_the_step_not_the_host") else {
        return;
    };
    let wasm = js_step();
    let home = home_with(&wasm, "csvsum.wasm");
    home.file("weft.toml", "[drivers]\nmemory_limit_mb = 96\n");
    let f = home.file("fail.yaml", JS_FAILURES);
    let (code, wf) = run(&home, &f);
    assert_eq!(code, Some(0), "{wf:#}");
    let bad = node(&wf, "no-column");
    assert_eq!(bad["phase"], "Failed", "{bad:#}");
    let m = bad["message"].as_str().unwrap();
    assert!(
        m.contains(r#"column "weight" is not in the header (k, n)"#),
        "{m}"
    );
    let oom = node(&wf, "oom");
    assert_eq!(oom["phase"], "Failed", "{oom:#}");
    assert!(
        oom["message"].as_str().unwrap().contains("memory"),
        "{oom:#}"
    );
    let after = node(&wf, "after");
    assert_eq!(after["phase"], "Succeeded", "{after:#}");
    let (total, _) = csv_sum("k,n\na,19\nb,23\n", "n", 1.0);
    assert_eq!(after["outputs"]["result"], js_number(total));
}
