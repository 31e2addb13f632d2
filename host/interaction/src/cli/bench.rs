//! `weft bench`: the benchmark workloads of `bench/workloads/` (definitions in
//! `bench/README.md`), each beside its floor, measured in one run on this machine.
//!
//! Every measured run is the whole command from a cold start: this executable
//! is spawned as `weft run FILE -o name` (a new process: engine start and store
//! open included) with a shared compiled-plugin cache (`WEFT_CACHE_DIR`, filled
//! by the warm-up). Each workload and durability mode has its own `WEFT_HOME`,
//! whose store its first run (the warm-up) creates — the store a user's later
//! runs open, as on a laptop. `--fresh-home` gives every run a new, empty home instead: it then
//! also counts creating the store and the step directories' skeletons.
//! Wall time is taken around spawn and reap; peak RSS comes from `wait4`'s
//! `ru_maxrss`. After each run the result is read back with `weft get NAME -o
//! json` (not timed) and checked: a wrong result does not count.
//!
//! The floor of a **proc** workload is the same `sh -c` commands run by a bash
//! script (sequential with `$(…)`, parallel with `&` and `wait`), measured in
//! the same run, interleaved with weft's runs so that noise hits both alike.
//! **wasm** workloads are checked the same way; their floor is a raw wasmtime
//! instantiate+call loop measured after them (`weft_drivers::floor`), shown
//! per call beside their per-step time.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::Invalid;

const W1: &str = include_str!("../../../../bench/workloads/w1-chain40-proc.yaml");
const W3: &str = include_str!("../../../../bench/workloads/w3-diamond-proc.yaml");
const W4: &str = include_str!("../../../../bench/workloads/w4-dag1000-proc.yaml");

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Workflow files to measure (default: W1, W3 and W4 proc, built into weft).
    /// Files named like `w3-diamond-proc.yaml` get their result checked and a floor.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub workloads: Vec<PathBuf>,
    /// Timed runs per workload and mode; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Untimed warm-up runs before the timed ones (the first fills the plugin cache).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Durability modes to measure.
    #[arg(long, value_enum, default_value = "both")]
    pub durability: DurabilityArg,
    /// Also run a generated DAG of `--large-tasks` trivial steps (one run per mode).
    #[arg(long)]
    pub large: bool,
    /// Tasks of the `--large` DAG: chains of 100 tasks each.
    #[arg(long, default_value_t = 100_000)]
    pub large_tasks: usize,
    /// Skip the bash floor.
    #[arg(long)]
    pub no_floor: bool,
    /// Give every timed run a new, empty WEFT_HOME (store creation counted),
    /// instead of the one the warm-up created.
    #[arg(long)]
    pub fresh_home: bool,
    /// Give up on one run after this many seconds (it then counts as wrong).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The server benchmarks (`submit`, `restart`) or `artifacts`, instead of the workloads.
    #[command(subcommand)]
    pub server: Option<super::bench_artifacts::BenchCmd>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    Process,
    Power,
    Both,
}

impl DurabilityArg {
    fn modes(self) -> Vec<&'static str> {
        match self {
            DurabilityArg::Process => vec!["process"],
            DurabilityArg::Power => vec!["power"],
            DurabilityArg::Both => vec!["process", "power"],
        }
    }
}

/// A workload the harness knows: its expected result, floor and target.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Known {
    W1,
    W2,
    W3,
    W4,
    /// The generated `--large` DAG: `n` tasks in chains of [`LARGE_CHAIN`].
    Large(usize),
}

const LARGE_CHAIN: usize = 100;

impl Known {
    fn from_stem(stem: &str) -> Option<Known> {
        let id = stem.split('-').next()?;
        Some(match id {
            "w1" => Known::W1,
            "w2" => Known::W2,
            "w3" => Known::W3,
            "w4" => Known::W4,
            _ => return None,
        })
    }

    /// Targets of issue 2 (proc): weft ÷ bash.
    fn target_ratio(self, proc: bool) -> Option<f64> {
        match self {
            Known::W3 | Known::W4 if proc => Some(1.5),
            _ => None,
        }
    }

