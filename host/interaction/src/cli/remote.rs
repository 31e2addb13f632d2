//! The CLI as a client of a weft (or Argo) server: `--server URL` /
//! `WEFT_SERVER`, with `--token` / `WEFT_TOKEN` sent as a Bearer header.
//!
//! The HTTP client is hyper-util's: hyper is already compiled for the server
//! (axum), so the client adds almost nothing to the build, and it is async, so
//! watches and followed logs stream. It speaks plain `http://` only (no TLS
//! stack in the binary); put a TLS-terminating proxy in front for remote use.
//!
//! Files are parsed and type-checked locally (errors name `file:line:column`),
//! then sent as JSON; the server lints them again against its templates.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use weft_engine::model::{Phase, read_objects};

use super::query::{DeleteArgs, GetArgs, ListArgs, LogsArgs};
use super::run::{ResumeArgs, exit_code};
use super::template::TemplateCmd;
use super::{Command, Invalid, Output};
use crate::api::workflows::set_parameters;
use crate::progress::render_tree;

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Workflow files (YAML or JSON). Template kinds in them are created (or updated) first.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Override a workflow parameter: -p name=value (repeatable).
    #[arg(short = 'p', long = "parameter")]
    pub parameters: Vec<String>,
    /// Override spec.entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Print phase changes until the workflow finishes.
    #[arg(long)]
    pub watch: bool,
    /// Wait quietly until the workflow finishes.
    #[arg(long)]
    pub wait: bool,
    #[arg(short = 'o', long)]
    pub output: Option<Output>,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    pub name: String,
    /// Override a parameter (retry, resubmit): -p name=value.
    #[arg(short = 'p', long = "parameter")]
    pub parameters: Vec<String>,
    #[arg(short = 'o', long)]
    pub output: Option<Output>,
}

