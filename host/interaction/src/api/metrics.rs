//! Prometheus metrics (`GET /metrics`): workflows by phase, step latency,
//! driver (plugin) call latency, the engine's queue depth, open watches and
//! submissions. The engine reports latencies through
//! [`weft_engine::runtime::EngineMetrics`]; the rest is read at scrape time.

use std::collections::BTreeMap;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use weft_engine::model::Phase;
use weft_engine::runtime::{EngineMetrics, StateStore, WorkflowFilter};

use super::ApiState;

/// The server's metrics, registered in their own registry.
pub struct Metrics {
    pub registry: Registry,
    pub submitted: IntCounter,
    pub workflows: IntGaugeVec,
    pub step_seconds: HistogramVec,
    pub driver_call_seconds: HistogramVec,
    pub queue_depth: IntGauge,
    pub watchers: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let submitted = IntCounter::new(
            "weft_workflows_submitted_total",
            "Workflows submitted through the API.",
        )
        .expect("metric");
        let workflows = IntGaugeVec::new(
            Opts::new("weft_workflows", "Stored workflows by phase."),
            &["phase"],
        )
        .expect("metric");
        let step_seconds = HistogramVec::new(
            HistogramOpts::new(
                "weft_step_duration_seconds",
                "Time from a step attempt's start to its end.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["driver", "phase"],
        )
        .expect("metric");
        let driver_call_seconds = HistogramVec::new(
            HistogramOpts::new(
                "weft_driver_call_duration_seconds",
                "Latency of one driver (plugin) call: start or poll.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["driver", "op"],
        )
        .expect("metric");
        let queue_depth = IntGauge::new(
            "weft_engine_queue_depth",
            "Messages waiting for the engine's owner task.",
        )
        .expect("metric");
        let watchers = IntGauge::new("weft_api_watches", "Open workflow watches.").expect("metric");
        for c in [
            Box::new(submitted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(workflows.clone()),
            Box::new(step_seconds.clone()),
            Box::new(driver_call_seconds.clone()),
            Box::new(queue_depth.clone()),
            Box::new(watchers.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            submitted,
            workflows,
            step_seconds,
            driver_call_seconds,
            queue_depth,
            watchers,
        }
    }

    /// Refresh the scrape-time gauges and render the text exposition format.
    pub async fn render(&self, state: &ApiState) -> String {
        self.queue_depth.set(state.engine.queue_depth() as i64);
        self.watchers.set(state.hub.watchers() as i64);
        if let Ok(rows) = state.store.list_workflows(&WorkflowFilter::default()).await {
            let mut by: BTreeMap<&str, i64> =
                ["Pending", "Running", "Succeeded", "Failed", "Error"]
                    .into_iter()
                    .map(|p| (p, 0))
                    .collect();
            for r in &rows {
                *by.entry(Phase::parse(&r.phase).map_or("Error", Phase::as_str))
                    .or_default() += 1;
            }
            for (p, n) in by {
                self.workflows.with_label_values(&[p]).set(n);
            }
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl EngineMetrics for Metrics {
    fn driver_call(&self, driver: &str, op: &'static str, secs: f64) {
        self.driver_call_seconds
            .with_label_values(&[driver, op])
            .observe(secs);
    }

    fn step_finished(&self, driver: &str, phase: Phase, secs: f64) {
        self.step_seconds
            .with_label_values(&[driver, phase.as_str()])
            .observe(secs);
    }
}
