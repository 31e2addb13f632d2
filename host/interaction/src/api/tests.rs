//! The router without a socket (`tower::ServiceExt::oneshot`): error shapes,
//! auth, body limits. End-to-end tests through the binary are in `tests/all/api.rs`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::config::{Config, TokenConfig};

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
}

async fn fixture(tokens: &[(&str, &[&str], &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::load(None, Some(dir.path())).expect("config");
    config.home = dir.path().to_path_buf();
    // Compiled plugins are cached per machine, as in the integration tests.
    config.cache_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/weft-test-cache");
    config.store_url = format!("sqlite://{}", dir.path().join("weft.db").display());
    config.server.tokens = tokens
        .iter()
        .map(|(t, ns, role)| TokenConfig {
            token: t.to_string(),
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            role: role.to_string(),
        })
        .collect();
    let tokens = auth::Tokens::from_config(&config.server.tokens).unwrap();
    let app = App::open(config).await.unwrap();
    let running = Arc::new(app.start().await.unwrap());
    let state = ApiState::new(&app, running, tokens, Arc::new(metrics::Metrics::new()));
    Fixture {
        _dir: dir,
        app: router(state),
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Body,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn hello(name: &str) -> Body {
    Body::from(
        json!({"workflow": {"metadata": {"name": name}, "spec": {"entrypoint": "m", "templates": [
            {"name": "m", "container": {"image": "alpine", "command": ["echo", "hi"]}}]}}})
        .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_argo_shapes() {
    let f = fixture(&[]).await;
    let (s, v) = call(
        &f.app,
        "GET",
        "/api/v1/workflows/default/nope",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::NOT_FOUND, json!(5)),
        "{v}"
    );
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/workflows/default",
        None,
        Body::from("{not json"),
    )
    .await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(3)),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("malformed JSON"),
        "{v}"
    );
    let body = json!({"workflow": {"kind": "Pod", "metadata": {"name": "x"}}}).to_string();
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/workflows/default",
        None,
        Body::from(body),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"].as_str().unwrap().contains("unknown kind"),
        "{v}"
    );
    let big = vec![b' '; MAX_BODY + 1];
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/workflows/default",
        None,
        Body::from(big),
    )
    .await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!(8)),
        "{v}"
    );
    let (s, v) = call(&f.app, "GET", "/api/v1/nothing-here", None, Body::empty()).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::NOT_FOUND, json!(5)),
        "{v}"
    );
    // duplicate names: 409 / 6
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/workflows/default",
        None,
        hello("dup"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_ne!(
        v["status"]["phase"],
        json!(""),
        "a live workflow has a phase: {v}"
    );
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/workflows/default",
        None,
        hello("dup"),
    )
    .await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::CONFLICT, json!(6)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_map_to_namespaces_and_roles() {
    let f = fixture(&[("r", &["a"], "read"), ("s", &["a"], "submit")]).await;
    let (s, v) = call(&f.app, "GET", "/api/v1/workflows/a", None, Body::empty()).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(16)),
        "{v}"
    );
    let (s, _) = call(
        &f.app,
        "GET",
        "/api/v1/workflows/a",
        Some("bad"),
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(
        &f.app,
        "GET",
        "/api/v1/workflows/a",
        Some("r"),
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(
        &f.app,
        "GET",
        "/api/v1/workflows/b",
        Some("r"),
        Body::empty(),
    )
    .await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::FORBIDDEN, json!(7)),
        "{v}"
    );
    let (s, _) = call(
        &f.app,
        "POST",
        "/api/v1/workflows/a",
        Some("r"),
        hello("w1"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/workflows/a",
        Some("s"),
        hello("w1"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&f.app, "GET", "/api/v1/userinfo", Some("s"), Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["subject"], "token-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_projects_fields_and_pages() {
    let f = fixture(&[]).await;
    for n in ["p1", "p2", "p3"] {
        let (s, v) = call(&f.app, "POST", "/api/v1/workflows/default", None, hello(n)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let uri = "/api/v1/workflows/default?listOptions.limit=2&fields=metadata.continue,items.metadata.name,items.status.phase";
    let (s, v) = call(&f.app, "GET", uri, None, Body::empty()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    assert!(items[0].get("spec").is_none(), "projected: {v}");
    let cont = v["metadata"]["continue"].as_str().unwrap().to_string();
    assert!(!cont.is_empty());
    let uri = format!("/api/v1/workflows/default?listOptions.limit=2&listOptions.continue={cont}");
    let (_, v) = call(&f.app, "GET", &uri, None, Body::empty()).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    let uri = "/api/v1/workflows/default?listOptions.fieldSelector=metadata.name%3Dp2";
    let (_, v) = call(&f.app, "GET", uri, None, Body::empty()).await;
    assert_eq!(v["items"][0]["metadata"]["name"], "p2", "{v}");
}
