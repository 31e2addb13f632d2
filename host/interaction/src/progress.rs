//! Live progress: a tree like `argo watch` in a terminal, plain lines otherwise,
//! and the node tree printed by `weft get`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use weft_engine::model::Phase;
use weft_engine::runtime::{Engine, StateStore, Update, stored_status};
use weft_store::Store;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Redraw a tree in place (a terminal).
    Tree,
    /// One line per node phase change (pipes, CI logs).
    Lines,
    Quiet,
}

/// Watch a workflow until it finishes; returns its final phase.
pub async fn watch(
    engine: &Engine,
    store: &Store,
    ns: &str,
    name: &str,
    mode: Mode,
) -> Result<Phase> {
    if mode == Mode::Quiet {
        return wait_quietly(engine, store, ns, name).await;
    }
    let bar = (mode == Mode::Tree).then(|| {
        let b = ProgressBar::new_spinner();
        b.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut updates = engine.subscribe();
    loop {
        let status = match engine.live_status(ns, name).await {
            Some(s) => s,
            None => match store.load_workflow(ns, name).await? {
                Some((rec, nodes)) => stored_status(&rec, nodes)?,
                None => anyhow::bail!("workflow {name:?} vanished"),
            },
        };
        let phase = status
            .get("phase")
            .and_then(Value::as_str)
            .and_then(Phase::parse)
            .unwrap_or(Phase::Pending);
        match mode {
            Mode::Tree => {
                if let Some(b) = &bar {
                    b.set_message(format!(
                        "{name}  {phase}\n{}",
                        render_tree(name, &status, 60)
                    ));
                }
            }
            Mode::Lines => print_changes(&status, &mut seen),
            Mode::Quiet => {}
        }
        if phase.is_done() {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            return Ok(phase);
        }
        // Wake on the next engine update, at most every 100 ms, at least every
        // second — and at once when that update ends the workflow.
        let update = tokio::time::timeout(Duration::from_secs(1), updates.recv()).await;
        if let Ok(Ok(u)) = update
            && ends(&u, ns, name)
        {
            continue;
        }
        tokio::time::sleep(Duration::from_millis(if mode == Mode::Tree {
            100
        } else {
            20
        }))
        .await;
    }
}

/// Whether the engine's update `u` is workflow `ns/name` reaching its final phase.
fn ends(u: &Update, ns: &str, name: &str) -> bool {
    u.namespace == ns && u.name == name && u.phase.is_done()
}

/// The current phase: the engine's, or the store's once it is done. O(1).
async fn current_phase(engine: &Engine, store: &Store, ns: &str, name: &str) -> Result<Phase> {
    if let Some(p) = engine.live_phase(ns, name).await {
        return Ok(p);
    }
    match store.get_workflow(ns, name).await? {
        Some(rec) => Ok(Phase::parse(&rec.phase).unwrap_or(Phase::Pending)),
        None => anyhow::bail!("workflow {name:?} vanished"),
    }
}

/// Wait for the final phase without a snapshot of every node per engine turn
/// (that costs O(nodes) each time, which dominates big workflows): the engine's
/// updates carry the phase. The phase alone is read at the start, after a
/// quiet second, and when updates were lost.
async fn wait_quietly(engine: &Engine, store: &Store, ns: &str, name: &str) -> Result<Phase> {
    use tokio::sync::broadcast::error::RecvError;
    let mut updates = engine.subscribe();
    let mut check = true;
    loop {
        if check {
            let phase = current_phase(engine, store, ns, name).await?;
            if phase.is_done() {
                return Ok(phase);
            }
        }
        check = match tokio::time::timeout(Duration::from_secs(1), updates.recv()).await {
            Ok(Ok(u)) if ends(&u, ns, name) => {
                return Ok(u.phase);
            }
            Ok(Ok(_)) => false,
            Ok(Err(RecvError::Lagged(_))) | Err(_) => true,
            Ok(Err(RecvError::Closed)) => {
                let phase = current_phase(engine, store, ns, name).await?;
                if phase.is_done() {
                    return Ok(phase);
                }
                anyhow::bail!("the engine stopped before workflow {name:?} finished");
            }
        };
    }
}

fn print_changes(status: &Value, seen: &mut HashMap<String, String>) {
    let Some(nodes) = status.get("nodes").and_then(Value::as_object) else {
        return;
    };
    for (id, n) in nodes {
        let phase = n.get("phase").and_then(Value::as_str).unwrap_or("");
        if seen.get(id).map(String::as_str) == Some(phase) {
            continue;
        }
        seen.insert(id.clone(), phase.to_string());
        let ty = n.get("type").and_then(Value::as_str).unwrap_or("");
        if matches!(ty, "StepGroup" | "TaskGroup") {
            continue;
        }
        let msg = n.get("message").and_then(Value::as_str).unwrap_or("");
        let name = n.get("name").and_then(Value::as_str).unwrap_or("");
        let now = chrono::Utc::now().format("%H:%M:%S");
        if msg.is_empty() {
            println!("{now} {phase:<9} {name}");
        } else {
            println!("{now} {phase:<9} {name}: {msg}");
        }
    }
}

fn icon(phase: &str) -> &'static str {
    match phase {
        "Succeeded" => "✔",
        "Failed" => "✖",
        "Error" => "⚠",
        "Skipped" | "Omitted" => "○",
        "Running" => "●",
        _ => "◷",
    }
}

fn duration(n: &Value) -> String {
    let parse = |k: &str| {
        n.get(k)
            .and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    match (parse("startedAt"), parse("finishedAt")) {
        (Some(s), Some(f)) => format!("{}s", (f - s).num_seconds()),
        (Some(s), None) => format!(
            "{}s",
            (chrono::Utc::now() - s.with_timezone(&chrono::Utc)).num_seconds()
        ),
        _ => String::new(),
    }
}

/// The node tree as text. Step groups are folded into their parent; beyond
/// `max_lines` nodes only counts by phase are shown.
pub fn render_tree(wf_name: &str, status: &Value, max_lines: usize) -> String {
    let Some(nodes) = status.get("nodes").and_then(Value::as_object) else {
        return String::new();
    };
    if nodes.len() > max_lines {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for n in nodes.values() {
            if !matches!(
                n.get("type").and_then(Value::as_str),
                Some("StepGroup" | "TaskGroup" | "Steps" | "DAG" | "Retry")
            ) {
                *counts
                    .entry(n.get("phase").and_then(Value::as_str).unwrap_or("?"))
                    .or_default() += 1;
            }
        }
        let parts: Vec<String> = counts
            .iter()
            .map(|(p, c)| format!("{} {p}: {c}", icon(p)))
            .collect();
        return format!("{} nodes  {}", nodes.len(), parts.join("  "));
    }
    let mut out = String::new();
    out.push_str(&format!(
        "{:<48} {:<22} {:>8}  MESSAGE\n",
        "STEP", "TEMPLATE", "DURATION"
    ));
    let mut roots = vec![wf_name.to_string()];
    let exit = format!("{wf_name}.onExit");
    if nodes
        .values()
        .any(|n| n.get("name").and_then(Value::as_str) == Some(exit.as_str()))
    {
        roots.push(exit);
    }
    for r in roots {
        let id = if r == wf_name {
            r.clone()
        } else {
            nodes
                .iter()
                .find(|(_, n)| n.get("name").and_then(Value::as_str) == Some(r.as_str()))
                .map(|(k, _)| k.clone())
                .unwrap_or(r.clone())
        };
        walk(nodes, &id, 0, &mut out);
    }
    out
}

fn walk(nodes: &serde_json::Map<String, Value>, id: &str, depth: usize, out: &mut String) {
    let Some(n) = nodes.get(id) else { return };
    let ty = n.get("type").and_then(Value::as_str).unwrap_or("");
    let kids: Vec<String> = n
        .get("children")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if ty == "StepGroup" {
        for k in kids {
            walk(nodes, &k, depth, out);
        }
        return;
    }
    let phase = n.get("phase").and_then(Value::as_str).unwrap_or("");
    let display = n.get("displayName").and_then(Value::as_str).unwrap_or("");
    let tmpl = n
        .get("templateName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            n.pointer("/templateRef/template")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let msg = n.get("message").and_then(Value::as_str).unwrap_or("");
    let indent = "  ".repeat(depth);
    let label = format!("{indent}{} {display}", icon(phase));
    out.push_str(&format!(
        "{label:<48} {tmpl:<22} {:>8}  {msg}\n",
        duration(n)
    ));
    for k in kids {
        walk(nodes, &k, depth + 1, out);
    }
}
