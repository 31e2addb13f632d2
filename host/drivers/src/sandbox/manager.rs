//! The table of step processes behind the `process` capability.

use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use weft_engine::runtime::{EventNotifier, LogLine, LogSink, LogStream};

use super::layers;
use super::spawn::{ROOT_DIRS, ROOT_SYMLINKS, SandboxChild, SpawnRequest, Spawner, skeleton_mode};

/// `outputs.result` keeps the last 256 KiB of stdout.
pub const STDOUT_TAIL_BYTES: usize = 256 * 1024;
/// How long to wait for stdout/stderr to close after the main process exits
/// (background children may hold them open); then the process group is killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Which step attempt a process belongs to.
#[derive(Debug, Clone)]
pub struct StepKey {
    pub workflow_uid: String,
    pub node_id: String,
    pub attempt: u32,
}

/// A file written into the root before spawn.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub files: Vec<FileSpec>,
}

/// Where a process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    Running,
    Exited(i32),
    Signaled(i32),
    FailedToStart(String),
}

struct Entry {
    step_dir: PathBuf,
    root: PathBuf,
    pid: Option<i32>,
    state: Mutex<ProcessState>,
    tail: Mutex<VecDeque<u8>>,
    /// Released while running: forget it and delete its directory on exit.
    release_on_exit: std::sync::atomic::AtomicBool,
}

/// Errors of the process table (mapped to `capability-error` by the host glue).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("unknown process id '{0}'")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

/// Owns every step process of one `Drivers`.
pub struct ProcessManager {
    work_dir: PathBuf,
    keep_dirs: bool,
    spawner: Spawner,
    logs: Arc<dyn LogSink>,
    notifier: Arc<dyn EventNotifier>,
    table: Mutex<HashMap<String, Arc<Entry>>>,
    /// Step directories kept past `release` until the drivers layer has saved
    /// the step's output artifacts ([`ProcessManager::hold`]); the value says
    /// whether the main process's log is also written to `<step dir>/main.log`.
    held: Mutex<HashMap<PathBuf, bool>>,
    /// Clean step directories for reuse (unused with `keep_dirs`).
    pool: Arc<super::pool::RootPool>,
}

/// A step's log lines for `archiveLogs`, shared by its stdout and stderr pumps.
type LogFile = Arc<Mutex<std::io::BufWriter<std::fs::File>>>;

