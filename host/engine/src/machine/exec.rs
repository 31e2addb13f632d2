//! Executing templates: creating nodes, advancing composites, finishing nodes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use weft_expr::{DependResult, Depends, Missing, Vars};

use super::scope::{item_text, item_vars, render_value, with_overlay};
use super::{
    Action, Event, Invocation, Machine, Node, NodeId, TemplateSource, Waiting, Work, node_id,
};
use crate::model::{
    AnyString, Arguments, LifecycleHook, NodeType, Outputs, Parameter, Phase, RetryStrategy,
    Synchronization, Template, TemplateKind, WorkflowStep,
};
use crate::runtime::OutcomePhase;

/// Deepest template nesting accepted before a node fails with a clear error.
pub const MAX_DEPTH: u32 = 1000;

/// Incremental bookkeeping for one DAG node (derived; rebuilt after restore).
#[derive(Debug, Clone, Default)]
pub struct DagIndex {
    tasks: Vec<WorkflowStep>,
    by_name: HashMap<String, usize>,
    deps: Vec<Vec<usize>>,
    depends: Vec<Option<Depends>>,
    dependents: Vec<Vec<usize>>,
    /// Node created for the task (task node or TaskGroup), if any.
    node: Vec<Option<NodeId>>,
    /// Decided not to run (depends false, or a dependency can never be met).
    omitted: Vec<bool>,
    in_target: Vec<bool>,
    /// Some task failed in a way nothing handles: start no new tasks (failFast).
    stop: bool,
    /// Failures of some tasks are expected by others (`A.Failed` in a depends).
    failure_handled: Vec<bool>,
}

fn duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<f64>() {
        return Some((n * 1000.0) as i64);
    }
    // Go durations: 1h2m3s, 500ms, 1.5s
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        total += v * match unit.as_str() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some((total * 1000.0) as i64)
}

#[allow(dead_code)]
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    duration_ms(s)
}

fn loop_label(i: usize, item: &Value) -> String {
    let text = match item {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}:{}", item_text(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => item_text(other),
    };
    format!("({i}:{text})")
}

impl Machine {
    // ------------------------------------------------------------------ events