    /// Check the `outputs.result` of the leaf steps (Pod nodes) of a finished run.
    fn check(self, results: &[String]) -> Result<(), String> {
        let count = |want: &str| results.iter().filter(|r| r.as_str() == want).count();
        match self {
            Known::W1 => {
                let mut got: Vec<i64> = results.iter().filter_map(|r| r.parse().ok()).collect();
                got.sort_unstable();
                if got != (1..=40).collect::<Vec<i64>>() {
                    return Err(format!(
                        "expected steps 1..=40, the last 40; got {results:?}"
                    ));
                }
            }
            Known::W2 => {
                if count("39800") != 1 {
                    return Err("no step has the sum 39800".into());
                }
            }
            Known::W3 => {
                if count("hihihihihi") != 1 || results.len() != 4 {
                    return Err(format!("expected D = hihihihihi; got {results:?}"));
                }
            }
            Known::W4 => {
                if results.len() != 1000 || (1..=10).any(|k| count(&k.to_string()) != 100) {
                    return Err(format!(
                        "expected 100 chains 1..=10 (every chain ends at 10); {} steps, {} end at 10",
                        results.len(),
                        count("10")
                    ));
                }
            }
            Known::Large(n) => {
                if results.len() != n {
                    return Err(format!("expected {n} steps, found {}", results.len()));
                }
            }
        }
        Ok(())
    }

