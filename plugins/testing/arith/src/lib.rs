//! Example user Wasm step (`step-component` world), built with `weft-sdk`.
//!
//! The `op` parameter (a `plugin.wasm.args` entry or an input parameter)
//! chooses what it computes; numbers are integers:
//! - `add` (default): `a + b` → output parameter `sum` and `outputs.result`;
//! - `inc`: `x + 1`; `double`: `x * 2`;
//! - `range`: the JSON list `[0, …, n-1]`; `sum`: the sum of the JSON list `xs`;
//! - `trap`, `loop`, `panic`, `oom`: misbehave (for the host's failure tests).

use weft_sdk::step::{Step, StepInput, StepOutput};

struct Arith;

fn get<'a>(input: &'a StepInput, name: &str) -> Option<&'a str> {
    // later entries win: input parameters come after `args`
    input
        .parameters
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn int(input: &StepInput, name: &str) -> Result<i64, String> {
    let v = get(input, name).ok_or_else(|| format!("parameter {name:?} is missing"))?;
    v.trim()
        .parse::<i64>()
        .map_err(|_| format!("parameter {name:?} = {v:?} is not an integer"))
}

impl Step for Arith {
    fn run(input: StepInput) -> Result<StepOutput, String> {
        let op = get(&input, "op").unwrap_or("add").to_string();
        let value = match op.as_str() {
            "add" => (int(&input, "a")? + int(&input, "b")?).to_string(),
            "inc" => (int(&input, "x")? + 1).to_string(),
            "double" => (int(&input, "x")? * 2).to_string(),
            "range" => {
                let n = int(&input, "n")?.max(0);
                serde_json::to_string(&(0..n).collect::<Vec<i64>>()).expect("serializes")
            }
            "sum" => {
                let xs = get(&input, "xs").unwrap_or("[]");
                let xs: Vec<serde_json::Value> = serde_json::from_str(xs)
                    .map_err(|e| format!("parameter \"xs\" is not a JSON list: {e}"))?;
                let mut s = 0i64;
                for x in xs {
                    s += x
                        .as_i64()
                        .or_else(|| x.as_str().and_then(|t| t.trim().parse().ok()))
                        .ok_or_else(|| format!("{x} is not an integer"))?;
                }
                s.to_string()
            }
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
            "panic" => panic!("arith step panicked on purpose"),
            other => return Err(format!("unknown op {other:?}")),
        };
        Ok(StepOutput {
            parameters: vec![
                ("sum".into(), value.clone()),
                ("value".into(), value.clone()),
            ],
            result: Some(value),
            artifacts: vec![],
        })
    }
}

weft_sdk::export_step!(Arith);
