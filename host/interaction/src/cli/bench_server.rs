//! `weft bench submit` and `weft bench restart`: the server benchmarks of issue 4
//! (figures and definitions in `bench/README.md`).
//!
//! Each store (SQLite, and PostgreSQL when reachable) gets a `weft server`
//! child of this same executable on loopback, with a fresh `WEFT_HOME` and, for
//! PostgreSQL, a fresh database `weft_bench_<pid>_<n>` dropped afterwards. The
//! load generator runs in this process: `--concurrency` tasks sharing one HTTP
//! client, each sending `POST /api/v1/workflows/bench` until `--n` are sent.
//!
//! - **submit**: a hello-world workflow whose one step is a Wasm component (the
//!   testing `arith` step, `40 + 2`). Reported: submissions/s (n ÷ the time from
//!   the first request to the last answer), p50/p99 of one submission's latency
//!   (request sent → `200` with the stored workflow), and the time until every
//!   submitted workflow is `Succeeded` (from the first request, as seen by
//!   `GET /api/v1/workflows`). One untimed workflow first fills the compiled-plugin
//!   cache. Targets: ≥ 1,000/s on SQLite, ≥ 300/s on PostgreSQL.
//! - **restart**: `--n` workflows whose one node is a `suspend` with a
//!   duration of `--hold` seconds. When all are `Running`, the server is killed
//!   with SIGKILL before any suspend ends; the bench waits until every suspend is
//!   overdue (and, on PostgreSQL, the dead replica's leases have expired), then
//!   starts the server again on the same store. **Restart time** = from spawning
//!   the new process until `GET /api/v1/workflows` shows all `--n` workflows
//!   `Succeeded`: a workflow can only get there by being adopted (loaded, its
//!   machine restored, its overdue timer re-armed and fired, the turn committed),
//!   so this is the time until every workflow is adopted and has moved on.
//!   Target ≤ 2 s.
//!
//! Speed is reported beside the target (a ratio), never asserted; a wrong
//! result (a workflow not `Succeeded`, a failed request) makes the exit code 1.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::Invalid;
use super::remote::Remote;

/// Namespace the benchmark workflows live in.
const NS: &str = "bench";
/// Label on the measured workflows (the warm-up has none).
const LABEL: &str = "weft-bench";
/// Targets of issue 4.
const SUBMIT_TARGET_SQLITE: f64 = 1000.0;
const SUBMIT_TARGET_POSTGRES: f64 = 300.0;
const RESTART_TARGET_S: f64 = 2.0;