    /// The bash floor of a proc workload, printing its result on stdout.
    fn floor_script(self) -> Option<String> {
        Some(match self {
            Known::W1 => r#"x=0
for i in $(seq 40); do x=$(sh -c "echo \$(($x + 1))"); done
echo "$x"
"#
            .into(),
            Known::W3 => r#"d=$(mktemp -d)
a=$(sh -c 'echo hi')
sh -c "echo ${a}hi" > "$d/b" &
sh -c "echo ${a}hi" > "$d/c" &
wait
b=$(< "$d/b"); c=$(< "$d/c")
sh -c "echo ${b}${c}hi"
rm -rf "$d"
"#
            .into(),
            Known::W4 => r#"d=$(mktemp -d)
for i in $(seq 0 99); do
  ( x=0; for l in $(seq 10); do x=$(sh -c "echo \$(($x + 1))"); done; echo "$x" > "$d/$i" ) &
done
wait
cat "$d"/*
rm -rf "$d"
"#
            .into(),
            Known::Large(n) => format!(
                r#"for c in $(seq {chains}); do
  ( for l in $(seq {LARGE_CHAIN}); do /usr/bin/true; done ) &
done
wait
echo {n}
"#,
                chains = n.div_ceil(LARGE_CHAIN)
            ),
            Known::W2 => return None,
        })
    }

    fn check_floor(self, out: &str) -> Result<(), String> {
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        let ok = match self {
            Known::W1 => lines == ["40"],
            Known::W3 => lines == ["hihihihihi"],
            Known::W4 => lines.len() == 100 && lines.iter().all(|l| *l == "10"),
            Known::Large(n) => lines == [n.to_string().as_str()],
            Known::W2 => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("the bash floor printed {out:?}"))
        }
    }
}

/// The generated large DAG: `chains` chains of [`LARGE_CHAIN`] `true` steps.
fn large_workflow(n: usize) -> String {
    let mut s = String::with_capacity(n * 96);
    s.push_str(&format!(
        "# Generated by `weft bench --large`: {n} tasks, chains of {LARGE_CHAIN}; each step runs `true`.\n\
         apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {{generateName: large-dag-}}\n\
         spec:\n  entrypoint: main\n  templates:\n  - name: t\n    container: {{image: busybox, command: [\"true\"]}}\n\
         \x20 - name: main\n    dag:\n      tasks:\n"
    ));
    for i in 0..n {
        let (c, l) = (i / LARGE_CHAIN, i % LARGE_CHAIN);
        if l == 0 {
            s.push_str(&format!("      - {{name: c{c}-{l}, template: t}}\n"));
        } else {
            s.push_str(&format!(
                "      - {{name: c{c}-{l}, template: t, depends: c{c}-{}}}\n",
                l - 1
            ));
        }
    }
    s
}

/// One measured process.
pub(super) struct Measured {
    pub(super) wall: Duration,
    pub(super) maxrss_kib: i64,
    pub(super) code: Option<i32>,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// Run `cmd` to completion; time it and take its peak RSS from `wait4`.
pub(super) fn measure(mut cmd: Command, timeout: Duration) -> Result<Measured> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().context("spawning")?;
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    // A watchdog kills a run that hangs. It stops before the child is reaped,
    // so it can never signal a reused pid.
    let (stop, stopped) = mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(timeout) {
            // SAFETY: plain kill(2) of our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    // Wait for exit without reaping, then stop the watchdog, then reap with rusage.
    loop {
        // SAFETY: zeroed siginfo out-parameter, valid pid of our child.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waitid");
        }
    }
    let wall = t0.elapsed();
    let _ = stop.send(());
    let _ = dog.join();
    let mut status = 0;
    // SAFETY: zeroed rusage out-parameter; pid is our exited, unreaped child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if rc != pid {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    // The child is reaped: make sure std never waits on it again.
    std::mem::forget(child);
    let status = std::process::ExitStatus::from_raw(status);
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok(Measured {
        wall,
        maxrss_kib: ru.ru_maxrss,
        code: status.code(),
        stdout,
        stderr,
    })
}

/// Where the runs live; removed at the end.
struct Scratch {
    dir: PathBuf,
    cache: PathBuf,
    exe: PathBuf,
    next: usize,
    timeout: Duration,
}

/// One timed weft run, checked.
struct WeftRun {
    m: Measured,
    steps: usize,
    error: Option<String>,
}

impl Scratch {
    fn weft(&self, home: &Path, mode: &str) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("WEFT_HOME", home)
            .env("WEFT_CACHE_DIR", &self.cache)
            .env("WEFT_DURABILITY", mode)
            .env_remove("WEFT_CONFIG")
            .env_remove("WEFT_STORE_URL")
            .env_remove("WEFT_LOG")
            // wasm workloads name `steps/arith.wasm`, written there by `bench_blocking`
            .current_dir(&self.dir);
        c
    }

    /// A new, empty home directory.
    fn new_home(&mut self) -> Result<PathBuf> {
        self.next += 1;
        let home = self.dir.join(format!("home-{}", self.next));
        std::fs::create_dir_all(&home)?;
        Ok(home)
    }

    /// `weft run FILE` on `home` (None: a fresh one, removed afterwards), then
    /// read back and check the result.
    fn run_weft(
        &mut self,
        file: &Path,
        mode: &str,
        known: Option<Known>,
        home: Option<&Path>,
    ) -> Result<WeftRun> {
        let fresh = match home {
            Some(_) => None,
            None => Some(self.new_home()?),
        };
        let home = home.or(fresh.as_deref()).expect("a home");
        let mut cmd = self.weft(home, mode);
        cmd.arg("run").arg(file).args(["-o", "name"]);
        let m = measure(cmd, self.timeout)?;
        let name = m.stdout.trim().to_string();
        let mut steps = 0;
        let checked = if name.is_empty() {
            Err(String::new())
        } else {
            self.check(home, mode, &name, known)
        };
        let error = match (m.code, checked) {
            (Some(0), Ok(n)) => {
                steps = n;
                None
            }
            (Some(0), Err(e)) => Some(e),
            (code, checked) => Some(format!(
                "weft run exited with {code:?}: {}",
                checked
                    .err()
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| last_lines(&m.stderr))
            )),
        };
        if let Some(h) = &fresh {
            let _ = std::fs::remove_dir_all(h);
        }
        Ok(WeftRun { m, steps, error })
    }

    /// Read the finished workflow back; return its number of leaf steps.
    fn check(
        &self,
        home: &Path,
        mode: &str,
        name: &str,
        known: Option<Known>,
    ) -> Result<usize, String> {
        let out = self
            .weft(home, mode)
            .args(["get", name, "-o", "json"])
            .output()
            .map_err(|e| format!("weft get: {e}"))?;
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "weft get {name} -o json: not JSON ({e}): {}",
                last_lines(&String::from_utf8_lossy(&out.stderr))
            )
        })?;
        let phase = v.pointer("/status/phase").and_then(Value::as_str);
        if phase != Some("Succeeded") {
            // The first cause, not the parents' "child '…' failed".
            let cause = v
                .pointer("/status/nodes")
                .and_then(Value::as_object)
                .and_then(|nodes| {
                    nodes
                        .values()
                        .filter_map(|n| n.get("message").and_then(Value::as_str))
                        .find(|m| !m.starts_with("child '") && !m.starts_with("omitted"))
                })
                .unwrap_or_default();
            return Err(format!("workflow {name} ended {phase:?}: {cause}"));
        }
        let results: Vec<String> = v
            .pointer("/status/nodes")
            .and_then(Value::as_object)
            .map(|nodes| {
                nodes
                    .values()
                    .filter(|n| {
                        matches!(
                            n.get("type").and_then(Value::as_str),
                            Some("Pod" | "Plugin")
                        )
                    })
                    .map(|n| {
                        n.pointer("/outputs/result")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(k) = known {
            k.check(&results)?;
        }
        Ok(results.len())
    }

    fn run_floor(&mut self, known: Known) -> Result<Option<(Measured, Option<String>)>> {
        let Some(script) = known.floor_script() else {
            return Ok(None);
        };
        self.next += 1;
        let path = self.dir.join(format!("floor-{}.sh", self.next));
        std::fs::write(&path, script)?;
        let mut cmd = Command::new("bash");
        cmd.arg(&path);
        let m = measure(cmd, self.timeout).context("running the bash floor")?;
        let _ = std::fs::remove_file(&path);
        let err = if m.code != Some(0) {
            Some(format!(
                "the bash floor exited with {:?}: {}",
                m.code,
                last_lines(&m.stderr)
            ))
        } else {
            known.check_floor(&m.stdout).err()
        };
        Ok(Some((m, err)))
    }
}

fn last_lines(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Timed samples of one thing (weft in one mode, or the floor).
#[derive(Default)]
struct Series {
    secs: Vec<f64>,
    maxrss_kib: i64,
    steps: usize,
    errors: Vec<String>,
}

impl Series {
    fn add(&mut self, m: &Measured, error: Option<String>) {
        match error {
            None => {
                self.secs.push(m.wall.as_secs_f64());
                self.maxrss_kib = self.maxrss_kib.max(m.maxrss_kib);
            }
            Some(e) => self.errors.push(e),
        }
    }

    fn json(&self) -> Value {
        let (min, max) = (
            self.secs.iter().copied().reduce(f64::min),
            self.secs.iter().copied().reduce(f64::max),
        );
        json!({
            "median_s": median(&self.secs),
            "min_s": min,
            "max_s": max,
            "samples_s": self.secs,
            "peak_rss_kib": (self.maxrss_kib > 0).then_some(self.maxrss_kib),
            "wrong_runs": self.errors.len(),
            "errors": self.errors,
        })
    }
}

struct Entry {
    name: String,
    file: PathBuf,
    known: Option<Known>,
    proc: bool,
    floor: Option<Series>,
    modes: BTreeMap<&'static str, Series>,
}

impl Entry {
    fn json(&self, mode_order: &[&'static str]) -> Value {
        let floor_med = self.floor.as_ref().and_then(|f| median(&f.secs));
        let target = self.known.and_then(|k| k.target_ratio(self.proc));
        let modes: Vec<Value> = mode_order
            .iter()
            .filter_map(|m| self.modes.get(m).map(|s| (m, s)))
            .map(|(mode, s)| {
                let med = median(&s.secs);
                let ratio = med.zip(floor_med).map(|(w, f)| w / f);
                let overhead_ms = med
                    .zip(floor_med)
                    .filter(|_| s.steps > 0)
                    .map(|(w, f)| (w - f) * 1000.0 / s.steps as f64);
                let mut v = s.json();
                v["durability"] = json!(mode);
                v["steps"] = json!(s.steps);
                v["ratio"] = json!(ratio);
                v["overhead_per_step_ms"] = json!(overhead_ms);
                v["target_ratio"] = json!(target);
                v["meets_target"] = json!(target.zip(ratio).map(|(t, r)| r <= t));
                v["result_ok"] = json!(s.errors.is_empty() && med.is_some());
                v
            })
            .collect();
        json!({
            "workload": self.name,
            "file": self.file.display().to_string(),
            "kind": if self.proc { "proc" } else { "wasm" },
            "floor": self.floor.as_ref().map(Series::json),
            "floor_note": if self.floor.is_none() {
                Some(if self.proc {
                    "no floor for this workload"
                } else {
                    "floor: the raw wasmtime loop, see WASM FLOOR below"
                })
            } else {
                None
            },
            "weft": modes,
        })
    }
}

pub(super) fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "kernel": kernel,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

pub async fn bench(mut args: BenchArgs) -> Result<u8> {
    if let Some(cmd) = args.server.take() {
        return super::bench_artifacts::run(cmd, machine()).await;
    }
    tokio::task::spawn_blocking(move || bench_blocking(args)).await?
}

fn bench_blocking(args: BenchArgs) -> Result<u8> {
    if args.runs == 0 {
        return Err(Invalid("--runs must be at least 1".into()).into());
    }
    let exe = std::env::current_exe().context("finding the weft executable")?;
    let dir = std::env::temp_dir().join(format!("weft-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // the example step the wasm workloads name (`component: steps/arith.wasm`)
    std::fs::create_dir_all(dir.join("steps"))?;
    std::fs::write(
        dir.join("steps/arith.wasm"),
        weft_drivers::embedded::ARITH_STEP,
    )?;
    let cache = std::env::var_os("WEFT_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("cache"));
    let mut scratch = Scratch {
        dir: dir.clone(),
        cache,
        exe,
        next: 0,
        timeout: Duration::from_secs(args.timeout),
    };
    let res = bench_in(&args, &mut scratch);
    let _ = std::fs::remove_dir_all(&dir);
    let report = res?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    let wrong = report["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(report.get("large"))
        .flat_map(|w| w["weft"].as_array().cloned().unwrap_or_default())
        .any(|m| m["result_ok"] != json!(true));
    Ok(if wrong { 1 } else { 0 })
}

fn workloads(args: &BenchArgs, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if args.workloads.is_empty() {
        let mut out = Vec::new();
        for (name, text) in [
            ("w1-chain40-proc", W1),
            ("w3-diamond-proc", W3),
            ("w4-dag1000-proc", W4),
        ] {
            let p = dir.join(format!("{name}.yaml"));
            std::fs::write(&p, text)?;
            out.push((name.to_string(), p));
        }
        return Ok(out);
    }
    args.workloads
        .iter()
        .map(|p| {
            if !p.is_file() {
                return Err(Invalid(format!("{}: no such workload file", p.display())).into());
            }
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((stem, std::path::absolute(p)?))
        })
        .collect()
}

fn progress(args: &BenchArgs, msg: &str) {
    if !args.json {
        eprintln!("weft bench: {msg}");
    }
}

fn bench_in(args: &BenchArgs, s: &mut Scratch) -> Result<Value> {
    let modes = args.durability.modes();
    let mut entries = Vec::new();
    for (name, file) in workloads(args, &s.dir)? {
        let known = Known::from_stem(&name);
        let proc = !name.ends_with("-wasm");
        entries.push(Entry {
            name,
            file,
            known,
            proc,
            floor: None,
            modes: BTreeMap::new(),
        });
    }
    for e in &mut entries {
        let floor_of = e.known.filter(|_| e.proc && !args.no_floor);
        progress(args, &format!("{}: warm-up", e.name));
        // one home per mode, made by the warm-up (unless --fresh-home)
        let mut homes: BTreeMap<&str, PathBuf> = BTreeMap::new();
        for mode in &modes {
            if !args.fresh_home {
                homes.insert(*mode, s.new_home()?);
            }
        }
        let (file, known) = (e.file.clone(), e.known);
        let run = |s: &mut Scratch, mode: &str| {
            s.run_weft(&file, mode, known, homes.get(mode).map(PathBuf::as_path))
        };
        for _ in 0..args.warmup {
            for mode in &modes {
                let r = run(s, mode)?;
                if let Some(err) = r.error {
                    bail!("{}: the warm-up run failed: {err}", e.name);
                }
            }
            if let Some(k) = floor_of {
                s.run_floor(k)?;
            }
        }
        // Interleave: floor, then each mode, `runs` times.
        for i in 0..args.runs {
            progress(args, &format!("{}: run {}/{}", e.name, i + 1, args.runs));
            if let Some(k) = floor_of
                && let Some((m, err)) = s.run_floor(k)?
            {
                e.floor.get_or_insert_with(Series::default).add(&m, err);
            }
            for mode in &modes {
                let r = run(s, mode)?;
                let series = e.modes.entry(mode).or_default();
                series.steps = series.steps.max(r.steps);
                series.add(&r.m, r.error);
            }
        }
        for h in homes.values() {
            let _ = std::fs::remove_dir_all(h);
        }
    }
    let mut report = json!({
        "machine": machine(),
        "runs": args.runs,
        "warmup": args.warmup,
        "fresh_home": args.fresh_home,
        "workloads": entries.iter().map(|e| e.json(&modes)).collect::<Vec<_>>(),
    });
    if let Some(f) = wasm_floor(args, &entries, &modes)? {
        report["wasm_floor"] = f;
    }
    if args.large {
        let n = args.large_tasks.max(1);
        let known = Known::Large(n);
        let file = s.dir.join(format!("large-dag{n}.yaml"));
        std::fs::write(&file, large_workflow(n))?;
        let mut e = Entry {
            name: format!("large-dag{n}"),
            file,
            known: Some(known),
            proc: true,
            floor: None,
            modes: BTreeMap::new(),
        };
        if !args.no_floor {
            progress(args, &format!("{}: bash floor", e.name));
            if let Some((m, err)) = s.run_floor(known)? {
                e.floor.get_or_insert_with(Series::default).add(&m, err);
            }
        }
        for mode in &modes {
            progress(args, &format!("{}: weft, durability {mode}", e.name));
            let r = s.run_weft(&e.file, mode, e.known, None)?;
            let series = e.modes.entry(mode).or_default();
            series.steps = r.steps;
            series.add(&r.m, r.error);
        }
        let mut v = e.json(&modes);
        v["file"] = json!("(generated)");
        v["fresh_home"] = json!(true); // one run, no warm-up: on a new store
        report["large"] = v;
    }
    Ok(report)
}

fn fmt_s(v: &Value) -> String {
    match v.as_f64() {
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.2} s"),
        None => "-".into(),
    }
}

pub(super) fn fmt_rss(v: &Value) -> String {
    v.as_i64()
        .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "-".into())
}

/// The human-readable report.
fn table(r: &Value) -> String {
    let m = &r["machine"];
    let mut out = format!(
        "weft bench — {} build, {} cores ({}), {}; median of {} runs after {} warm-up\n\n",
        m["build"].as_str().unwrap_or(""),
        m["cores"],
        m["cpu"].as_str().unwrap_or(""),
        m["date"].as_str().unwrap_or(""),
        r["runs"],
        r["warmup"],
    );
    out.push_str(&format!(
        "{:<18} {:<8} {:>6} {:>10} {:>10} {:>7} {:>11} {:>10} {:>10}  {}\n",
        "WORKLOAD",
        "MODE",
        "STEPS",
        "WEFT",
        "BASH",
        "RATIO",
        "OVERHEAD",
        "PEAK RSS",
        "TARGET",
        "RESULT"
    ));
    let rows = r["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(r.get("large"));
    for w in rows {
        for x in w["weft"].as_array().into_iter().flatten() {
            let target = match (x["target_ratio"].as_f64(), x["meets_target"].as_bool()) {
                (Some(t), Some(true)) => format!("≤{t}× ok"),
                (Some(t), _) => format!("≤{t}× MISS"),
                _ => "-".into(),
            };
            let result = if x["result_ok"] == json!(true) {
                "ok".to_string()
            } else {
                format!(
                    "WRONG ({} of {} runs): {}",
                    x["wrong_runs"],
                    x["wrong_runs"].as_u64().unwrap_or(0)
                        + x["samples_s"].as_array().map_or(0, |a| a.len() as u64),
                    x["errors"][0].as_str().unwrap_or("")
                )
            };
            out.push_str(&format!(
                "{:<18} {:<8} {:>6} {:>10} {:>10} {:>7} {:>11} {:>10} {:>10}  {}\n",
                w["workload"].as_str().unwrap_or(""),
                x["durability"].as_str().unwrap_or(""),
                x["steps"].to_string(),
                fmt_s(&x["median_s"]),
                fmt_s(&w["floor"]["median_s"]),
                x["ratio"]
                    .as_f64()
                    .map(|r| format!("{r:.2}×"))
                    .unwrap_or_else(|| "-".into()),
                x["overhead_per_step_ms"]
                    .as_f64()
                    .map(|o| format!("{o:.2} ms"))
                    .unwrap_or_else(|| "-".into()),
                fmt_rss(&x["peak_rss_kib"]),
                target,
                result,
            ));
        }
        if let Some(note) = w["floor_note"].as_str() {
            out.push_str(&format!(
                "  {}: {note}\n",
                w["workload"].as_str().unwrap_or("")
            ));
        }
    }
    out.push_str(&wasm_floor_table(&r["wasm_floor"]));
    let store = if r["fresh_home"] == json!(true) {
        "a new, empty store per run"
    } else {
        "the store its warm-up created"
    };
    out.push_str(&format!(
        "\nWEFT, BASH: median wall time of the whole command (a new `weft run` process on {store}); \
         RATIO = weft ÷ bash; OVERHEAD = (weft − bash) ÷ steps; PEAK RSS of the weft process.\n",
    ));
    if !r["large"].is_null() {
        out.push_str("The large DAG: one run per mode, each on a new, empty store (no warm-up).\n");
    }
    out
}

// ------------------------------------------------------------ wasm floor
//
// Issue 3, item 7: the per-step runtime overhead of the wasm workloads beside a
// raw wasmtime loop measured in the same run (`weft_drivers::floor`: the host's
// engine config, a fresh store + instance + `step.run` of the arith step per
// call, no engine, no store, no process).

/// Calls of the raw loop (after its own warm-up): about 0.1 s.
const FLOOR_CALLS: usize = 3000;

/// The floor and, per wasm workload and mode, the per-step time (median wall
/// time ÷ steps) against it; `None` when no wasm workload ran.
fn wasm_floor(
    args: &BenchArgs,
    entries: &[Entry],
    modes: &[&'static str],
) -> Result<Option<Value>> {
    if entries.iter().all(|e| e.proc) {
        return Ok(None);
    }
    progress(args, "wasm floor: raw wasmtime instantiate+call loop");
    let f = tokio::runtime::Handle::current()
        .block_on(weft_drivers::floor::measure(FLOOR_CALLS, 256 << 20))?;
    let floor_us = f.per_call_us();
    let rows: Vec<Value> = entries
        .iter()
        .filter(|e| !e.proc)
        .flat_map(|e| {
            modes.iter().filter_map(move |m| {
                let s = e.modes.get(m)?;
                let per_step_us = median(&s.secs)
                    .filter(|_| s.steps > 0)
                    .map(|w| w * 1e6 / s.steps as f64);
                Some(json!({
                    "workload": e.name,
                    "durability": m,
                    "steps": s.steps,
                    "per_step_us": per_step_us,
                    "ratio": per_step_us.map(|p| p / floor_us),
                }))
            })
        })
        .collect();
    Ok(Some(json!({
        "what": "fresh store + instance + step.run (arith add) + drop, host engine config",
        "calls": f.calls,
        "per_call_us": floor_us,
        "workloads": rows,
    })))
}

fn wasm_floor_table(f: &Value) -> String {
    let Some(floor_us) = f["per_call_us"].as_f64() else {
        return String::new();
    };
    let mut out = format!(
        "\nWASM FLOOR: raw wasmtime instantiate+call, {} calls: {floor_us:.1} µs per call\n{:<18} {:<8} {:>6} {:>14} {:>10}\n",
        f["calls"], "WORKLOAD", "MODE", "STEPS", "PER STEP", "÷ FLOOR"
    );
    for w in f["workloads"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<18} {:<8} {:>6} {:>14} {:>10}\n",
            w["workload"].as_str().unwrap_or(""),
            w["durability"].as_str().unwrap_or(""),
            w["steps"].to_string(),
            w["per_step_us"]
                .as_f64()
                .map(|p| format!("{p:.0} µs"))
                .unwrap_or_else(|| "-".into()),
            w["ratio"]
                .as_f64()
                .map(|r| format!("{r:.0}×"))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    out.push_str(
        "PER STEP = median wall time of the whole `weft run` ÷ steps (start-up included).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_know_right_from_wrong() {
        let w1: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
        assert!(Known::W1.check(&w1).is_ok());
        assert!(Known::W1.check(&w1[..39]).is_err());
        let w3: Vec<String> = ["hi", "hihi", "hihi", "hihihihihi"]
            .map(String::from)
            .into();
        assert!(Known::W3.check(&w3).is_ok());
        assert!(Known::W3.check(&w3[..3]).is_err());
        let w4: Vec<String> = (0..1000).map(|i| (i / 100 + 1).to_string()).collect();
        assert!(Known::W4.check(&w4).is_ok());
        let mut bad = w4.clone();
        bad[999] = "9".into();
        assert!(Known::W4.check(&bad).is_err());
        assert_eq!(Known::from_stem("w4-dag1000-proc"), Some(Known::W4));
        assert_eq!(Known::from_stem("hello"), None);
    }

    #[test]
    fn large_dag_is_chains() {
        let y = large_workflow(250);
        assert_eq!(y.matches("template: t").count(), 250);
        assert!(y.contains("{name: c2-49, template: t, depends: c2-48}"));
        assert!(y.contains("{name: c0-0, template: t}\n"));
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