/// Keep ids and directory names to a safe alphabet.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Join an absolute in-step path onto `root`, rejecting `..` (shared with the
/// artifact staging, which reads and writes the same private roots).
pub(crate) fn join_inside(root: &Path, path: &str) -> Result<PathBuf, String> {
    let mut out = root.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("path '{path}' escapes the step's filesystem"));
            }
        }
    }
    Ok(out)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ProcessManager {
    pub fn new(
        work_dir: PathBuf,
        keep_dirs: bool,
        logs: Arc<dyn LogSink>,
        notifier: Arc<dyn EventNotifier>,
    ) -> ProcessManager {
        let pool = Arc::new(super::pool::RootPool::new(&work_dir));
        let spawner = Spawner::start(&work_dir, !keep_dirs);
        if !keep_dirs {
            // the roots the first steps will take (a W3 run uses four)
            spawner.warm(pool.next(4));
        }
        ProcessManager {
            pool,
            work_dir,
            keep_dirs,
            spawner,
            logs,
            notifier,
            table: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Whether step directories are kept after their step (`keep_step_dirs`).
    pub fn keeps_dirs(&self) -> bool {
        self.keep_dirs
    }

    /// `<work_dir>/<wf-uid>/<node-id>-<attempt>`: the step's directory; its
    /// private root is `root/` inside it.
    pub fn step_dir(&self, step: &StepKey) -> PathBuf {
        self.work_dir
            .join(sanitize(&step.workflow_uid))
            .join(format!("{}-{}", sanitize(&step.node_id), step.attempt))
    }

    /// Whether any process of `step` is in the table (running or not yet released).
    pub fn has_step(&self, step: &StepKey) -> bool {
        let prefix = Self::process_id(step, "");
        self.table
            .lock()
            .unwrap()
            .keys()
            .any(|k| k.starts_with(&prefix))
    }

    /// Keep the step's directory when its processes are released, until
    /// [`unhold`](Self::unhold); with `logs`, the `main` process's output is
    /// also written to `<step dir>/main.log`.
    pub fn hold(&self, step: &StepKey, logs: bool) {
        self.held.lock().unwrap().insert(self.step_dir(step), logs);
    }

    /// End a [`hold`](Self::hold): the directory is deleted now if no process
    /// of the step is left (else when the last one is released).
    pub fn unhold(&self, step: &StepKey) {
        let dir = self.step_dir(step);
        if self.held.lock().unwrap().remove(&dir).is_none() || self.has_step(step) {
            return;
        }
        if !self.keep_dirs {
            self.give_back(dir);
        }
    }

    /// Create the step's private root (from a recycled directory when one is
    /// free) with the skeleton, `files` and the working directory. Blocking.
    pub fn prepare_root(
        &self,
        step_dir: &Path,
        files: &[FileSpec],
        working_dir: &str,
    ) -> std::io::Result<()> {
        let recycled = self.take_recycled(step_dir);
        finish_root(step_dir, recycled, files, working_dir)
    }

    /// Put a recycled root at `step_dir` when one is free (and step
    /// directories are not kept): true when `root/` is then a complete
    /// skeleton. A `rename`, cheap enough for an async caller.
    fn take_recycled(&self, step_dir: &Path) -> bool {
        !self.keep_dirs && self.pool.take(step_dir)
    }

    /// The deterministic id of a step attempt's process.
    pub fn process_id(step: &StepKey, name: &str) -> String {
        format!(
            "{}/{}-{}/{}",
            sanitize(&step.workflow_uid),
            sanitize(&step.node_id),
            step.attempt,
            sanitize(name)
        )
    }

    fn entry(&self, id: &str) -> Result<Arc<Entry>, ProcessError> {
        self.table
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| ProcessError::Unknown(id.to_string()))
    }

    /// Spawn (or adopt) the process of `step` named `spec.name`.
    pub async fn spawn(
        self: &Arc<Self>,
        step: &StepKey,
        spec: ProcessSpec,
    ) -> Result<String, ProcessError> {
        let id = Self::process_id(step, &spec.name);
        if self.table.lock().unwrap().contains_key(&id) {
            return Ok(id);
        }
        if spec.argv.is_empty() {
            return Err(ProcessError::Invalid("empty argv".into()));
        }
        let step_dir = self.step_dir(step);
        let root = step_dir.join("root");
        let working_dir = spec.working_dir.clone().unwrap_or_else(|| "/".into());
        // A recycled root is taken here; whatever creates inodes or writes
        // files (a fresh skeleton, scripts) goes to a blocking thread.
        let recycled = self.take_recycled(&step_dir);
        let prep = if recycled && nothing_to_place(&spec.files, &working_dir) {
            Ok(())
        } else {
            let dir = step_dir.clone();
            let files = spec.files.clone();
            let wd = working_dir.clone();
            tokio::task::spawn_blocking(move || finish_root(&dir, recycled, &files, &wd))
                .await
                .map_err(|e| ProcessError::Failed(e.to_string()))?
        };
        prep.map_err(|e| ProcessError::Failed(format!("preparing the step root: {e}")))?;

        let layers = step_dir.join(layers::DIR);
        let layered = layers.exists();
        let req = SpawnRequest {
            root: root.clone(),
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            working_dir,
            hostname: sanitize(&step.node_id),
            layers: layered.then(|| layers.clone()),
        };
        let log_file = (spec.name == "main"
            && self.held.lock().unwrap().get(&step_dir) == Some(&true))
        .then(|| std::fs::File::create(step_dir.join("main.log")).ok())
        .flatten()
        .map(|f| Arc::new(Mutex::new(std::io::BufWriter::new(f))));
        let spawned = self.spawner.spawn(req).await;
        let entry = Arc::new(Entry {
            step_dir,
            root,
            pid: spawned.as_ref().ok().map(|s| s.child.id() as i32),
            state: Mutex::new(ProcessState::Running),
            tail: Mutex::new(VecDeque::new()),
            release_on_exit: false.into(),
        });
        {
            let mut t = self.table.lock().unwrap();
            if t.contains_key(&id) {
                // Lost a race with a concurrent spawn of the same id: adopt it, kill ours.
                if let Ok(mut s) = spawned {
                    let _ = s.child.kill();
                }
                return Ok(id);
            }
            t.insert(id.clone(), entry.clone());
        }
        match spawned {
            Err(msg) => {
                *entry.state.lock().unwrap() = ProcessState::FailedToStart(msg.clone());
                self.notifier.notify(&format!("process:{id}"));
                Err(ProcessError::Failed(msg))
            }
            Ok(s) => {
                // read now, while the process surely runs: its namespace's
                // leftovers are killed before the layers are merged
                let layers = layered.then(|| (layers, layers::mount_ns(s.child.id() as i32)));
                self.watch(id.clone(), step.clone(), entry, s.child, log_file, layers);
                Ok(id)
            }
        }
    }

    /// Capture output, wait for exit, record the status, notify.
    fn watch(
        self: &Arc<Self>,
        id: String,
        step: StepKey,
        entry: Arc<Entry>,
        mut child: SandboxChild,
        log_file: Option<LogFile>,
        layers: Option<(PathBuf, Option<u64>)>,
    ) {
        let this = Arc::downgrade(self);
        let stdout = child
            .stdout
            .take()
            .and_then(|s| tokio::process::ChildStdout::from_std(s).ok());
        let stderr = child
            .stderr
            .take()
            .and_then(|s| tokio::process::ChildStderr::from_std(s).ok());
        let logs = self.logs.clone();
        let notifier = self.notifier.clone();
        let out_task = stdout.map(|s| {
            tokio::spawn(pump(
                s,
                LogStream::Stdout,
                step.clone(),
                logs.clone(),
                Some(entry.clone()),
                log_file.clone(),
            ))
        });
        let err_task = stderr.map(|s| {
            tokio::spawn(pump(
                s,
                LogStream::Stderr,
                step.clone(),
                logs.clone(),
                None,
                log_file,
            ))
        });
        let pid = child.id() as i32;
        tokio::spawn(async move {
            let status = child.wait_async().await;
            for t in [out_task, err_task].into_iter().flatten() {
                if tokio::time::timeout(DRAIN_GRACE, t).await.is_err() {
                    // Background children keep the pipes open: kill the group.
                    // SAFETY: plain kill(2).
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
            }
            let state = match status {
                Ok(st) => {
                    use std::os::unix::process::ExitStatusExt;
                    match (st.code(), st.signal()) {
                        (Some(c), _) => ProcessState::Exited(c),
                        (None, Some(s)) => ProcessState::Signaled(s),
                        _ => ProcessState::Exited(-1),
                    }
                }
                Err(e) => ProcessState::FailedToStart(format!("waiting for the process: {e}")),
            };
            if let Some((dir, ns)) = layers {
                let root = entry.root.clone();
                let merged =
                    tokio::task::spawn_blocking(move || layers::finish(&dir, &root, ns)).await;
                if let Err(e) = merged.map_err(std::io::Error::other).and_then(|r| r) {
                    tracing::warn!(process = %id, error = %e, "merging the input artifact layers");
                }
            }
            tracing::debug!(process = %id, ?state, "step process ended");
            *entry.state.lock().unwrap() = state;
            if entry
                .release_on_exit
                .load(std::sync::atomic::Ordering::SeqCst)
                && let Some(this) = this.upgrade()
            {
                let _ = this.release(&id);
            }
            notifier.notify(&format!("process:{id}"));
        });
    }

    /// Current state. A process released while running is already unknown.
    pub fn status(&self, id: &str) -> Result<ProcessState, ProcessError> {
        let e = self.entry(id)?;
        if e.release_on_exit.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ProcessError::Unknown(id.to_string()));
        }
        Ok(e.state.lock().unwrap().clone())
    }

    pub fn stdout_tail(&self, id: &str, max: usize) -> Result<String, ProcessError> {
        let e = self.entry(id)?;
        let tail = e.tail.lock().unwrap();
        let max = max.min(STDOUT_TAIL_BYTES);
        let skip = tail.len().saturating_sub(max);
        let bytes: Vec<u8> = tail.iter().skip(skip).copied().collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Read a file of the step's root; `None` if missing.
    pub fn read_file(
        &self,
        id: &str,
        path: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, ProcessError> {
        let e = self.entry(id)?;
        let joined = join_inside(&e.root, path).map_err(ProcessError::Invalid)?;
        let canon_root = e
            .root
            .canonicalize()
            .map_err(|e| ProcessError::Failed(e.to_string()))?;
        let canon = match joined.canonicalize() {
            Ok(c) => c,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(ProcessError::Failed(format!("{path}: {err}"))),
        };
        if !canon.starts_with(&canon_root) {
            return Err(ProcessError::Invalid(format!(
                "'{path}' points outside the step root"
            )));
        }
        let meta = std::fs::metadata(&canon).map_err(|e| ProcessError::Failed(e.to_string()))?;
        if !meta.is_file() {
            return Err(ProcessError::Invalid(format!(
                "'{path}' is not a regular file"
            )));
        }
        if meta.len() > max {
            return Err(ProcessError::Invalid(format!(
                "'{path}' is {} bytes, over the {max}-byte cap",
                meta.len()
            )));
        }
        std::fs::read(&canon)
            .map(Some)
            .map_err(|e| ProcessError::Failed(e.to_string()))
    }

    pub fn kill(&self, id: &str) -> Result<(), ProcessError> {
        let e = self.entry(id)?;
        if let (Some(pid), ProcessState::Running) = (e.pid, e.state.lock().unwrap().clone()) {
            // SAFETY: plain kill(2) of the process group we created, then the leader.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        Ok(())
    }

    /// Forget a process and delete its step directory (unless `keep_step_dirs`).
    /// Releasing a running process kills it and releases it once it has exited.
    pub fn release(&self, id: &str) -> Result<(), ProcessError> {
        let e = self.entry(id)?;
        {
            let st = e.state.lock().unwrap();
            if *st == ProcessState::Running {
                e.release_on_exit
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                drop(st);
                return self.kill(id);
            }
        }
        self.table.lock().unwrap().remove(id);
        if !self.keep_dirs && !self.held.lock().unwrap().contains_key(&e.step_dir) {
            self.give_back(e.step_dir.clone());
        }
        Ok(())
    }

    /// Clean a finished step's directory for reuse (or delete it), off the
    /// caller's thread: on the runtime's blocking pool, whose threads are
    /// reused (a thread per step cost a `clone` and a stack mapped and
    /// unmapped, with a TLB shootdown on every core), or a thread of its own
    /// outside a runtime.
    fn give_back(&self, dir: PathBuf) {
        let pool = self.pool.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || pool.give(&dir))),
            Err(_) => drop(std::thread::spawn(move || pool.give(&dir))),
        }
    }

    /// Kill every running process (shutdown).
    pub fn kill_all(&self) {
        let ids: Vec<String> = self.table.lock().unwrap().keys().cloned().collect();
        for id in ids {
            let _ = self.kill(&id);
        }
    }
}

