//! `{{…}}` variables that resolve to nothing, judged as Argo's validation
//! does: by the scope of the template, step group or loop they appear in.
//!
//! Only simple tags are checked; `{{=…}}` expressions are only checked for
//! being non-empty. Names under roots Argo does not validate (`status`,
//! `duration`, `retries`, `cronworkflow.*`, …) are accepted; names under no
//! known root at all are warnings, since Argo leaves them as text.

use std::collections::BTreeSet;
use std::rc::Rc;

use serde_json::Value;
use weft_expr::references;

use super::spec::Mode;
use super::{Ctx, group_steps, items, text};

/// What every template of a spec may refer to.
struct Globals {
    /// Declared `spec.arguments.parameters`; `None`: any (WorkflowTemplates,
    /// and Workflows whose parameters come from a `workflowTemplateRef`).
    parameters: Option<BTreeSet<String>>,
}

/// `steps.<name>` visible at one point of a steps template.
#[derive(Clone, Default)]
struct Steps {
    /// Steps whose outputs are available (earlier groups; any in `outputs`).
    done: Rc<BTreeSet<String>>,
    /// Steps whose `.status` may be read (this group and earlier ones).
    status: Rc<BTreeSet<String>>,
    all: Rc<BTreeSet<String>>,
}

#[derive(Clone)]
struct Scope<'a> {
    globals: &'a Globals,
    template: String,
    /// Outside any template (workflow-level fields): only `workflow.*` is checked.
    global_only: bool,
    input_parameters: Rc<BTreeSet<String>>,
    input_artifacts: Rc<BTreeSet<String>>,
    steps: Option<Steps>,
    tasks: Option<Rc<BTreeSet<String>>>,
    item: bool,
}

enum Verdict {
    Ok,
    Undefined(String),
    UnknownRoot,
}

pub(super) fn spec(cx: &mut Ctx, spec: &Value, base: &str, mode: Mode) {
    let parameters =
        (mode == Mode::Workflow && spec.get("workflowTemplateRef").is_none()).then(|| {
            items(spec.get("arguments").unwrap_or(&Value::Null), "parameters")
                .iter()
                .filter_map(|p| text(p, "name"))
                .map(str::to_string)
                .collect()
        });
    let globals = Globals { parameters };
    let scope = Scope {
        globals: &globals,
        template: String::new(),
        global_only: true,
        input_parameters: Rc::default(),
        input_artifacts: Rc::default(),
        steps: None,
        tasks: None,
        item: false,
    };
    walk_except(cx, &scope, spec, base, &["templates", "templateDefaults"]);
    for (i, t) in items(spec, "templates").iter().enumerate() {
        template(cx, &globals, t, &format!("{base}/templates/{i}"));
    }
}

fn names_of(list: &[Value]) -> BTreeSet<String> {
    list.iter()
        .filter_map(|p| text(p, "name"))
        .map(str::to_string)
        .collect()
}

fn template(cx: &mut Ctx, globals: &Globals, t: &Value, path: &str) {
    let inputs = t.get("inputs").unwrap_or(&Value::Null);
    let groups: Vec<(&[Value], &str)> = items(t, "steps").iter().map(group_steps).collect();
    let all_steps: Rc<BTreeSet<String>> =
        Rc::new(groups.iter().flat_map(|(s, _)| names_of(s)).collect());
    let tasks = t.get("dag").map(|d| Rc::new(names_of(items(d, "tasks"))));
    let mut scope = Scope {
        globals,
        template: text(t, "name").unwrap_or("(inline)").to_string(),
        global_only: false,
        input_parameters: Rc::new(names_of(items(inputs, "parameters"))),
        input_artifacts: Rc::new(names_of(items(inputs, "artifacts"))),
        steps: t.get("steps").map(|_| Steps {
            done: all_steps.clone(),
            status: all_steps.clone(),
            all: all_steps.clone(),
        }),
        tasks,
        item: false,
    };
    // Everything but the steps and tasks themselves sees all of them (outputs, metrics, …).
    walk_except(cx, &scope, t, path, &["steps", "dag"]);

    let mut done = BTreeSet::new();
    for (g, (steps, sub)) in groups.iter().enumerate() {
        let group_names = names_of(steps);
        let status: Rc<BTreeSet<String>> = Rc::new(done.union(&group_names).cloned().collect());
        let done_here = Rc::new(done.clone());
        for (s, step) in steps.iter().enumerate() {
            scope.steps = Some(Steps {
                done: done_here.clone(),
                status: status.clone(),
                all: all_steps.clone(),
            });
            self::step(cx, &scope, step, &format!("{path}/steps/{g}{sub}/{s}"));
        }
        done.extend(group_names);
    }

    if let Some(dag) = t.get("dag") {
        scope.steps = None;
        let dp = format!("{path}/dag");
        walk_except(cx, &scope, dag, &dp, &["tasks"]);
        for (i, task) in items(dag, "tasks").iter().enumerate() {
            self::step(cx, &scope, task, &format!("{dp}/tasks/{i}"));
        }
    }
}

