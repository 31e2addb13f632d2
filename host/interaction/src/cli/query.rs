//! `weft list`, `get`, `logs`, `delete` against the store.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use weft_engine::model::Phase;
use weft_engine::runtime::{
    LogLine, NodeRecord, StateStore, WorkflowFilter, WorkflowRecord, argo_workflow, stored_status,
};
use weft_store::Store;

use super::{Invalid, Output};
use crate::app::App;
use crate::config::Config;
use crate::progress::render_tree;

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(short = 'o', long)]
    pub output: Option<Output>,
    /// Only workflows in these phases (comma separated).
    #[arg(long)]
    pub status: Option<String>,
    /// Label selector `k=v,k2=v2`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    pub name: String,
    #[arg(short = 'o', long)]
    pub output: Option<Output>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub name: String,
    /// Only this node (name, display name or id).
    #[arg(long)]
    pub node: Option<String>,
    /// Keep printing new lines until the workflow finishes.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Prefix lines with their timestamp.
    #[arg(long)]
    pub timestamps: bool,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    pub names: Vec<String>,
    /// Delete every workflow in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Delete even if artifact GC fails (Argo's `argo delete --force`).
    #[arg(long)]
    pub force: bool,
}

pub async fn list(config: Config, ns: &str, args: ListArgs) -> Result<u8> {
    let app = App::open(config).await?;
    let mut filter = WorkflowFilter {
        namespace: Some(ns.into()),
        limit: args.limit,
        ..Default::default()
    };
    if let Some(s) = &args.status {
        filter.phases = s.split(',').map(str::to_string).collect();
    }
    if let Some(sel) = &args.selector {
        for kv in sel.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| Invalid(format!("bad selector {kv:?}: expected key=value")))?;
            filter.labels.push((k.into(), v.into()));
        }
    }
    let list = app.store.list_workflows(&filter).await?;
    match args.output {
        Some(Output::Json | Output::Yaml) => {
            let mut items = Vec::new();
            for rec in &list {
                let status = json!({"phase": rec.phase, "message": rec.message});
                items.push(argo_workflow(rec, status));
            }
            let v = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowList", "metadata": {}, "items": items});
            print_value(&v, args.output)?;
        }
        Some(Output::Name) => {
            for r in &list {
                println!("{}", r.name);
            }
        }
        _ => {
            println!(
                "{:<40} {:<10} {:<8} {:<10}",
                "NAME", "STATUS", "AGE", "DURATION"
            );
            let now = chrono::Utc::now().timestamp_millis();
            for r in &list {
                let age = (now - r.created_ms) / 1000;
                let dur = r.finished_ms.unwrap_or(now) - r.started_ms.unwrap_or(r.created_ms);
                println!(
                    "{:<40} {:<10} {:<8} {:<10}",
                    r.name,
                    r.phase,
                    format!("{age}s"),
                    format!("{}s", dur / 1000)
                );
            }
        }
    }
    Ok(0)
}

fn print_value(v: &Value, out: Option<Output>) -> Result<()> {
    match out {
        Some(Output::Yaml) => print!("{}", serde_yaml_ng::to_string(v)?),
        _ => println!("{}", serde_json::to_string_pretty(v)?),
    }
    Ok(())
}

fn not_found(ns: &str, name: &str) -> Invalid {
    Invalid(format!("workflow {name:?} not found in namespace {ns:?}"))
}

/// A stored workflow and its nodes, or the CLI's not-found error.
pub async fn stored_workflow(
    store: &Store,
    ns: &str,
    name: &str,
) -> Result<(WorkflowRecord, Vec<NodeRecord>)> {
    Ok(store
        .load_workflow(ns, name)
        .await?
        .ok_or_else(|| not_found(ns, name))?)
}

/// A stored workflow's row without its nodes, or the CLI's not-found error.
pub async fn stored_row(store: &Store, ns: &str, name: &str) -> Result<WorkflowRecord> {
    Ok(store
        .get_workflow(ns, name)
        .await?
        .ok_or_else(|| not_found(ns, name))?)
}

/// Print a stored workflow: Argo's JSON/YAML object, its name, or a summary with the node tree.
pub async fn print_workflow(
    store: &Store,
    ns: &str,
    name: &str,
    out: Option<Output>,
) -> Result<()> {
    if out == Some(Output::Name) {
        // The row alone: a 10,000-node workflow's nodes are ~100 MB of JSON.
        println!("{}", stored_row(store, ns, name).await?.name);
        return Ok(());
    }
    let (rec, nodes) = stored_workflow(store, ns, name).await?;
    let status = stored_status(&rec, nodes)?;
    match out {
        Some(Output::Json | Output::Yaml) => print_value(&argo_workflow(&rec, status), out)?,
        Some(Output::Name) => unreachable!("printed above"),
        _ => {
            println!("Name:                {}", rec.name);
            println!("Namespace:           {}", rec.namespace);
            println!("Status:              {}", rec.phase);
            if let Some(m) = &rec.message {
                println!("Message:             {m}");
            }
            println!(
                "Created:             {}",
                weft_engine::machine::rfc3339(rec.created_ms)
            );
            if let (Some(s), Some(f)) = (rec.started_ms, rec.finished_ms) {
                println!("Duration:            {:.3}s", (f - s) as f64 / 1000.0);
            }
            if let Some(p) = status.get("progress").and_then(Value::as_str) {
                println!("Progress:            {p}");
            }
            if let Some(params) = status
                .pointer("/outputs/parameters")
                .and_then(Value::as_array)
            {
                println!("Output parameters:");
                for p in params {
                    println!(
                        "  {}: {}",
                        p["name"].as_str().unwrap_or(""),
                        p["value"].as_str().unwrap_or("")
                    );
                }
            }
            println!();
            print!(
                "{}",
                render_tree(
                    &rec.name,
                    &status,
                    if out == Some(Output::Wide) {
                        usize::MAX
                    } else {
                        500
                    }
                )
            );
        }
    }
    Ok(())
}