/// Create the root's skeleton, the requested files and the working directory.
pub fn prepare_root(root: &Path, files: &[FileSpec], working_dir: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root)?;
    for d in ROOT_DIRS {
        std::fs::create_dir_all(root.join(d))?;
        let mode = skeleton_mode(d);
        if mode != 0o755 {
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(mode))?;
        }
    }
    for (link, target) in ROOT_SYMLINKS {
        let l = root.join(link);
        if l.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, &l)?;
        }
    }
    place_files(root, files, working_dir)
}

/// Complete `<step_dir>/root`: only `files` and the working directory when it
/// is a `recycled` skeleton, else the skeleton too. Blocking.
fn finish_root(
    step_dir: &Path,
    recycled: bool,
    files: &[FileSpec],
    working_dir: &str,
) -> std::io::Result<()> {
    let root = step_dir.join("root");
    if recycled {
        place_files(&root, files, working_dir)
    } else {
        prepare_root(&root, files, working_dir)
    }
}

/// Whether a root with its skeleton needs nothing more for these files and working directory.
fn nothing_to_place(files: &[FileSpec], working_dir: &str) -> bool {
    files.is_empty() && working_dir == "/"
}

/// Write `files` into a root that has its skeleton, and create the working directory.
fn place_files(root: &Path, files: &[FileSpec], working_dir: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if nothing_to_place(files, working_dir) {
        return Ok(());
    }
    // No step process may be cloned while these files are open for writing,
    // or its copy of the descriptor makes exec'ing them fail (spawn.rs).
    let _writing = super::spawn::writing_exec_files();
    for f in files {
        let p = join_inside(root, &f.path).map_err(std::io::Error::other)?;
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &f.contents)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode & 0o7777))?;
    }
    let wd = join_inside(root, working_dir).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(wd)?;
    Ok(())
}

/// Forward one stream line by line to the log sink; keep the stdout tail.
async fn pump(
    stream: impl AsyncRead + Unpin,
    which: LogStream,
    step: StepKey,
    logs: Arc<dyn LogSink>,
    tail: Option<Arc<Entry>>,
    log_file: Option<LogFile>,
) {
    use std::io::Write;
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(e) = &tail {
            let mut t = e.tail.lock().unwrap();
            t.extend(buf.iter().copied());
            let over = t.len().saturating_sub(STDOUT_TAIL_BYTES);
            t.drain(..over);
        }
        let line = String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf)).into_owned();
        if let Some(f) = &log_file {
            let mut f = f.lock().unwrap();
            let _ = f
                .write_all(line.as_bytes())
                .and_then(|_| f.write_all(b"\n"));
        }
        logs.append(LogLine {
            workflow_uid: step.workflow_uid.clone(),
            node_id: step.node_id.clone(),
            attempt: step.attempt,
            stream: which,
            ts_ms: now_ms(),
            line,
        });
    }
    if let Some(f) = &log_file {
        let _ = f.lock().unwrap().flush();
    }
}
