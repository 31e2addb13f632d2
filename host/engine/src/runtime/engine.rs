//! The engine's owner task: it alone owns the state machines of running
//! workflows. Everything else talks to it through a cloneable [`Engine`]
//! handle over a bounded channel.
//!
//! One turn of the loop: take every message that is waiting (at least one),
//! feed them to the machines, commit all changed rows in **one** store
//! transaction (group commit), and only then carry out the actions — start
//! steps, arm timers, take locks. A crash between commit and action loses
//! nothing: on restart every in-flight step is started again, and drivers
//! adopt what already exists (start is idempotent by node id and attempt).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{Instrument, debug, info_span, warn};

use super::ports::{DriverPoll, EventNotifier, StepDriver, StepOutcome, StepRequest};
use super::store::{CommitBatch, MemoEntry, NodeRecord, StateStore, StoreError, WorkflowRecord};
use super::submit::{SubmitError, new_uid, prepare};
use crate::machine::{Action, Event, Machine, Node, WorkflowState};
use crate::model::{Phase, Workflow};

/// Errors of the engine runtime.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid workflow: {0}")]
    Invalid(String),
    #[error("workflow {0:?} not found")]
    NotFound(String),
    #[error("the engine has stopped")]
    Stopped,
}

/// Observations the engine reports (Prometheus lives in the interaction layer).
pub trait EngineMetrics: Send + Sync + std::fmt::Debug {
    /// One driver call (`start` or `poll`) returned after `secs`.
    fn driver_call(&self, driver: &str, op: &'static str, secs: f64);
    /// A step attempt finished in `phase`, `secs` after it started.
    fn step_finished(&self, driver: &str, phase: Phase, secs: f64);
}

/// Settings for one of several engine replicas sharing a database.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// Unique per replica process (e.g. `host-pid-random`).
    pub id: String,
    /// How long a lease lasts without renewal; renewed every third of it. A dead
    /// replica's workflows are adopted by others once its leases expire.
    pub lease: Duration,
}

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Share workflows with other replicas through leases (None: this process owns
    /// what it submits or adopts, nothing else).
    pub replica: Option<ReplicaOptions>,
    /// Without replicas: the owner id new workflow rows are stamped with (a
    /// lease that never expires; the caller proves the owner alive some other
    /// way, e.g. a lock file). None: rows are inserted unowned.
    pub owner: Option<String>,
    /// Semaphore limits by `<namespace>/<configmap>/<key>`; unknown semaphores get 1.
    pub semaphore_limits: HashMap<String, u32>,
    /// Most messages handled in one turn (one commit).
    pub batch_max: usize,
    /// Where to report step and driver-call latencies (none: not measured).
    pub metrics: Option<Arc<dyn EngineMetrics>>,
    /// Names and key formats of the artifact repositories, for
    /// `spec.artifactRepositoryRef` (resolved at submission) and default keys.
    pub artifact_repositories: crate::machine::artifacts::ArtifactRepositories,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            semaphore_limits: HashMap::new(),
            batch_max: 2048,
            replica: None,
            owner: None,
            metrics: None,
            artifact_repositories: Default::default(),
        }
    }
}

/// A change the engine made visible (for watchers and progress displays).
#[derive(Debug, Clone)]
pub struct Update {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub phase: Phase,
}

