//! `weft run`, `weft resume`, `weft stop`, `weft terminate`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use weft_engine::machine::Event;
use weft_engine::model::{AnyString, Object, Parameter, Phase, Workflow, read_objects};
use weft_engine::runtime::{StateStore, TemplateRecord};

use super::query::stored_row;
use super::{Invalid, Output};
use crate::app::{App, Running, send_control};
use crate::config::Config;
use crate::progress;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Workflow file (YAML, multi-document, or JSON). WorkflowTemplates in it are stored first.
    pub file: PathBuf,
    /// Override a workflow parameter: -p name=value (repeatable).
    #[arg(short = 'p', long = "parameter")]
    pub parameters: Vec<String>,
    /// YAML or JSON file of parameter values: {name: value, …}.
    #[arg(long)]
    pub parameter_file: Option<PathBuf>,
    /// Override spec.entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Output of the final workflow: json or yaml (Argo's Workflow object), wide, name.
    #[arg(short = 'o', long)]
    pub output: Option<Output>,
    /// Skip validation before running.
    #[arg(long)]
    pub no_lint: bool,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    pub name: String,
    /// Resume only suspended nodes with this name or id.
    #[arg(long)]
    pub node: Option<String>,
    /// Supply an output parameter of the resumed node: --set name=value.
    #[arg(long = "set")]
    pub set: Vec<String>,
    #[arg(short = 'o', long)]
    pub output: Option<Output>,
}

#[derive(Args, Debug)]
pub struct ControlArgs {
    pub name: String,
}

fn split_kv(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| Invalid(format!("expected name=value, got {s:?}")))?;
    Ok((k.to_string(), v.to_string()))
}

fn apply_parameters(wf: &mut Workflow, args: &RunArgs) -> Result<()> {
    let mut given: Vec<(String, String)> = Vec::new();
    if let Some(f) = &args.parameter_file {
        let text = std::fs::read(f).map_err(|e| Invalid(format!("{}: {e}", f.display())))?;
        let text = String::from_utf8(text).map_err(|e| {
            Invalid(format!(
                "{}: invalid UTF-8 at byte {}: parameter files must be UTF-8 text",
                f.display(),
                e.utf8_error().valid_up_to()
            ))
        })?;
        let v: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| Invalid(format!("{}: {e}", f.display())))?;
        let map = v.as_object().ok_or_else(|| {
            Invalid(format!(
                "{}: expected a map of parameter names to values",
                f.display()
            ))
        })?;
        for (k, v) in map {
            given.push((k.clone(), weft_engine_to_string(v)));
        }
    }
    for p in &args.parameters {
        given.push(split_kv(p)?);
    }
    for (k, v) in given {
        match wf
            .spec
            .arguments
            .parameters
            .iter_mut()
            .find(|p| p.name == k)
        {
            Some(p) => p.value = Some(AnyString(v)),
            None => wf.spec.arguments.parameters.push(Parameter {
                name: k,
                value: Some(AnyString(v)),
                ..Default::default()
            }),
        }
    }
    if let Some(e) = &args.entrypoint {
        wf.spec.entrypoint = Some(e.clone());
    }
    Ok(())
}

fn weft_engine_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Store the template kinds of a file; return its Workflows.
pub async fn store_templates(
    store: &dyn StateStore,
    ns: &str,
    objects: Vec<Object>,
) -> Result<Vec<Workflow>> {
    let mut wfs = Vec::new();
    for o in objects {
        let (kind, namespace, name, body) = match o {
            Object::Workflow(w) => {
                wfs.push(*w);
                continue;
            }
            Object::WorkflowTemplate(t) => (
                "WorkflowTemplate",
                t.metadata.namespace.clone().unwrap_or_else(|| ns.into()),
                t.name().to_string(),
                serde_json::to_value(&*t)?,
            ),
            Object::ClusterWorkflowTemplate(t) => (
                "ClusterWorkflowTemplate",
                String::new(),
                t.name().to_string(),
                serde_json::to_value(&*t)?,
            ),
            Object::CronWorkflow(c) => (
                "CronWorkflow",
                c.metadata.namespace.clone().unwrap_or_else(|| ns.into()),
                c.metadata.name.clone().unwrap_or_default(),
                serde_json::to_value(&*c)?,
            ),
        };
        if name.is_empty() {
            return Err(Invalid(format!("{kind} has no metadata.name")).into());
        }
        store
            .put_template(&TemplateRecord {
                kind: kind.into(),
                namespace,
                name,
                body,
            })
            .await?;
    }
    Ok(wfs)
}