pub async fn get(config: Config, ns: &str, args: GetArgs) -> Result<u8> {
    let app = App::open(config).await?;
    print_workflow(&app.store, ns, &args.name, args.output).await?;
    Ok(0)
}

pub async fn logs(config: Config, ns: &str, args: LogsArgs) -> Result<u8> {
    let app = App::open(config).await?;
    let (rec, nodes) = stored_workflow(&app.store, ns, &args.name).await?;
    let names: HashMap<String, String> = nodes
        .iter()
        .map(|n| {
            (
                n.node_id.clone(),
                n.data
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(&n.node_id)
                    .to_string(),
            )
        })
        .collect();
    let node_id = match &args.node {
        None => None,
        Some(want) => Some(
            nodes
                .iter()
                .find(|n| {
                    n.node_id == *want
                        || n.data.get("name").and_then(Value::as_str) == Some(want)
                        || n.data.get("displayName").and_then(Value::as_str) == Some(want)
                })
                .map(|n| n.node_id.clone())
                .ok_or_else(|| Invalid(format!("workflow {:?} has no node {want:?}", args.name)))?,
        ),
    };
    if !args.follow {
        let lines = app.store.logs(&rec.uid, node_id.as_deref()).await?;
        print_lines(lines.iter(), &names, args.timestamps);
        return Ok(0);
    }
    // Following: each read asks for the lines stored after the last one
    // printed (a row-id cursor), so a line stored late with an earlier
    // timestamp is neither lost nor printed twice, and a poll reads only
    // what is new. Once the workflow is done, one last read.
    let mut after = 0i64;
    let mut last = false;
    loop {
        let lines = app
            .store
            .logs_after(&rec.uid, node_id.as_deref(), after)
            .await?;
        if let Some((id, _)) = lines.last() {
            after = *id;
        }
        print_lines(lines.iter().map(|(_, l)| l), &names, args.timestamps);
        if last {
            break;
        }
        last = app
            .store
            .get_workflow(ns, &args.name)
            .await?
            .is_none_or(|r| Phase::parse(&r.phase).is_some_and(Phase::is_done));
        if !last {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(0)
}

/// Print log lines as `<node name>: [<time> ]<line>`.
fn print_lines<'a>(
    lines: impl Iterator<Item = &'a LogLine>,
    names: &HashMap<String, String>,
    timestamps: bool,
) {
    for l in lines {
        let who = names.get(&l.node_id).unwrap_or(&l.node_id);
        if timestamps {
            println!(
                "{who}: {} {}",
                weft_engine::machine::rfc3339(l.ts_ms),
                l.line
            );
        } else {
            println!("{who}: {}", l.line);
        }
    }
}

pub async fn delete(config: Config, ns: &str, args: DeleteArgs) -> Result<u8> {
    let app = App::open(config).await?;
    let mut names = args.names.clone();
    if args.all {
        let list = app
            .store
            .list_workflows(&WorkflowFilter {
                namespace: Some(ns.into()),
                ..Default::default()
            })
            .await?;
        names.extend(list.into_iter().map(|r| r.name));
    }
    if names.is_empty() {
        return Err(Invalid("name a workflow to delete, or pass --all".into()).into());
    }
    let repos = weft_drivers::artifacts::Repositories::from_config(
        &app.config.artifact_repository,
        &app.config.artifact_repositories,
        tokio::runtime::Handle::current(),
    )?;
    let gc = crate::gc::Collector::new(app.store.clone(), std::sync::Arc::new(repos));
    let mut code = 0;
    for n in names {
        // OnWorkflowDeletion (and uncollected OnWorkflowCompletion) artifacts
        // go first; if that fails the workflow stays, with an ArtifactGCError condition.
        let failed = match gc.collect(ns, &n, crate::gc::Trigger::Deletion).await {
            Ok(r) if r.failures.is_empty() => None,
            Ok(r) => Some((r.message(), r.force)),
            Err(e) => Some((e.to_string(), false)),
        };
        if let Some((why, spec_force)) = failed {
            if !(args.force || spec_force) {
                eprintln!(
                    "weft: workflow '{n}' was not deleted: artifact GC failed ({why}); fix the repository and delete again, or use --force"
                );
                code = 1;
                continue;
            }
            eprintln!("weft: artifact GC of '{n}' failed ({why}); deleting anyway (--force)");
        }
        match app.store.delete_workflow(ns, &n).await {
            Ok(()) => println!("Workflow '{n}' deleted"),
            Err(e) => {
                eprintln!("weft: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}