enum Msg {
    Submit {
        wf: Box<Workflow>,
        reply: oneshot::Sender<Result<WorkflowRecord, EngineError>>,
    },
    Adopt {
        namespace: String,
        name: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Event {
        uid: String,
        event: Event,
    },
    DriverResult {
        uid: String,
        node: String,
        attempt: u32,
        result: Result<DriverPoll, String>,
    },
    Poll {
        uid: String,
        node: String,
    },
    Notify {
        key: String,
    },
    Snapshot {
        namespace: String,
        name: String,
        reply: oneshot::Sender<Option<Value>>,
    },
    Phase {
        namespace: String,
        name: String,
        reply: oneshot::Sender<Option<Phase>>,
    },
    Control {
        namespace: String,
        name: String,
        event: Event,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// Hold (or release) the steps a workflow would start: Argo's workflow-level suspend.
    Hold {
        namespace: String,
        name: String,
        hold: bool,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// Change a semaphore's limit (`<namespace>/<configmap>/<key>`).
    SetLimit {
        key: String,
        limit: u32,
    },
    /// Answered once every message before it is committed.
    Barrier {
        reply: oneshot::Sender<()>,
    },
    /// Renew this replica's leases and claim expired ones (replicas only).
    LeaseTick,
}

/// Cloneable handle to the engine's owner task.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Msg>,
    updates: broadcast::Sender<Update>,
    store: Arc<dyn StateStore>,
}

/// The notifier drivers call; forwards event keys into the engine.
pub struct Notifier {
    tx: mpsc::UnboundedSender<String>,
}

impl EventNotifier for Notifier {
    fn notify(&self, event_key: &str) {
        let _ = self.tx.send(event_key.to_string());
    }
}

impl Engine {
    /// A notifier for drivers, and the engine starter that consumes its events.
    pub fn notifier() -> (Arc<Notifier>, NotifyReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(Notifier { tx }), NotifyReceiver(rx))
    }

    /// Start the owner task.
    pub fn start(
        store: Arc<dyn StateStore>,
        driver: Arc<dyn StepDriver>,
        notify: NotifyReceiver,
        opts: EngineOptions,
    ) -> Engine {
        let (tx, rx) = mpsc::channel(65_536);
        let (updates, _) = broadcast::channel(4096);
        let engine = Engine {
            tx: tx.clone(),
            updates: updates.clone(),
            store: store.clone(),
        };
        let mut notify_rx = notify.0;
        let ntx = tx.clone();
        tokio::spawn(async move {
            while let Some(key) = notify_rx.recv().await {
                if ntx.send(Msg::Notify { key }).await.is_err() {
                    break;
                }
            }
        });
        if let Some(r) = &opts.replica {
            let ltx = tx.clone();
            let every = (r.lease / 3).max(Duration::from_millis(50));
            tokio::spawn(async move {
                loop {
                    if ltx.send(Msg::LeaseTick).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(every).await;
                }
            });
        }
        let owner = Owner {
            store,
            driver,
            tx,
            opts,
            updates,
            machines: HashMap::new(),
            by_name: HashMap::new(),
            key_waiters: HashMap::new(),
            in_flight: HashMap::new(),
            fired: HashSet::new(),
            lock_waiters: VecDeque::new(),
            held: HashMap::new(),
        };
        tokio::spawn(owner.run(rx));
        engine
    }

    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    /// Submit a workflow; returns its row once committed.
    pub async fn submit(&self, wf: Workflow) -> Result<WorkflowRecord, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Submit {
                wf: Box::new(wf),
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Load a stored, unfinished workflow and continue it (after a crash or restart).
    pub async fn adopt(&self, namespace: &str, name: &str) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Adopt {
                namespace: namespace.into(),
                name: name.into(),
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Adopt every unfinished workflow in the store.
    pub async fn adopt_all(&self) -> Result<usize, EngineError> {
        let filter = super::store::WorkflowFilter {
            phases: vec!["Pending".into(), "Running".into()],
            ..Default::default()
        };
        let list = self.store.list_workflows(&filter).await?;
        let n = list.len();
        for wf in list {
            self.adopt(&wf.namespace, &wf.name).await?;
        }
        Ok(n)
    }

    /// Send a control event (resume, stop, terminate) to a running workflow.
    pub async fn control(
        &self,
        namespace: &str,
        name: &str,
        event: Event,
    ) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Control {
                namespace: namespace.into(),
                name: name.into(),
                event,
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Suspend (`hold`) or un-suspend a running workflow: while held, the steps it
    /// would start wait (running ones continue), as with Argo's `spec.suspend`.
    pub async fn hold(&self, namespace: &str, name: &str, hold: bool) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Hold {
                namespace: namespace.into(),
                name: name.into(),
                hold,
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Set a semaphore limit at run time (`<namespace>/<configmap>/<key>`).
    pub async fn set_semaphore_limit(&self, key: &str, limit: u32) -> Result<(), EngineError> {
        self.tx
            .send(Msg::SetLimit {
                key: key.into(),
                limit,
            })
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Wait until everything sent before this call has been handled and committed.
    pub async fn barrier(&self) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Barrier { reply })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Messages waiting for the owner task.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The Argo `status` of a workflow the engine is running (None if not in memory).
    pub async fn live_status(&self, namespace: &str, name: &str) -> Option<Value> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        self.ask(|reply| Msg::Snapshot {
            namespace,
            name,
            reply,
        })
        .await
    }

    /// The phase of a workflow the engine is running (None if not in memory):
    /// O(1), where [`live_status`](Self::live_status) renders every node.
    pub async fn live_phase(&self, namespace: &str, name: &str) -> Option<Phase> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        self.ask(|reply| Msg::Phase {
            namespace,
            name,
            reply,
        })
        .await
    }

    /// Ask the owner task a question about its in-memory state.
    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<Option<T>>) -> Msg) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(msg(reply)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Wait until the workflow reaches a final phase.
    pub async fn wait(&self, namespace: &str, name: &str) -> Result<Phase, EngineError> {
        let mut rx = self.subscribe();
        loop {
            if let Some(rec) = self.store.get_workflow(namespace, name).await?
                && let Some(p) = Phase::parse(&rec.phase)
                && p.is_done()
            {
                return Ok(p);
            }
            match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                Ok(Ok(u)) if u.namespace == namespace && u.name == name && u.phase.is_done() => {
                    return Ok(u.phase);
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(EngineError::Stopped),
                _ => {}
            }
        }
    }
}

/// The receiving end of a [`Notifier`], handed to [`Engine::start`].
pub struct NotifyReceiver(mpsc::UnboundedReceiver<String>);

struct Owner {
    store: Arc<dyn StateStore>,
    driver: Arc<dyn StepDriver>,
    tx: mpsc::Sender<Msg>,
    opts: EngineOptions,
    updates: broadcast::Sender<Update>,
    machines: HashMap<String, Machine>,
    by_name: HashMap<(String, String), String>,
    /// Event key → steps to poll when it fires.
    key_waiters: HashMap<String, Vec<(String, String)>>,
    /// Driver calls under way, by (workflow uid, node id, attempt): at most one
    /// per step at a time. `true`: a poll was asked for meanwhile (an event and
    /// the safety-net timer can coincide), so poll again if the call returns
    /// Pending — never two calls at once, which would race on the step's state.
    in_flight: HashMap<(String, String, u32), bool>,
    /// Keys that fired before anyone waited on them.
    fired: HashSet<String>,
    /// (uid, node, locks) waiting for locks, in arrival order.
    lock_waiters: VecDeque<LockWaiter>,
    /// Suspended workflows: the step starts they asked for meanwhile.
    held: HashMap<String, Vec<Action>>,
}

/// (workflow uid, node id, locks with limits) waiting for its locks.
type LockWaiter = (String, String, Vec<(String, u32)>);

/// Things to do once the turn's commit is durable.
enum After {
    Actions(String, Vec<Action>),
    Reply(Box<dyn FnOnce() + Send>),
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut buf = Vec::with_capacity(self.opts.batch_max);
        loop {
            if rx.recv_many(&mut buf, self.opts.batch_max).await == 0 {
                break;
            }
            let mut after: Vec<After> = Vec::new();
            let mut touched: HashSet<String> = HashSet::new();
            for msg in buf.drain(..) {
                self.handle(msg, &mut after, &mut touched).await;
            }
            // Group commit: every changed row of this turn in one transaction.
            let mut batch = self.collect(&touched);
            batch.owner = self.opts.replica.as_ref().map(|r| r.id.clone());
            let mut result = if batch.is_empty() {
                Ok(())
            } else {
                self.store.commit(batch.clone()).await
            };
            // A workflow leased away from us: drop it and commit the rest.
            while let Err(StoreError::LeaseLost { uid }) = &result {
                let uid = uid.clone();
                warn!(uid = %uid, "lease lost; another replica continues this workflow");
                self.lose(&uid);
                after.retain(|a| !matches!(a, After::Actions(u, _) if *u == uid));
                batch.workflows.retain(|w| w.uid != uid);
                batch.nodes.retain(|(u, _)| *u != uid);
                result = if batch.is_empty() {
                    Ok(())
                } else {
                    self.store.commit(batch.clone()).await
                };
            }
            if let Err(e) = result {
                // Nothing of this turn is carried out: the store is the truth.
                warn!(error = %e, "commit failed; dropping this turn's actions");
                for a in after {
                    if let After::Reply(f) = a {
                        f();
                    }
                }
                continue;
            }
            for a in after {
                match a {
                    After::Actions(uid, actions) => self.execute(&uid, actions).await,
                    After::Reply(f) => f(),
                }
            }
            for uid in touched {
                self.publish(&uid);
            }
        }
    }

    async fn handle(&mut self, msg: Msg, after: &mut Vec<After>, touched: &mut HashSet<String>) {
        let now = now_ms();
        match msg {
            Msg::Submit { wf, reply } => {
                let res = self.submit(*wf, now, after, touched).await;
                after.push(After::Reply(Box::new(move || {
                    let _ = reply.send(res);
                })));
            }
            Msg::Adopt {
                namespace,
                name,
                reply,
            } => {
                let res = self.adopt(&namespace, &name, now, after, touched).await;
                after.push(After::Reply(Box::new(move || {
                    let _ = reply.send(res);
                })));
            }
            Msg::Event { uid, event } => self.feed(&uid, event, now, after, touched),
            Msg::Control {
                namespace,
                name,
                event,
                reply,
            } => {
                let res = match self
                    .by_name
                    .get(&(namespace.clone(), name.clone()))
                    .cloned()
                {
                    Some(uid) => {
                        self.feed(&uid, event, now, after, touched);
                        Ok(())
                    }
                    None => Err(EngineError::NotFound(name)),
                };
                after.push(After::Reply(Box::new(move || {
                    let _ = reply.send(res);
                })));
            }
            Msg::DriverResult {
                uid,
                node,
                attempt,
                result,
            } => {
                let again = self
                    .in_flight
                    .remove(&(uid.clone(), node.clone(), attempt))
                    .unwrap_or(false);
                let Some(m) = self.machines.get(&uid) else {
                    return;
                };
                let Some(n) = m.node(&node) else { return };
                if n.phase.is_done() || n.invocation.as_ref().map(|i| i.attempt) != Some(attempt) {
                    return;
                }
                match result {
                    Ok(DriverPoll::Pending {
                        state,
                        wake_after,
                        event_key,
                    }) => {
                        self.feed(
                            &uid,
                            Event::StepPending {
                                node: node.clone(),
                                state,
                            },
                            now,
                            after,
                            touched,
                        );
                        if again {
                            self.schedule_poll(uid.clone(), node.clone(), Duration::ZERO);
                        }
                        if let Some(key) = event_key {
                            if self.fired.remove(&key) {
                                self.schedule_poll(uid.clone(), node.clone(), Duration::ZERO);
                            } else {
                                self.key_waiters
                                    .entry(key)
                                    .or_default()
                                    .push((uid.clone(), node.clone()));
                            }
                        }
                        if let Some(d) = wake_after {
                            self.schedule_poll(uid, node, d);
                        }
                    }
                    Ok(DriverPoll::Done(outcome)) => {
                        if let Some(m) = &self.opts.metrics {
                            let secs = n.started_ms.map_or(0.0, |s| (now - s).max(0) as f64 / 1e3);
                            let phase = match outcome.phase {
                                super::ports::OutcomePhase::Succeeded => Phase::Succeeded,
                                super::ports::OutcomePhase::Failed => Phase::Failed,
                                super::ports::OutcomePhase::Error => Phase::Error,
                            };
                            m.step_finished(n.driver.as_deref().unwrap_or_default(), phase, secs);
                        }
                        self.feed(&uid, Event::StepDone { node, outcome }, now, after, touched)
                    }
                    Err(message) => self.feed(
                        &uid,
                        Event::StepDone {
                            node,
                            outcome: StepOutcome::error(message),
                        },
                        now,
                        after,
                        touched,
                    ),
                }
            }
            Msg::Poll { uid, node } => self.poll(&uid, &node),
            Msg::LeaseTick => self.lease_tick(now, after, touched).await,
            Msg::Notify { key } => match self.key_waiters.remove(&key) {
                Some(waiters) => {
                    for (uid, node) in waiters {
                        self.poll(&uid, &node);
                    }
                }
                None => {
                    self.fired.insert(key);
                }
            },
            Msg::Hold {
                namespace,
                name,
                hold,
                reply,
            } => {
                let res = match self.by_name.get(&(namespace, name.clone())).cloned() {
                    Some(uid) if hold => {
                        self.held.entry(uid).or_default();
                        Ok(())
                    }
                    Some(uid) => {
                        if let Some(actions) = self.held.remove(&uid) {
                            after.push(After::Actions(uid, actions));
                        }
                        Ok(())
                    }
                    None => Err(EngineError::NotFound(name)),
                };
                after.push(After::Reply(Box::new(move || {
                    let _ = reply.send(res);
                })));
            }
            Msg::SetLimit { key, limit } => {
                self.opts.semaphore_limits.insert(key, limit);
            }
            Msg::Barrier { reply } => after.push(After::Reply(Box::new(move || {
                let _ = reply.send(());
            }))),
            Msg::Snapshot {
                namespace,
                name,
                reply,
            } => {
                let _ = reply.send(self.machine(namespace, name).map(Machine::argo_status));
            }
            Msg::Phase {
                namespace,
                name,
                reply,
            } => {
                let _ = reply.send(self.machine(namespace, name).map(Machine::phase));
            }
        }
    }

    /// The machine of a workflow this engine runs, by namespace and name.
    fn machine(&self, namespace: String, name: String) -> Option<&Machine> {
        self.by_name
            .get(&(namespace, name))
            .and_then(|uid| self.machines.get(uid))
    }

    fn feed(
        &mut self,
        uid: &str,
        event: Event,
        now: i64,
        after: &mut Vec<After>,
        touched: &mut HashSet<String>,
    ) {
        let Some(m) = self.machines.get_mut(uid) else {
            return;
        };
        let span = info_span!("workflow", workflow = %m.state().name, uid = %uid);
        let actions = span.in_scope(|| m.handle(event, now));
        touched.insert(uid.to_string());
        if !actions.is_empty() {
            after.push(After::Actions(uid.to_string(), actions));
        }
    }

    async fn submit(
        &mut self,
        wf: Workflow,
        now: i64,
        after: &mut Vec<After>,
        touched: &mut HashSet<String>,
    ) -> Result<WorkflowRecord, EngineError> {
        let (mut wf, stored) = prepare(self.store.as_ref(), wf).await?;
        let uid = new_uid();
        wf.metadata.uid = Some(uid.clone());
        wf.metadata.creation_timestamp = Some(crate::machine::rfc3339(now));
        wf.status = None;
        let repo = self
            .opts
            .artifact_repositories
            .resolve(wf.spec.artifact_repository_ref.as_ref())
            .map_err(EngineError::Invalid)?;
        let mut machine = Machine::new(wf.clone(), uid.clone(), stored, now)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        machine.set_artifact_repository(repo);
        let rec = WorkflowRecord {
            uid: uid.clone(),
            namespace: wf.namespace().to_string(),
            name: wf.name().to_string(),
            phase: Phase::Pending.as_str().into(),
            created_ms: now,
            started_ms: None,
            finished_ms: None,
            message: None,
            labels: wf
                .metadata
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
            workflow: serde_json::to_value(&wf).map_err(|e| EngineError::Invalid(e.to_string()))?,
            status: serde_json::to_value(machine.state())
                .map_err(|e| EngineError::Invalid(e.to_string()))?,
        };
        match &self.opts.replica {
            Some(r) => {
                let until = now + i64::try_from(r.lease.as_millis()).unwrap_or(i64::MAX);
                self.store
                    .create_workflow_leased(&rec, &r.id, until)
                    .await?
            }
            None => match &self.opts.owner {
                Some(owner) => {
                    self.store
                        .create_workflow_leased(&rec, owner, i64::MAX)
                        .await?
                }
                None => self.store.create_workflow(&rec).await?,
            },
        }
        self.by_name
            .insert((rec.namespace.clone(), rec.name.clone()), uid.clone());
        self.machines.insert(uid.clone(), machine);
        self.feed(&uid, Event::Start, now, after, touched);
        Ok(rec)
    }

    async fn adopt(
        &mut self,
        namespace: &str,
        name: &str,
        now: i64,
        after: &mut Vec<After>,
        touched: &mut HashSet<String>,
    ) -> Result<(), EngineError> {
        if self
            .by_name
            .contains_key(&(namespace.to_string(), name.to_string()))
        {
            return Ok(());
        }
        let (rec, nodes) = self
            .store
            .load_workflow(namespace, name)
            .await?
            .ok_or_else(|| EngineError::NotFound(name.to_string()))?;
        if Phase::parse(&rec.phase).is_some_and(Phase::is_done) {
            return Ok(());
        }
        let mut state: WorkflowState = serde_json::from_value(rec.status.clone())
            .map_err(|e| EngineError::Invalid(format!("stored status of {name:?}: {e}")))?;
        state.workflow = serde_json::from_value(rec.workflow.clone())
            .map_err(|e| EngineError::Invalid(format!("stored workflow {name:?}: {e}")))?;
        let nodes: Vec<Node> = nodes
            .into_iter()
            .map(|n| serde_json::from_value(n.data))
            .collect::<Result<_, _>>()
            .map_err(|e| EngineError::Invalid(format!("stored node of {name:?}: {e}")))?;
        let mut m = Machine::restore(state, nodes);
        let uid = rec.uid.clone();
        let actions = m.recover(now);
        // Steps that were in flight: start them again; drivers adopt what still exists.
        let inflight: Vec<Action> = m
            .nodes()
            .filter(|n| n.started && !n.phase.is_done() && n.driver.is_some())
            .map(|n| Action::StartStep {
                node: n.id.clone(),
                attempt: n.invocation.as_ref().map(|i| i.attempt).unwrap_or(0),
                driver: n.driver.clone().unwrap_or_default(),
                template: n.resolved.clone().unwrap_or(Value::Null),
            })
            .collect();
        self.by_name
            .insert((rec.namespace.clone(), rec.name.clone()), uid.clone());
        self.machines.insert(uid.clone(), m);
        touched.insert(uid.clone());
        let mut all = inflight;
        all.extend(actions);
        after.push(After::Actions(uid, all));
        Ok(())
    }

    fn collect(&mut self, touched: &HashSet<String>) -> CommitBatch {
        let mut batch = CommitBatch::default();
        for uid in touched {
            let Some(m) = self.machines.get_mut(uid) else {
                continue;
            };
            let (wf_dirty, nodes) = m.take_changes();
            let changed_nodes = !nodes.is_empty();
            for n in nodes {
                match serde_json::to_value(n) {
                    Ok(data) => batch.nodes.push((
                        uid.clone(),
                        NodeRecord {
                            node_id: n.id.clone(),
                            phase: n.phase.as_str().into(),
                            data,
                        },
                    )),
                    Err(e) => warn!(error = %e, node = %n.id, "node not serialisable"),
                }
            }
            if wf_dirty || changed_nodes {
                let st = m.state();
                batch.workflows.push(WorkflowRecord {
                    uid: uid.clone(),
                    namespace: st.namespace.clone(),
                    name: st.name.clone(),
                    phase: st.phase.as_str().into(),
                    created_ms: st.created_ms,
                    started_ms: st.started_ms,
                    finished_ms: st.finished_ms,
                    message: st.message.clone(),
                    labels: st
                        .workflow
                        .metadata
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                    workflow: Value::Null,
                    status: serde_json::to_value(st).unwrap_or(Value::Null),
                });
            }
        }
        batch
    }

    fn publish(&mut self, uid: &str) {
        let Some(m) = self.machines.get(uid) else {
            return;
        };
        let st = m.state();
        let update = Update {
            uid: uid.to_string(),
            namespace: st.namespace.clone(),
            name: st.name.clone(),
            phase: st.phase,
        };
        let done = st.phase.is_done();
        let _ = self.updates.send(update);
        if done {
            let key = (st.namespace.clone(), st.name.clone());
            self.machines.remove(uid);
            self.by_name.remove(&key);
            self.held.remove(uid);
        }
    }

    /// Stop driving a workflow (finished, or its lease went to another replica).
    fn cancel_step(&self, uid: &str, node: &str) {
        let Some((req, state)) = self.request(uid, node) else {
            return;
        };
        let driver = self.driver.clone();
        tokio::spawn(async move {
            if let Err(e) = driver
                .cancel(&req, state.as_deref().unwrap_or_default())
                .await
            {
                warn!(node = %req.node_id, error = %e, "cancel failed");
            }
        });
    }

    /// A workflow another replica now owns (our lease expired while this
    /// replica stalled): cancel the steps we started for it, then forget it.
    /// The new owner starts those steps again; without the cancel, a stalled
    /// replica's step processes would go on running beside the re-run. Every
    /// driver of this version runs its work in this process (local processes,
    /// HTTP calls, Wasm steps); a driver whose work outlives the engine and
    /// is adopted by the next owner (a Kubernetes pod) must not be cancelled
    /// here — that distinction comes with such a driver.
    fn lose(&mut self, uid: &str) {
        let started: Vec<String> = self
            .machines
            .get(uid)
            .map(|m| {
                m.nodes()
                    .filter(|n| n.started && n.driver.is_some() && !n.phase.is_done())
                    .map(|n| n.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for node in &started {
            warn!(uid = %uid, node = %node, "lease lost: cancelling this replica's run of the step");
            self.cancel_step(uid, node);
        }
        self.forget(uid);
    }

    fn forget(&mut self, uid: &str) {
        if let Some(m) = self.machines.remove(uid) {
            let st = m.state();
            self.by_name
                .remove(&(st.namespace.clone(), st.name.clone()));
        }
        self.lock_waiters.retain(|(u, _, _)| u != uid);
    }

    /// Renew our leases, drop workflows we lost, adopt orphans.
    async fn lease_tick(
        &mut self,
        now: i64,
        after: &mut Vec<After>,
        touched: &mut HashSet<String>,
    ) {
        let Some(r) = self.opts.replica.clone() else {
            return;
        };
        let until = now + r.lease.as_millis() as i64;
        match self.store.renew_leases(&r.id, until).await {
            Ok(owned) => {
                let owned: HashSet<String> = owned.into_iter().collect();
                let lost: Vec<String> = self
                    .machines
                    .keys()
                    .filter(|u| !owned.contains(*u))
                    .cloned()
                    .collect();
                for uid in lost {
                    if self
                        .machines
                        .get(&uid)
                        .is_some_and(|m| !m.phase().is_done())
                    {
                        warn!(uid = %uid, "lease lost; another replica continues this workflow");
                        self.lose(&uid);
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "renewing leases failed");
                return;
            }
        }
        let orphans = match self.store.claimable(now, 64).await {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "listing claimable workflows failed");
                return;
            }
        };
        for (uid, ns, name) in orphans {
            match self.store.acquire_lease(&uid, &r.id, now, until).await {
                Ok(true) => {
                    if let Err(e) = self.adopt(&ns, &name, now, after, touched).await {
                        warn!(workflow = %name, error = %e, "adopting failed");
                    }
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "claiming a workflow failed"),
            }
        }
    }

    fn request(&self, uid: &str, node: &str) -> Option<(StepRequest, Option<Vec<u8>>)> {
        let m = self.machines.get(uid)?;
        let n = m.node(node)?;
        let st = m.state();
        Some((
            StepRequest {
                workflow: st.name.clone(),
                namespace: st.namespace.clone(),
                workflow_uid: uid.to_string(),
                node_id: n.id.clone(),
                node_name: n.name.clone(),
                attempt: n.invocation.as_ref().map(|i| i.attempt).unwrap_or(0),
                template: n.resolved.clone().unwrap_or(Value::Null),
                driver: n.driver.clone().unwrap_or_default(),
            },
            n.driver_state.clone(),
        ))
    }

    fn poll(&mut self, uid: &str, node: &str) {
        let Some((req, state)) = self.request(uid, node) else {
            return;
        };
        if self
            .machines
            .get(uid)
            .and_then(|m| m.node(node))
            .is_none_or(|n| n.phase.is_done())
        {
            return;
        }
        let key = (uid.to_string(), node.to_string(), req.attempt);
        if let Some(again) = self.in_flight.get_mut(&key) {
            *again = true;
            return;
        }
        self.in_flight.insert(key, false);
        let driver = self.driver.clone();
        let tx = self.tx.clone();
        let uid = uid.to_string();
        let span = info_span!("poll", workflow = %req.workflow, node = %req.node_id, attempt = req.attempt);
        let metrics = self.opts.metrics.clone();
        tokio::spawn(
            async move {
                let t0 = std::time::Instant::now();
                let result = match &state {
                    Some(s) => driver.poll(&req, s).await,
                    None => driver.start(&req).await,
                }
                .map_err(|e| e.message);
                if let Some(m) = metrics {
                    let op = if state.is_some() { "poll" } else { "start" };
                    m.driver_call(&req.driver, op, t0.elapsed().as_secs_f64());
                }
                let _ = tx
                    .send(Msg::DriverResult {
                        uid,
                        node: req.node_id.clone(),
                        attempt: req.attempt,
                        result,
                    })
                    .await;
            }
            .instrument(span),
        );
    }

    fn schedule_poll(&self, uid: String, node: String, after: Duration) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            let _ = tx.send(Msg::Poll { uid, node }).await;
        });
    }