/// A server connection.
pub struct Remote {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Percent-encode a query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Remote {
    pub fn new(url: &str, token: Option<&str>) -> Result<Remote> {
        let base = if url.starts_with("https://") {
            return Err(Invalid(format!(
                "{url}: weft's client speaks http:// only; put a TLS-terminating proxy in front"
            ))
            .into());
        } else if url.starts_with("http://") {
            url.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", url.trim_end_matches('/'))
        };
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Remote {
            base,
            token: token.filter(|t| !t.is_empty()).map(str::to_string),
            client,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        accept: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let uri = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method)
            .uri(&uri)
            .header("accept", accept);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(b)?)
            }
            None => Bytes::new(),
        };
        let resp = self
            .client
            .request(req.body(Full::new(bytes))?)
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let text = format!("server: {message} (HTTP {})", status.as_u16());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => anyhow!(text),
            s if s.is_client_error() => Invalid(text).into(),
            _ => anyhow!(text),
        })
    }

    /// One JSON call.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let resp = self.send(method, path, body, "application/json").await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).context("the server's answer is not JSON")
    }

    /// A streamed call: `f` sees each `result` object until it breaks or the stream ends.
    pub async fn stream(
        &self,
        path: &str,
        mut f: impl FnMut(&Value) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut body = self
            .send(Method::GET, path, None, "application/json")
            .await?
            .into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the stream")?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.extend_from_slice(data);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let v: Value =
                    serde_json::from_slice(&line).context("a streamed line is not JSON")?;
                if f(&v["result"]).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Run a command against the server; a command with no remote form
/// (`run`, `lint`, `server`, `plugin`, …) is handed back to run locally.
pub async fn dispatch(
    url: &str,
    token: Option<&str>,
    ns: &str,
    command: Command,
) -> std::result::Result<Result<u8>, Command> {
    let r = match Remote::new(url, token) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    Ok(match command {
        Command::Submit(a) => submit(&r, ns, a).await,
        Command::List(a) => list(&r, ns, a).await,
        Command::Get(a) => get(&r, ns, a).await,
        Command::Logs(a) => logs(&r, ns, a).await,
        Command::Watch(a) => watch(&r, ns, &a.name, false).await.map(exit_code),
        Command::Delete(a) => delete(&r, ns, a).await,
        Command::Retry(a) => {
            act(
                &r,
                ns,
                &a.name,
                "retry",
                params_body(&a.parameters),
                a.output,
            )
            .await
        }
        Command::Resubmit(a) => {
            act(
                &r,
                ns,
                &a.name,
                "resubmit",
                params_body(&a.parameters),
                a.output,
            )
            .await
        }
        Command::Suspend(a) => act(&r, ns, &a.name, "suspend", None, None).await,
        Command::Stop(a) => act(&r, ns, &a.name, "stop", None, None).await,
        Command::Terminate(a) => act(&r, ns, &a.name, "terminate", None, None).await,
        Command::Resume(a) => resume(&r, ns, a).await,
        Command::Template(c) => templates(&r, ns, "WorkflowTemplate", c).await,
        Command::ClusterTemplate(c) => templates(&r, "", "ClusterWorkflowTemplate", c).await,
        Command::Cron(c) => templates(&r, ns, "CronWorkflow", c).await,
        other => return Err(other),
    })
}

/// `weft submit` without a server: run each file on the embedded engine, as `weft run`.
pub async fn submit_embedded(config: crate::config::Config, ns: &str, a: SubmitArgs) -> Result<u8> {
    let mut worst = 0;
    for file in a.files {
        let args = super::run::RunArgs {
            file,
            parameters: a.parameters.clone(),
            parameter_file: None,
            entrypoint: a.entrypoint.clone(),
            output: a.output,
            no_lint: false,
        };
        worst = worst.max(super::run::run(config.clone(), ns, args).await?);
    }
    Ok(worst)
}

fn params_body(params: &[String]) -> Option<Value> {
    Some(json!({"parameters": params}))
}

fn print_value(v: &Value, out: Option<Output>) -> Result<()> {
    match out {
        Some(Output::Yaml) => print!("{}", serde_yaml_ng::to_string(v)?),
        _ => println!("{}", serde_json::to_string_pretty(v)?),
    }
    Ok(())
}

fn phase_of(wf: &Value) -> Phase {
    wf.pointer("/status/phase")
        .and_then(Value::as_str)
        .and_then(Phase::parse)
        .unwrap_or(Phase::Running)
}

/// Print a workflow object: Argo JSON/YAML, its name, or a summary with the node tree.
fn print_workflow(wf: &Value, out: Option<Output>) -> Result<()> {
    let name = wf["metadata"]["name"].as_str().unwrap_or_default();
    match out {
        Some(Output::Json | Output::Yaml) => print_value(wf, out)?,
        Some(Output::Name) => println!("{name}"),
        _ => {
            let s = &wf["status"];
            println!("Name:                {name}");
            println!(
                "Namespace:           {}",
                wf["metadata"]["namespace"].as_str().unwrap_or("")
            );
            println!("Status:              {}", s["phase"].as_str().unwrap_or(""));
            if let Some(m) = s["message"].as_str() {
                println!("Message:             {m}");
            }
            if let Some(c) = wf["metadata"]["creationTimestamp"].as_str() {
                println!("Created:             {c}");
            }
            if let Some(p) = s["progress"].as_str() {
                println!("Progress:            {p}");
            }
            println!();
            let max = if out == Some(Output::Wide) {
                usize::MAX
            } else {
                500
            };
            print!("{}", render_tree(name, s, max));
        }
    }
    Ok(())
}

async fn submit(r: &Remote, ns: &str, a: SubmitArgs) -> Result<u8> {
    let mut params = Vec::new();
    for p in &a.parameters {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Invalid(format!("expected name=value, got {p:?}")))?;
        params.push((k.to_string(), v.to_string()));
    }
    let mut worst = 0u8;
    for file in &a.files {
        let docs = read_objects(file).map_err(|e| Invalid(e.to_string()))?;
        let mut workflows = Vec::new();
        for (doc, _) in docs {
            match doc.kind.as_str() {
                "Workflow" => workflows.push(doc.value),
                kind => upsert_template(r, ns, kind, doc.value).await?,
            }
        }
        for mut wf in workflows {
            set_parameters(&mut wf, &params);
            if let Some(e) = &a.entrypoint {
                wf["spec"]["entrypoint"] = json!(e);
            }
            let created = r
                .call(
                    Method::POST,
                    &format!("/api/v1/workflows/{ns}"),
                    Some(&json!({"workflow": wf})),
                )
                .await?;
            let name = created["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !(a.wait || a.watch) {
                match a.output {
                    None | Some(Output::Wide) => println!("Workflow '{name}' submitted"),
                    out => print_workflow(&created, out)?,
                }
                continue;
            }
            let phase = watch(r, ns, &name, !a.watch).await?;
            let wf = r
                .call(Method::GET, &format!("/api/v1/workflows/{ns}/{name}"), None)
                .await?;
            print_workflow(&wf, a.output)?;
            worst = worst.max(exit_code(phase));
        }
    }
    Ok(worst)
}