/// A step or task: `item` inside a loop; its hooks see every step; an inline
/// template has its own scope.
fn step(cx: &mut Ctx, scope: &Scope, step: &Value, path: &str) {
    let looped = ["withItems", "withParam", "withSequence"]
        .iter()
        .any(|k| step.get(*k).is_some_and(|v| !v.is_null()));
    let mut s = scope.clone();
    s.item = looped;
    walk_except(cx, &s, step, path, &["inline", "hooks"]);
    if let Some(hooks) = step.get("hooks") {
        if let Some(steps) = s.steps.as_mut() {
            steps.done = steps.all.clone();
            steps.status = steps.all.clone();
        }
        walk(cx, &s, hooks, &format!("{path}/hooks"));
    }
    if let Some(inline) = step.get("inline").filter(|v| v.is_object()) {
        template(cx, scope.globals, inline, &format!("{path}/inline"));
    }
}

fn walk_except(cx: &mut Ctx, scope: &Scope, v: &Value, path: &str, skip: &[&str]) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            if !skip.contains(&k.as_str()) {
                walk(cx, scope, child, &child_path(path, k));
            }
        }
    }
}

fn walk(cx: &mut Ctx, scope: &Scope, v: &Value, path: &str) {
    match v {
        Value::String(s) => check_text(cx, scope, s, path),
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                walk(cx, scope, child, &format!("{path}/{i}"));
            }
        }
        Value::Object(m) => {
            for (k, child) in m {
                walk(cx, scope, child, &child_path(path, k));
            }
        }
        _ => {}
    }
}