    async fn execute(&mut self, uid: &str, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::StartStep { .. } if self.held.contains_key(uid) => {
                    self.held.get_mut(uid).expect("held").push(a);
                }
                Action::StartStep { node, .. } => {
                    let Some((req, _)) = self.request(uid, &node) else {
                        continue;
                    };
                    self.in_flight
                        .insert((uid.to_string(), node.clone(), req.attempt), false);
                    let metrics = self.opts.metrics.clone();
                    let driver = self.driver.clone();
                    let tx = self.tx.clone();
                    let uid = uid.to_string();
                    let span = info_span!("step", workflow = %req.workflow, node = %req.node_id, attempt = req.attempt, driver = %req.driver);
                    tokio::spawn(
                        async move {
                            let t0 = std::time::Instant::now();
                            let result = driver.start(&req).await.map_err(|e| e.message);
                            if let Some(m) = metrics {
                                m.driver_call(&req.driver, "start", t0.elapsed().as_secs_f64());
                            }
                            let _ = tx
                                .send(Msg::DriverResult {
                                    uid,
                                    node: req.node_id.clone(),
                                    attempt: req.attempt,
                                    result,
                                })
                                .await;
                        }
                        .instrument(span),
                    );
                }
                Action::CancelStep { node } => self.cancel_step(uid, &node),
                Action::SetTimer { node, at_ms } => {
                    let tx = self.tx.clone();
                    let uid = uid.to_string();
                    let wait = (at_ms - now_ms()).max(0) as u64;
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        let event = match node {
                            Some(node) => Event::Timer { node },
                            None => Event::WorkflowTimer,
                        };
                        let _ = tx.send(Msg::Event { uid, event }).await;
                    });
                }
                Action::MemoLookup {
                    node,
                    cache,
                    key,
                    max_age_s,
                } => {
                    let ns = self
                        .machines
                        .get(uid)
                        .map(|m| m.state().namespace.clone())
                        .unwrap_or_default();
                    let hit = match self.store.memo_get(&ns, &cache, &key).await {
                        Ok(Some(e))
                            if max_age_s
                                .is_none_or(|age| now_ms() - e.created_ms <= age * 1000) =>
                        {
                            Some(e)
                        }
                        Ok(_) => None,
                        Err(e) => {
                            warn!(error = %e, "memo lookup failed; running the step");
                            None
                        }
                    };
                    let _ = self
                        .tx
                        .send(Msg::Event {
                            uid: uid.to_string(),
                            event: Event::MemoResult { node, hit },
                        })
                        .await;
                }
                Action::MemoSave {
                    cache,
                    key,
                    outputs,
                } => {
                    let ns = self
                        .machines
                        .get(uid)
                        .map(|m| m.state().namespace.clone())
                        .unwrap_or_default();
                    let entry = MemoEntry {
                        outputs,
                        created_ms: now_ms(),
                    };
                    if let Err(e) = self.store.memo_put(&ns, &cache, &key, &entry).await {
                        warn!(error = %e, "memo save failed");
                    }
                }
                Action::Acquire { node, locks } => {
                    let locks = self.with_limits(locks);
                    self.lock_waiters.push_back((uid.to_string(), node, locks));
                    self.try_locks().await;
                }
                Action::Release { node, locks } => {
                    let holder = format!("{uid}/{node}");
                    for l in locks {
                        if let Err(e) = self.store.release(&l, &holder).await {
                            warn!(error = %e, lock = %l, "release failed");
                        }
                    }
                    self.try_locks().await;
                }
                Action::Finished { phase } => {
                    debug!(uid, phase = %phase, "workflow finished");
                    // Locks still waited for by this workflow are dropped.
                    self.lock_waiters.retain(|(u, _, _)| u != uid);
                }
            }
        }
    }

    fn with_limits(&self, locks: Vec<(String, u32)>) -> Vec<(String, u32)> {
        locks
            .into_iter()
            .map(|(k, l)| {
                if l > 0 {
                    return (k, l);
                }
                let short = k.trim_start_matches("semaphore/");
                let limit = self.opts.semaphore_limits.get(short).copied().unwrap_or(1);
                (k, limit)
            })
            .collect()
    }

    /// Grant locks to waiters in arrival order.
    async fn try_locks(&mut self) {
        let mut still = VecDeque::new();
        while let Some((uid, node, locks)) = self.lock_waiters.pop_front() {
            let holder = format!("{uid}/{node}");
            let mut got = Vec::new();
            let mut all = true;
            for (k, limit) in &locks {
                match self.store.try_acquire(k, &holder, *limit).await {
                    Ok(true) => got.push(k.clone()),
                    Ok(false) => {
                        all = false;
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, "lock acquire failed");
                        all = false;
                        break;
                    }
                }
            }
            if all {
                let _ = self
                    .tx
                    .send(Msg::Event {
                        uid,
                        event: Event::LocksAcquired { node },
                    })
                    .await;
            } else {
                for k in got {
                    let _ = self.store.release(&k, &holder).await;
                }
                still.push_back((uid, node, locks));
            }
        }
        self.lock_waiters = still;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The full Argo Workflow object of a stored workflow (metadata, spec, status).