    pub(super) fn apply(&mut self, event: Event) {
        match event {
            Event::Start => self.start(),
            Event::StepPending { node, state } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.driver_state = Some(state);
                    self.mark(&node);
                }
            }
            Event::StepDone { node, outcome } => {
                let Some(n) = self.nodes.get(&node) else {
                    return;
                };
                if n.phase.is_done() {
                    return; // late report (cancelled, timed out)
                }
                let phase = match outcome.phase {
                    OutcomePhase::Succeeded => Phase::Succeeded,
                    OutcomePhase::Failed => Phase::Failed,
                    OutcomePhase::Error => Phase::Error,
                };
                let mut outputs = Outputs {
                    result: outcome.result.clone(),
                    exit_code: outcome.exit_code.map(|c| c.to_string()),
                    ..Outputs::default()
                };
                let declared = self
                    .template_of(&node)
                    .map(|t| t.outputs.clone())
                    .unwrap_or_default();
                let vars = self.node_vars(self.nodes.get(&node).expect("checked"));
                let mut phase = phase;
                let mut message = outcome.message.clone();
                for p in &declared.parameters {
                    let got = outcome
                        .parameters
                        .iter()
                        .find(|(k, _)| k == &p.name)
                        .map(|(_, v)| v.clone());
                    match got.or_else(|| self.param_from_engine(p, &vars, &outputs)) {
                        Some(v) => outputs.parameters.push(out_param(p, v)),
                        None if phase == Phase::Succeeded => {
                            phase = Phase::Error;
                            message = Some(format!("output parameter {:?} has no value", p.name));
                        }
                        None => {}
                    }
                }
                for a in &outcome.artifacts {
                    if let Ok(a) = serde_json::from_value(a.clone()) {
                        outputs.artifacts.push(a);
                    }
                }
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.outputs = Some(outputs);
                }
                self.finish(&node, phase, message);
                // The driver reported the step done: its resolved template and
                // state are not needed again (a retry is a new node, resolved
                // afresh), and a big DAG would keep them for every finished
                // node, in memory and in its row.
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.resolved = None;
                    n.driver_state = None;
                }
            }
            Event::Timer { node } => self.timer(&node),
            Event::WorkflowTimer => {
                if !self.wf.phase.is_done() && self.wf.deadline_ms.is_some_and(|d| d <= self.now) {
                    self.shutdown(false, "Max duration limit exceeded".into());
                }
            }
            Event::MemoResult { node, hit } => self.memo_result(&node, hit),
            Event::LocksAcquired { node } => {
                if let Some(n) = self.nodes.get_mut(&node)
                    && n.waiting == Some(Waiting::Locks)
                {
                    n.waiting = None;
                    self.mark(&node);
                    self.after_locks(&node);
                }
            }
            Event::Resume { node, parameters } => self.resume(node.as_deref(), &parameters),
            Event::Shutdown { terminate, message } => self.shutdown(terminate, message),
        }
    }

    fn start(&mut self) {
        if self.wf.phase.is_done() {
            return;
        }
        if self.wf.phase == Phase::Pending {
            self.wf.phase = Phase::Running;
            self.wf.started_ms = Some(self.now);
            if let Some(d) = &self.wf.workflow.spec.active_deadline_seconds
                && let Some(ms) = duration_ms(&d.text())
            {
                self.wf.deadline_ms = Some(self.now + ms);
                self.act(Action::SetTimer {
                    node: None,
                    at_ms: self.now + ms,
                });
            }
            self.mark_wf();
        } else if let Some(d) = self.wf.deadline_ms {
            self.act(Action::SetTimer {
                node: None,
                at_ms: d,
            });
        }
        let root = self.wf.name.clone();
        if !self.nodes.contains_key(&root) {
            let inv = Invocation {
                source: TemplateSource::Name {
                    scope: String::new(),
                    name: self.wf.entrypoint.clone(),
                },
                arguments: self.wf.workflow.spec.arguments.clone(),
                continue_on: None,
                on_exit: None,
                hooks: Default::default(),
                in_exit: false,
                no_retry: false,
                attempt: 0,
            };
            let id = self.create_node(None, root.clone(), root.clone(), inv, None, None);
            let sync = self.wf.workflow.spec.synchronization.clone();
            if self.wait_for_locks(&id, sync.as_ref()) {
                self.mark(&id);
                return;
            }
            self.push(Work::Advance(id));
        } else {
            // After a restore: re-advance every unfinished node, deepest first is not needed:
            // advancing is idempotent.
            let mut ids: Vec<(u64, NodeId)> = self
                .nodes
                .values()
                .filter(|n| !n.phase.is_done() || (n.finalised && n.exit_node.is_some()))
                .map(|n| (n.seq, n.id.clone()))
                .collect();
            ids.sort();
            for (_, id) in ids {
                let n = self.nodes[&id].clone();
                if let Some(w) = n.wake_ms {
                    self.act(Action::SetTimer {
                        node: Some(id.clone()),
                        at_ms: w,
                    });
                }
                if let Some(d) = n.deadline_ms {
                    self.act(Action::SetTimer {
                        node: Some(id.clone()),
                        at_ms: d,
                    });
                }
                match n.waiting {
                    Some(Waiting::Locks) => {
                        let locks = n.locks.clone();
                        self.act(Action::Acquire {
                            node: id.clone(),
                            locks,
                        });
                    }
                    Some(Waiting::Memo) => {
                        self.nodes.get_mut(&id).expect("exists").waiting = None;
                        self.push(Work::Advance(id));
                    }
                    _ => self.push(Work::Advance(id)),
                }
            }
            if self.nodes.get(&root).is_some_and(|r| r.phase.is_done()) {
                self.root_settled_check();
            }
        }
    }

    // ------------------------------------------------------------------ creation

    /// Create a node for an invocation. It starts on the next `Advance`.
    pub(super) fn create_node(
        &mut self,
        parent: Option<&str>,
        name: String,
        display: String,
        inv: Invocation,
        boundary: Option<NodeId>,
        item: Option<Value>,
    ) -> NodeId {
        let id = node_id(&self.wf.name, &name);
        if self.nodes.contains_key(&id) {
            return id; // idempotent: already created before a restart
        }
        let seq = self.wf.next_seq;
        self.wf.next_seq += 1;
        self.mark_wf();
        let mut n = Node::new(id.clone(), name, display, NodeType::Pod, seq);
        n.parent = parent.map(str::to_string);
        n.boundary_id = boundary;
        n.depth = parent
            .and_then(|p| self.nodes.get(p))
            .map(|p| p.depth + 1)
            .unwrap_or(0);
        n.item = item;
        match &inv.source {
            TemplateSource::Name { name, .. } => n.template_name = Some(name.clone()),
            TemplateSource::Ref(r) => n.template_ref = Some(r.clone()),
            TemplateSource::Inline(_) => {}
        }
        n.invocation = Some(inv);
        if let Some(p) = parent {
            self.children
                .entry(p.to_string())
                .or_default()
                .push(id.clone());
        }
        self.nodes.insert(id.clone(), n);
        self.mark(&id);
        id
    }

    /// A node that will not run (when=false, depends unmet).
    fn create_skipped(
        &mut self,
        parent: &str,
        name: String,
        display: String,
        phase: Phase,
        message: String,
        boundary: Option<NodeId>,
    ) -> NodeId {
        let id = node_id(&self.wf.name, &name);
        if self.nodes.contains_key(&id) {
            return id;
        }
        let seq = self.wf.next_seq;
        self.wf.next_seq += 1;
        let mut n = Node::new(id.clone(), name, display, NodeType::Skipped, seq);
        n.parent = Some(parent.to_string());
        n.boundary_id = boundary;
        n.phase = phase;
        n.message = Some(message);
        n.started_ms = Some(self.now);
        n.finished_ms = Some(self.now);
        n.finalised = true;
        n.started = true;
        self.children
            .entry(parent.to_string())
            .or_default()
            .push(id.clone());
        self.nodes.insert(id.clone(), n);
        self.mark(&id);
        id
    }

    // ------------------------------------------------------------------ templates

    /// Resolve a template source to (template with defaults, scope). Named and
    /// referenced templates are resolved once and shared.
    pub(super) fn resolve(&self, src: &TemplateSource) -> Result<(Arc<Template>, String), String> {
        let (spec, scope, name) = match src {
            TemplateSource::Name { scope, name } => {
                let spec = if scope.is_empty() {
                    &self.wf.workflow.spec
                } else {
                    self.wf
                        .stored_templates
                        .get(scope)
                        .ok_or_else(|| format!("template scope {scope:?} not loaded"))?
                };
                (spec, scope.clone(), name)
            }
            TemplateSource::Ref(r) => {
                let scope = if r.cluster_scope == Some(true) {
                    format!("cluster/{}", r.name)
                } else {
                    format!("namespaced/{}", r.name)
                };
                let kind = if r.cluster_scope == Some(true) {
                    "ClusterWorkflowTemplate"
                } else {
                    "WorkflowTemplate"
                };
                let spec = self
                    .wf
                    .stored_templates
                    .get(&scope)
                    .ok_or_else(|| format!("{kind} {:?} not found", r.name))?;
                if spec.template(&r.template).is_none() {
                    return Err(format!(
                        "template {:?} not found in {kind} {:?}",
                        r.template, r.name
                    ));
                }
                (spec, scope, &r.template)
            }
            TemplateSource::Inline(t) => {
                let defaults = self.wf.workflow.spec.template_defaults.as_ref();
                return Ok((Arc::new(t.with_defaults(defaults)), String::new()));
            }
        };
        let key = (scope, name.clone());
        if let Some(t) = self.resolved.lock().expect("template cache").get(&key) {
            return Ok((t.clone(), key.0));
        }
        let t = spec
            .template(name)
            .ok_or_else(|| format!("template {name:?} not found"))?;
        let t = Arc::new(t.with_defaults(self.wf.workflow.spec.template_defaults.as_ref()));
        self.resolved
            .lock()
            .expect("template cache")
            .insert(key.clone(), t.clone());
        Ok((t, key.0))
    }

    /// The resolved template of an existing node.
    pub(super) fn template_of(&self, id: &str) -> Option<Arc<Template>> {
        let inv = self.nodes.get(id)?.invocation.as_ref()?;
        self.resolve(&inv.source).ok().map(|(t, _)| t)
    }

    /// Bind arguments to a template's declared inputs.
    fn bind_inputs(&self, tmpl: &Template, args: &Arguments) -> Result<Arguments, String> {
        let globals = self.global_vars();
        let mut out = Arguments::default();
        for p in &tmpl.inputs.parameters {
            let given = args.parameters.iter().find(|a| a.name == p.name);
            let value = given
                .and_then(|a| a.value.clone())
                .or_else(|| p.value.clone())
                .or_else(|| given.and_then(|a| a.default.clone()))
                .or_else(|| p.default.clone());
            let Some(value) = value else {
                return Err(format!("inputs.parameters.{} was not supplied", p.name));
            };
            let value = weft_expr::substitute(&value.0, &globals, Missing::Keep)
                .map_err(|e| e.to_string())?;
            if let Some(allowed) = &p.enum_
                && !allowed.iter().any(|a| a.0 == value)
            {
                return Err(format!(
                    "inputs.parameters.{}: value {value:?} is not one of {:?}",
                    p.name,
                    allowed.iter().map(|a| a.0.as_str()).collect::<Vec<_>>()
                ));
            }
            out.parameters.push(Parameter {
                name: p.name.clone(),
                value: Some(AnyString(value)),
                ..Default::default()
            });
        }
        for a in &tmpl.inputs.artifacts {
            let mut art = a.clone();
            if let Some(given) = args.artifacts.iter().find(|x| x.name == a.name) {
                let mut base = serde_json::to_value(&art).unwrap_or(Value::Null);
                let mut over = serde_json::to_value(given).unwrap_or(Value::Null);
                if let Value::Object(o) = &mut over {
                    o.remove("path");
                }
                crate::model::merge_json(&mut base, over);
                art = serde_json::from_value(base).unwrap_or(art);
            }
            super::artifacts::resolve_input(&mut art)?;
            out.artifacts.push(art);
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ advance

    pub(super) fn advance(&mut self, id: &str) {
        let Some(n) = self.nodes.get(id) else { return };
        if n.phase.is_done() {
            return;
        }
        if !n.started {
            if n.waiting.is_some() {
                return;
            }
            self.begin(id);
            return;
        }
        match n.node_type {
            NodeType::Steps => self.advance_steps(id),
            NodeType::StepGroup => self.advance_group(id),
            NodeType::DAG => self.advance_dag(id, None),
            NodeType::TaskGroup => self.advance_taskgroup(id),
            NodeType::Retry => self.advance_retry(id),
            // Leaves in flight: the runtime polls them; suspend waits for resume/timer.
            _ => {}
        }
    }

    fn shutting_down_for(&self, n: &Node) -> Option<String> {
        let s = self.wf.shutdown.as_ref()?;
        let in_exit = n.invocation.as_ref().is_some_and(|i| i.in_exit);
        if s == "Stop" && in_exit {
            return None;
        }
        Some(s.clone())
    }

    /// First advance of an invocation node: resolve, bind inputs, pick the node type.
    fn begin(&mut self, id: &str) {
        let n = &self.nodes[id];
        if let Some(s) = self.shutting_down_for(n) {
            self.finish(
                id,
                Phase::Failed,
                Some(format!("workflow shutdown with strategy: {s}")),
            );
            return;
        }
        if n.depth > MAX_DEPTH {
            self.finish(id, Phase::Error, Some(format!("maximum template nesting depth ({MAX_DEPTH}) exceeded: is a template recursing without end?")));
            return;
        }
        // Template-level parallelism of the limiting parent.
        if let Some(limiter) = self.limiter_of(id)
            && !self.slot_free(&limiter, id)
        {
            self.nodes.get_mut(id).expect("exists").waiting = Some(Waiting::Parallelism);
            self.waiters
                .entry(limiter)
                .or_default()
                .push_back(id.to_string());
            self.mark(id);
            return;
        }
        let inv = n.invocation.clone().expect("invocation nodes have one");
        let (tmpl, scope) = match self.resolve(&inv.source) {
            Ok(x) => x,
            Err(e) => {
                self.finish(id, Phase::Error, Some(e));
                return;
            }
        };
        let inputs = match self.bind_inputs(&tmpl, &inv.arguments) {
            Ok(i) => i,
            Err(e) => {
                self.finish(id, Phase::Error, Some(e));
                return;
            }
        };
        let retry = if inv.no_retry {
            None
        } else {
            self.retry_strategy(&tmpl)
        };
        {
            let n = self.nodes.get_mut(id).expect("exists");
            n.inputs = Some(inputs);
            n.template_scope = scope;
            if n.template_name.is_none() && !tmpl.name.is_empty() && n.template_ref.is_none() {
                n.template_name = Some(tmpl.name.clone());
            }
            n.started_ms = Some(self.now);
            n.phase = Phase::Running;
        }
        self.mark(id);
        if retry.is_some() {
            let n = self.nodes.get_mut(id).expect("exists");
            n.node_type = NodeType::Retry;
            n.started = true;
            self.push(Work::Advance(id.to_string()));
            return;
        }
        self.begin_body(id, &tmpl);
    }

    fn retry_strategy(&self, tmpl: &Template) -> Option<RetryStrategy> {
        if matches!(tmpl.kind(), TemplateKind::Suspend) {
            return None;
        }
        tmpl.retry_strategy.clone().or_else(|| match tmpl.kind() {
            TemplateKind::Container
            | TemplateKind::Script
            | TemplateKind::ContainerSet
            | TemplateKind::Http
            | TemplateKind::Plugin => self.wf.workflow.spec.retry_strategy.clone(),
            _ => None,
        })
    }

    /// Start the body of a template at node `id` (inputs already bound).
    fn begin_body(&mut self, id: &str, tmpl: &Template) {
        let kind = tmpl.kind();
        let limit = tmpl
            .parallelism
            .as_ref()
            .and_then(|p| p.text().parse::<u32>().ok())
            .filter(|p| *p > 0);
        match kind {
            TemplateKind::Steps => {
                let n = self.nodes.get_mut(id).expect("exists");
                n.node_type = NodeType::Steps;
                n.started = true;
                n.limit = limit;
                self.mark(id);
                self.push(Work::Advance(id.to_string()));
            }
            TemplateKind::Dag => {
                let n = self.nodes.get_mut(id).expect("exists");
                n.node_type = NodeType::DAG;
                n.started = true;
                n.limit = limit;
                self.mark(id);
                self.push(Work::Advance(id.to_string()));
            }
            TemplateKind::Suspend => {
                let vars = self.node_vars(&self.nodes[id]);
                let dur = tmpl
                    .suspend
                    .as_ref()
                    .and_then(|s| s.duration.as_ref())
                    .map(|d| {
                        weft_expr::substitute(&d.0, &vars, Missing::Keep)
                            .unwrap_or_else(|_| d.0.clone())
                    });
                let n = self.nodes.get_mut(id).expect("exists");
                n.node_type = NodeType::Suspend;
                n.started = true;
                if let Some(ms) = dur.as_deref().and_then(duration_ms) {
                    n.wake_ms = Some(self.now + ms);
                    let at = self.now + ms;
                    self.act(Action::SetTimer {
                        node: Some(id.to_string()),
                        at_ms: at,
                    });
                }
                self.mark(id);
            }
            TemplateKind::Empty => {
                self.finish(
                    id,
                    Phase::Error,
                    Some(format!(
                        "template {:?} has no container, script, steps, dag, suspend or other body",
                        tmpl.name
                    )),
                );
            }
            TemplateKind::Resource | TemplateKind::Data => {
                let what = if kind == TemplateKind::Resource {
                    "resource"
                } else {
                    "data"
                };
                self.finish(
                    id,
                    Phase::Error,
                    Some(format!(
                        "{what} templates need the Kubernetes driver, which is not configured"
                    )),
                );
            }
            _ => self.begin_leaf(id, tmpl),
        }
    }

    // ------------------------------------------------------------------ leaves

    fn begin_leaf(&mut self, id: &str, tmpl: &Template) {
        let node_type = match tmpl.kind() {
            TemplateKind::Http => NodeType::HTTP,
            TemplateKind::Plugin => NodeType::Plugin,
            _ => NodeType::Pod,
        };
        let mut vars = self.node_vars(&self.nodes[id]);
        super::artifacts::add_output_path_vars(tmpl, &mut vars);
        let mut resolved = tmpl.clone();
        resolved.inputs = self.nodes[id].inputs.clone().unwrap_or_default();
        resolved.retry_strategy = None;
        resolved.memoize = None;
        let raw = serde_json::to_value(&resolved).unwrap_or(Value::Null);
        // Outputs are rendered after the step ran (their expressions see its results).
        let mut body = raw.clone();
        let outputs = body.as_object_mut().and_then(|o| o.remove("outputs"));
        let rendered = match render_value(&body, &vars, Missing::Keep) {
            Ok(mut v) => {
                if let (Some(mut o), Value::Object(m)) = (outputs, &mut v) {
                    // output artifacts' paths and keys may use inputs; they are the step's to fill
                    if let Some(arts) = o.get_mut("artifacts")
                        && let Ok(r) = render_value(arts, &vars, Missing::Keep)
                    {
                        *arts = r;
                    }
                    m.insert("outputs".into(), o);
                }
                if node_type == NodeType::Pod {
                    let repo = self.wf.artifact_repository.as_ref();
                    let prefix = match super::artifacts::key_prefix(repo, &vars, id) {
                        Ok(p) => p,
                        Err(e) => {
                            self.finish(id, Phase::Error, Some(e));
                            return;
                        }
                    };
                    let spec_logs = self
                        .wf
                        .workflow
                        .spec
                        .extra
                        .get("archiveLogs")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let name = repo.and_then(|r| r.name.as_deref());
                    super::artifacts::plan_leaf(&mut v, &prefix, spec_logs, name);
                }
                v
            }
            Err(e) => {
                self.finish(id, Phase::Error, Some(e.to_string()));
                return;
            }
        };
        let driver = match tmpl.kind() {
            TemplateKind::Http => "http".to_string(),
            TemplateKind::Plugin => {
                let p = tmpl.plugin.as_ref().and_then(Value::as_object);
                match p.and_then(|m| m.keys().next()) {
                    Some(k) if k == "wasm" => "wasm-step".to_string(),
                    Some(k) => k.clone(),
                    None => {
                        self.finish(
                            id,
                            Phase::Error,
                            Some("plugin template names no plugin".into()),
                        );
                        return;
                    }
                }
            }
            _ => "local".to_string(),
        };
        let deadline = tmpl
            .active_deadline_seconds
            .as_ref()
            .map(|d| weft_expr::substitute(&d.text(), &vars, Missing::Keep).unwrap_or_default())
            .and_then(|d| duration_ms(&d))
            .into_iter()
            .chain(
                tmpl.timeout
                    .as_ref()
                    .map(|t| weft_expr::substitute(t, &vars, Missing::Keep).unwrap_or_default())
                    .and_then(|t| duration_ms(&t)),
            )
            .min();
        let memo = tmpl.memoize.as_ref().map(|m| {
            let key = weft_expr::substitute(&m.key, &vars, Missing::Keep)
                .unwrap_or_else(|_| m.key.clone());
            (
                m.cache_name(),
                key,
                m.max_age
                    .as_deref()
                    .and_then(duration_ms)
                    .map(|ms| ms / 1000),
            )
        });
        let sync = tmpl.synchronization.clone();
        {
            let n = self.nodes.get_mut(id).expect("exists");
            n.node_type = node_type;
            n.driver = Some(driver);
            n.resolved = Some(rendered);
            n.deadline_ms = deadline.map(|ms| self.now + ms);
        }
        self.mark(id);
        if let Some((cache, key, max_age_s)) = memo {
            let n = self.nodes.get_mut(id).expect("exists");
            n.memo_key = Some(key.clone());
            n.waiting = Some(Waiting::Memo);
            self.act(Action::MemoLookup {
                node: id.to_string(),
                cache,
                key,
                max_age_s,
            });
            return;
        }
        if self.wait_for_locks(id, sync.as_ref()) {
            return;
        }
        self.after_locks(id);
    }

    fn memo_result(&mut self, id: &str, hit: Option<crate::runtime::MemoEntry>) {
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if n.waiting != Some(Waiting::Memo) {
            return;
        }
        n.waiting = None;
        if let Some(entry) = hit
            && let Ok(outputs) = serde_json::from_value::<Outputs>(entry.outputs)
        {
            n.outputs = Some(outputs);
            n.memoized = true;
            n.message = Some("memoized: outputs taken from the cache".into());
            self.finish(id, Phase::Succeeded, None);
            return;
        }
        self.mark(id);
        let sync = self.template_of(id).and_then(|t| t.synchronization.clone());
        if self.wait_for_locks(id, sync.as_ref()) {
            return;
        }
        self.after_locks(id);
    }

    /// Ask for `sync`'s locks for node `id`, which then waits for them; false
    /// when it needs none.
    fn wait_for_locks(&mut self, id: &str, sync: Option<&Synchronization>) -> bool {
        let Some(sync) = sync else {
            return false;
        };
        let locks = self.lock_keys(sync);
        if locks.is_empty() {
            return false;
        }
        let n = self.nodes.get_mut(id).expect("exists");
        n.waiting = Some(Waiting::Locks);
        n.locks = locks.clone();
        self.act(Action::Acquire {
            node: id.to_string(),
            locks,
        });
        true
    }

    /// Locks held (or none needed): take a workflow parallelism slot and start.
    fn after_locks(&mut self, id: &str) {
        if self.nodes.get(id).is_some_and(|n| n.driver.is_none()) {
            // the workflow-level lock was for the root: begin it now
            self.push(Work::Advance(id.to_string()));
            return;
        }
        if let Some(p) = self.wf.workflow.spec.parallelism
            && p > 0
            && self.running_leaves >= p as usize
        {
            self.nodes.get_mut(id).expect("exists").waiting = Some(Waiting::Parallelism);
            self.waiters
                .entry(String::new())
                .or_default()
                .push_back(id.to_string());
            self.mark(id);
            return;
        }
        self.launch(id);
    }

    fn launch(&mut self, id: &str) {
        let n = self.nodes.get_mut(id).expect("exists");
        n.waiting = None;
        n.started = true;
        n.phase = Phase::Running;
        if n.started_ms.is_none() {
            n.started_ms = Some(self.now);
        }
        let attempt = n.invocation.as_ref().map(|i| i.attempt).unwrap_or(0);
        let driver = n.driver.clone().unwrap_or_default();
        let template = n.resolved.clone().unwrap_or(Value::Null);
        let deadline = n.deadline_ms;
        self.running_leaves += 1;
        self.mark(id);
        self.act(Action::StartStep {
            node: id.to_string(),
            attempt,
            driver,
            template,
        });
        if let Some(d) = deadline {
            self.act(Action::SetTimer {
                node: Some(id.to_string()),
                at_ms: d,
            });
        }
    }

    fn lock_keys(&self, sync: &Synchronization) -> Vec<(String, u32)> {
        let ns = &self.wf.namespace;
        let mut out = Vec::new();
        for m in sync.all_mutexes() {
            if let Some(name) = m.get("name").and_then(Value::as_str) {
                let mns = m.get("namespace").and_then(Value::as_str).unwrap_or(ns);
                out.push((format!("mutex/{mns}/{name}"), 1));
            }
        }
        for s in sync.all_semaphores() {
            if let Some(r) = s.get("configMapKeyRef") {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                let key = r.get("key").and_then(Value::as_str).unwrap_or("");
                // limit 0: the runtime looks the limit up in its configuration
                out.push((format!("semaphore/{ns}/{name}/{key}"), 0));
            } else if let Some(db) = s
                .get("database")
                .and_then(|d| d.get("key"))
                .and_then(Value::as_str)
            {
                out.push((format!("semaphore/{ns}/db/{db}"), 0));
            }
        }
        out
    }

    fn timer(&mut self, id: &str) {
        let Some(n) = self.nodes.get(id).cloned() else {
            return;
        };
        if n.phase.is_done() {
            return;
        }
        if let Some(w) = n.wake_ms
            && w <= self.now
        {
            self.nodes.get_mut(id).expect("exists").wake_ms = None;
            self.mark(id);
            match n.node_type {
                NodeType::Suspend => self.finish_suspend(id, &[]),
                NodeType::Retry => self.push(Work::Advance(id.to_string())),
                _ => {}
            }
            return;
        }
        if let Some(d) = n.deadline_ms
            && d <= self.now
            && n.started
        {
            if n.driver.is_some() {
                self.act(Action::CancelStep {
                    node: id.to_string(),
                });
            }
            self.finish(id, Phase::Failed, Some("Step exceeded its deadline".into()));
        }
    }

    fn resume(&mut self, filter: Option<&str>, params: &[(String, String)]) {
        let ids: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.node_type == NodeType::Suspend && !n.phase.is_done() && n.started)
            .filter(|n| filter.is_none_or(|f| n.id == f || n.name == f || n.display_name == f))
            .map(|n| n.id.clone())
            .collect();
        for id in ids {
            self.finish_suspend(&id, params);
        }
    }

    fn finish_suspend(&mut self, id: &str, supplied: &[(String, String)]) {
        let declared = self
            .template_of(id)
            .map(|t| t.outputs.clone())
            .unwrap_or_default();
        let inputs = self.nodes[id]
            .inputs
            .clone()
            .map(|i| i.parameters)
            .unwrap_or_default();
        let mut outputs = Outputs::default();
        for p in &declared.parameters {
            let v = supplied
                .iter()
                .find(|(k, _)| k == &p.name)
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    p.value_from
                        .as_ref()
                        .and_then(|vf| vf.default.as_ref())
                        .map(|d| d.0.clone())
                })
                .or_else(|| p.value.as_ref().map(|v| v.0.clone()))
                // Argo's UI offers the node's input of the same name as the value to supply.
                .or_else(|| {
                    inputs
                        .iter()
                        .find(|i| i.name == p.name)
                        .and_then(|i| i.value.as_ref())
                        .map(|v| v.0.clone())
                });
            if let Some(v) = v {
                outputs.parameters.push(out_param(p, v));
            }
        }
        if !outputs.is_empty() {
            self.nodes.get_mut(id).expect("exists").outputs = Some(outputs);
        }
        self.finish(id, Phase::Succeeded, None);
    }

    fn shutdown(&mut self, terminate: bool, message: String) {
        if self.wf.phase.is_done() {
            return;
        }
        self.wf.shutdown = Some(if terminate { "Terminate" } else { "Stop" }.to_string());
        if self.wf.message.is_none() {
            self.wf.message = Some(message.clone());
        }
        self.mark_wf();
        let mut running: Vec<(u64, NodeId)> = self
            .nodes
            .values()
            .filter(|n| {
                !n.phase.is_done()
                    && !n
                        .invocation
                        .as_ref()
                        .is_some_and(|i| i.in_exit && !terminate)
            })
            .filter(|n| n.driver.is_some() || n.node_type == NodeType::Suspend || !n.started)
            .map(|n| (n.seq, n.id.clone()))
            .collect();
        running.sort();
        for (_, id) in running {
            let n = &self.nodes[&id];
            if n.started && n.driver.is_some() {
                self.act(Action::CancelStep { node: id.clone() });
            }
            let msg = if message.contains("Max duration") {
                "Step exceeded its deadline".to_string()
            } else {
                format!(
                    "workflow shutdown with strategy: {}",
                    self.wf.shutdown.as_deref().unwrap_or("")
                )
            };
            self.finish(&id, Phase::Failed, Some(msg));
        }
    }

    // ------------------------------------------------------------------ finishing

    /// A node reached its own final phase.
    pub(super) fn finish(&mut self, id: &str, phase: Phase, message: Option<String>) {
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if n.phase.is_done() {
            return;
        }
        let was_running_leaf = n.started && n.driver.is_some() && n.waiting.is_none();
        let was_waiting = n.waiting.take();
        n.phase = phase;
        n.finished_ms = Some(self.now);
        if n.started_ms.is_none() {
            n.started_ms = Some(self.now);
        }
        if message.is_some() {
            n.message = message;
        }
        n.wake_ms = None;
        let locks: Vec<String> = n.locks.iter().map(|(k, _)| k.clone()).collect();
        let memo = (phase == Phase::Succeeded && !n.memoized)
            .then(|| n.memo_key.clone())
            .flatten();
        let parent = n.parent.clone();
        self.mark(id);
        if was_waiting == Some(Waiting::Parallelism) {
            for q in self.waiters.values_mut() {
                q.retain(|w| w != id);
            }
        }
        if was_running_leaf {
            self.running_leaves = self.running_leaves.saturating_sub(1);
            self.wake_waiters("");
        }
        if !locks.is_empty() {
            self.act(Action::Release {
                node: id.to_string(),
                locks,
            });
        }
        // Outputs of composites, then global exports.
        let node_type = self.nodes[id].node_type;
        if matches!(node_type, NodeType::Steps | NodeType::DAG) {
            self.composite_outputs(id);
        }
        self.export_globals(id);
        if let Some(key) = memo
            && let Some(t) = self.template_of(id)
            && let Some(m) = &t.memoize
        {
            let outputs = serde_json::to_value(self.nodes[id].outputs.clone().unwrap_or_default())
                .unwrap_or(Value::Null);
            self.act(Action::MemoSave {
                cache: m.cache_name(),
                key,
                outputs,
            });
        }
        if let Some(p) = &parent
            && let Some(limiter) = self.limiter_for_parent(p)
        {
            self.wake_waiters(&limiter);
        }
        // Exit handler of this step/task.
        let on_exit = self.nodes[id]
            .invocation
            .as_ref()
            .and_then(|i| i.on_exit.clone());
        if let Some(hook) = on_exit
            && self.wf.shutdown.as_deref() != Some("Terminate")
        {
            let n = &self.nodes[id];
            let name = format!("{}.onExit", n.name);
            let display = format!("{}.onExit", n.display_name);
            let inv = self.hook_invocation(&hook, &self.nodes[id].template_scope.clone());
            let boundary = n.boundary_id.clone();
            let exit_id = self.create_node(Some(id), name, display, inv, boundary, None);
            let n = self.nodes.get_mut(id).expect("exists");
            n.exit_node = Some(exit_id.clone());
            n.finalised = true;
            self.push(Work::Advance(exit_id));
            return;
        }
        self.nodes.get_mut(id).expect("exists").finalised = true;
        self.settle(id);
    }

    fn hook_invocation(&self, hook: &LifecycleHook, scope: &str) -> Invocation {
        let source = match (&hook.template, &hook.template_ref) {
            (_, Some(r)) => TemplateSource::Ref(r.clone()),
            (Some(t), None) => TemplateSource::Name {
                scope: scope.to_string(),
                name: t.clone(),
            },
            (None, None) => TemplateSource::Name {
                scope: scope.to_string(),
                name: String::new(),
            },
        };
        Invocation {
            source,
            arguments: hook.arguments.clone(),
            continue_on: None,
            on_exit: None,
            hooks: Default::default(),
            in_exit: true,
            no_retry: false,
            attempt: 0,
        }
    }

    /// The node and its exit handler are done: tell the parent.
    fn settle(&mut self, id: &str) {
        match self.nodes[id].parent.clone() {
            Some(p) => self.push(Work::ChildDone {
                parent: p,
                child: id.to_string(),
            }),
            None => self.root_settled_check(),
        }
    }

    pub(super) fn child_done(&mut self, parent: &str, child: &str) {
        let Some(p) = self.nodes.get(parent) else {
            return;
        };
        if p.exit_node.as_deref() == Some(child) {
            // the parent's exit handler finished
            self.settle(parent);
            return;
        }
        if p.phase.is_done() {
            return;
        }
        match p.node_type {
            NodeType::Steps => self.advance_steps(parent),
            NodeType::StepGroup => self.advance_group(parent),
            NodeType::DAG => self.advance_dag(parent, Some(child)),
            NodeType::TaskGroup => self.advance_taskgroup(parent),
            NodeType::Retry => self.advance_retry(parent),
            _ => {}
        }
    }

    /// Root (and workflow exit handler) progress.
    fn root_settled_check(&mut self) {
        if self.wf.phase.is_done() {
            return;
        }
        let root = self.wf.name.clone();
        let Some(r) = self.nodes.get(&root) else {
            return;
        };
        if !r.phase.is_done() || !r.finalised {
            return;
        }
        if let Some(e) = r.exit_node.clone()
            && !self
                .nodes
                .get(&e)
                .is_some_and(|x| x.phase.is_done() && x.finalised)
        {
            return;
        }
        let root_phase = r.phase;
        let root_msg = r.message.clone();
        // Workflow-level exit handler.
        let spec = &self.wf.workflow.spec;
        let hook = spec
            .on_exit
            .clone()
            .map(|t| LifecycleHook {
                template: Some(t),
                ..Default::default()
            })
            .or_else(|| spec.hooks.get("exit").cloned());
        if let Some(hook) = hook
            && self.wf.shutdown.as_deref() != Some("Terminate")
        {
            match self.wf.exit_node.clone() {
                None => {
                    let name = format!("{}.onExit", self.wf.name);
                    let inv = self.hook_invocation(&hook, "");
                    let id = self.create_node(None, name.clone(), name, inv, None, None);
                    self.wf.exit_node = Some(id.clone());
                    self.mark_wf();
                    self.push(Work::Advance(id));
                    return;
                }
                Some(e) => {
                    let Some(x) = self.nodes.get(&e) else { return };
                    if !(x.phase.is_done() && x.finalised) {
                        return;
                    }
                    if root_phase.is_ok() && !x.phase.is_ok() {
                        let msg = x.message.clone();
                        self.finish_workflow(Phase::Failed, msg);
                        return;
                    }
                }
            }
        }
        let phase = match root_phase {
            Phase::Succeeded | Phase::Skipped | Phase::Omitted => Phase::Succeeded,
            other => other,
        };
        let phase = if self.wf.shutdown.is_some() && phase == Phase::Succeeded {
            Phase::Failed
        } else {
            phase
        };
        self.finish_workflow(phase, root_msg);
    }

    /// An exit handler node with no parent (the workflow's) settled.
    fn finish_workflow(&mut self, phase: Phase, message: Option<String>) {
        self.wf.phase = phase;
        self.wf.finished_ms = Some(self.now);
        if self.wf.message.is_none() && !phase.is_ok() {
            self.wf.message = message;
        }
        self.mark_wf();
        self.act(Action::Finished { phase });
    }

    fn export_globals(&mut self, id: &str) {
        let Some(t) = self.template_of(id) else {
            return;
        };
        let outputs = self.nodes[id].outputs.clone().unwrap_or_default();
        let mut changed = false;
        for p in &t.outputs.parameters {
            if let Some(g) = &p.global_name
                && let Some(v) = outputs
                    .parameters
                    .iter()
                    .find(|o| o.name == p.name)
                    .and_then(|o| o.value.clone())
            {
                self.wf.global_outputs.insert(g.clone(), v.0);
                changed = true;
            }
        }
        for a in &t.outputs.artifacts {
            if let Some(g) = &a.global_name
                && let Some(found) = outputs.artifacts.iter().find(|o| o.name == a.name)
            {
                let mut v = serde_json::to_value(found).unwrap_or(Value::Null);
                v["name"] = Value::String(g.clone());
                self.wf
                    .global_artifacts
                    .retain(|x| x.get("name") != v.get("name"));
                self.wf.global_artifacts.push(v);
                changed = true;
            }
        }
        if changed {
            self.scopes.clear(); // globals changed: rebuild scopes lazily
            self.mark_wf();
        }
    }

    /// Engine-computed output parameter values (expression, supplied default, value).
    fn param_from_engine(&self, p: &Parameter, vars: &Vars, outputs: &Outputs) -> Option<String> {
        let mut vars = vars.clone();
        let mut pairs = Vec::new();
        super::scope::add_outputs("outputs", outputs, &mut pairs);
        for (k, v) in pairs {
            vars.insert(k, v);
        }
        if let Some(vf) = &p.value_from {
            if let Some(e) = &vf.expression
                && let Ok(v) = weft_expr::eval(e, &vars)
            {
                return Some(weft_expr::to_string_value(&v));
            }
            if let Some(param) = &vf.parameter
                && let Ok(v) = weft_expr::substitute(param, &vars, Missing::Error)
            {
                return Some(v);
            }
            if let Some(d) = &vf.default {
                return Some(d.0.clone());
            }
        }
        p.value.as_ref().map(|v| {
            weft_expr::substitute(&v.0, &vars, Missing::Keep).unwrap_or_else(|_| v.0.clone())
        })
    }

    /// Outputs of a steps/dag template from its scope.
    fn composite_outputs(&mut self, id: &str) {
        let Some(t) = self.template_of(id) else {
            return;
        };
        if t.outputs.parameters.is_empty() && t.outputs.artifacts.is_empty() {
            return;
        }
        let vars = self.scope_mut(id).clone();
        let mut out = Outputs::default();
        for p in &t.outputs.parameters {
            if let Some(v) = self.param_from_engine(p, &vars, &Outputs::default()) {
                out.parameters.push(out_param(p, v));
            }
        }
        for a in &t.outputs.artifacts {
            let from = a
                .from
                .as_ref()
                .and_then(|f| weft_expr::substitute(f, &vars, Missing::Keep).ok())
                .or_else(|| {
                    let e = a.from_expression.as_ref()?;
                    weft_expr::eval(e, &vars)
                        .ok()
                        .map(|v| weft_expr::to_string_value(&v))
                });
            if let Some(f) = from
                && let Ok(Value::Object(mut found)) = serde_json::from_str::<Value>(&f)
            {
                found.insert("name".into(), Value::String(a.name.clone()));
                if let Ok(x) = serde_json::from_value(Value::Object(found)) {
                    out.artifacts.push(x);
                }
            }
        }
        self.nodes.get_mut(id).expect("exists").outputs = Some(out);
    }

    // ------------------------------------------------------------------ parallelism

    /// The composite node whose `parallelism` limits node `id`, if any.
    fn limiter_of(&self, id: &str) -> Option<NodeId> {
        let parent = self.nodes.get(id)?.parent.clone()?;
        self.limiter_for_parent(&parent)
    }

    fn limiter_for_parent(&self, parent: &str) -> Option<NodeId> {
        let p = self.nodes.get(parent)?;
        match p.node_type {
            NodeType::Steps | NodeType::DAG => p.limit.map(|_| parent.to_string()),
            NodeType::StepGroup | NodeType::TaskGroup => {
                let gp = p.parent.as_ref()?;
                let g = self.nodes.get(gp)?;
                g.limit.map(|_| parent.to_string())
            }
            _ => None,
        }
    }

    fn limit_value(&self, limiter: &str) -> Option<u32> {
        let p = self.nodes.get(limiter)?;
        match p.node_type {
            NodeType::Steps | NodeType::DAG => p.limit,
            _ => p
                .parent
                .as_ref()
                .and_then(|gp| self.nodes.get(gp))
                .and_then(|g| g.limit),
        }
    }

    fn slot_free(&self, limiter: &str, me: &str) -> bool {
        let Some(limit) = self.limit_value(limiter) else {
            return true;
        };
        let active = self
            .children_of(limiter)
            .iter()
            .filter(|c| c.as_str() != me)
            .filter_map(|c| self.nodes.get(c))
            .filter(|c| c.started && !c.phase.is_done() && c.waiting != Some(Waiting::Parallelism))
            .count();
        active < limit as usize
    }

    fn wake_waiters(&mut self, limiter: &str) {
        // Skip waiters that finished meanwhile (shutdown, deadline): wake the first live one.
        while let Some(next) = self.waiters.get_mut(limiter).and_then(VecDeque::pop_front) {
            let Some(n) = self.nodes.get_mut(&next) else {
                continue;
            };
            if n.waiting != Some(Waiting::Parallelism) {
                continue;
            }
            n.waiting = None;
            if limiter.is_empty() {
                self.after_locks(&next);
            } else {
                self.push(Work::Advance(next));
            }
            return;
        }
    }

    /// Rebuild derived structures after a restore.
    pub(super) fn rebuild_derived(&mut self) {
        self.waiters.clear();
        self.scopes.clear();
        self.dags.clear();
        let mut waiting: Vec<(u64, NodeId)> = self
            .nodes
            .values()
            .filter(|n| n.waiting == Some(Waiting::Parallelism) && !n.phase.is_done())
            .map(|n| (n.seq, n.id.clone()))
            .collect();
        waiting.sort();
        for (_, id) in waiting {
            // Re-evaluated from scratch on the next advance.
            self.nodes.get_mut(&id).expect("exists").waiting = None;
        }
        // Rebuild scopes of steps from finished groups, and of DAGs from finished tasks.
        let mut composites: Vec<(u64, NodeId)> = self
            .nodes
            .values()
            .filter(|n| matches!(n.node_type, NodeType::Steps | NodeType::DAG))
            .map(|n| (n.seq, n.id.clone()))
            .collect();
        composites.sort();
        for (_, id) in composites {
            let kids = self.children_of(&id).to_vec();
            if self.nodes[&id].node_type == NodeType::Steps {
                for g in kids {
                    if self.nodes.get(&g).is_some_and(|n| n.phase.is_done()) {
                        self.record_group(&id, &g);
                    }
                }
            } else {
                for c in kids {
                    if !self.settled(&c) {
                        continue;
                    }
                    if self.nodes[&c].node_type == NodeType::TaskGroup {
                        let members = self.children_of(&c).to_vec();
                        let task = self.nodes[&c].display_name.clone();
                        self.record_unit(&id, &format!("tasks.{task}"), &members, true);
                    } else {
                        self.record_task(&id, &c);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ steps

    fn advance_steps(&mut self, id: &str) {
        let Some(t) = self.template_of(id) else {
            self.finish(id, Phase::Error, Some("template vanished".into()));
            return;
        };
        let groups = t.steps.clone().unwrap_or_default();
        let children = self.children_of(id).to_vec();
        if let Some(last) = children.last() {
            let g = &self.nodes[last];
            if !g.phase.is_done() {
                return;
            }
            if !g.phase.is_ok() {
                let (phase, message) = child_failure(g);
                self.finish(id, phase, message);
                return;
            }
        }
        let next = children.len();
        if next >= groups.len() {
            self.finish(id, Phase::Succeeded, None);
            return;
        }
        if self.wf.shutdown.is_some() && self.shutting_down_for(&self.nodes[id]).is_some() {
            self.finish(id, Phase::Failed, Some("workflow shutdown".into()));
            return;
        }
        let n = self.nodes[id].clone();
        let name = format!("{}[{next}]", n.name);
        let display = format!("[{next}]");
        let inv = n.invocation.clone().expect("has invocation");
        let in_exit = inv.in_exit;
        let gid = node_id(&self.wf.name, &name);
        let seq = self.wf.next_seq;
        self.wf.next_seq += 1;
        self.mark_wf();
        let mut g = Node::new(gid.clone(), name, display, NodeType::StepGroup, seq);
        g.parent = Some(id.to_string());
        g.boundary_id = Some(id.to_string());
        g.phase = Phase::Running;
        g.started = true;
        g.started_ms = Some(self.now);
        g.depth = n.depth + 1;
        g.template_scope = n.template_scope.clone();
        g.invocation = Some(Invocation {
            no_retry: true,
            in_exit,
            ..inv
        });
        g.template_name = n.template_name.clone();
        g.limit = n.limit;
        self.children
            .entry(id.to_string())
            .or_default()
            .push(gid.clone());
        self.nodes.insert(gid.clone(), g);
        self.mark(&gid);
        self.expand_group(id, &gid, &groups[next].0);
    }

    /// Create the children of a step group.
    fn expand_group(&mut self, steps_id: &str, gid: &str, steps: &[WorkflowStep]) {
        let scope_name = self.nodes[steps_id].template_scope.clone();
        let in_exit = self.nodes[steps_id]
            .invocation
            .as_ref()
            .is_some_and(|i| i.in_exit);
        let group_name = self.nodes[gid].name.clone();
        let mut created = Vec::new();
        for st in steps {
            let items = match self.loop_items(steps_id, st) {
                Ok(i) => i,
                Err(e) => {
                    self.finish(gid, Phase::Error, Some(format!("step {:?}: {e}", st.name)));
                    return;
                }
            };
            let expansions: Vec<(String, String, Option<Value>)> = match items {
                None => vec![(format!("{group_name}.{}", st.name), st.name.clone(), None)],
                Some(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, it)| {
                        let label = loop_label(i, &it);
                        (
                            format!("{group_name}.{}{label}", st.name),
                            format!("{}{label}", st.name),
                            Some(it),
                        )
                    })
                    .collect(),
            };
            for (name, display, item) in expansions {
                match self.prepare_step(steps_id, st, item.as_ref(), &scope_name, in_exit) {
                    Ok(Some(inv)) => {
                        let id = self.create_node(
                            Some(gid),
                            name,
                            display,
                            inv,
                            Some(steps_id.to_string()),
                            item,
                        );
                        created.push(id);
                    }
                    Ok(None) => {
                        let when = st.when.clone().unwrap_or_default();
                        self.create_skipped(
                            gid,
                            name,
                            display,
                            Phase::Skipped,
                            format!("when '{when}' evaluated false"),
                            Some(steps_id.to_string()),
                        );
                    }
                    Err(e) => {
                        let id = self.create_skipped(
                            gid,
                            name,
                            display,
                            Phase::Error,
                            e,
                            Some(steps_id.to_string()),
                        );
                        let _ = id;
                    }
                }
            }
        }
        for id in created {
            self.push(Work::Advance(id));
        }
        self.push(Work::Advance(gid.to_string()));
    }

    /// Loop items of a step/task, rendered in the scope of `owner`.
    fn loop_items(&mut self, owner: &str, st: &WorkflowStep) -> Result<Option<Vec<Value>>, String> {
        let vars = self.scope_mut(owner);
        if let Some(items) = &st.with_items {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                out.push(render_value(it, vars, Missing::Keep).map_err(|e| e.to_string())?);
            }
            return Ok(Some(out));
        }
        if let Some(p) = &st.with_param {
            let text = weft_expr::substitute(p, vars, Missing::Error)
                .map_err(|e| format!("withParam: {e}"))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "withParam value is not a JSON list ({e}): {}",
                    truncate(&text)
                )
            })?;
            return match v {
                Value::Array(a) => Ok(Some(a)),
                _ => Err(format!(
                    "withParam value is not a JSON list: {}",
                    truncate(&text)
                )),
            };
        }
        if let Some(seq) = &st.with_sequence {
            let r = |x: &Option<crate::model::IntOrString>| -> Result<Option<i64>, String> {
                match x {
                    None => Ok(None),
                    Some(v) => {
                        let t = weft_expr::substitute(&v.text(), vars, Missing::Error)
                            .map_err(|e| e.to_string())?;
                        t.trim()
                            .parse::<i64>()
                            .map(Some)
                            .map_err(|_| format!("withSequence: {t:?} is not an integer"))
                    }
                }
            };
            let count = r(&seq.count)?;
            let start = r(&seq.start)?.unwrap_or(0);
            let end = r(&seq.end)?;
            let nums: Vec<i64> = match (count, end) {
                (Some(c), _) => (0..c.max(0)).map(|i| start + i).collect(),
                (None, Some(e)) if e >= start => (start..=e).collect(),
                (None, Some(e)) => (e..=start).rev().collect(),
                (None, None) => return Err("withSequence needs count or end".into()),
            };
            return Ok(Some(
                nums.into_iter()
                    .map(|n| {
                        Value::String(match &seq.format {
                            Some(f) => sprintf_int(f, n),
                            None => n.to_string(),
                        })
                    })
                    .collect(),
            ));
        }
        Ok(None)
    }

    /// Render a step's `when` and arguments for one item. `Ok(None)`: skipped.
    fn prepare_step(
        &mut self,
        owner: &str,
        st: &WorkflowStep,
        item: Option<&Value>,
        scope: &str,
        in_exit: bool,
    ) -> Result<Option<Invocation>, String> {
        let overlay = item.map(item_vars).unwrap_or_default();
        let vars = self.scope_mut(owner);
        with_overlay(vars, &overlay, |vars| {
            if let Some(w) = &st.when {
                let cond = weft_expr::substitute(w, vars, Missing::Error)
                    .map_err(|e| format!("when: {e}"))?;
                if !weft_expr::eval_when(&cond).map_err(|e| e.to_string())? {
                    return Ok(None);
                }
            }
            let args = serde_json::to_value(&st.arguments).map_err(|e| e.to_string())?;
            let args = render_value(&args, vars, Missing::Keep).map_err(|e| e.to_string())?;
            let mut arguments: Arguments =
                serde_json::from_value(args).map_err(|e| e.to_string())?;
            // artifacts `from`/`fromExpression` resolve in the caller's scope
            for a in &mut arguments.artifacts {
                if let Some(f) = a.from_expression.take()
                    && let Ok(v) = weft_expr::eval(&f, vars)
                {
                    a.from = Some(weft_expr::to_string_value(&v));
                }
            }
            let source = match (&st.template, &st.template_ref, &st.inline) {
                (_, _, Some(t)) => TemplateSource::Inline(t.clone()),
                (_, Some(r), None) => TemplateSource::Ref(r.clone()),
                (Some(t), None, None) => TemplateSource::Name {
                    scope: scope.to_string(),
                    name: t.clone(),
                },
                (None, None, None) => return Err(format!("step {:?} names no template", st.name)),
            };
            let on_exit = st
                .on_exit
                .clone()
                .map(|t| LifecycleHook {
                    template: Some(t),
                    ..Default::default()
                })
                .or_else(|| st.hooks.get("exit").cloned())
                .map(Box::new);
            let mut hooks = st.hooks.clone();
            hooks.remove("exit");
            Ok(Some(Invocation {
                source,
                arguments,
                continue_on: st.continue_on.clone(),
                on_exit,
                hooks,
                in_exit,
                no_retry: false,
                attempt: 0,
            }))
        })
    }

    fn advance_group(&mut self, gid: &str) {
        let children = self.children_of(gid).to_vec();
        let Some((phase, message)) = self.group_outcome(&children) else {
            return;
        };
        let steps_id = self.nodes[gid]
            .parent
            .clone()
            .expect("groups have a parent");
        self.finish(gid, phase, message);
        self.record_group(&steps_id, gid);
    }

    /// A group's phase and message once every child settled (None before):
    /// it fails with the first child that failed without `continueOn`.
    fn group_outcome(&self, children: &[NodeId]) -> Option<(Phase, Option<String>)> {
        if children.iter().any(|c| !self.settled(c)) {
            return None;
        }
        Some(
            children
                .iter()
                .map(|c| &self.nodes[c])
                .find(|n| !n.phase.is_ok() && !continues(n))
                .map_or((Phase::Succeeded, None), child_failure),
        )
    }

    /// Record `steps.<name>.*` for every step of a finished group.
    fn record_group(&mut self, steps_id: &str, gid: &str) {
        let children = self.children_of(gid).to_vec();
        let mut units: Vec<(String, Vec<NodeId>, bool)> = Vec::new();
        for c in children {
            let n = &self.nodes[&c];
            let (base, looped) = match n.display_name.find('(') {
                Some(i) if n.item.is_some() => (n.display_name[..i].to_string(), true),
                _ => (n.display_name.clone(), false),
            };
            match units.iter_mut().find(|u| u.0 == base) {
                Some(u) => u.1.push(c.clone()),
                None => units.push((base, vec![c.clone()], looped)),
            }
        }
        for (name, members, looped) in units {
            self.record_unit(steps_id, &format!("steps.{name}"), &members, looped);
        }
    }

    /// Done, exit handler included.
    pub(super) fn settled(&self, id: &str) -> bool {
        let Some(n) = self.nodes.get(id) else {
            return true;
        };
        if !n.phase.is_done() || !n.finalised {
            return false;
        }
        match &n.exit_node {
            Some(e) => self
                .nodes
                .get(e)
                .is_none_or(|x| x.phase.is_done() && x.finalised && self.settled(e)),
            None => true,
        }
    }

    // ------------------------------------------------------------------ retry

    fn advance_retry(&mut self, id: &str) {
        let Some(t) = self.template_of(id) else {
            return;
        };
        let Some(rs) = self.retry_strategy(&t) else {
            return;
        };
        let children = self.children_of(id).to_vec();
        let n = &self.nodes[id];
        if n.wake_ms.is_some() {
            return; // backoff timer armed
        }
        if let Some(last) = children.last() {
            if !self.settled(last) {
                return;
            }
            let c = self.nodes[last].clone();
            if c.phase.is_ok() {
                let outputs = c.outputs.clone();
                self.nodes.get_mut(id).expect("exists").outputs = outputs;
                self.finish(id, c.phase, None);
                return;
            }
            // Decide whether to retry.
            let vars = self.node_vars(&self.nodes[id]);
            let limit = rs
                .limit
                .as_ref()
                .map(|l| weft_expr::substitute(&l.text(), &vars, Missing::Keep).unwrap_or_default())
                .and_then(|l| l.trim().parse::<i64>().ok());
            let attempts = children.len() as i64;
            let policy = rs.retry_policy.as_deref().unwrap_or("OnFailure");
            let policy_ok = match policy {
                "Always" => true,
                "OnError" => c.phase == Phase::Error,
                "OnTransientError" => {
                    c.phase == Phase::Error && c.message.as_deref().is_some_and(is_transient)
                }
                _ => c.phase == Phase::Failed,
            };
            let mut expr_ok = true;
            if let Some(e) = &rs.expression {
                let mut v = vars.clone();
                v.insert(
                    "lastRetry.exitCode",
                    c.outputs
                        .as_ref()
                        .and_then(|o| o.exit_code.clone())
                        .unwrap_or_else(|| "-1".into()),
                );
                v.insert("lastRetry.status", c.phase.as_str());
                v.insert("lastRetry.message", c.message.clone().unwrap_or_default());
                v.insert(
                    "lastRetry.duration",
                    (((c.finished_ms.unwrap_or(self.now) - c.started_ms.unwrap_or(self.now))
                        as f64)
                        / 1000.0)
                        .to_string(),
                );
                expr_ok = matches!(weft_expr::eval(e, &v), Ok(Value::Bool(true)));
            }
            let under_limit = limit.is_none_or(|l| attempts <= l);
            let mut msg = c.message.clone();
            let mut retry = policy_ok
                && expr_ok
                && under_limit
                && self.shutting_down_for(&self.nodes[id]).is_none();
            let mut wait_ms = 0;
            if retry && let Some(b) = &rs.backoff {
                let base = b
                    .duration
                    .as_ref()
                    .and_then(|d| duration_ms(&d.0))
                    .unwrap_or(0);
                let factor = b
                    .factor
                    .as_ref()
                    .and_then(|f| f.text().parse::<f64>().ok())
                    .unwrap_or(1.0);
                wait_ms = (base as f64 * factor.powi((attempts - 1).max(0) as i32)) as i64;
                if let Some(cap) = b.cap.as_ref().and_then(|d| duration_ms(&d.0)) {
                    wait_ms = wait_ms.min(cap);
                }
                if let Some(max) = b.max_duration.as_ref().and_then(|d| duration_ms(&d.0)) {
                    let first = self.nodes[id].started_ms.unwrap_or(self.now);
                    if self.now + wait_ms - first > max {
                        retry = false;
                        msg = Some("Max duration limit exceeded".into());
                    }
                }
            }
            if !retry {
                let outputs = c.outputs.clone();
                self.nodes.get_mut(id).expect("exists").outputs = outputs;
                self.finish(
                    id,
                    c.phase,
                    msg.or_else(|| Some("No more retries left".to_string())),
                );
                return;
            }
            if wait_ms > 0 && self.nodes[id].message.as_deref() != Some("backoff-done") {
                let at = self.now + wait_ms;
                let n = self.nodes.get_mut(id).expect("exists");
                n.wake_ms = Some(at);
                n.message = Some("backoff-done".into());
                self.mark(id);
                self.act(Action::SetTimer {
                    node: Some(id.to_string()),
                    at_ms: at,
                });
                return;
            }
        }
        let n = self.nodes.get_mut(id).expect("exists");
        if n.message.as_deref() == Some("backoff-done") {
            n.message = None;
        }
        let attempt = children.len();
        let name = format!("{}({attempt})", n.name);
        let display = format!("{}({attempt})", n.display_name);
        let mut inv = n.invocation.clone().expect("has invocation");
        inv.no_retry = true;
        inv.attempt = attempt as u32;
        inv.on_exit = None;
        let boundary = n.boundary_id.clone();
        let item = n.item.clone();
        let child = self.create_node(Some(id), name, display, inv, boundary, item);
        self.push(Work::Advance(child));
    }

    // ------------------------------------------------------------------ DAG

    fn dag_index(&mut self, id: &str) -> Result<(), String> {
        if self.dags.contains_key(id) {
            return Ok(());
        }
        let t = self.template_of(id).ok_or("template vanished")?;
        let dag = t.dag.clone().unwrap_or_default();
        let tasks = dag.tasks.clone();
        let by_name: HashMap<String, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let mut deps = vec![Vec::new(); tasks.len()];
        let mut depends = vec![None; tasks.len()];
        let mut failure_handled = vec![false; tasks.len()];
        for (i, task) in tasks.iter().enumerate() {
            if let Some(d) = &task.depends {
                let parsed = Depends::parse(d).map_err(|e| format!("task {:?}: {e}", task.name))?;
                for name in parsed.tasks() {
                    let j = *by_name.get(&name).ok_or_else(|| {
                        format!("task {:?} depends on unknown task {name:?}", task.name)
                    })?;
                    deps[i].push(j);
                    if d.contains(&format!("{name}.Failed"))
                        || d.contains(&format!("{name}.Errored"))
                        || d.contains(&format!("{name}.Completed"))
                        || d.contains(&format!("{name}.AllFailed"))
                        || d.contains(&format!("{name}.AnySucceeded"))
                    {
                        failure_handled[j] = true;
                    }
                }
                depends[i] = Some(parsed);
            } else {
                for name in &task.dependencies {
                    let j = *by_name.get(name).ok_or_else(|| {
                        format!("task {:?} depends on unknown task {name:?}", task.name)
                    })?;
                    deps[i].push(j);
                }
            }
        }
        let mut dependents = vec![Vec::new(); tasks.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &j in ds {
                dependents[j].push(i);
            }
        }
        let vars = self.scope_mut(id).clone();
        let target = dag
            .target
            .as_ref()
            .map(|t| weft_expr::substitute(t, &vars, Missing::Keep).unwrap_or_default());
        let mut in_target = vec![target.is_none(); tasks.len()];
        if let Some(target) = target {
            let mut stack: Vec<usize> = Vec::new();
            for name in target
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
            {
                stack.push(
                    *by_name
                        .get(name)
                        .ok_or_else(|| format!("target task {name:?} not found"))?,
                );
            }
            while let Some(i) = stack.pop() {
                if !in_target[i] {
                    in_target[i] = true;
                    stack.extend(deps[i].iter().copied());
                }
            }
        }
        // Existing children (after a restore).
        let mut node = vec![None; tasks.len()];
        let mut omitted = vec![false; tasks.len()];
        let prefix = format!("{}.", self.nodes[id].name);
        for c in self.children_of(id) {
            let n = &self.nodes[c];
            if let Some(task) = n.name.strip_prefix(&prefix)
                && let Some(&i) = by_name.get(task)
            {
                node[i] = Some(c.clone());
                if n.phase == Phase::Omitted {
                    omitted[i] = true;
                }
            }
        }
        self.dags.insert(
            id.to_string(),
            DagIndex {
                tasks,
                by_name,
                deps,
                depends,
                dependents,
                node,
                omitted,
                in_target,
                stop: false,
                failure_handled,
            },
        );
        Ok(())
    }

    fn advance_dag(&mut self, id: &str, hint: Option<&str>) {
        if let Err(e) = self.dag_index(id) {
            self.finish(id, Phase::Error, Some(e));
            return;
        }
        // Which tasks to look at: dependents of the finished child, or all.
        let candidates: Vec<usize> = {
            let idx = &self.dags[id];
            match hint.and_then(|h| idx.node.iter().position(|n| n.as_deref() == Some(h))) {
                Some(j) => {
                    let mut c = idx.dependents[j].clone();
                    c.push(j);
                    c
                }
                None => (0..idx.tasks.len()).collect(),
            }
        };
        // Record the finished task's variables (loops record in advance_taskgroup).
        if let Some(h) = hint
            && self.settled(h)
            && self.nodes.get(h).is_some_and(|n| {
                n.node_type != NodeType::TaskGroup && n.parent.as_deref() == Some(id)
            })
        {
            self.record_task(id, h);
        }
        // failFast bookkeeping for the finished child.
        let fail_fast = self
            .template_of(id)
            .and_then(|t| t.dag.as_ref().and_then(|d| d.fail_fast))
            .unwrap_or(true);
        if let Some(h) = hint
            && let Some(n) = self.nodes.get(h)
            && !n.phase.is_ok()
            && !continues(n)
        {
            let idx = self.dags.get_mut(id).expect("built");
            if let Some(j) = idx.node.iter().position(|x| x.as_deref() == Some(h))
                && !idx.failure_handled[j]
                && fail_fast
            {
                idx.stop = true;
            }
        }
        let mut work: VecDeque<usize> = candidates.into_iter().collect();
        let mut to_start = Vec::new();
        while let Some(i) = work.pop_front() {
            let idx = &self.dags[id];
            if !idx.in_target[i] || idx.node[i].is_some() || idx.omitted[i] {
                continue;
            }
            match self.task_ready(id, i) {
                None => {}
                Some(true) if !self.dags[id].stop => to_start.push(i),
                Some(true) => {}
                Some(false) => {
                    self.dags.get_mut(id).expect("built").omitted[i] = true;
                    let dag_name = self.nodes[id].name.clone();
                    let task = self.dags[id].tasks[i].name.clone();
                    let nid = self.create_skipped(
                        id,
                        format!("{dag_name}.{task}"),
                        task,
                        Phase::Omitted,
                        "omitted: depends condition not met".into(),
                        Some(id.to_string()),
                    );
                    self.dags.get_mut(id).expect("built").node[i] = Some(nid);
                    work.extend(self.dags[id].dependents[i].iter().copied());
                }
            }
        }
        for i in to_start {
            self.start_task(id, i);
        }
        // Done?
        let idx = &self.dags[id];
        let mut all_done = true;
        for i in 0..idx.tasks.len() {
            if !idx.in_target[i] {
                continue;
            }
            match &idx.node[i] {
                Some(n) if self.settled(n) => {}
                Some(_) => {
                    all_done = false;
                    break;
                }
                None if idx.stop => {}
                None => {
                    all_done = false;
                    break;
                }
            }
        }
        if !all_done {
            return;
        }
        let mut phase = Phase::Succeeded;
        let mut message = None;
        for i in 0..idx.tasks.len() {
            if let Some(n) = idx.node[i].as_ref().and_then(|n| self.nodes.get(n))
                && matches!(n.phase, Phase::Failed | Phase::Error)
                && !continues(n)
                && !idx.failure_handled[i]
            {
                (phase, message) = child_failure(n);
                break;
            }
        }
        self.finish(id, phase, message);
    }

    /// Can task `i` of DAG `id` start? None: not decidable yet.
    fn task_ready(&self, id: &str, i: usize) -> Option<bool> {
        let idx = &self.dags[id];
        for &j in &idx.deps[i] {
            match &idx.node[j] {
                Some(n) if self.settled(n) => {}
                _ => return None,
            }
        }
        let phase_of = |name: &str| -> Option<(&Node, usize)> {
            let j = *idx.by_name.get(name)?;
            let n = self.nodes.get(idx.node[j].as_ref()?)?;
            Some((n, j))
        };
        match &idx.depends[i] {
            Some(d) => d.eval(&|name, r| {
                let (n, _) = phase_of(name)?;
                let kids = || {
                    self.children_of(&n.id)
                        .iter()
                        .filter_map(|c| self.nodes.get(c))
                };
                Some(match r {
                    DependResult::Succeeded => n.phase == Phase::Succeeded,
                    DependResult::Failed => n.phase == Phase::Failed,
                    DependResult::Errored => n.phase == Phase::Error,
                    DependResult::Skipped => n.phase == Phase::Skipped,
                    DependResult::Omitted => n.phase == Phase::Omitted,
                    DependResult::Daemoned => false,
                    DependResult::Completed => matches!(n.phase, Phase::Succeeded | Phase::Failed),
                    DependResult::AnySucceeded => {
                        if n.node_type == NodeType::TaskGroup {
                            kids().any(|k| k.phase == Phase::Succeeded)
                        } else {
                            n.phase == Phase::Succeeded
                        }
                    }
                    DependResult::AllFailed => {
                        if n.node_type == NodeType::TaskGroup {
                            let mut k = kids().peekable();
                            k.peek().is_some() && k.all(|k| k.phase == Phase::Failed)
                        } else {
                            n.phase == Phase::Failed
                        }
                    }
                })
            }),
            None => Some(idx.deps[i].iter().all(|&j| {
                let n = &self.nodes[idx.node[j].as_ref().expect("checked")];
                n.phase.is_ok() || continues(n)
            })),
        }
    }

    fn start_task(&mut self, dag_id: &str, i: usize) {
        let task = self.dags[dag_id].tasks[i].clone();
        let dag_name = self.nodes[dag_id].name.clone();
        let scope = self.nodes[dag_id].template_scope.clone();
        let in_exit = self.nodes[dag_id]
            .invocation
            .as_ref()
            .is_some_and(|i| i.in_exit);
        let name = format!("{dag_name}.{}", task.name);
        let items = match self.loop_items(dag_id, &task) {
            Ok(x) => x,
            Err(e) => {
                let nid = self.create_skipped(
                    dag_id,
                    name,
                    task.name.clone(),
                    Phase::Error,
                    e,
                    Some(dag_id.to_string()),
                );
                self.dags.get_mut(dag_id).expect("built").node[i] = Some(nid.clone());
                self.push(Work::ChildDone {
                    parent: dag_id.to_string(),
                    child: nid,
                });
                return;
            }
        };
        match items {
            None => {
                let nid = match self.prepare_step(dag_id, &task, None, &scope, in_exit) {
                    Ok(Some(inv)) => {
                        let nid = self.create_node(
                            Some(dag_id),
                            name,
                            task.name.clone(),
                            inv,
                            Some(dag_id.to_string()),
                            None,
                        );
                        self.push(Work::Advance(nid.clone()));
                        nid
                    }
                    Ok(None) => {
                        let when = task.when.clone().unwrap_or_default();
                        let nid = self.create_skipped(
                            dag_id,
                            name,
                            task.name.clone(),
                            Phase::Skipped,
                            format!("when '{when}' evaluated false"),
                            Some(dag_id.to_string()),
                        );
                        self.push(Work::ChildDone {
                            parent: dag_id.to_string(),
                            child: nid.clone(),
                        });
                        nid
                    }
                    Err(e) => {
                        let nid = self.create_skipped(
                            dag_id,
                            name,
                            task.name.clone(),
                            Phase::Error,
                            e,
                            Some(dag_id.to_string()),
                        );
                        self.push(Work::ChildDone {
                            parent: dag_id.to_string(),
                            child: nid.clone(),
                        });
                        nid
                    }
                };
                self.dags.get_mut(dag_id).expect("built").node[i] = Some(nid);
            }
            Some(items) => {
                let gid = node_id(&self.wf.name, &name);
                let seq = self.wf.next_seq;
                self.wf.next_seq += 1;
                self.mark_wf();
                let mut g = Node::new(
                    gid.clone(),
                    name.clone(),
                    task.name.clone(),
                    NodeType::TaskGroup,
                    seq,
                );
                g.parent = Some(dag_id.to_string());
                g.boundary_id = Some(dag_id.to_string());
                g.phase = Phase::Running;
                g.started = true;
                g.started_ms = Some(self.now);
                g.depth = self.nodes[dag_id].depth + 1;
                g.template_scope = scope.clone();
                g.invocation = self.nodes[dag_id].invocation.clone().map(|inv| Invocation {
                    continue_on: task.continue_on.clone(),
                    no_retry: true,
                    on_exit: None,
                    ..inv
                });
                self.children
                    .entry(dag_id.to_string())
                    .or_default()
                    .push(gid.clone());
                self.nodes.insert(gid.clone(), g);
                self.mark(&gid);
                self.dags.get_mut(dag_id).expect("built").node[i] = Some(gid.clone());
                let mut created = Vec::new();
                for (k, it) in items.into_iter().enumerate() {
                    let label = loop_label(k, &it);
                    let cname = format!("{name}{label}");
                    let display = format!("{}{label}", task.name);
                    match self.prepare_step(dag_id, &task, Some(&it), &scope, in_exit) {
                        Ok(Some(inv)) => created.push(self.create_node(
                            Some(&gid),
                            cname,
                            display,
                            inv,
                            Some(dag_id.to_string()),
                            Some(it),
                        )),
                        Ok(None) => {
                            let when = task.when.clone().unwrap_or_default();
                            self.create_skipped(
                                &gid,
                                cname,
                                display,
                                Phase::Skipped,
                                format!("when '{when}' evaluated false"),
                                Some(dag_id.to_string()),
                            );
                        }
                        Err(e) => {
                            self.create_skipped(
                                &gid,
                                cname,
                                display,
                                Phase::Error,
                                e,
                                Some(dag_id.to_string()),
                            );
                        }
                    }
                }
                for c in created {
                    self.push(Work::Advance(c));
                }
                self.push(Work::Advance(gid));
            }
        }
    }

    fn advance_taskgroup(&mut self, gid: &str) {
        let children = self.children_of(gid).to_vec();
        let Some((phase, message)) = self.group_outcome(&children) else {
            return;
        };
        let dag_id = self.nodes[gid]
            .parent
            .clone()
            .expect("task groups have a parent");
        let task = self.nodes[gid].display_name.clone();
        self.finish(gid, phase, message);
        self.record_unit(&dag_id, &format!("tasks.{task}"), &children, true);
    }

    /// Record a finished DAG task's variables (non-loop tasks; loops record in
    /// `advance_taskgroup`).
    pub(super) fn record_task(&mut self, dag_id: &str, child: &str) {
        let task = self.nodes[child].display_name.clone();
        self.record_unit(
            dag_id,
            &format!("tasks.{task}"),
            &[child.to_string()],
            false,
        );
    }
}

