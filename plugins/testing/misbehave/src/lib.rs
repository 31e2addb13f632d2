//! Test plugin for the host's robustness tests. `start` misbehaves as the
//! template's `misbehave` field says: `trap`, `loop`, `oom`, `panic`, or
//! `ok` (succeeds, to show the host still serves). The `probe-*` values try
//! to reach something from inside the sandbox and succeed only if they got
//! it: `probe-process`, `probe-file` (the template's `path`), `probe-env`
//! (any environment variable), `probe-socket` (TCP to the template's `addr`),
//! `probe-http` (GET the template's `url`), `probe-secret` (the template's
//! `secret`). The result says what was reached; the message says why not.

use weft_sdk::driver::host::{http, process, secrets};
use weft_sdk::driver::{Driver, PluginError, PluginMetadata, PollResult, StepContext, outcome};

struct Misbehave;

impl Driver for Misbehave {
    fn describe() -> PluginMetadata {
        PluginMetadata {
            name: "misbehave".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "misbehaves on purpose (tests)".into(),
        }
    }

    fn start(ctx: StepContext) -> Result<PollResult, PluginError> {
        let t = ctx.template_json();
        match t.get("misbehave").and_then(|m| m.as_str()).unwrap_or("ok") {
            "trap" => core::arch::wasm32::unreachable(),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "oom" => {
                let mut v: Vec<Vec<u8>> = Vec::new();
                loop {
                    v.push(vec![1u8; 1 << 20]);
                }
            }
            "panic" => panic!("misbehave plugin panicked on purpose"),
            "probe-process" => match process::status("nope") {
                Ok(_) => Ok(PollResult::Done(outcome::succeeded(Some("granted".into())))),
                Err(e) => Ok(PollResult::Done(outcome::failed(e.message()))),
            },
            "probe-file" => {
                let path = field(&t, "path");
                Ok(reached(
                    std::fs::read_to_string(&path).map_err(|e| e.to_string()),
                ))
            }
            "probe-env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                Ok(if vars.is_empty() {
                    PollResult::Done(outcome::failed("no environment variables"))
                } else {
                    PollResult::Done(outcome::succeeded(Some(vars.join(","))))
                })
            }
            "probe-socket" => {
                let addr = field(&t, "addr");
                Ok(reached(
                    std::net::TcpStream::connect(&addr)
                        .map(|_| format!("connected to {addr}"))
                        .map_err(|e| e.to_string()),
                ))
            }
            "probe-http" => {
                let req = http::Request {
                    method: "GET".into(),
                    url: field(&t, "url"),
                    headers: Vec::new(),
                    body: None,
                    timeout_ms: Some(5_000),
                };
                Ok(reached(
                    http::send(&req)
                        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                        .map_err(|e| e.message()),
                ))
            }
            "probe-secret" => Ok(reached(
                secrets::get(&field(&t, "secret")).map_err(|e| e.message()),
            )),
            _ => Ok(PollResult::Done(outcome::succeeded(Some("ok".into())))),
        }
    }

    fn poll(ctx: StepContext, _state: Vec<u8>) -> Result<PollResult, PluginError> {
        Self::start(ctx)
    }

    fn cancel(_ctx: StepContext, _state: Vec<u8>) -> Result<(), PluginError> {
        Ok(())
    }
}

fn field(t: &weft_sdk::serde_json::Value, name: &str) -> String {
    t.get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Succeeded with what was reached, or Failed with why not.
fn reached(r: Result<String, String>) -> PollResult {
    match r {
        Ok(got) => PollResult::Done(outcome::succeeded(Some(got))),
        Err(why) => PollResult::Done(outcome::failed(why)),
    }
}

weft_sdk::export_driver!(Misbehave);
