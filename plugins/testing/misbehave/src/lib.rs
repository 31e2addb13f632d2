//! Test plugin for the host's robustness tests. `start` misbehaves as the
//! template's `misbehave` field says: `trap`, `loop`, `oom`, `panic`, or
//! `ok` (succeeds, to show the host still serves). Also probes a capability it
//! is not granted (`process`) when asked `probe-process`.

use weft_sdk::driver::host::process;
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

weft_sdk::export_driver!(Misbehave);