#[derive(Subcommand, Debug)]
pub enum ServerBench {
    /// Submissions/s of a hello-world Wasm workflow to `weft server`, p50/p99 latency.
    Submit(SubmitArgs),
    /// Kill `weft server` with workflows in flight; time until all are adopted again.
    Restart(RestartArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Stores to measure; PostgreSQL is skipped with a notice when unreachable.
    #[arg(long, value_enum, default_value = "both")]
    pub store: StoreArg,
    /// PostgreSQL server (any database on it): each run creates and drops its own database.
    #[arg(
        long,
        env = "WEFT_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub postgres: String,
    /// Output format: a table, or JSON.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Format,
    /// Give up waiting for workflows after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Workflows to submit.
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Workflows in flight at the kill.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Concurrent connections while submitting them.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds each workflow's suspend lasts: must outlast submitting all of them.
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
    /// PostgreSQL: the replica lease (`WEFT_LEASE_SECONDS`) of both server runs.
    #[arg(long, default_value_t = 2)]
    pub lease_seconds: u64,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub async fn run(cmd: ServerBench, machine: Value) -> Result<u8> {
    let (name, common) = match &cmd {
        ServerBench::Submit(a) => ("submit", a.common.clone()),
        ServerBench::Restart(a) => ("restart", a.common.clone()),
    };
    let (n, conc) = match &cmd {
        ServerBench::Submit(a) => (a.n, a.concurrency),
        ServerBench::Restart(a) => (a.n, a.concurrency),
    };
    if n == 0 || conc == 0 {
        return Err(Invalid("--n and --concurrency must be at least 1".into()).into());
    }
    let scratch = Scratch::new()?;
    let mut stores = Vec::new();
    for kind in match common.store {
        StoreArg::Sqlite => vec!["sqlite"],
        StoreArg::Postgres => vec!["postgres"],
        StoreArg::Both => vec!["sqlite", "postgres"],
    } {
        progress(&common, &format!("{name} on {kind}"));
        let entry = match Backend::open(kind, &common, &scratch).await {
            Ok(Some(b)) => {
                let r = match &cmd {
                    ServerBench::Submit(a) => bench_submit(a, &scratch, &b).await,
                    ServerBench::Restart(a) => bench_restart(a, &scratch, &b).await,
                };
                b.close(&common).await;
                let mut v =
                    r.unwrap_or_else(|e| json!({"result_ok": false, "error": format!("{e:#}")}));
                v["store"] = json!(kind);
                v
            }
            Ok(None) => json!({"store": kind, "skipped": "PostgreSQL not reachable"}),
            Err(e) => json!({"store": kind, "result_ok": false, "error": format!("{e:#}")}),
        };
        stores.push(entry);
    }
    let report = json!({
        "benchmark": name,
        "machine": machine,
        "n": n,
        "concurrency": conc,
        "stores": stores,
    });
    match common.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", table(&report)),
    }
    let wrong = report["stores"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s.get("skipped").is_none() && s["result_ok"] != json!(true));
    Ok(if wrong { 1 } else { 0 })
}

fn progress(c: &Common, msg: &str) {
    if c.output == Format::Table {
        eprintln!("weft bench: {msg}");
    }
}

/// A temp directory for the server homes, the Wasm step and the plugin cache.
struct Scratch {
    dir: PathBuf,
    cache: PathBuf,
    exe: PathBuf,
    step: PathBuf,
    next: AtomicUsize,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        let exe = std::env::current_exe().context("finding the weft executable")?;
        let dir = std::env::temp_dir().join(format!("weft-bench-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let step = dir.join("arith.wasm");
        std::fs::write(&step, weft_drivers::embedded::ARITH_STEP)
            .with_context(|| format!("writing {}", step.display()))?;
        let cache = std::env::var_os("WEFT_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("cache"));
        Ok(Scratch {
            dir,
            cache,
            exe,
            step,
            next: AtomicUsize::new(0),
        })
    }

    fn home(&self) -> Result<PathBuf> {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        let home = self.dir.join(format!("home-{i}"));
        std::fs::create_dir_all(&home)?;
        Ok(home)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The store a benchmark runs on.
struct Backend {
    kind: &'static str,
    home: PathBuf,
    /// PostgreSQL: (database name, its URL).
    postgres: Option<(String, String)>,
}

impl Backend {
    /// A fresh store; `None` when PostgreSQL is not reachable.
    async fn open(kind: &'static str, c: &Common, s: &Scratch) -> Result<Option<Backend>> {
        let home = s.home()?;
        if kind == "sqlite" {
            return Ok(Some(Backend {
                kind,
                home,
                postgres: None,
            }));
        }
        let db = format!(
            "weft_bench_{}_{}",
            std::process::id(),
            s.next.fetch_add(1, Ordering::SeqCst)
        );
        match weft_store::scratch::create_database(&c.postgres, &db).await {
            Ok(url) => Ok(Some(Backend {
                kind,
                home,
                postgres: Some((db, url)),
            })),
            Err(e @ weft_store::Error::Connect { .. }) => {
                eprintln!("weft bench: NOTICE: skipping PostgreSQL: {e}");
                Ok(None)
            }
            Err(e) => Err(anyhow!(e)),
        }
    }

    async fn close(&self, c: &Common) {
        if let Some((db, _)) = &self.postgres
            && let Err(e) = weft_store::scratch::drop_database(&c.postgres, db).await
        {
            eprintln!("weft bench: could not drop the database {db}: {e}");
        }
    }

    fn target_submit(&self) -> f64 {
        if self.postgres.is_some() {
            SUBMIT_TARGET_POSTGRES
        } else {
            SUBMIT_TARGET_SQLITE
        }
    }
}

/// A `weft server` child on 127.0.0.1:0.
struct ServerChild {
    child: tokio::process::Child,
    remote: Arc<Remote>,
    log: PathBuf,
    /// From spawn to the "listening" line.
    ready: Duration,
}

impl ServerChild {
    async fn start(s: &Scratch, b: &Backend, env: &[(&str, String)]) -> Result<ServerChild> {
        let i = s.next.fetch_add(1, Ordering::SeqCst);
        let log = b.home.join(format!("server-{i}.log"));
        let err = std::fs::File::create(&log)?;
        let mut cmd = tokio::process::Command::new(&s.exe);
        cmd.args(["server", "--addr", "127.0.0.1:0"])
            .env("WEFT_HOME", &b.home)
            .env("WEFT_CACHE_DIR", &s.cache)
            .env("WEFT_LOG", "warn")
            .env_remove("WEFT_CONFIG")
            .env_remove("WEFT_SERVER")
            .env_remove("WEFT_TOKEN")
            .env_remove("WEFT_STORE_URL")
            .env_remove("WEFT_SERVER_ADDR")
            .current_dir(&b.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        if let Some((_, url)) = &b.postgres {
            cmd.env("WEFT_STORE_URL", url);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let t0 = Instant::now();
        let mut child = cmd.spawn().context("spawning weft server")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
        let ready = t0.elapsed();
        let url = match first {
            Ok(Ok(Some(l))) => l
                .trim()
                .strip_prefix("weft server listening on ")
                .map(str::to_string),
            _ => None,
        };
        let Some(url) = url else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            bail!(
                "weft server did not start: {}",
                last_lines(&std::fs::read_to_string(&log).unwrap_or_default())
            );
        };
        // Keep reading stdout so the server never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerChild {
            child,
            remote: Arc::new(Remote::new(&url, None)?),
            log,
            ready,
        })
    }

    /// SIGKILL, then reap.
    async fn kill(mut self) -> Result<()> {
        self.child.start_kill().context("killing weft server")?;
        self.child.wait().await?;
        Ok(())
    }

    fn stderr_tail(&self) -> String {
        last_lines(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

fn last_lines(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// The hello-world Wasm workflow: one `arith` step, 40 + 2.
fn wasm_workflow(name: &str, step: &Path, labelled: bool) -> Value {
    let labels = if labelled {
        json!({LABEL: "load"})
    } else {
        json!({})
    };
    json!({"workflow": {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "entrypoint": "main",
            "templates": [{
                "name": "main",
                "inputs": {"parameters": [{"name": "a", "value": "40"}, {"name": "b", "value": "2"}]},
                "plugin": {"wasm": {"component": step.to_string_lossy(), "args": {"op": "add"}}},
                "outputs": {"parameters": [{"name": "sum"}]},
            }],
        },
    }})
}

/// A workflow that stays Running for `hold` seconds: one suspend node.
fn suspend_workflow(name: &str, hold: u64) -> Value {
    json!({"workflow": {
        "metadata": {"name": name, "labels": {LABEL: "load"}},
        "spec": {
            "entrypoint": "main",
            "templates": [{"name": "main", "suspend": {"duration": format!("{hold}s")}}],
        },
    }})
}

/// What a load run measured.
struct Load {
    wall: Duration,
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

/// `n` submissions from `conc` tasks sharing one client.
async fn load(
    remote: &Arc<Remote>,
    n: usize,
    conc: usize,
    body: Arc<dyn Fn(usize) -> Value + Send + Sync>,
) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let path = format!("/api/v1/workflows/{NS}");
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..conc.min(n))
        .map(|_| {
            let (remote, next, body, path) =
                (remote.clone(), next.clone(), body.clone(), path.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return (lat, errors);
                    }
                    let b = body(i);
                    let t = Instant::now();
                    match remote.call(Method::POST, &path, Some(&b)).await {
                        Ok(_) => lat.push(t.elapsed()),
                        Err(e) => errors.push(format!("submission {i}: {e:#}")),
                    }
                }
            })
        })
        .collect();
    let mut out = Load {
        wall: Duration::ZERO,
        latencies: Vec::with_capacity(n),
        errors: Vec::new(),
    };
    for t in tasks {
        match t.await {
            Ok((l, e)) => {
                out.latencies.extend(l);
                out.errors.extend(e);
            }
            Err(e) => out.errors.push(format!("load task: {e}")),
        }
    }
    out.wall = t0.elapsed();
    out.latencies.sort();
    out
}

fn percentile_ms(sorted: &[Duration], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i].as_secs_f64() * 1e3)
}

/// Phase counts of the labelled workflows; `None` while the server cannot be reached.
async fn phases(remote: &Remote) -> Option<std::collections::BTreeMap<String, usize>> {
    let path = format!(
        "/api/v1/workflows/{NS}?listOptions.labelSelector={LABEL}%3Dload&fields=items.metadata.name,items.status.phase"
    );
    let v = remote.call(Method::GET, &path, None).await.ok()?;
    let mut by = std::collections::BTreeMap::new();
    for w in v["items"].as_array().into_iter().flatten() {
        let p = w["status"]["phase"]
            .as_str()
            .unwrap_or("Pending")
            .to_string();
        *by.entry(p).or_insert(0) += 1;
    }
    Some(by)
}

/// Poll until `n` labelled workflows are all finished or `pred` holds; the counts.
async fn wait_phases(
    remote: &Remote,
    n: usize,
    until: impl Fn(&std::collections::BTreeMap<String, usize>) -> bool,
    timeout: Duration,
    every: Duration,
) -> Result<std::collections::BTreeMap<String, usize>> {
    let t0 = Instant::now();
    loop {
        if let Some(by) = phases(remote).await
            && until(&by)
        {
            return Ok(by);
        }
        if t0.elapsed() > timeout {
            let by = phases(remote).await.unwrap_or_default();
            bail!("after {timeout:?}, {n} workflows are not there yet: {by:?}");
        }
        tokio::time::sleep(every).await;
    }
}

fn all_in(by: &std::collections::BTreeMap<String, usize>, n: usize, phase: &str) -> bool {
    by.get(phase).copied().unwrap_or(0) == n
}

fn finished(by: &std::collections::BTreeMap<String, usize>, n: usize) -> bool {
    let total: usize = by.values().sum();
    let open = by.get("Pending").copied().unwrap_or(0) + by.get("Running").copied().unwrap_or(0);
    total >= n && open == 0
}

async fn bench_submit(a: &SubmitArgs, s: &Scratch, b: &Backend) -> Result<Value> {
    let timeout = Duration::from_secs(a.common.timeout);
    let server = ServerChild::start(s, b, &[]).await?;
    let remote = server.remote.clone();
    // Untimed: compiles the step into the plugin cache, opens connections.
    remote
        .call(
            Method::POST,
            &format!("/api/v1/workflows/{NS}"),
            Some(&wasm_workflow("warm-up", &s.step, false)),
        )
        .await
        .context("submitting the warm-up workflow")?;
    let t0 = Instant::now();
    loop {
        let v = remote
            .call(
                Method::GET,
                &format!("/api/v1/workflows/{NS}/warm-up"),
                None,
            )
            .await?;
        match v["status"]["phase"].as_str() {
            Some("Succeeded") => break,
            Some("Failed" | "Error") => bail!(
                "the warm-up workflow did not succeed: {}",
                v["status"]["message"]
            ),
            _ if t0.elapsed() > timeout => bail!("the warm-up workflow did not finish"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    progress(
        &a.common,
        &format!(
            "{}: {} submissions, concurrency {}",
            b.kind, a.n, a.concurrency
        ),
    );
    let step = s.step.clone();
    let body: Arc<dyn Fn(usize) -> Value + Send + Sync> =
        Arc::new(move |i| wasm_workflow(&format!("hello-{i}"), &step, true));
    let t_start = Instant::now();
    let l = load(&remote, a.n, a.concurrency, body).await;
    let submitted = a.n - l.errors.len();
    let by = wait_phases(
        &remote,
        submitted,
        |by| finished(by, submitted),
        timeout,
        Duration::from_millis(20),
    )
    .await;
    let all_done = t_start.elapsed();
    let mut problems = l.errors.clone();
    let by = match by {
        Ok(by) => by,
        Err(e) => {
            problems.push(format!("{e:#}"));
            phases(&remote).await.unwrap_or_default()
        }
    };
    let succeeded = by.get("Succeeded").copied().unwrap_or(0);
    if succeeded != a.n {
        problems.push(format!(
            "{succeeded} of {} workflows Succeeded: {by:?}",
            a.n
        ));
    }
    // The step's result, on a sample: the first and the last.
    for i in [0, a.n - 1] {
        let v = remote
            .call(
                Method::GET,
                &format!("/api/v1/workflows/{NS}/hello-{i}"),
                None,
            )
            .await;
        let sum = v.ok().and_then(|v| {
            v["status"]["nodes"]
                .as_object()?
                .values()
                .find_map(|n| n["outputs"]["result"].as_str().map(str::to_string))
        });
        if sum.as_deref() != Some("42") {
            problems.push(format!(
                "hello-{i}: the Wasm step's result is {sum:?}, not \"42\""
            ));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("server log: {}", server.stderr_tail()));
    }
    server.kill().await?;
    let rate = submitted as f64 / l.wall.as_secs_f64();
    let target = b.target_submit();
    Ok(json!({
        "submissions_per_s": round(rate, 1),
        "p50_ms": percentile_ms(&l.latencies, 0.50).map(|v| round(v, 2)),
        "p99_ms": percentile_ms(&l.latencies, 0.99).map(|v| round(v, 2)),
        "submit_s": round(l.wall.as_secs_f64(), 3),
        "all_succeeded_s": round(all_done.as_secs_f64(), 3),
        "succeeded": succeeded,
        "target_per_s": target,
        "ratio": round(rate / target, 2),
        "meets_target": rate >= target,
        "result_ok": problems.is_empty(),
        "errors": problems.into_iter().take(10).collect::<Vec<_>>(),
    }))
}

async fn bench_restart(a: &RestartArgs, s: &Scratch, b: &Backend) -> Result<Value> {
    let timeout = Duration::from_secs(a.common.timeout);
    let hold = Duration::from_secs(a.hold);
    let lease = Duration::from_secs(a.lease_seconds.max(1));
    let env = [("WEFT_LEASE_SECONDS", lease.as_secs().to_string())];
    let server = ServerChild::start(s, b, &env).await?;
    let remote = server.remote.clone();
    progress(
        &a.common,
        &format!("{}: {} workflows suspended for {}s", b.kind, a.n, a.hold),
    );
    let hold_s = a.hold;
    let body: Arc<dyn Fn(usize) -> Value + Send + Sync> =
        Arc::new(move |i| suspend_workflow(&format!("held-{i}"), hold_s));
    let t_first = Instant::now();
    let l = load(&remote, a.n, a.concurrency, body).await;
    let submitted_by = Instant::now();
    if let Some(e) = l.errors.first() {
        bail!("{} submissions failed; the first: {e}", l.errors.len());
    }
    // Every suspend started between t_first and submitted_by.
    wait_phases(
        &remote,
        a.n,
        |by| all_in(by, a.n, "Running"),
        hold,
        Duration::from_millis(20),
    )
    .await
    .context("waiting for every workflow to be Running")?;
    if t_first.elapsed() >= hold {
        bail!(
            "submitting {} workflows took longer than their suspend (--hold {}s): raise --hold",
            a.n,
            a.hold
        );
    }
    server.kill().await?;
    let killed = Instant::now();
    // Restart once every suspend is overdue and (PostgreSQL) every lease of the
    // dead replica has run out, so nothing but adoption stands in the way.
    let mut resume_at = submitted_by + hold;
    if b.postgres.is_some() {
        resume_at = resume_at.max(killed + lease);
    }
    tokio::time::sleep_until((resume_at + Duration::from_millis(100)).into()).await;
    progress(&a.common, &format!("{}: restarting", b.kind));
    let t0 = Instant::now();
    let server = ServerChild::start(s, b, &env).await?;
    let remote = server.remote.clone();
    let waited = wait_phases(
        &remote,
        a.n,
        |by| finished(by, a.n),
        timeout,
        Duration::from_millis(5),
    )
    .await;
    let adopted = t0.elapsed();
    let mut problems = Vec::new();
    let by = match waited {
        Ok(by) => by,
        Err(e) => {
            problems.push(format!("{e:#}"));
            phases(&remote).await.unwrap_or_default()
        }
    };
    let succeeded = by.get("Succeeded").copied().unwrap_or(0);
    if succeeded != a.n {
        problems.push(format!(
            "{succeeded} of {} workflows Succeeded after the restart: {by:?}",
            a.n
        ));
        problems.push(format!("server log: {}", server.stderr_tail()));
    }
    let ready = server.ready;
    server.kill().await?;
    let secs = adopted.as_secs_f64();
    Ok(json!({
        "restart_s": round(secs, 3),
        "ready_s": round(ready.as_secs_f64(), 3),
        "down_s": round(t0.duration_since(killed).as_secs_f64(), 3),
        "submissions_per_s": round(a.n as f64 / l.wall.as_secs_f64(), 1),
        "succeeded": succeeded,
        "lease_seconds": b.postgres.as_ref().map(|_| lease.as_secs()),
        "target_s": RESTART_TARGET_S,
        "ratio": round(secs / RESTART_TARGET_S, 2),
        "meets_target": secs <= RESTART_TARGET_S,
        "result_ok": problems.is_empty(),
        "errors": problems,
    }))
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn num(v: &Value, unit: &str) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}{unit}"),
        Some(x) => format!("{x:.2}{unit}"),
        None => "-".into(),
    }
}

fn verdict(s: &Value) -> String {
    if let Some(why) = s["skipped"].as_str() {
        return format!("skipped: {why}");
    }
    if s["result_ok"] == json!(true) {
        return if s["meets_target"] == json!(true) {
            "ok, meets target".into()
        } else {
            "ok, misses target".into()
        };
    }
    let why = s["error"]
        .as_str()
        .map(str::to_string)
        .or_else(|| s["errors"][0].as_str().map(str::to_string))
        .unwrap_or_default();
    format!("WRONG: {why}")
}

fn table(r: &Value) -> String {
    let mut out = Vec::new();
    let stores = r["stores"].as_array().cloned().unwrap_or_default();
    if r["benchmark"] == "submit" {
        let _ = writeln!(
            out,
            "{:<9} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}  RESULT",
            "STORE", "N", "CONC", "SUBMIT/S", "P50", "P99", "ALL DONE", "TARGET", "RATIO"
        );
        for s in &stores {
            let _ = writeln!(
                out,
                "{:<9} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}  {}",
                s["store"].as_str().unwrap_or("?"),
                r["n"].as_u64().unwrap_or(0),
                r["concurrency"].as_u64().unwrap_or(0),
                num(&s["submissions_per_s"], ""),
                num(&s["p50_ms"], " ms"),
                num(&s["p99_ms"], " ms"),
                num(&s["all_succeeded_s"], " s"),
                s["target_per_s"]
                    .as_f64()
                    .map_or("-".into(), |t| format!("≥{t:.0}/s")),
                num(&s["ratio"], ""),
                verdict(s),
            );
        }
    } else {
        let _ = writeln!(
            out,
            "{:<9} {:>6} {:>9} {:>9} {:>9} {:>8} {:>6}  RESULT",
            "STORE", "N", "RESTART", "READY", "DOWN", "TARGET", "RATIO"
        );
        for s in &stores {
            let _ = writeln!(
                out,
                "{:<9} {:>6} {:>9} {:>9} {:>9} {:>8} {:>6}  {}",
                s["store"].as_str().unwrap_or("?"),
                r["n"].as_u64().unwrap_or(0),
                num(&s["restart_s"], " s"),
                num(&s["ready_s"], " s"),
                num(&s["down_s"], " s"),
                s["target_s"]
                    .as_f64()
                    .map_or("-".into(), |t| format!("≤{t:.0} s")),
                num(&s["ratio"], ""),
                verdict(s),
            );
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let xs: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&xs, 0.50), Some(50.0));
        assert_eq!(percentile_ms(&xs, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&xs[..1], 0.99), Some(1.0));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }

    #[test]
    fn finished_needs_every_workflow_out_of_pending_and_running() {
        let by = |v: &[(&str, usize)]| {
            v.iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert!(finished(&by(&[("Succeeded", 3)]), 3));
        assert!(!finished(&by(&[("Succeeded", 2), ("Running", 1)]), 3));
        assert!(!finished(&by(&[("Succeeded", 2)]), 3));
        assert!(finished(&by(&[("Succeeded", 2), ("Failed", 1)]), 3));
    }

    #[test]
    fn the_table_names_what_it_measured() {
        let r = json!({"benchmark": "submit", "n": 10, "concurrency": 2, "stores": [
            {"store": "sqlite", "submissions_per_s": 1234.0, "p50_ms": 1.5, "p99_ms": 9.0,
             "all_succeeded_s": 2.0, "target_per_s": 1000.0, "ratio": 1.23,
             "meets_target": true, "result_ok": true},
            {"store": "postgres", "skipped": "PostgreSQL not reachable"},
        ]});
        let t = table(&r);
        assert!(
            t.contains("SUBMIT/S") && t.contains("1234") && t.contains("≥1000/s"),
            "{t}"
        );
        assert!(
            t.contains("ok, meets target") && t.contains("skipped"),
            "{t}"
        );
    }
}