pub async fn run(config: Config, ns: &str, args: RunArgs) -> Result<u8> {
    let docs = read_objects(&args.file).map_err(|e| Invalid(e.to_string()))?;
    // The Wasm engine and the local driver load beside the store's opening.
    let prepared = weft_drivers::Drivers::prepare(crate::app::driver_options(&config), &["local"]);
    let app = App::open(config).await?;
    if !args.no_lint {
        super::lint::check_or_fail(&app, docs.iter().map(|(d, _)| d.clone()).collect()).await?;
    }
    let objects: Vec<Object> = docs.into_iter().map(|(_, o)| o).collect();
    let mut wfs = store_templates(&app.store, ns, objects).await?;
    if wfs.is_empty() {
        println!(
            "stored the templates of {}; it holds no Workflow to run",
            args.file.display()
        );
        return Ok(0);
    }
    let running = app.start_prepared(prepared).await?;
    running.drivers.warm("local");
    let mut worst = 0u8;
    for wf in &mut wfs {
        apply_parameters(wf, &args)?;
        if wf.metadata.namespace.is_none() {
            wf.metadata.namespace = Some(ns.to_string());
        }
        let rec = running
            .engine
            .submit(wf.clone())
            .await
            .map_err(|e| match e {
                weft_engine::runtime::EngineError::Invalid(m) => anyhow::Error::new(Invalid(m)),
                weft_engine::runtime::EngineError::Submit(
                    weft_engine::runtime::SubmitError::Invalid(m),
                ) => Invalid(m).into(),
                other => other.into(),
            })?; // the row is inserted owned by this process
        let phase = progress::watch(
            &running.engine,
            &app.store,
            &rec.namespace,
            &rec.name,
            show_progress(args.output),
        )
        .await?;
        // Nothing to collect unless the spec asks for it (no store read then).
        if crate::gc::pending_completion(&rec) {
            running.collect_artifacts(&rec.namespace, &rec.name).await;
        }
        app.store.flush_logs().await;
        if args.output == Some(Output::Name) {
            println!("{}", rec.name); // the name alone: no need to read it back
        } else {
            super::query::print_workflow(&app.store, &rec.namespace, &rec.name, args.output)
                .await?;
        }
        worst = worst.max(exit_code(phase));
    }
    // `weft run` may end the process without tearing the engine down
    // (`cli::exit_now`): nothing of the workflows may outlive it.
    running.drivers.kill_all();
    Ok(worst)
}

fn show_progress(out: Option<Output>) -> progress::Mode {
    match out {
        Some(Output::Json | Output::Yaml | Output::Name) => progress::Mode::Quiet,
        _ if std::io::stdout().is_terminal() => progress::Mode::Tree,
        _ => progress::Mode::Lines,
    }
}

pub fn exit_code(phase: Phase) -> u8 {
    if phase == Phase::Succeeded { 0 } else { 1 }
}

pub async fn resume(config: Config, ns: &str, args: ResumeArgs) -> Result<u8> {
    let app = App::open(config).await?;
    let rec = stored_row(&app.store, ns, &args.name).await?;
    let mut params = serde_json::Map::new();
    for s in &args.set {
        let (k, v) = split_kv(s)?;
        params.insert(k, json!(v));
    }
    let body = json!({"action": "resume", "node": args.node, "parameters": params});
    if Phase::parse(&rec.phase).is_some_and(Phase::is_done) {
        super::query::print_workflow(&app.store, ns, &args.name, args.output).await?;
        return Ok(exit_code(Phase::parse(&rec.phase).unwrap_or(Phase::Error)));
    }
    let Some(running) = adopt(&app, ns, &args.name, &rec.uid, &body, "resume").await? else {
        return Ok(0);
    };
    if let Some(ev) = crate::app::control_event(&body) {
        running.engine.control(ns, &args.name, ev).await?;
    }
    let phase = progress::watch(
        &running.engine,
        &app.store,
        ns,
        &args.name,
        show_progress(args.output),
    )
    .await?;
    running.collect_artifacts(ns, &args.name).await;
    app.store.flush_logs().await;
    super::query::print_workflow(&app.store, ns, &args.name, args.output).await?;
    running.drivers.kill_all(); // see `run`
    Ok(exit_code(phase))
}

/// Start an engine that adopts workflow `name`. None when another weft
/// process runs it: `body` is queued to that process instead (`action`
/// requested, says the CLI).
async fn adopt(
    app: &App,
    ns: &str,
    name: &str,
    uid: &str,
    body: &Value,
    action: &str,
) -> Result<Option<Running>> {
    let running = app.start().await?;
    if !running.own(uid).await? {
        send_control(&app.store, ns, name, uid, body.clone()).await?;
        println!("workflow {name} is run by another weft process; {action} requested");
        return Ok(None);
    }
    running.engine.adopt(ns, name).await?;
    Ok(Some(running))
}

pub async fn control(config: Config, ns: &str, args: ControlArgs, action: &str) -> Result<u8> {
    let app = App::open(config).await?;
    let rec = stored_row(&app.store, ns, &args.name).await?;
    if Phase::parse(&rec.phase).is_some_and(Phase::is_done) {
        println!("workflow {} already finished: {}", args.name, rec.phase);
        return Ok(0);
    }
    let body = json!({"action": action});
    let Some(running) = adopt(&app, ns, &args.name, &rec.uid, &body, action).await? else {
        return Ok(0);
    };
    let ev = match action {
        "terminate" => Event::Shutdown {
            terminate: true,
            message: "Terminated by user".into(),
        },
        _ => Event::Shutdown {
            terminate: false,
            message: "Stopped by user".into(),
        },
    };
    running.engine.control(ns, &args.name, ev).await?;
    let phase = progress::watch(
        &running.engine,
        &app.store,
        ns,
        &args.name,
        progress::Mode::Quiet,
    )
    .await?;
    println!(
        "workflow {} {}: {}",
        args.name,
        if action == "terminate" {
            "terminated"
        } else {
            "stopped"
        },
        phase
    );
    Ok(0)
}
