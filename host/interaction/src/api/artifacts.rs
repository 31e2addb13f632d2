//! Argo Server's artifact downloads (outside `/api/v1`, as in Argo):
//!
//! - `GET /artifacts/{namespace}/{workflow}/{nodeId}/{artifact}` and
//!   `/artifacts-by-uid/{uid}/{nodeId}/{artifact}` (a node's outputs), and
//!   `/input-artifacts/…`, `/input-artifacts-by-uid/…` (its inputs, where
//!   they were taken from): the stored object as is
//!   (the `.tgz` of a default artifact, the raw file with `archive: none`),
//!   with `Content-Disposition: attachment; filename="<basename of the key>"`;
//! - `GET /artifact-files/{namespace}/workflows/{workflow}/{nodeId}/{outputs|inputs}/{artifact}[/{path}]`
//!   (`workflow` is accepted too, and `archived-workflows/{uid}`): a file
//!   *inside* the artifact — the single file of a tgz, or `path` within its
//!   directory, or a file under an `archive: none` directory's key — and an
//!   HTML listing when it is a directory (redirected to a trailing `/` first,
//!   as Argo does, so relative links work). Served with
//!   `Content-Security-Policy: sandbox` so an HTML artifact runs no script.
//!
//! Bytes are streamed: a blocking task reads the repository (and unpacks the
//! tar+gzip as it goes) in 256 KiB chunks into a bounded channel that is the
//! response body; nothing holds a whole artifact. Auth is that of other reads
//! (the `read` role in the workflow's namespace). Unknown workflow, node or
//! artifact → 404 in Argo's error shape; an artifact that artifact GC deleted
//! → 404 saying so.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info_span};
use weft_drivers::artifacts::{Key, Repositories};
use weft_engine::runtime::{NodeRecord, StateStore, WorkflowFilter, WorkflowRecord};

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult};
use super::{ApiState, render};

pub fn routes() -> Router<ApiState> {
    const FILES: &str = "/artifact-files/{ns}/{kind}/{id}/{node}/{io}/{artifact}";
    Router::new()
        .route("/artifacts/{ns}/{name}/{node}/{artifact}", get(by_name))
        .route("/artifacts-by-uid/{uid}/{node}/{artifact}", get(by_uid))
        .route(
            "/input-artifacts/{ns}/{name}/{node}/{artifact}",
            get(inputs_by_name),
        )
        .route(
            "/input-artifacts-by-uid/{uid}/{node}/{artifact}",
            get(inputs_by_uid),
        )
        .route(FILES, get(file_root))
        .route(&format!("{FILES}/"), get(file_root_slash))
        .route(&format!("{FILES}/{{*path}}"), get(file))
}

const CHUNK: usize = 256 * 1024;

/// What the blocking task answers before it streams.
enum Head {
    /// Stream the body that follows.
    Stream {
        content_type: &'static str,
        disposition: Option<String>,
    },
    Listing(String),
    /// The same URL with a trailing `/` (a directory).
    Redirect,
}

type Chunks = mpsc::Sender<std::io::Result<Bytes>>;

/// Send `r` into the body channel in bounded chunks; stops when the client is gone.
fn pump(r: &mut dyn Read, tx: &Chunks) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// Run `job` on a blocking thread; it answers a [`Head`] (or an error) and then
/// streams into the channel. The response for `url`.
async fn serve<F>(url: String, job: F) -> ApiResult<Response>
where
    F: FnOnce(oneshot::Sender<ApiResult<Head>>, &Chunks) + Send + 'static,
{
    let (head_tx, head_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || job(head_tx, &tx));
    let head = head_rx
        .await
        .map_err(|_| ApiError::Internal("the artifact reader stopped".into()))??;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = match head {
        Head::Stream {
            content_type,
            disposition,
        } => {
            let mut r = Body::from_stream(stream).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Some(d) = disposition.and_then(|d| HeaderValue::from_str(&d).ok()) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, d);
            }
            r
        }
        Head::Listing(html) => {
            let mut r = html.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Head::Redirect => {
            let to = format!("{url}/");
            let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(resp)
}

/// A workflow by namespace and name (rows and nodes), 404 if unknown.
async fn by_ns_name(
    state: &ApiState,
    ns: &str,
    name: &str,
) -> ApiResult<(WorkflowRecord, Vec<NodeRecord>)> {
    state
        .store
        .load_workflow(ns, name)
        .await?
        .ok_or_else(|| render::not_found(ns, name))
}

/// A workflow by uid (in `ns` when given), checked for `caller`.
async fn find_uid(
    state: &ApiState,
    caller: &Caller,
    ns: Option<&str>,
    uid: &str,
) -> ApiResult<(WorkflowRecord, Vec<NodeRecord>)> {
    let filter = WorkflowFilter {
        namespace: ns.map(str::to_string),
        ..Default::default()
    };
    let rec = state
        .store
        .list_workflows(&filter)
        .await?
        .into_iter()
        .find(|r| r.uid == uid)
        .ok_or_else(|| ApiError::NotFound(format!("workflow with uid {uid:?} not found")))?;
    caller.allow(&rec.namespace, Role::Read)?;
    by_ns_name(state, &rec.namespace, &rec.name).await
}

/// Which of a node's artifacts a URL names.
#[derive(Clone, Copy, PartialEq)]
enum Io {
    Outputs,
    /// As the node received them: `from` already resolved to the producer's location.
    Inputs,
}

impl Io {
    fn field(self) -> &'static str {
        match self {
            Io::Outputs => "outputs",
            Io::Inputs => "inputs",
        }
    }
}

