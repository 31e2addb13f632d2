//! Structure of a workflow spec: entrypoint, template references, duplicate
//! names, template bodies and DAG dependencies.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use weft_expr::Depends;

use super::known::kind_name;
use super::{Ctx, group_steps, items, list, text, types, vars};

/// What kind of object holds the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Workflow, or a CronWorkflow's `workflowSpec`: needs an entrypoint.
    Workflow,
    /// WorkflowTemplate or ClusterWorkflowTemplate: entrypoint optional,
    /// `workflow.parameters` come from the submitting Workflow.
    Template,
}

/// The fields that give a template its body; exactly one must be set.
pub(super) const BODIES: [&str; 10] = [
    "container",
    "script",
    "steps",
    "dag",
    "suspend",
    "containerSet",
    "http",
    "plugin",
    "resource",
    "data",
];

/// Template names a `template:` field may name.
pub(super) struct Names {
    pub names: BTreeSet<String>,
    /// Some templates come from a WorkflowTemplate lint cannot see: do not
    /// report unknown names.
    pub open: bool,
}

pub(super) fn check(cx: &mut Ctx, spec: &Value, base: &str, mode: Mode) {
    let templates = items(spec, "templates");
    let mut names = Names {
        names: BTreeSet::new(),
        open: false,
    };
    for (i, t) in templates.iter().enumerate() {
        let path = format!("{base}/templates/{i}/name");
        match text(t, "name") {
            None | Some("") => cx.error(&path, "template has no `name`"),
            Some(n) if !names.names.insert(n.to_string()) => {
                cx.error(&path, format!("duplicate template name {n:?}"))
            }
            Some(_) => {}
        }
    }

    // workflowTemplateRef: the referenced template's templates join ours.
    let mut ref_entrypoint = None;
    let wt_ref = spec.get("workflowTemplateRef");
    if let Some(r) = wt_ref {
        let cluster = r.get("clusterScope").and_then(Value::as_bool) == Some(true);
        let name = text(r, "name").unwrap_or_default();
        match cx.known.get(cluster, name) {
            Some(k) => {
                names.names.extend(k.templates.iter().cloned());
                ref_entrypoint = Some(k.entrypoint.clone());
            }
            None => {
                names.open = true;
                cx.error(
                    &format!("{base}/workflowTemplateRef/name"),
                    format!("unknown {} {name:?}", kind_name(cluster)),
                );
            }
        }
    }

    let entry_path = format!("{base}/entrypoint");
    match text(spec, "entrypoint").filter(|e| !e.is_empty()) {
        None if mode == Mode::Workflow && wt_ref.is_none() => cx.error(
            &entry_path,
            "missing `entrypoint`: name the template to run first (or use `workflowTemplateRef`)",
        ),
        None if mode == Mode::Workflow && ref_entrypoint == Some(None) => cx.error(
            &entry_path,
            "missing `entrypoint`: neither this workflow nor its workflowTemplateRef sets one",
        ),
        Some(e) if !names.open && !e.contains("{{") && !names.names.contains(e) => cx.error(
            &entry_path,
            format!(
                "entrypoint {e:?} names no template (templates: {})",
                list(&names.names)
            ),
        ),
        _ => {}
    }

    if let Some(on_exit) = text(spec, "onExit") {
        template_name(cx, &names, on_exit, &format!("{base}/onExit"));
    }
    hooks(cx, &names, spec, base);
    parameters(cx, spec.get("arguments"), &format!("{base}/arguments"));
    types::spec(cx, spec, base);
    if let Some(d) = spec.get("templateDefaults") {
        types::template(cx, d, &format!("{base}/templateDefaults"));
    }
    for (i, t) in templates.iter().enumerate() {
        template(cx, &names, t, &format!("{base}/templates/{i}"));
    }
    vars::spec(cx, spec, base, mode);
}

/// An Argo kind weft does not run: a warning, and the WorkflowTemplate a
/// WorkflowEventBinding submits must exist.
pub(super) fn other_kind(cx: &mut Ctx) {
    let kind = cx.doc.kind.clone();
    cx.warning(
        "/kind",
        format!("weft does not run {kind} objects; only its references are checked"),
    );
    let path = "/spec/submit/workflowTemplateRef";
    if let Some(r) = cx.doc.value.pointer(path) {
        let cluster = r.get("clusterScope").and_then(Value::as_bool) == Some(true);
        let name = text(r, "name").unwrap_or_default();
        if cx.known.get(cluster, name).is_none() {
            cx.error(
                &format!("{path}/name"),
                format!("unknown {} {name:?}", kind_name(cluster)),
            );
        }
    }
}