/// Create a template kind, or update it when it exists (as the embedded store does).
async fn upsert_template(r: &Remote, ns: &str, kind: &str, obj: Value) -> Result<()> {
    let (collection, key) = endpoint(kind, ns)?;
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let body = json!({ key: obj });
    match r.call(Method::POST, &collection, Some(&body)).await {
        Ok(_) => {}
        Err(e) if e.to_string().contains("HTTP 409") => {
            r.call(Method::PUT, &format!("{collection}/{name}"), Some(&body))
                .await?;
        }
        Err(e) => return Err(e),
    }
    println!("{kind} '{name}' created");
    Ok(())
}

/// (collection path, request body key) of a template kind.
fn endpoint(kind: &str, ns: &str) -> Result<(String, &'static str)> {
    Ok(match kind {
        "WorkflowTemplate" => (format!("/api/v1/workflow-templates/{ns}"), "template"),
        "ClusterWorkflowTemplate" => ("/api/v1/cluster-workflow-templates".into(), "template"),
        "CronWorkflow" => (format!("/api/v1/cron-workflows/{ns}"), "cronWorkflow"),
        other => return Err(Invalid(format!("unknown kind {other:?}")).into()),
    })
}

/// Follow a workflow's events until it finishes; its final phase.
async fn watch(r: &Remote, ns: &str, name: &str, quiet: bool) -> Result<Phase> {
    let path = format!(
        "/api/v1/workflow-events/{ns}?listOptions.fieldSelector={}",
        enc(&format!("metadata.name={name}"))
    );
    loop {
        let mut last = String::new();
        let mut done = None;
        r.stream(&path, |ev| {
            let obj = &ev["object"];
            if ev["type"] == "DELETED" {
                done = Some(Phase::Error);
                return ControlFlow::Break(());
            }
            let phase = phase_of(obj);
            let progress = obj["status"]["progress"].as_str().unwrap_or("");
            let line = format!("{name}  {phase}  {progress}");
            if !quiet && line != last {
                println!("{line}");
                let _ = std::io::stdout().flush();
            }
            last = line;
            if phase.is_done() {
                done = Some(phase);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
        .await?;
        if let Some(p) = done {
            return Ok(p);
        }
        // The server ended the watch (restart, or we fell behind): watch again.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn list(r: &Remote, ns: &str, a: ListArgs) -> Result<u8> {
    let mut q = vec![];
    let mut sel: Vec<String> = a.selector.iter().cloned().collect();
    if let Some(s) = &a.status {
        sel.push(format!("workflows.argoproj.io/phase in ({s})"));
    }
    if !sel.is_empty() {
        q.push(format!("listOptions.labelSelector={}", enc(&sel.join(","))));
    }
    if let Some(l) = a.limit {
        q.push(format!("listOptions.limit={l}"));
    }
    let table = !matches!(a.output, Some(Output::Json | Output::Yaml));
    if table {
        q.push(format!("fields={}", enc("items.metadata.name,items.metadata.creationTimestamp,items.status.phase,items.status.startedAt,items.status.finishedAt")));
    }
    let mut v = r
        .call(
            Method::GET,
            &format!("/api/v1/workflows/{ns}?{}", q.join("&")),
            None,
        )
        .await?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    match a.output {
        Some(Output::Json | Output::Yaml) => {
            v["apiVersion"] = json!(weft_engine::model::API_VERSION);
            v["kind"] = json!("WorkflowList");
            print_value(&v, a.output)?;
        }
        Some(Output::Name) => items
            .iter()
            .for_each(|w| println!("{}", w["metadata"]["name"].as_str().unwrap_or(""))),
        _ => {
            println!(
                "{:<40} {:<10} {:<8} {:<10}",
                "NAME", "STATUS", "AGE", "DURATION"
            );
            let now = chrono::Utc::now();
            let t = |v: &Value| {
                v.as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .map(|d| d.with_timezone(&chrono::Utc))
            };
            for w in &items {
                let created = t(&w["metadata"]["creationTimestamp"]).unwrap_or(now);
                let started = t(&w["status"]["startedAt"]).unwrap_or(created);
                let finished = t(&w["status"]["finishedAt"]).unwrap_or(now);
                println!(
                    "{:<40} {:<10} {:<8} {:<10}",
                    w["metadata"]["name"].as_str().unwrap_or(""),
                    w["status"]["phase"].as_str().unwrap_or(""),
                    format!("{}s", (now - created).num_seconds()),
                    format!("{}s", (finished - started).num_seconds())
                );
            }
        }
    }
    Ok(0)
}

async fn get(r: &Remote, ns: &str, a: GetArgs) -> Result<u8> {
    let wf = r
        .call(
            Method::GET,
            &format!("/api/v1/workflows/{ns}/{}", a.name),
            None,
        )
        .await?;
    print_workflow(&wf, a.output)?;
    Ok(0)
}

async fn logs(r: &Remote, ns: &str, a: LogsArgs) -> Result<u8> {
    let wf = r
        .call(
            Method::GET,
            &format!("/api/v1/workflows/{ns}/{}", a.name),
            None,
        )
        .await?;
    let nodes = wf["status"]["nodes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let name_of = |id: &str| {
        nodes
            .get(id)
            .and_then(|n| n["name"].as_str())
            .unwrap_or(id)
            .to_string()
    };
    let mut q = vec!["logOptions.container=main".to_string()];
    if let Some(n) = &a.node {
        q.push(format!("podName={}", enc(n)));
    }
    if a.follow {
        q.push("logOptions.follow=true".into());
    }
    let path = format!("/api/v1/workflows/{ns}/{}/log?{}", a.name, q.join("&"));
    r.stream(&path, |res| {
        let pod = res["podName"].as_str().unwrap_or("");
        println!(
            "{}: {}",
            name_of(pod),
            res["content"].as_str().unwrap_or("")
        );
        ControlFlow::Continue(())
    })
    .await?;
    Ok(0)
}

async fn delete(r: &Remote, ns: &str, a: DeleteArgs) -> Result<u8> {
    let mut names = a.names.clone();
    if a.all {
        let v = r
            .call(
                Method::GET,
                &format!("/api/v1/workflows/{ns}?fields=items.metadata.name"),
                None,
            )
            .await?;
        names.extend(
            v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w["metadata"]["name"].as_str().map(str::to_string)),
        );
    }
    if names.is_empty() {
        return Err(Invalid("name a workflow to delete, or pass --all".into()).into());
    }
    let mut code = 0;
    for n in names {
        match r
            .call(
                Method::DELETE,
                &format!(
                    "/api/v1/workflows/{ns}/{n}{}",
                    if a.force { "?force=true" } else { "" }
                ),
                None,
            )
            .await
        {
            Ok(_) => println!("Workflow '{n}' deleted"),
            Err(e) => {
                eprintln!("weft: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

async fn act(
    r: &Remote,
    ns: &str,
    name: &str,
    action: &str,
    body: Option<Value>,
    out: Option<Output>,
) -> Result<u8> {
    let body = body.unwrap_or(json!({}));
    let wf = r
        .call(
            Method::PUT,
            &format!("/api/v1/workflows/{ns}/{name}/{action}"),
            Some(&body),
        )
        .await?;
    match out {
        Some(_) => print_workflow(&wf, out)?,
        None => {
            let new = wf["metadata"]["name"].as_str().unwrap_or(name);
            match action {
                "resubmit" | "retry" => {
                    println!("Workflow '{new}' submitted ({action} of '{name}')")
                }
                _ => println!("Workflow '{name}': {action} requested"),
            }
        }
    }
    Ok(0)
}

async fn resume(r: &Remote, ns: &str, a: ResumeArgs) -> Result<u8> {
    if a.set.is_empty() {
        let mut body = json!({});
        if let Some(n) = &a.node {
            body["nodeFieldSelector"] = json!(format!("displayName={n}"));
        }
        return act(r, ns, &a.name, "resume", Some(body), a.output).await;
    }
    let node = a
        .node
        .as_ref()
        .ok_or_else(|| Invalid("--set needs --node with a server".into()))?;
    let mut out = serde_json::Map::new();
    for s in &a.set {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| Invalid(format!("expected name=value, got {s:?}")))?;
        out.insert(k.into(), json!(v));
    }
    let body = json!({
        "nodeFieldSelector": format!("displayName={node}"),
        "phase": "Succeeded",
        "outputParameters": Value::Object(out).to_string(),
    });
    act(r, ns, &a.name, "set", Some(body), a.output).await
}

async fn templates(r: &Remote, ns: &str, kind: &str, cmd: TemplateCmd) -> Result<u8> {
    let (collection, _) = endpoint(kind, ns)?;
    match cmd {
        TemplateCmd::Create { files } => {
            if files.is_empty() {
                return Err(Invalid("name at least one file".into()).into());
            }
            for f in files {
                for (doc, _) in read_objects(&f).map_err(|e| Invalid(e.to_string()))? {
                    if doc.kind != kind {
                        return Err(Invalid(format!(
                            "{}: document {} is a {}, not a {kind}",
                            f.display(),
                            doc.index + 1,
                            doc.kind
                        ))
                        .into());
                    }
                    upsert_template(r, ns, kind, doc.value).await?;
                }
            }
        }
        TemplateCmd::List { output } => {
            let v = r.call(Method::GET, &collection, None).await?;
            if matches!(output, Some(Output::Json | Output::Yaml)) {
                print_value(&v, output)?;
            } else {
                println!("NAME");
                for t in v["items"].as_array().into_iter().flatten() {
                    println!("{}", t["metadata"]["name"].as_str().unwrap_or(""));
                }
            }
        }
        TemplateCmd::Get { name, output } => {
            let v = r
                .call(Method::GET, &format!("{collection}/{name}"), None)
                .await?;
            print_value(&v, output.or(Some(Output::Json)))?;
        }
        TemplateCmd::Delete { names } => {
            for n in names {
                r.call(Method::DELETE, &format!("{collection}/{n}"), None)
                    .await?;
                println!("{kind} '{n}' deleted");
            }
        }
    }
    Ok(0)
}

/// `weft watch` on the embedded store: print phase changes until the workflow finishes.
pub async fn watch_embedded(store: &weft_store::Store, ns: &str, name: &str) -> Result<u8> {
    use weft_engine::runtime::StateStore;
    let mut last = String::new();
    loop {
        let (rec, _) = store
            .load_workflow(ns, name)
            .await?
            .ok_or_else(|| Invalid(format!("workflow {name:?} not found in namespace {ns:?}")))?;
        if rec.phase != last {
            println!("{name}  {}", rec.phase);
            last = rec.phase.clone();
        }
        if let Some(p) = Phase::parse(&rec.phase).filter(|p| p.is_done()) {
            return Ok(exit_code(p));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(enc("a=b,c in (x)"), "a%3Db%2Cc%20in%20%28x%29");
    }

    #[test]
    fn https_is_refused_with_a_reason() {
        let e = Remote::new("https://x", None).err().unwrap().to_string();
        assert!(e.contains("http://"), "{e}");
    }
}