/// The `io` artifact `artifact` of node `node`: 404 for an unknown node or
/// artifact, or one artifact GC deleted.
fn artifact_of(
    rec: &WorkflowRecord,
    nodes: &[NodeRecord],
    node: &str,
    io: Io,
    artifact: &str,
) -> ApiResult<Value> {
    let n = nodes.iter().find(|n| n.node_id == node).ok_or_else(|| {
        ApiError::NotFound(format!(
            "node {node:?} not found in workflow {:?}",
            rec.name
        ))
    })?;
    let a = n.data[io.field()]["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == json!(artifact))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "artifact {artifact:?} not found in the {} of node {node:?} of workflow {:?}",
                io.field(),
                rec.name
            ))
        })?;
    if a["deleted"] == json!(true) {
        return Err(ApiError::NotFound(format!(
            "artifact {artifact:?} of node {node:?} of workflow {:?} was deleted by artifact GC (artifactGC)",
            rec.name
        )));
    }
    Ok(a.clone())
}

fn located(
    repos: &Repositories,
    a: &Value,
) -> ApiResult<(Arc<dyn weft_drivers::artifacts::Repository>, Key)> {
    let name = a["name"].as_str().unwrap_or("?");
    repos
        .locate(a)
        .map_err(|e| ApiError::Internal(format!("artifact {name:?}: {e}")))?
        .ok_or_else(|| ApiError::NotFound(format!("artifact {name:?} has no stored object")))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// The stored object as is.
fn raw_object(
    repos: Arc<Repositories>,
    a: Value,
) -> impl FnOnce(oneshot::Sender<ApiResult<Head>>, &Chunks) + Send + 'static {
    move |head, tx| {
        let name = a["name"].as_str().unwrap_or("?").to_string();
        let r = (|| {
            let (repo, key) = located(&repos, &a)?;
            match repo.open(&key).map_err(internal)? {
                Some(r) => Ok(r),
                None if !repo.list(&key).map_err(internal)?.is_empty() => {
                    Err(ApiError::Invalid(format!(
                        "artifact {name:?} is a directory (archive: none): browse it under /artifact-files/"
                    )))
                }
                None => Err(ApiError::NotFound(format!(
                    "artifact {name:?}: key {key} is not in the {}",
                    repo.describe()
                ))),
            }
            .map(|r| (r, key))
        })();
        match r {
            Ok((mut r, key)) => {
                let base = key.as_str().rsplit('/').next().unwrap_or("artifact");
                let _ = head.send(Ok(Head::Stream {
                    content_type: "application/octet-stream",
                    disposition: Some(format!(
                        "attachment; filename=\"{}\"",
                        base.replace(['"', '\\'], "_")
                    )),
                }));
                pump(&mut r, tx);
            }
            Err(e) => {
                let _ = head.send(Err(e));
            }
        }
    }
}

async fn by_name(
    State(state): State<ApiState>,
    caller: Caller,
    Path(p): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    named(state, caller, p, Io::Outputs).await
}

async fn inputs_by_name(
    State(state): State<ApiState>,
    caller: Caller,
    Path(p): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    named(state, caller, p, Io::Inputs).await
}

async fn named(
    state: ApiState,
    caller: Caller,
    (ns, name, node, artifact): (String, String, String, String),
    io: Io,
) -> ApiResult<Response> {
    caller.allow(&ns, Role::Read)?;
    let span = info_span!("api.artifact", workflow = %name, namespace = %ns, node = %node, artifact = %artifact, io = io.field());
    async {
        let (rec, nodes) = by_ns_name(&state, &ns, &name).await?;
        let a = artifact_of(&rec, &nodes, &node, io, &artifact)?;
        serve(
            String::new(),
            raw_object(state.running.gc.repositories().clone(), a),
        )
        .await
    }
    .instrument(span)
    .await
}

