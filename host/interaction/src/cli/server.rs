//! `weft server`: the Argo Server REST API with the engine in process.
//!
//! Start-up: open the store, start the engine, apply stored sync limits, and
//! adopt every unfinished workflow no other weft process owns (ownership
//! locks, as `weft run` takes them). Shutdown on SIGTERM or ctrl-c: stop
//! accepting connections, end open watches and log streams, let the engine
//! commit the turn in progress, flush buffered log lines. Every transition is
//! committed before its action, so what was in flight continues at the next
//! start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tracing::{info, warn};
use weft_engine::runtime::{StateStore, WorkflowFilter};

use super::Invalid;
use crate::api::{self, ApiState, auth::Tokens, metrics::Metrics};
use crate::app::App;
use crate::config::Config;

/// Argo Server's port.
pub const DEFAULT_ADDR: &str = "127.0.0.1:2746";

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Listen address HOST:PORT (default: [server] addr in weft.toml, else 127.0.0.1:2746; port 0 picks a free one).
    #[arg(long, env = "WEFT_SERVER_ADDR")]
    pub addr: Option<String>,
}

pub async fn run(config: Config, args: ServerArgs) -> Result<u8> {
    let tokens = Tokens::from_config(&config.server.tokens).map_err(Invalid)?;
    let addr = args
        .addr
        .or(config.server.addr.clone())
        .unwrap_or_else(|| DEFAULT_ADDR.into());
    let metrics = Arc::new(Metrics::new());
    let mut app = App::open(config).await?;
    app.engine_metrics = Some(metrics.clone());
    let running = Arc::new(app.start().await?);
    let open = tokens.is_open();
    let state = ApiState::new(&app, running.clone(), tokens, metrics);
    api::sync::apply_stored(&state)
        .await
        .map_err(|e| anyhow::anyhow!("applying stored sync limits: {e}"))?;
    let adopted = adopt_unowned(&app, &state).await?;
    crate::cron::spawn(state.clone()); // schedules CronWorkflows until shutdown
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    // One line on stdout, for people and for scripts waiting for readiness.
    println!("weft server listening on http://{local}");
    info!(%local, adopted, open, "weft server started");
    if open {
        warn!("no [[server.tokens]] configured: the API is open to anyone who can reach {local}");
    }
    let stop = state.shutdown.clone();
    let serve =
        axum::serve(listener, api::router(state.clone())).with_graceful_shutdown(async move {
            signal().await;
            info!("shutting down: no new connections, ending watches");
            stop.cancel();
        });
    let stop = state.shutdown.clone();
    tokio::select! {
        r = serve => r.context("serving the API")?,
        // Connections that do not finish within 10 s of the signal are dropped.
        _ = async { stop.cancelled().await; tokio::time::sleep(Duration::from_secs(10)).await } => {
            warn!("connections still open 10 s after shutdown began; closing them");
        }
    }
    // The engine's turn in progress commits; buffered log lines reach the store.
    let _ = tokio::time::timeout(Duration::from_secs(10), state.engine.barrier()).await;
    app.store.flush_logs().await;
    info!("weft server stopped");
    Ok(0)
}

/// Workflows adopted at once at start-up: the engine takes their `Adopt`
/// messages in one turn and commits them together (one transaction, not one
/// per workflow: `weft bench restart`, 1,000 workflows).
const ADOPT_IN_FLIGHT: usize = 128;

/// Adopt every unfinished workflow whose ownership lock is free.
async fn adopt_unowned(app: &App, state: &ApiState) -> Result<usize> {
    use futures::StreamExt;
    let filter = WorkflowFilter {
        phases: vec!["Pending".into(), "Running".into()],
        ..Default::default()
    };
    let list = app.store.list_workflows(&filter).await?;
    let results: Vec<Result<bool>> = futures::stream::iter(list)
        .map(|wf| async move {
            if !state
                .own(&wf.uid)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                return Ok(false);
            }
            match state.engine.adopt(&wf.namespace, &wf.name).await {
                Ok(()) => Ok(true),
                Err(e) => {
                    warn!(workflow = %wf.name, error = %e, "cannot adopt");
                    Ok(false)
                }
            }
        })
        .buffer_unordered(ADOPT_IN_FLIGHT)
        .collect()
        .await;
    let mut n = 0;
    for r in results {
        n += usize::from(r?);
    }
    Ok(n)
}

/// SIGTERM or ctrl-c.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
