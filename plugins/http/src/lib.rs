//! # weft's http driver (a Wasm component, `driver-plugin` world)
//!
//! Runs Argo `http` templates through the host's `http` capability (which
//! checks the plugin's allow-list of hosts):
//! - `method` (default `GET`), `url`, `headers` (`value`, or
//!   `valueFrom.secretKeyRef` → the host substitutes `${secret:<name>.<key>}`
//!   for a granted secret, so the value never enters the plugin), `body`,
//!   `timeoutSeconds`;
//! - `successCondition` is an expr-lang expression over `response.statusCode`
//!   (int), `response.body` (string) and `response.headers` (name → list of
//!   values, Go-canonical names such as `Content-Type`), as Argo evaluates it;
//!   without one, a 2xx status succeeds;
//! - `outputs.result` is the response body.
//!
//! The call completes inside `start` (no state to persist): a repeated `start`
//! for the same attempt sends the request again, as Argo's agent does on retry.

pub mod call;

pub use call::{Call, canonical_header, parse, succeeded};
use weft_sdk::driver::host::http;
use weft_sdk::driver::{
    Driver, Outcome, PluginError, PluginMetadata, PollResult, StepContext, outcome,
};

/// Send the call and judge the response.
fn run(call: Call) -> Outcome {
    let req = http::Request {
        method: call.method.clone(),
        url: call.url.clone(),
        headers: call.headers,
        body: call.body,
        timeout_ms: call.timeout_ms,
    };
    let resp = match http::send(&req) {
        Ok(r) => r,
        Err(e) => {
            return outcome::failed(format!("{} {}: {}", call.method, call.url, e.message()));
        }
    };
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    match succeeded(
        call.success_condition.as_deref(),
        resp.status,
        &resp.headers,
        &body,
    ) {
        Ok(true) => outcome::succeeded(Some(body)),
        Ok(false) => {
            let why = match &call.success_condition {
                Some(c) => format!("successCondition `{c}` evaluated to false"),
                None => "received a non-2xx response".to_string(),
            };
            let mut o = outcome::failed(format!(
                "{} {}: {why} (status code {})",
                call.method, call.url, resp.status
            ));
            o.result = Some(body);
            o
        }
        Err(msg) => outcome::error(msg),
    }
}

struct HttpDriver;

impl Driver for HttpDriver {
    fn describe() -> PluginMetadata {
        PluginMetadata {
            name: "http".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "runs Argo http templates through the host's allow-listed http capability"
                .into(),
        }
    }

    fn start(ctx: StepContext) -> Result<PollResult, PluginError> {
        Ok(PollResult::Done(match parse(&ctx.template_json()) {
            Ok(call) => run(call),
            Err(msg) => outcome::error(msg),
        }))
    }

    fn poll(ctx: StepContext, _state: Vec<u8>) -> Result<PollResult, PluginError> {
        // `start` never returns pending; a host that polls anyway gets a fresh call.
        Self::start(ctx)
    }

    fn cancel(_ctx: StepContext, _state: Vec<u8>) -> Result<(), PluginError> {
        Ok(())
    }
}

weft_sdk::export_driver!(HttpDriver);