fn child_path(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn check_text(cx: &mut Ctx, scope: &Scope, s: &str, path: &str) {
    if !s.contains("{{") {
        return;
    }
    for (i, _) in s.match_indices("{{=") {
        if s[i + 3..].trim_start().starts_with("}}") {
            cx.error(path, "empty expression `{{=}}`");
        }
    }
    for r in references(s) {
        if r.expression || r.name.is_empty() {
            continue;
        }
        match classify(scope, &r.name) {
            Verdict::Ok => {}
            Verdict::Undefined(why) => cx.error(
                path,
                format!("undefined variable {{{{{}}}}}: {why}", r.name),
            ),
            Verdict::UnknownRoot => cx.warning(
                path,
                format!(
                    "unknown variable {{{{{}}}}}: Argo leaves it unresolved, as text",
                    r.name
                ),
            ),
        }
    }
}

/// Roots Argo substitutes in some contexts but never validates.
const UNCHECKED_ROOTS: [&str; 9] = [
    "status",
    "duration",
    "exitCode",
    "retries",
    "lastRetry",
    "resourcesDuration",
    "cronworkflow",
    "pod",
    "node",
];

fn classify(scope: &Scope, name: &str) -> Verdict {
    let (root, rest) = match name.split_once('.') {
        Some((r, rest)) => (r, Some(rest)),
        None => (name, None),
    };
    if root == "workflow" {
        return workflow(scope.globals, rest);
    }
    if UNCHECKED_ROOTS.contains(&root) || root == "outputs" {
        return Verdict::Ok;
    }
    if scope.global_only {
        return match root {
            "inputs" | "steps" | "tasks" | "item" => Verdict::Ok,
            _ => Verdict::UnknownRoot,
        };
    }
    let first = |rest: &str| rest.split('.').next().unwrap_or_default().to_string();
    match (root, rest) {
        ("inputs", Some("parameters")) => Verdict::Ok,
        ("inputs", Some(r)) if r.starts_with("parameters.") => {
            let p = first(&r["parameters.".len()..]);
            if scope.input_parameters.contains(&p) {
                Verdict::Ok
            } else {
                Verdict::Undefined(format!(
                    "template {:?} has no input parameter {p:?}",
                    scope.template
                ))
            }
        }
        ("inputs", Some(r)) if r.starts_with("artifacts.") => {
            let a = first(&r["artifacts.".len()..]);
            if scope.input_artifacts.contains(&a) {
                Verdict::Ok
            } else {
                Verdict::Undefined(format!(
                    "template {:?} has no input artifact {a:?}",
                    scope.template
                ))
            }
        }
        ("inputs", _) => Verdict::Undefined("inputs has only parameters and artifacts".into()),
        ("item", _) if scope.item => Verdict::Ok,
        ("item", _) => Verdict::Undefined(
            "only defined in a step or task with withItems, withParam or withSequence".into(),
        ),
        ("steps", rest) => steps(scope, rest.unwrap_or_default()),
        ("tasks", rest) => tasks(scope, rest.unwrap_or_default()),
        _ => Verdict::UnknownRoot,
    }
}

fn steps(scope: &Scope, rest: &str) -> Verdict {
    let Some(steps) = &scope.steps else {
        return Verdict::Undefined("`steps.*` is only defined in a steps template".into());
    };
    let (step, field) = rest.split_once('.').unwrap_or((rest, ""));
    let status = field == "status" && steps.status.contains(step);
    if rest == "name" || steps.done.contains(step) || status {
        Verdict::Ok
    } else if steps.all.contains(step) {
        Verdict::Undefined(format!(
            "step {step:?} has not run yet here (only steps of earlier groups can be referenced)"
        ))
    } else {
        Verdict::Undefined(format!(
            "template {:?} has no step {step:?}",
            scope.template
        ))
    }
}

fn tasks(scope: &Scope, rest: &str) -> Verdict {
    let Some(tasks) = &scope.tasks else {
        return Verdict::Undefined("`tasks.*` is only defined in a DAG template".into());
    };
    let task = rest.split('.').next().unwrap_or_default();
    if rest == "name" || tasks.contains(task) {
        Verdict::Ok
    } else {
        Verdict::Undefined(format!(
            "template {:?} has no task {task:?}",
            scope.template
        ))
    }
}

/// `workflow.*` variables.
fn workflow(globals: &Globals, rest: Option<&str>) -> Verdict {
    const EXACT: [&str; 13] = [
        "name",
        "namespace",
        "uid",
        "serviceAccountName",
        "duration",
        "priority",
        "status",
        "failures",
        "mainEntrypoint",
        "scheduledTime",
        "lastScheduledTime",
        "parameters",
        "creationTimestamp",
    ];
    const PREFIXES: [&str; 5] = [
        "creationTimestamp.",
        "labels.",
        "annotations.",
        "outputs.parameters.",
        "outputs.artifacts.",
    ];
    let Some(rest) = rest else {
        return Verdict::Undefined("no such workflow variable".into());
    };
    if EXACT.contains(&rest) || PREFIXES.iter().any(|p| rest.starts_with(p)) {
        return Verdict::Ok;
    }
    if let Some(p) = rest.strip_prefix("parameters.") {
        return match &globals.parameters {
            None => Verdict::Ok,
            Some(_) if p == "json" => Verdict::Ok,
            Some(declared) if declared.contains(p) => Verdict::Ok,
            Some(_) => Verdict::Undefined(format!(
                "the workflow declares no parameter {p:?} in spec.arguments.parameters"
            )),
        };
    }
    Verdict::Undefined("no such workflow variable".into())
}