async fn by_uid(
    State(state): State<ApiState>,
    caller: Caller,
    Path(p): Path<(String, String, String)>,
) -> ApiResult<Response> {
    of_uid(state, caller, p, Io::Outputs).await
}

async fn inputs_by_uid(
    State(state): State<ApiState>,
    caller: Caller,
    Path(p): Path<(String, String, String)>,
) -> ApiResult<Response> {
    of_uid(state, caller, p, Io::Inputs).await
}

async fn of_uid(
    state: ApiState,
    caller: Caller,
    (uid, node, artifact): (String, String, String),
    io: Io,
) -> ApiResult<Response> {
    let (rec, nodes) = find_uid(&state, &caller, None, &uid).await?;
    let a = artifact_of(&rec, &nodes, &node, io, &artifact)?;
    serve(
        String::new(),
        raw_object(state.running.gc.repositories().clone(), a),
    )
    .await
}

type FileParams = (String, String, String, String, String, String);

async fn file_root(
    State(state): State<ApiState>,
    caller: Caller,
    uri: axum::http::Uri,
    Path(p): Path<FileParams>,
) -> ApiResult<Response> {
    artifact_file(state, caller, uri, p, String::new(), false).await
}

async fn file_root_slash(
    State(state): State<ApiState>,
    caller: Caller,
    uri: axum::http::Uri,
    Path(p): Path<FileParams>,
) -> ApiResult<Response> {
    artifact_file(state, caller, uri, p, String::new(), true).await
}

async fn file(
    State(state): State<ApiState>,
    caller: Caller,
    uri: axum::http::Uri,
    Path((ns, kind, id, node, io, artifact, path)): Path<(
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    )>,
) -> ApiResult<Response> {
    let slash = path.ends_with('/');
    let p = (ns, kind, id, node, io, artifact);
    artifact_file(state, caller, uri, p, path, slash).await
}

async fn artifact_file(
    state: ApiState,
    caller: Caller,
    uri: axum::http::Uri,
    (ns, kind, id, node, io, artifact): FileParams,
    path: String,
    slash: bool,
) -> ApiResult<Response> {
    let io = match io.as_str() {
        "outputs" => Io::Outputs,
        "inputs" => Io::Inputs,
        other => {
            return Err(ApiError::NotFound(format!(
                "artifact-files serves inputs and outputs, not {other:?}"
            )));
        }
    };
    let (rec, nodes) = match kind.as_str() {
        "workflow" | "workflows" => {
            caller.allow(&ns, Role::Read)?;
            by_ns_name(&state, &ns, &id).await?
        }
        "archived-workflows" => find_uid(&state, &caller, Some(&ns), &id).await?,
        other => {
            return Err(ApiError::NotFound(format!(
                "unknown artifact-files kind {other:?}: expected workflows or archived-workflows"
            )));
        }
    };
    let a = artifact_of(&rec, &nodes, &node, io, &artifact)?;
    let repos = state.running.gc.repositories().clone();
    let url = uri.path().trim_end_matches('/').to_string();
    let span = info_span!("api.artifact_file", workflow = %rec.name, namespace = %rec.namespace, node = %node, artifact = %artifact);
    let rel = path.trim_matches('/').to_string();
    serve(url, move |head, tx| {
        let _g = span.enter();
        let none = a["archive"].get("none").is_some();
        let r = located(&repos, &a);
        let (repo, key) = match r {
            Ok(x) => x,
            Err(e) => {
                let _ = head.send(Err(e));
                return;
            }
        };
        if none {
            raw_file(repo.as_ref(), &key, &rel, slash, head, tx)
        } else {
            tgz_file(repo.as_ref(), &key, &artifact, &rel, slash, head, tx)
        }
    })
    .await
}

/// `archive: none`: the object at `key/rel`, or a listing of the objects below it.
fn raw_file(
    repo: &dyn weft_drivers::artifacts::Repository,
    key: &Key,
    rel: &str,
    slash: bool,
    head: oneshot::Sender<ApiResult<Head>>,
    tx: &Chunks,
) {
    let target = if rel.is_empty() {
        Ok(key.clone())
    } else {
        key.join(rel)
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            let _ = head.send(Err(ApiError::Invalid(e.to_string())));
            return;
        }
    };
    match repo.open(&target) {
        Ok(Some(mut r)) => {
            let _ = head.send(Ok(Head::Stream {
                content_type: content_type(target.as_str()),
                disposition: None,
            }));
            pump(&mut r, tx);
        }
        Ok(None) => {
            let below = match repo.list(&target) {
                Ok(l) => l,
                Err(e) => {
                    let _ = head.send(Err(internal(e)));
                    return;
                }
            };
            let answer = if below.is_empty() {
                Err(ApiError::NotFound(format!(
                    "no file {rel:?} in the artifact (key {key} in the {})",
                    repo.describe()
                )))
            } else if !slash {
                Ok(Head::Redirect)
            } else {
                let prefix = format!("{}/", target.as_str());
                let names = below
                    .iter()
                    .filter_map(|k| k.as_str().strip_prefix(&prefix))
                    .map(child_name)
                    .collect();
                Ok(Head::Listing(listing(names)))
            };
            let _ = head.send(answer);
        }
        Err(e) => {
            let _ = head.send(Err(internal(e)));
        }
    }
}

