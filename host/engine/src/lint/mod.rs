//! `weft lint`: find the mistakes Argo would reject (or silently mis-run)
//! before a workflow is stored or started.
//!
//! [`lint`] takes every parsed [`Document`] of the files given together, so a
//! Workflow's `templateRef` may name a WorkflowTemplate from another file; the
//! caller adds the templates already in the store through [`KnownTemplates`].
//! Each problem is a [`Diagnostic`] with `file:line:column`, the JSON-pointer
//! field path and a one-line message.
//!
//! The checks work on the raw JSON of each document (so one type error does
//! not hide the rest) and are conservative: whatever Argo's own validation
//! accepts must not be reported as an error. Layout:
//!
//! - [`known`]: WorkflowTemplate / ClusterWorkflowTemplate names and their templates.
//! - [`spec`]: entrypoint, template references, duplicate names, template bodies, DAGs.
//! - [`types`]: field types and values (`retryStrategy.limit`, `withItems`, `when`, `enum`, …).
//! - [`vars`]: `{{…}}` variables that resolve to nothing.
//!
//! May depend on: [`crate::model`] and `weft-expr`.

mod known;
mod spec;
mod types;
mod vars;

#[cfg(test)]
mod tests;

use serde_json::{Value, json};

use crate::model::{Document, LoadError};

pub use known::KnownTemplates;

/// How bad a [`Diagnostic`] is: errors stop `weft run` / `weft template create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem, located in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Field path such as `/spec/templates/2/dag/tasks/1/depends` (`/` for the document).
    pub path: String,
    /// One line.
    pub message: String,
    pub severity: Severity,
}

impl Diagnostic {
    /// The `-o json` form of one diagnostic (`weft lint -o json` prints a list of these).
    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "severity": self.severity.as_str(),
        })
    }
}

impl From<LoadError> for Diagnostic {
    fn from(e: LoadError) -> Self {
        Diagnostic {
            file: e.file,
            line: e.line,
            column: e.column,
            path: e.path,
            message: e.message.replace('\n', " "),
            severity: Severity::Error,
        }
    }
}

/// `file:line:column: error: path: message`
impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}: {}",
            self.file,
            self.line,
            self.column,
            self.severity.as_str(),
            self.path,
            self.message
        )
    }
}

/// Lint every document of the given files together. Diagnostics come in
/// document order, and by position within a document.
pub fn lint(docs: &[Document], known: &KnownTemplates) -> Vec<Diagnostic> {
    let mut all = Vec::new();
    for doc in docs {
        let mut cx = Ctx {
            doc,
            known,
            out: Vec::new(),
        };
        let base = match doc.kind.as_str() {
            "Workflow" => Some(("/spec", spec::Mode::Workflow)),
            "CronWorkflow" => Some(("/spec/workflowSpec", spec::Mode::Workflow)),
            "WorkflowTemplate" | "ClusterWorkflowTemplate" => Some(("/spec", spec::Mode::Template)),
            _ => None,
        };
        if let Some((base, mode)) = base {
            let spec = doc.value.pointer(base).unwrap_or(&Value::Null);
            spec::check(&mut cx, spec, base, mode);
            if doc.kind == "CronWorkflow" {
                cron_spec(&mut cx);
            }
        } else if is_other_argo_kind(doc) {
            spec::other_kind(&mut cx);
            all.extend(cx.out);
            continue;
        }
        // Type errors from the typed model, unless a check above already
        // reported the same field in its own words.
        if let Err(e) = doc.object()
            && !cx.out.iter().any(|d| overlaps(&d.path, &e.path))
        {
            cx.out.push(e.into());
        }
        cx.out.sort_by_key(|d| (d.line, d.column));
        all.extend(cx.out);
    }
    all
}

/// Parse `(file name, text)` sources and lint them together with `known`;
/// files that do not parse become diagnostics too.
pub fn lint_sources(sources: &[(&str, &str)], known: &KnownTemplates) -> Vec<Diagnostic> {
    let mut docs = Vec::new();
    let mut out = Vec::new();
    for (file, text) in sources {
        match crate::model::parse_str(file, text) {
            Ok(d) => docs.extend(d),
            Err(e) => out.push(Diagnostic::from(e)),
        }
    }
    let mut known = known.clone();
    known.extend_from_documents(&docs);
    out.extend(lint(&docs, &known));
    out
}

/// Argo kinds weft does not run but a directory of Argo files may hold.
const OTHER_ARGO_KINDS: [&str; 4] = [
    "WorkflowEventBinding",
    "WorkflowTaskSet",
    "WorkflowTaskResult",
    "WorkflowArtifactGCTask",
];

fn is_other_argo_kind(doc: &Document) -> bool {
    let api = text(&doc.value, "apiVersion").unwrap_or_default();
    api.starts_with("argoproj.io/") && OTHER_ARGO_KINDS.contains(&doc.kind.as_str())
}

/// Is one path the other, or an ancestor of it?
fn overlaps(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('/');
    let b = b.trim_end_matches('/');
    a == b || b.starts_with(&format!("{a}/")) || a.starts_with(&format!("{b}/"))
}

/// The document being linted and the diagnostics found so far.
struct Ctx<'a> {
    doc: &'a Document,
    known: &'a KnownTemplates,
    out: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn report(&mut self, severity: Severity, path: &str, message: String) {
        let e = self.doc.error(path, message);
        let mut d = Diagnostic::from(e);
        d.severity = severity;
        self.out.push(d);
    }
    /// An error about `path`, shown at the position of `at` (a field of it).
    fn error_at(&mut self, path: &str, at: &str, message: impl Into<String>) {
        self.error(path, message);
        if let Some(d) = self.out.last_mut() {
            (d.line, d.column) = self.doc.source.locate(at);
        }
    }
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.report(Severity::Error, path, message.into());
    }
    fn warning(&mut self, path: &str, message: impl Into<String>) {
        self.report(Severity::Warning, path, message.into());
    }
}

/// A CronWorkflow's own fields (schedules, timezone, concurrencyPolicy, limits),
/// checked as the cron loop reads them: the first problem, named like Argo
/// (`spec.schedules[0]: cron schedule "…" is malformed: …`).
fn cron_spec(cx: &mut Ctx) {
    let Some(spec) = cx.doc.value.get("spec") else {
        return;
    };
    // A spec of the wrong shape is reported by the typed model.
    let Ok(spec) = serde_json::from_value::<crate::model::CronWorkflowSpec>(spec.clone()) else {
        return;
    };
    if let Err(e) = crate::cron::Schedules::parse(&spec) {
        cx.error(&e.pointer(), e.to_string());
    }
}

/// The array at `v[key]`, or nothing.
fn items<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The string at `v[key]`.
fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// A `steps` group: a list of steps, or `{steps: [...]}`.
fn group_steps(group: &Value) -> (&[Value], &'static str) {
    match group {
        Value::Array(a) => (a.as_slice(), ""),
        other => (items(other, "steps"), "/steps"),
    }
}

/// `names` for a message: `a, b, c` (at most 8, then `…`).
fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let mut v: Vec<String> = names.into_iter().map(|s| s.as_ref().to_string()).collect();
    if v.is_empty() {
        return "none".into();
    }
    if v.len() > 8 {
        v.truncate(8);
        v.push("…".into());
    }
    v.join(", ")
}