/// How a parent fails for its failed child `n`: Error stays Error, anything
/// else is Failed.
fn child_failure(n: &Node) -> (Phase, Option<String>) {
    let phase = if n.phase == Phase::Error {
        Phase::Error
    } else {
        Phase::Failed
    };
    (phase, Some(format!("child '{}' failed", n.id)))
}

/// A failed node whose `continueOn` tolerates the failure.
fn continues(n: &Node) -> bool {
    let Some(c) = n.invocation.as_ref().and_then(|i| i.continue_on.as_ref()) else {
        return false;
    };
    match n.phase {
        Phase::Failed => c.failed == Some(true),
        Phase::Error => c.error == Some(true),
        _ => false,
    }
}

fn out_param(p: &Parameter, value: String) -> Parameter {
    Parameter {
        name: p.name.clone(),
        value: Some(AnyString(value)),
        global_name: p.global_name.clone(),
        ..Default::default()
    }
}

fn is_transient(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "connection reset",
        "timeout",
        "timed out",
        "temporarily",
        "transient",
        "eof",
        "too many requests",
        "connection refused",
    ]
    .iter()
    .any(|k| m.contains(k))
}

fn truncate(s: &str) -> String {
    if s.len() <= 200 {
        s.to_string()
    } else {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// A tiny printf for withSequence formats like `%02d`, `%d`, `%x`, `test-%03d`.
fn sprintf_int(fmt: &str, n: i64) -> String {
    let Some(pos) = fmt.find('%') else {
        return fmt.to_string();
    };
    let rest = &fmt[pos + 1..];
    let spec_len = rest
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| i + 1)
        .unwrap_or(rest.len());
    let spec = &rest[..spec_len];
    let (flags, conv) = spec.split_at(spec.len().saturating_sub(1));
    let zero = flags.starts_with('0');
    let width: usize = flags.trim_start_matches('0').parse().unwrap_or(0);
    let body = match conv {
        "x" => format!("{n:x}"),
        "X" => format!("{n:X}"),
        "o" => format!("{n:o}"),
        _ => n.to_string(),
    };
    let padded = if body.len() < width {
        let pad = if zero { "0" } else { " " }.repeat(width - body.len());
        format!("{pad}{body}")
    } else {
        body
    };
    format!("{}{}{}", &fmt[..pos], padded, &rest[spec_len..])
}