/// `a/b/c` → `a/` (a directory), `c` → `c`.
fn child_name(rest: &str) -> String {
    match rest.split_once('/') {
        Some((d, _)) => format!("{d}/"),
        None => rest.to_string(),
    }
}

/// A tar+gzip artifact: its single file, or `rel` inside its top directory,
/// read entry by entry from the stream (never unpacked to disk or memory).
fn tgz_file(
    repo: &dyn weft_drivers::artifacts::Repository,
    key: &Key,
    artifact: &str,
    rel: &str,
    slash: bool,
    head: oneshot::Sender<ApiResult<Head>>,
    tx: &Chunks,
) {
    let r = match repo.open(key) {
        Ok(Some(r)) => r,
        Ok(None) => {
            let _ = head.send(Err(ApiError::NotFound(format!(
                "artifact {artifact:?}: key {key} is not in the {}",
                repo.describe()
            ))));
            return;
        }
        Err(e) => {
            let _ = head.send(Err(internal(e)));
            return;
        }
    };
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(r));
    let entries = match ar.entries() {
        Ok(e) => e,
        Err(e) => {
            let _ = head.send(Err(internal(format!("reading artifact {artifact:?}: {e}"))));
            return;
        }
    };
    let mut target: Option<String> = None;
    let mut is_dir = false;
    let mut children: Vec<String> = Vec::new();
    for e in entries {
        let mut e = match e {
            Ok(e) => e,
            Err(err) => {
                let _ = head.send(Err(internal(format!(
                    "reading artifact {artifact:?}: {err}"
                ))));
                return;
            }
        };
        let Ok(p) = e.path() else { continue };
        let p = p.to_string_lossy().trim_end_matches('/').to_string();
        // The first entry is the archive's top (the file, or the directory).
        let t = target
            .get_or_insert_with(|| {
                let top = p.split('/').next().unwrap_or_default().to_string();
                if rel.is_empty() {
                    top
                } else {
                    format!("{top}/{rel}")
                }
            })
            .clone();
        let kind = e.header().entry_type();
        if p == t {
            if kind.is_file() {
                let _ = head.send(Ok(Head::Stream {
                    content_type: content_type(&p),
                    disposition: None,
                }));
                pump(&mut e, tx);
                return;
            }
            is_dir |= kind.is_dir();
        } else if let Some(rest) = p.strip_prefix(&format!("{t}/")) {
            is_dir = true;
            let c = child_name(rest);
            if !children.contains(&c) {
                children.push(c);
            }
        }
    }
    let answer = if !is_dir {
        Err(ApiError::NotFound(format!(
            "no file {rel:?} in artifact {artifact:?}"
        )))
    } else if !slash {
        Ok(Head::Redirect)
    } else {
        Ok(Head::Listing(listing(children)))
    };
    let _ = head.send(answer);
}

/// Argo's little directory page.
fn listing(mut names: Vec<String>) -> String {
    names.sort();
    names.dedup();
    let mut s = String::from("<html><body><ul>\n<li><a href=\"..\">..</a></li>\n");
    for n in names {
        let n = escape(&n);
        s.push_str(&format!("<li><a href=\"{n}\">{n}</a></li>\n"));
    }
    s.push_str("</ul></body></html>\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt" | "log" | "md" | "yaml" | "yml" | "py" | "sh") => "text/plain; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("pdf") => "application/pdf",
        Some("tgz" | "gz") => "application/gzip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_escapes_and_children_are_immediate() {
        assert_eq!(child_name("a/b/c"), "a/");
        assert_eq!(child_name("c.txt"), "c.txt");
        let html = listing(vec!["b/".into(), "<x>".into(), "b/".into()]);
        assert!(
            html.contains("<a href=\"&lt;x&gt;\">&lt;x&gt;</a>"),
            "{html}"
        );
        assert_eq!(html.matches("href=\"b/\"").count(), 1, "{html}");
        assert_eq!(content_type("d/a.TXT"), "text/plain; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