pub fn argo_workflow(rec: &WorkflowRecord, status: Value) -> Value {
    let mut wf = rec.workflow.clone();
    if !wf.is_object() {
        wf = json!({});
    }
    wf["apiVersion"] = json!(crate::model::API_VERSION);
    wf["kind"] = json!("Workflow");
    wf["metadata"]["name"] = json!(rec.name);
    wf["metadata"]["namespace"] = json!(rec.namespace);
    wf["metadata"]["uid"] = json!(rec.uid);
    wf["metadata"]["creationTimestamp"] = json!(crate::machine::rfc3339(rec.created_ms));
    let mut labels = rec.labels.clone();
    let done = Phase::parse(&rec.phase).is_some_and(Phase::is_done);
    labels.insert(
        "workflows.argoproj.io/completed".into(),
        json!(done.to_string()),
    );
    labels.insert("workflows.argoproj.io/phase".into(), json!(rec.phase));
    wf["metadata"]["labels"] = Value::Object(labels);
    wf["status"] = status;
    // Conditions the interaction layer records in the row (artifact GC's
    // `ArtifactGCError`); the machine keeps none of its own.
    if let Some(c) = rec.status.get("conditions").filter(|c| c.is_array()) {
        wf["status"]["conditions"] = c.clone();
    }
    wf
}

/// The Argo `status` of a stored workflow, rebuilt from its rows.
pub fn stored_status(rec: &WorkflowRecord, nodes: Vec<NodeRecord>) -> Result<Value, EngineError> {
    let mut state: WorkflowState = serde_json::from_value(rec.status.clone())
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    state.workflow = serde_json::from_value(rec.workflow.clone()).unwrap_or_default();
    let nodes: Vec<Node> = nodes
        .into_iter()
        .filter_map(|n| serde_json::from_value(n.data).ok())
        .collect();
    Ok(Machine::restore(state, nodes).argo_status())
}