/// One template of `spec.templates`, or an inline one.
fn template(cx: &mut Ctx, names: &Names, t: &Value, path: &str) {
    let label = text(t, "name").unwrap_or("(inline)");
    let bodies: Vec<&str> = BODIES
        .into_iter()
        .filter(|k| t.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if bodies.is_empty() {
        cx.error_at(
            path,
            &format!("{path}/name"),
            format!(
                "template {label:?} has no body: set one of {}",
                BODIES.join(", ")
            ),
        );
    } else if bodies.len() > 1 {
        cx.error(
            &format!("{path}/{}", bodies[1]),
            format!(
                "template {label:?} has more than one body: {}",
                bodies.join(", ")
            ),
        );
    }
    let inputs = t.get("inputs");
    parameters(cx, inputs, &format!("{path}/inputs"));
    parameters(cx, t.get("outputs"), &format!("{path}/outputs"));
    types::template(cx, t, path);

    if let Some(groups) = t.get("steps").and_then(Value::as_array) {
        let mut seen = BTreeSet::new();
        for (g, group) in groups.iter().enumerate() {
            let (steps, sub) = group_steps(group);
            for (s, step) in steps.iter().enumerate() {
                let sp = format!("{path}/steps/{g}{sub}/{s}");
                let name = text(step, "name").unwrap_or_default();
                if name.is_empty() {
                    cx.error(&format!("{sp}/name"), "step has no `name`");
                } else if !seen.insert(name) {
                    cx.error(
                        &format!("{sp}/name"),
                        format!("duplicate step name {name:?} in template {label:?}"),
                    );
                }
                holder(cx, names, step, &sp);
            }
        }
    }
    if let Some(dag) = t.get("dag") {
        self::dag(cx, names, dag, &format!("{path}/dag"), label);
    }
}

/// A step, DAG task or hook: what it calls, its arguments, its type errors.
fn holder(cx: &mut Ctx, names: &Names, step: &Value, path: &str) {
    let name = text(step, "name").unwrap_or_default();
    let inline = step.get("inline").filter(|v| !v.is_null());
    match (text(step, "template"), step.get("templateRef"), inline) {
        (Some(t), _, _) => template_name(cx, names, t, &format!("{path}/template")),
        (None, Some(r), _) => template_ref(cx, r, &format!("{path}/templateRef")),
        (None, None, Some(t)) => template(cx, names, t, &format!("{path}/inline")),
        (None, None, None) => cx.error(
            path,
            format!("{name:?} calls no template: set `template`, `templateRef` or `inline`"),
        ),
    }
    if let Some(on_exit) = text(step, "onExit") {
        template_name(cx, names, on_exit, &format!("{path}/onExit"));
    }
    hooks(cx, names, step, path);
    parameters(cx, step.get("arguments"), &format!("{path}/arguments"));
    types::step(cx, step, path);
}

/// `hooks.<name>` of a spec or a step.
fn hooks(cx: &mut Ctx, names: &Names, v: &Value, path: &str) {
    if let Some(hooks) = v.get("hooks").and_then(Value::as_object) {
        for (k, h) in hooks {
            let hp = format!("{path}/hooks/{}", k.replace('~', "~0").replace('/', "~1"));
            match (text(h, "template"), h.get("templateRef")) {
                (Some(t), _) => template_name(cx, names, t, &format!("{hp}/template")),
                (None, Some(r)) => template_ref(cx, r, &format!("{hp}/templateRef")),
                (None, None) => cx.error(
                    &hp,
                    format!("hook {k:?} calls no template: set `template` or `templateRef`"),
                ),
            }
        }
    }
}

fn template_name(cx: &mut Ctx, names: &Names, name: &str, path: &str) {
    if !names.open && !name.contains("{{") && !names.names.contains(name) {
        cx.error(
            path,
            format!(
                "no template named {name:?} (templates: {})",
                list(&names.names)
            ),
        );
    }
}

fn template_ref(cx: &mut Ctx, r: &Value, path: &str) {
    let cluster = r.get("clusterScope").and_then(Value::as_bool) == Some(true);
    let kind = kind_name(cluster);
    let (Some(name), Some(tmpl)) = (text(r, "name"), text(r, "template")) else {
        cx.error(path, "`templateRef` needs both `name` and `template`");
        return;
    };
    if name.contains("{{") || tmpl.contains("{{") {
        return;
    }
    match cx.known.get(cluster, name) {
        None => cx.error(&format!("{path}/name"), format!("unknown {kind} {name:?}")),
        Some(k) if !k.templates.contains(tmpl) => cx.error(
            &format!("{path}/template"),
            format!(
                "{kind} {name:?} has no template {tmpl:?} (templates: {})",
                list(&k.templates)
            ),
        ),
        Some(_) => {}
    }
}

/// Duplicate names among `parameters`, and values outside their `enum`.
fn parameters(cx: &mut Ctx, holder: Option<&Value>, path: &str) {
    let Some(holder) = holder else { return };
    let mut seen = BTreeSet::new();
    for (i, p) in items(holder, "parameters").iter().enumerate() {
        let pp = format!("{path}/parameters/{i}");
        if let Some(name) = text(p, "name")
            && !seen.insert(name)
        {
            cx.error(
                &format!("{pp}/name"),
                format!("duplicate parameter name {name:?}"),
            );
        }
        types::enumeration(cx, p, &pp);
    }
}

fn dag(cx: &mut Ctx, names: &Names, dag: &Value, path: &str, label: &str) {
    let tasks = items(dag, "tasks");
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, task) in tasks.iter().enumerate() {
        let tp = format!("{path}/tasks/{i}");
        let name = text(task, "name").unwrap_or_default();
        if name.is_empty() {
            cx.error(&format!("{tp}/name"), "task has no `name`");
        } else if index.contains_key(name) {
            cx.error(
                &format!("{tp}/name"),
                format!("duplicate task name {name:?} in DAG template {label:?}"),
            );
        } else {
            index.insert(name, i);
        }
        holder(cx, names, task, &tp);
    }

    // Edges: task → the tasks it waits for.
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, task) in tasks.iter().enumerate() {
        let tp = format!("{path}/tasks/{i}");
        let deps = items(task, "dependencies");
        for (k, d) in deps.iter().enumerate() {
            let Some(d) = d.as_str() else { continue };
            match index.get(d) {
                Some(j) => edges[i].push(*j),
                None => cx.error(
                    &format!("{tp}/dependencies/{k}"),
                    format!("unknown task {d:?} in `dependencies`"),
                ),
            }
        }
        let Some(depends) = text(task, "depends") else {
            continue;
        };
        let dp = format!("{tp}/depends");
        if !deps.is_empty() {
            cx.error(&dp, "task sets both `dependencies` and `depends`: use one");
        }
        if depends.contains("{{") {
            continue;
        }
        match Depends::parse(depends) {
            Err(e) => cx.error(&dp, e.to_string()),
            Ok(d) => {
                for t in d.tasks() {
                    match index.get(t.as_str()) {
                        Some(j) => edges[i].push(*j),
                        None => cx.error(&dp, format!("`depends` names unknown task {t:?}")),
                    }
                }
            }
        }
    }

    if let Some(target) = text(dag, "target").filter(|t| !t.contains("{{")) {
        for t in target.split([' ', ',']).filter(|t| !t.is_empty()) {
            if !index.contains_key(t) {
                cx.error(
                    &format!("{path}/target"),
                    format!("`target` names unknown task {t:?}"),
                );
            }
        }
    }

    for cycle in cycles(&edges) {
        let first = cycle[0];
        let field = if tasks[first].get("depends").is_some() {
            "depends"
        } else {
            "dependencies"
        };
        let mut names: Vec<&str> = cycle
            .iter()
            .map(|i| text(&tasks[*i], "name").unwrap_or_default())
            .collect();
        names.push(names[0]);
        cx.error(
            &format!("{path}/tasks/{first}/{field}"),
            format!("dependency cycle: {}", names.join(" -> ")),
        );
    }
}

/// Cycles of a graph, each once, as the list of its nodes (an iterative DFS,
/// so deep graphs cannot overflow the stack).
fn cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color = vec![Color::White; edges.len()];
    let mut found = Vec::new();
    for start in 0..edges.len() {
        if color[start] != Color::White {
            continue;
        }
        color[start] = Color::Grey;
        let mut stack = vec![(start, 0usize)];
        while let Some((v, k)) = stack.last().copied() {
            if let Some(&w) = edges[v].get(k) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match color[w] {
                    Color::White => {
                        color[w] = Color::Grey;
                        stack.push((w, 0));
                    }
                    Color::Grey => {
                        let pos = stack.iter().position(|(x, _)| *x == w).unwrap_or(0);
                        found.push(stack[pos..].iter().map(|(x, _)| *x).collect());
                    }
                    Color::Black => {}
                }
            } else {
                color[v] = Color::Black;
                stack.pop();
            }
        }
    }
    found
}
