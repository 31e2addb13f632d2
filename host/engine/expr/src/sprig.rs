//! Sprig's generic functions, as Argo exposes them to expressions under `sprig.<name>(…)`.
//!
//! expr-lang cannot call a function stored in a map, so each function is registered as
//! `sprig_<name>` and the expression text is rewritten before compiling (see `lexer`).
//! Arguments are coerced the way Sprig does (numbers from text for the math functions, text
//! from anything for the string functions), and like Sprig most functions return a zero value
//! rather than fail on bad input; the `must*` variants and `fail` report errors.
//!
//! Left out: functions with side effects or randomness (`env`, `expandenv`, `now`, `date*`,
//! `uuidv4`, `rand*`, `shuffle`), cryptography beyond `sha256sum`/`adler32sum`, `semver*`.

use expr::{Environment, Value};
use indexmap::IndexMap;
use regex::Regex;
use sha2::Digest;

use crate::expression::{format_float, go_json, json_to_value, value_to_json};

type R = Result<Value, String>;

const ANY: usize = usize::MAX;

/// Register every Sprig function on `env` as `sprig_<name>`.
pub(crate) fn add_functions(env: &mut Environment<'static>) {
    for &(name, min, max, f) in FUNCTIONS {
        env.add_function(&format!("sprig_{name}"), move |c| {
            let n = c.args.len();
            if n < min || n > max {
                let expected = match (min, max) {
                    (a, b) if a == b => format!("{a}"),
                    (a, ANY) => format!("at least {a}"),
                    (a, b) => format!("{a} to {b}"),
                };
                return Err(expr::Error::ExprError(format!(
                    "sprig.{name}() takes {expected} argument(s), got {n}"
                )));
            }
            f(&c.args).map_err(|m| expr::Error::ExprError(format!("sprig.{name}(): {m}")))
        });
    }
}

/// The names of the Sprig functions this crate provides.
pub fn names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().map(|f| f.0)
}

type Entry = (&'static str, usize, usize, fn(&[Value]) -> R);

#[rustfmt::skip]
const FUNCTIONS: &[Entry] = &[
    // strings
    ("trim", 1, 1, |a| Ok(s(&a[0]).trim().into())),
    ("trimAll", 2, 2, |a| { let cut = s(&a[0]); Ok(s(&a[1]).trim_matches(|c| cut.contains(c)).into()) }),
    ("trimPrefix", 2, 2, |a| { let x = s(&a[1]); Ok(x.strip_prefix(s(&a[0]).as_str()).unwrap_or(&x).into()) }),
    ("trimSuffix", 2, 2, |a| { let x = s(&a[1]); Ok(x.strip_suffix(s(&a[0]).as_str()).unwrap_or(&x).into()) }),
    ("upper", 1, 1, |a| Ok(s(&a[0]).to_uppercase().into())),
    ("lower", 1, 1, |a| Ok(s(&a[0]).to_lowercase().into())),
    ("title", 1, 1, |a| Ok(title(&s(&a[0])).into())),
    ("untitle", 1, 1, |a| Ok(untitle(&s(&a[0])).into())),
    ("repeat", 2, 2, |a| repeat(i(&a[0]), &s(&a[1]))),
    ("substr", 3, 3, |a| Ok(substr(i(&a[0]), i(&a[1]), &s(&a[2])).into())),
    ("nospace", 1, 1, |a| Ok(s(&a[0]).chars().filter(|c| !c.is_whitespace()).collect::<String>().into())),
    ("trunc", 2, 2, |a| Ok(trunc(i(&a[0]), &s(&a[1])).into())),
    ("abbrev", 2, 2, |a| Ok(abbrev(i(&a[0]), &s(&a[1])).into())),
    ("contains", 2, 2, |a| Ok(s(&a[1]).contains(s(&a[0]).as_str()).into())),
    ("hasPrefix", 2, 2, |a| Ok(s(&a[1]).starts_with(s(&a[0]).as_str()).into())),
    ("hasSuffix", 2, 2, |a| Ok(s(&a[1]).ends_with(s(&a[0]).as_str()).into())),
    ("quote", 0, ANY, |a| Ok(quote(a, '"').into())),
    ("squote", 0, ANY, |a| Ok(quote(a, '\'').into())),
    ("cat", 0, ANY, |a| Ok(a.iter().filter(|v| !v.is_nil()).map(s).collect::<Vec<_>>().join(" ").into())),
    ("replace", 3, 3, |a| Ok(s(&a[2]).replace(s(&a[0]).as_str(), &s(&a[1])).into())),
    ("indent", 2, 2, |a| Ok(indent(i(&a[0]), &s(&a[1])).into())),
    ("nindent", 2, 2, |a| Ok(format!("\n{}", indent(i(&a[0]), &s(&a[1]))).into())),
    ("plural", 3, 3, |a| Ok(if i(&a[2]) == 1 { a[0].clone() } else { a[1].clone() })),
    ("snakecase", 1, 1, |a| Ok(words(&s(&a[0])).join("_").to_lowercase().into())),
    ("kebabcase", 1, 1, |a| Ok(words(&s(&a[0])).join("-").to_lowercase().into())),
    ("camelcase", 1, 1, |a| Ok(words(&s(&a[0])).iter().map(|w| title(&w.to_lowercase())).collect::<String>().into())),
    ("split", 2, 2, |a| Ok(split_map(s(&a[1]).split(s(&a[0]).as_str())))),
    ("splitn", 3, 3, |a| { let n = i(&a[1]).max(0) as usize; Ok(split_map(s(&a[2]).splitn(n, s(&a[0]).as_str()))) }),
    ("splitList", 2, 2, |a| Ok(Value::Array(s(&a[1]).split(s(&a[0]).as_str()).map(Value::from).collect()))),
    ("join", 2, 2, |a| Ok(strslice(&a[1]).join(&s(&a[0])).into())),
    ("sortAlpha", 1, 1, |a| { let mut v = strslice(&a[0]); v.sort(); Ok(v.into()) }),
    // conversions
    ("toString", 1, 1, |a| Ok(s(&a[0]).into())),
    ("toStrings", 1, 1, |a| Ok(strslice(&a[0]).into())),
    ("atoi", 1, 1, |a| Ok(Value::Integer(s(&a[0]).parse().unwrap_or(0)))),
    ("int", 1, 1, |a| Ok(Value::Integer(i(&a[0])))),
    ("int64", 1, 1, |a| Ok(Value::Integer(i(&a[0])))),
    ("float64", 1, 1, |a| Ok(Value::Float(f(&a[0])))),
    ("toDecimal", 1, 1, |a| Ok(Value::Integer(i64::from_str_radix(s(&a[0]).trim(), 8).unwrap_or(0)))),
    ("toJson", 1, 1, |a| Ok(go_json(&a[0]).into())),
    ("mustToJson", 1, 1, |a| Ok(go_json(&a[0]).into())),
    ("toRawJson", 1, 1, |a| Ok(value_to_json(&a[0]).to_string().into())),
    ("mustToRawJson", 1, 1, |a| Ok(value_to_json(&a[0]).to_string().into())),
    ("toPrettyJson", 1, 1, |a| pretty(&a[0])),
    ("mustToPrettyJson", 1, 1, |a| pretty(&a[0])),
    ("fromJson", 1, 1, |a| Ok(from_json(&a[0]).unwrap_or(Value::Nil))),
    ("mustFromJson", 1, 1, |a| from_json(&a[0])),
    // encodings and checksums
    ("b64enc", 1, 1, |a| Ok(b64_encode(s(&a[0]).as_bytes()).into())),
    ("b64dec", 1, 1, |a| b64_decode(&s(&a[0])).map(Value::from)),
    ("sha256sum", 1, 1, |a| Ok(hex::encode(sha2::Sha256::digest(s(&a[0]).as_bytes())).into())),
    ("adler32sum", 1, 1, |a| Ok(adler32(s(&a[0]).as_bytes()).to_string().into())),
    // regular expressions (Rust `regex` syntax, which matches Go's RE2 for common patterns)
    ("regexMatch", 2, 2, |a| Ok(re(&a[0])?.is_match(&s(&a[1])).into())),
    ("mustRegexMatch", 2, 2, |a| Ok(re(&a[0])?.is_match(&s(&a[1])).into())),
    ("regexFind", 2, 2, |a| Ok(re(&a[0])?.find(&s(&a[1])).map_or("", |m| m.as_str()).into())),
    ("regexFindAll", 3, 3, |a| { let t = s(&a[1]); Ok(take(re(&a[0])?.find_iter(&t).map(|m| m.as_str().to_string()), i(&a[2])).into()) }),
    ("regexReplaceAll", 3, 3, |a| Ok(re(&a[0])?.replace_all(&s(&a[1]), s(&a[2]).as_str()).into_owned().into())),
    ("regexReplaceAllLiteral", 3, 3, |a| Ok(re(&a[0])?.replace_all(&s(&a[1]), regex::NoExpand(&s(&a[2]))).into_owned().into())),
    ("regexSplit", 3, 3, |a| { let t = s(&a[1]); Ok(take(re(&a[0])?.split(&t).map(str::to_string), i(&a[2])).into()) }),
    ("regexQuoteMeta", 1, 1, |a| Ok(regex::escape(&s(&a[0])).into())),
    // defaults and flow
    ("default", 1, ANY, |a| Ok(match a.get(1) { Some(v) if !empty(v) => v.clone(), _ => a[0].clone() })),
    ("empty", 1, 1, |a| Ok(empty(&a[0]).into())),
    ("coalesce", 0, ANY, |a| Ok(a.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Nil))),
    ("all", 0, ANY, |a| Ok(a.iter().all(|v| !empty(v)).into())),
    ("any", 0, ANY, |a| Ok(a.iter().any(|v| !empty(v)).into())),
    ("ternary", 3, 3, |a| Ok(if truthy(&a[2]) { a[0].clone() } else { a[1].clone() })),
    ("fail", 1, 1, |a| Err(s(&a[0]))),
    ("kindOf", 1, 1, |a| Ok(kind_of(&a[0]).into())),
    ("kindIs", 2, 2, |a| Ok((s(&a[0]) == kind_of(&a[1])).into())),
    ("typeOf", 1, 1, |a| Ok(type_of(&a[0]).into())),
    ("typeIs", 2, 2, |a| Ok((s(&a[0]) == type_of(&a[1])).into())),
    ("deepEqual", 2, 2, |a| Ok((a[0] == a[1]).into())),
    // integer math (arguments coerced to integers, like Sprig's toInt64)
    ("add", 0, ANY, |a| Ok(a.iter().fold(0i64, |acc, v| acc.wrapping_add(i(v))).into())),
    ("add1", 1, 1, |a| Ok(i(&a[0]).wrapping_add(1).into())),
    ("sub", 2, 2, |a| Ok(i(&a[0]).wrapping_sub(i(&a[1])).into())),
    ("mul", 1, ANY, |a| Ok(a.iter().fold(1i64, |acc, v| acc.wrapping_mul(i(v))).into())),
    ("div", 2, 2, |a| int_div(i(&a[0]), i(&a[1]), i64::checked_div)),
    ("mod", 2, 2, |a| int_div(i(&a[0]), i(&a[1]), i64::checked_rem)),
    ("max", 1, ANY, |a| Ok(a.iter().map(i).max().unwrap_or(0).into())),
    ("biggest", 1, ANY, |a| Ok(a.iter().map(i).max().unwrap_or(0).into())),
    ("min", 1, ANY, |a| Ok(a.iter().map(i).min().unwrap_or(0).into())),
    // float math
    ("addf", 0, ANY, |a| Ok(a.iter().map(f).sum::<f64>().into())),
    ("add1f", 1, 1, |a| Ok((f(&a[0]) + 1.0).into())),
    ("subf", 1, ANY, |a| Ok(a[1..].iter().fold(f(&a[0]), |acc, v| acc - f(v)).into())),
    ("mulf", 1, ANY, |a| Ok(a.iter().map(f).product::<f64>().into())),
    ("divf", 1, ANY, |a| Ok(a[1..].iter().fold(f(&a[0]), |acc, v| acc / f(v)).into())),
    ("maxf", 1, ANY, |a| Ok(a.iter().map(f).fold(f64::NEG_INFINITY, f64::max).into())),
    ("minf", 1, ANY, |a| Ok(a.iter().map(f).fold(f64::INFINITY, f64::min).into())),
    ("floor", 1, 1, |a| Ok(f(&a[0]).floor().into())),
    ("ceil", 1, 1, |a| Ok(f(&a[0]).ceil().into())),
    ("round", 2, 3, |a| Ok(round(f(&a[0]), i(&a[1]), a.get(2).map_or(0.5, f)).into())),
    ("seq", 1, 3, seq),
    ("until", 1, 1, |a| until_step(0, i(&a[0]), 1)),
    ("untilStep", 3, 3, |a| until_step(i(&a[0]), i(&a[1]), i(&a[2]))),
    // lists
    ("list", 0, ANY, |a| Ok(Value::Array(a.to_vec()))),
    ("first", 1, 1, |a| Ok(list(&a[0])?.first().cloned().unwrap_or(Value::Nil))),
    ("last", 1, 1, |a| Ok(list(&a[0])?.last().cloned().unwrap_or(Value::Nil))),
    ("rest", 1, 1, |a| Ok(Value::Array(list(&a[0])?.get(1..).unwrap_or_default().to_vec()))),
    ("initial", 1, 1, |a| { let l = list(&a[0])?; Ok(Value::Array(l[..l.len().saturating_sub(1)].to_vec())) }),
    ("append", 2, 2, |a| { let mut l = list(&a[0])?.to_vec(); l.push(a[1].clone()); Ok(Value::Array(l)) }),
    ("push", 2, 2, |a| { let mut l = list(&a[0])?.to_vec(); l.push(a[1].clone()); Ok(Value::Array(l)) }),
    ("prepend", 2, 2, |a| { let mut l = vec![a[1].clone()]; l.extend_from_slice(list(&a[0])?); Ok(Value::Array(l)) }),
    ("concat", 0, ANY, |a| { let mut l = Vec::new(); for v in a { l.extend_from_slice(list(v)?) } Ok(Value::Array(l)) }),
    ("reverse", 1, 1, |a| { let mut l = list(&a[0])?.to_vec(); l.reverse(); Ok(Value::Array(l)) }),
    ("uniq", 1, 1, |a| { let mut l: Vec<Value> = Vec::new(); for v in list(&a[0])? { if !l.contains(v) { l.push(v.clone()) } } Ok(Value::Array(l)) }),
    ("without", 1, ANY, |a| Ok(Value::Array(list(&a[0])?.iter().filter(|v| !a[1..].contains(v)).cloned().collect()))),
    ("has", 2, 2, |a| Ok(list(&a[1])?.contains(&a[0]).into())),
    ("compact", 1, 1, |a| Ok(Value::Array(list(&a[0])?.iter().filter(|v| !empty(v)).cloned().collect()))),
    ("slice", 1, 3, |a| { let l = list(&a[0])?; let end = a.get(2).map_or(l.len() as i64, i); Ok(Value::Array(l.get(idx(a.get(1).map_or(0, i))..idx(end)).ok_or("index out of range")?.to_vec())) }),
    ("chunk", 2, 2, |a| { let n = i(&a[0]); if n < 1 { return Err("size must be positive".into()) } Ok(Value::Array(list(&a[1])?.chunks(n as usize).map(|c| Value::Array(c.to_vec())).collect())) }),
    // dictionaries
    ("dict", 0, ANY, |a| Ok(Value::from_iter(a.chunks(2).map(|kv| (s(&kv[0]), kv.get(1).cloned().unwrap_or(Value::Nil)))))),
    ("get", 2, 2, |a| Ok(map(&a[0])?.get(&s(&a[1])).cloned().unwrap_or_else(|| "".into()))),
    ("hasKey", 2, 2, |a| Ok(map(&a[0])?.contains_key(&s(&a[1])).into())),
    ("set", 3, 3, |a| { let mut m = map(&a[0])?.clone(); m.insert(s(&a[1]), a[2].clone()); Ok(Value::Map(m)) }),
    ("unset", 2, 2, |a| { let mut m = map(&a[0])?.clone(); m.shift_remove(&s(&a[1])); Ok(Value::Map(m)) }),
    ("keys", 0, ANY, |a| { let mut k = Vec::new(); for d in a { k.extend(map(d)?.keys().cloned()) } k.sort(); Ok(k.into()) }),
    ("values", 1, 1, |a| Ok(Value::Array(map(&a[0])?.values().cloned().collect()))),
    ("pluck", 1, ANY, |a| { let k = s(&a[0]); let mut out = Vec::new(); for d in &a[1..] { if let Some(v) = map(d)?.get(&k) { out.push(v.clone()) } } Ok(Value::Array(out)) }),
    ("pick", 1, ANY, |a| { let keys: Vec<String> = a[1..].iter().map(s).collect(); Ok(Value::Map(map(&a[0])?.iter().filter(|(k, _)| keys.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect())) }),
    ("omit", 1, ANY, |a| { let keys: Vec<String> = a[1..].iter().map(s).collect(); Ok(Value::Map(map(&a[0])?.iter().filter(|(k, _)| !keys.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect())) }),
    ("merge", 1, ANY, |a| merge(a, false)),
    ("mergeOverwrite", 1, ANY, |a| merge(a, true)),
];

/// Text for any value, as Sprig's `strval` (Go's `%v`) writes it; lists as `[a b]`.
fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Integer(n) => n.to_string(),
        Value::Float(x) => format_float(*x),
        Value::Bool(b) => b.to_string(),
        Value::Nil => "<nil>".to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Array(a) => format!("[{}]", a.iter().map(s).collect::<Vec<_>>().join(" ")),
        other => value_to_json(other).to_string(),
    }
}

/// Integer coercion as Sprig's `toInt64`: numbers, numeric text (`0x` hex too), booleans;
/// anything else is 0.
fn i(v: &Value) -> i64 {
    match v {
        Value::Integer(n) => *n,
        Value::Float(x) => *x as i64,
        Value::Bool(b) => i64::from(*b),
        Value::String(x) => {
            let t = x.trim();
            let t = t.strip_suffix(".0").unwrap_or(t);
            if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                i64::from_str_radix(hex, 16).unwrap_or(0)
            } else {
                t.parse()
                    .unwrap_or_else(|_| t.parse::<f64>().map_or(0, |x| x as i64))
            }
        }
        _ => 0,
    }
}

/// Float coercion as Sprig's `toFloat64`.
fn f(v: &Value) -> f64 {
    match v {
        Value::Integer(n) => *n as f64,
        Value::Float(x) => *x,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(x) => x.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn idx(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// Sprig's `strslice`: a list's items as text (nils dropped), a single value as a one-item list.
fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter(|v| !v.is_nil()).map(s).collect(),
        Value::Nil => Vec::new(),
        other => vec![s(other)],
    }
}

fn list(v: &Value) -> Result<&[Value], String> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Nil => Ok(&[]),
        other => Err(format!("expected a list, got {}", kind_of(other))),
    }
}

fn map(v: &Value) -> Result<&IndexMap<String, Value>, String> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(format!("expected a dict, got {}", kind_of(other))),
    }
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::String(x) => x.is_empty(),
        Value::Integer(n) => *n == 0,
        Value::Float(x) => *x == 0.0,
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Bytes(b) => b.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::KeyedMap(m) => m.is_empty(),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(x) => x == "true",
        other => !empty(other),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Nil => "invalid",
        Value::String(_) => "string",
        Value::Integer(_) => "int",
        Value::Float(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Array(_) | Value::Bytes(_) => "slice",
        Value::Map(_) | Value::KeyedMap(_) => "map",
        #[allow(unreachable_patterns)]
        _ => "struct",
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Nil => "<nil>",
        Value::Array(_) => "[]interface {}",
        Value::Bytes(_) => "[]uint8",
        Value::Map(_) => "map[string]interface {}",
        Value::KeyedMap(_) => "map[interface {}]interface {}",
        other => kind_of(other),
    }
}

fn title(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    let mut start = true;
    for c in x.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    out
}

fn untitle(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    let mut start = true;
    for c in x.chars() {
        if start {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    out
}

/// Split `x` into words at non-alphanumerics and lower→upper case changes (for the
/// case-conversion functions).
fn words(x: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in x.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_numeric();
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Limit on text built by `repeat`/`seq`/`until`, so an expression cannot exhaust memory.
const MAX_OUTPUT: usize = 16 << 20;

fn repeat(n: i64, x: &str) -> R {
    let n = idx(n);
    if n.saturating_mul(x.len()) > MAX_OUTPUT {
        return Err(format!("result would exceed {MAX_OUTPUT} bytes"));
    }
    Ok(x.repeat(n).into())
}

fn chars_range(x: &str, start: usize, end: usize) -> String {
    x.chars()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect()
}

fn substr(start: i64, end: i64, x: &str) -> String {
    let len = x.chars().count();
    if start < 0 {
        chars_range(x, 0, idx(end).min(len))
    } else if end < 0 || idx(end) > len {
        chars_range(x, idx(start), len)
    } else {
        chars_range(x, idx(start), idx(end))
    }
}

fn trunc(c: i64, x: &str) -> String {
    let len = x.chars().count() as i64;
    if c >= 0 && len > c {
        chars_range(x, 0, idx(c))
    } else if c < 0 && len > -c {
        chars_range(x, idx(len + c), idx(len))
    } else {
        x.to_string()
    }
}

fn abbrev(width: i64, x: &str) -> String {
    let len = x.chars().count() as i64;
    if width < 4 || len <= width {
        x.to_string()
    } else {
        format!("{}...", chars_range(x, 0, idx(width - 3)))
    }
}

fn quote(args: &[Value], q: char) -> String {
    args.iter()
        .filter(|v| !v.is_nil())
        .map(|v| {
            let t = s(v);
            if q == '"' {
                serde_json::Value::String(t).to_string()
            } else {
                format!("'{t}'")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn indent(n: i64, x: &str) -> String {
    let pad = " ".repeat(idx(n).min(MAX_OUTPUT));
    format!("{pad}{}", x.replace('\n', &format!("\n{pad}")))
}

fn split_map<'a>(parts: impl Iterator<Item = &'a str>) -> Value {
    Value::from_iter(parts.enumerate().map(|(n, p)| (format!("_{n}"), p)))
}

fn take(items: impl Iterator<Item = String>, n: i64) -> Vec<String> {
    if n < 0 {
        items.collect()
    } else {
        items.take(idx(n)).collect()
    }
}

fn re(v: &Value) -> Result<Regex, String> {
    Regex::new(&s(v)).map_err(|e| format!("invalid regular expression: {e}"))
}

fn pretty(v: &Value) -> R {
    serde_json::to_string_pretty(&value_to_json(v))
        .map(Value::from)
        .map_err(|e| e.to_string())
}

fn from_json(v: &Value) -> R {
    serde_json::from_str::<serde_json::Value>(&s(v))
        .map(|j| json_to_value(&j))
        .map_err(|e| format!("invalid JSON: {e}"))
}

fn int_div(a: i64, b: i64, op: fn(i64, i64) -> Option<i64>) -> R {
    if b == 0 {
        return Err("integer division by zero".to_string());
    }
    Ok(op(a, b).unwrap_or(0).into())
}

fn round(x: f64, places: i64, round_on: f64) -> f64 {
    let pow = 10f64.powi(places.clamp(-300, 300) as i32);
    let scaled = x * pow;
    let floor = scaled.trunc();
    let frac = (scaled - floor).abs();
    let r = if frac >= round_on {
        floor + scaled.signum()
    } else {
        floor
    };
    r / pow
}

/// Sprig's `seq`, like the Unix command: `seq 5`, `seq 2 5`, `seq 1 2 10`; a space-separated text.
fn seq(a: &[Value]) -> R {
    let (start, step, end) = match a {
        [end] => (1, 1, i(end)),
        [start, end] => {
            let (start, end) = (i(start), i(end));
            (start, if end < start { -1 } else { 1 }, end)
        }
        [start, step, end] => (i(start), i(step), i(end)),
        _ => return Err("takes 1 to 3 arguments".to_string()),
    };
    if step == 0 || (step > 0 && start > end) || (step < 0 && start < end) {
        return Ok("".into());
    }
    let mut out = Vec::new();
    let mut n = start;
    while (step > 0 && n <= end) || (step < 0 && n >= end) {
        out.push(n.to_string());
        if out.len() > MAX_OUTPUT / 8 {
            return Err("sequence too long".to_string());
        }
        let Some(next) = n.checked_add(step) else {
            break;
        };
        n = next;
    }
    Ok(out.join(" ").into())
}

fn until_step(start: i64, stop: i64, step: i64) -> R {
    let mut out = Vec::new();
    if step == 0 {
        return Ok(Value::Array(out));
    }
    let mut n = start;
    while (step > 0 && n < stop) || (step < 0 && n > stop) {
        out.push(Value::Integer(n));
        if out.len() > MAX_OUTPUT / 8 {
            return Err("sequence too long".to_string());
        }
        let Some(next) = n.checked_add(step) else {
            break;
        };
        n = next;
    }
    Ok(Value::Array(out))
}

fn merge(a: &[Value], overwrite: bool) -> R {
    let mut dst = map(&a[0])?.clone();
    for src in &a[1..] {
        for (k, v) in map(src)? {
            if overwrite || !dst.contains_key(k) {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::Map(dst))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Result<String, String> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for c in text.trim_end_matches('=').bytes() {
        let Some(v) = B64.iter().position(|&b| b == c) else {
            return Err(format!("invalid base64 character {:?}", c as char));
        };
        bits = (bits << 6) | v as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    String::from_utf8(out).map_err(|_| "decoded data is not UTF-8 text".to_string())
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use crate::{Vars, eval};
    use serde_json::{Value as J, json};

    fn ev(e: &str) -> J {
        let vars: Vars = [("x", " Hello World "), ("n", "5"), ("csv", "a,b,c")]
            .into_iter()
            .collect();
        eval(e, &vars).unwrap_or_else(|err| panic!("{e}: {err}"))
    }

    #[test]
    fn strings() {
        assert_eq!(ev("sprig.trim(x)"), json!("Hello World"));
        assert_eq!(ev("sprig.upper(x)"), json!(" HELLO WORLD "));
        assert_eq!(ev("sprig.lower('AbC')"), json!("abc"));
        assert_eq!(ev("sprig.title('hello world')"), json!("Hello World"));
        assert_eq!(ev("sprig.replace('l', 'L', 'hello')"), json!("heLLo"));
        assert_eq!(ev("sprig.contains('ell', 'hello')"), json!(true));
        assert_eq!(ev("sprig.hasPrefix('he', 'hello')"), json!(true));
        assert_eq!(ev("sprig.hasSuffix('x', 'hello')"), json!(false));
        assert_eq!(ev("sprig.repeat(3, 'ab')"), json!("ababab"));
        assert_eq!(ev("sprig.quote('a', 1)"), json!("\"a\" \"1\""));
        assert_eq!(ev("sprig.squote('a')"), json!("'a'"));
        assert_eq!(ev("sprig.substr(1, 3, 'hello')"), json!("el"));
        assert_eq!(ev("sprig.trunc(2, 'hello')"), json!("he"));
        assert_eq!(ev("sprig.trunc(-2, 'hello')"), json!("lo"));
        assert_eq!(ev("sprig.abbrev(5, 'hello world')"), json!("he..."));
        assert_eq!(ev("sprig.nospace(' a b ')"), json!("ab"));
        assert_eq!(ev("sprig.trimAll('$', '$5.00$')"), json!("5.00"));
        assert_eq!(ev("sprig.trimPrefix('a-', 'a-b')"), json!("b"));
        assert_eq!(ev("sprig.indent(2, 'a\\nb')"), json!("  a\n  b"));
        assert_eq!(ev("sprig.cat('a', 1, nil, true)"), json!("a 1 true"));
        assert_eq!(ev("sprig.snakecase('fooBar baz')"), json!("foo_bar_baz"));
        assert_eq!(ev("sprig.kebabcase('FooBar')"), json!("foo-bar"));
        assert_eq!(ev("sprig.camelcase('foo_bar')"), json!("FooBar"));
        assert_eq!(ev("sprig.splitList(',', csv)"), json!(["a", "b", "c"]));
        assert_eq!(ev("sprig.split(',', csv)._1"), json!("b"));
        assert_eq!(
            ev("sprig.join('-', sprig.splitList(',', csv))"),
            json!("a-b-c")
        );
        assert_eq!(ev("sprig.join('-', [1, 2])"), json!("1-2"));
        assert_eq!(ev("sprig.sortAlpha(['b', 'a'])"), json!(["a", "b"]));
        assert_eq!(ev("sprig.plural('one', 'many', 2)"), json!("many"));
    }

    #[test]
    fn conversions_and_encodings() {
        assert_eq!(ev("sprig.int(n) + 1"), json!(6));
        assert_eq!(ev("sprig.int('abc')"), json!(0));
        assert_eq!(ev("sprig.int('0x10')"), json!(16));
        assert_eq!(ev("sprig.atoi('42')"), json!(42));
        assert_eq!(ev("sprig.float64('1.5')"), json!(1.5));
        assert_eq!(ev("sprig.toString(5)"), json!("5"));
        assert_eq!(ev("sprig.toStrings([1, 'a'])"), json!(["1", "a"]));
        assert_eq!(ev("sprig.toDecimal('0777')"), json!(511));
        assert_eq!(
            ev("sprig.toJson(sprig.dict('a', [1]))"),
            json!("{\"a\":[1]}")
        );
        assert_eq!(ev("sprig.fromJson('{\"a\": 1}').a"), json!(1));
        assert_eq!(ev("sprig.fromJson('nope')"), json!(null));
        assert_eq!(ev("sprig.b64enc('hello')"), json!("aGVsbG8="));
        assert_eq!(ev("sprig.b64enc('hi')"), json!("aGk="));
        assert_eq!(ev("sprig.b64enc('')"), json!(""));
        assert_eq!(ev("sprig.b64dec('aGVsbG8=')"), json!("hello"));
        assert_eq!(ev("sprig.b64dec(sprig.b64enc('ünï'))"), json!("ünï"));
        assert_eq!(
            ev("sprig.sha256sum('hello world')"),
            json!("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
        );
        assert_eq!(ev("sprig.adler32sum('Wikipedia')"), json!("300286872"));
        let vars = Vars::new();
        assert!(eval("sprig.mustFromJson('nope')", &vars).is_err());
        assert!(eval("sprig.b64dec('!!')", &vars).is_err());
    }

    #[test]
    fn math() {
        assert_eq!(ev("sprig.add(1, n, '2')"), json!(8));
        assert_eq!(ev("sprig.add1(n)"), json!(6));
        assert_eq!(ev("sprig.sub(n, 7)"), json!(-2));
        assert_eq!(ev("sprig.mul(2, 3, n)"), json!(30));
        assert_eq!(ev("sprig.div(7, 2)"), json!(3));
        assert_eq!(ev("sprig.mod(7, 2)"), json!(1));
        assert_eq!(ev("sprig.max(1, n, 3)"), json!(5));
        assert_eq!(ev("sprig.min(4, n, 3)"), json!(3));
        assert_eq!(ev("sprig.addf(1.5, 1)"), json!(2.5));
        assert_eq!(ev("sprig.divf(1, 4)"), json!(0.25));
        assert_eq!(ev("sprig.round(2.71828, 2)"), json!(2.72));
        assert_eq!(ev("sprig.floor(1.7)"), json!(1.0));
        assert_eq!(ev("sprig.seq(3)"), json!("1 2 3"));
        assert_eq!(ev("sprig.seq(5, 3)"), json!("5 4 3"));
        assert_eq!(ev("sprig.seq(0, 2, 5)"), json!("0 2 4"));
        assert_eq!(ev("sprig.until(3)"), json!([0, 1, 2]));
        assert_eq!(ev("sprig.untilStep(0, 10, 4)"), json!([0, 4, 8]));
        let e = eval("sprig.div(1, 0)", &Vars::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sprig.div(): integer division by zero"), "{e}");
        assert!(eval("sprig.repeat(1000000000, 'ab')", &Vars::new()).is_err());
        assert!(eval("sprig.seq(0, 1, 9223372036854775807)", &Vars::new()).is_err());
    }

    #[test]
    fn defaults_lists_dicts() {
        assert_eq!(ev("sprig.default('d', '')"), json!("d"));
        assert_eq!(ev("sprig.default('d', 'x')"), json!("x"));
        assert_eq!(ev("sprig.default('d')"), json!("d"));
        assert_eq!(ev("sprig.empty('')"), json!(true));
        assert_eq!(ev("sprig.empty(0)"), json!(true));
        assert_eq!(ev("sprig.empty([1])"), json!(false));
        assert_eq!(ev("sprig.coalesce('', nil, 'z')"), json!("z"));
        assert_eq!(ev("sprig.ternary('a', 'b', 1 > 2)"), json!("b"));
        assert_eq!(ev("sprig.list(1, 'a')"), json!([1, "a"]));
        assert_eq!(ev("sprig.first([1, 2])"), json!(1));
        assert_eq!(ev("sprig.last([1, 2])"), json!(2));
        assert_eq!(ev("sprig.rest([1, 2, 3])"), json!([2, 3]));
        assert_eq!(ev("sprig.initial([1, 2, 3])"), json!([1, 2]));
        assert_eq!(ev("sprig.append([1], 2)"), json!([1, 2]));
        assert_eq!(ev("sprig.prepend([1], 0)"), json!([0, 1]));
        assert_eq!(ev("sprig.concat([1], [2, 3])"), json!([1, 2, 3]));
        assert_eq!(ev("sprig.reverse([1, 2])"), json!([2, 1]));
        assert_eq!(ev("sprig.uniq([1, 1, 2])"), json!([1, 2]));
        assert_eq!(ev("sprig.without([1, 2, 3], 2)"), json!([1, 3]));
        assert_eq!(ev("sprig.has(2, [1, 2])"), json!(true));
        assert_eq!(ev("sprig.compact(['a', '', 0])"), json!(["a"]));
        assert_eq!(ev("sprig.slice([1, 2, 3], 1)"), json!([2, 3]));
        assert_eq!(ev("sprig.slice([1, 2, 3], 1, 2)"), json!([2]));
        assert_eq!(ev("sprig.chunk(2, [1, 2, 3])"), json!([[1, 2], [3]]));
        assert_eq!(
            ev("sprig.dict('a', 1, 'b', 'x')"),
            json!({"a": 1, "b": "x"})
        );
        assert_eq!(ev("sprig.get(sprig.dict('a', 1), 'a')"), json!(1));
        assert_eq!(ev("sprig.get(sprig.dict('a', 1), 'z')"), json!(""));
        assert_eq!(ev("sprig.hasKey(sprig.dict('a', 1), 'a')"), json!(true));
        assert_eq!(
            ev("sprig.keys(sprig.dict('b', 1, 'a', 2))"),
            json!(["a", "b"])
        );
        assert_eq!(ev("sprig.values(sprig.dict('b', 1))"), json!([1]));
        assert_eq!(ev("sprig.set(sprig.dict(), 'k', 'v')"), json!({"k": "v"}));
        assert_eq!(ev("sprig.unset(sprig.dict('k', 1), 'k')"), json!({}));
        assert_eq!(ev("sprig.pluck('a', {'a': 1}, {'b': 2})"), json!([1]));
        assert_eq!(ev("sprig.pick({'a': 1, 'b': 2}, 'a')"), json!({"a": 1}));
        assert_eq!(ev("sprig.omit({'a': 1, 'b': 2}, 'a')"), json!({"b": 2}));
        assert_eq!(
            ev("sprig.merge({'a': 1}, {'a': 2, 'b': 3})"),
            json!({"a": 1, "b": 3})
        );
        assert_eq!(
            ev("sprig.mergeOverwrite({'a': 1}, {'a': 2})"),
            json!({"a": 2})
        );
        assert_eq!(ev("sprig.kindOf([1])"), json!("slice"));
        assert_eq!(ev("sprig.typeOf(1.5)"), json!("float64"));
        assert_eq!(ev("sprig.kindIs('string', 'a')"), json!(true));
        assert_eq!(ev("sprig.deepEqual([1], [1])"), json!(true));
    }

    #[test]
    fn regexes() {
        assert_eq!(ev("sprig.regexMatch('^[a-z]+$', 'abc')"), json!(true));
        assert_eq!(ev("sprig.regexFind('[0-9]+', 'ab12cd34')"), json!("12"));
        assert_eq!(
            ev("sprig.regexFindAll('[0-9]', 'a1b2c3', 2)"),
            json!(["1", "2"])
        );
        assert_eq!(
            ev("sprig.regexReplaceAll('a(x*)b', '-ab-axxb-', '${1}W')"),
            json!("-W-xxW-")
        );
        assert_eq!(
            ev("sprig.regexReplaceAllLiteral('a', 'aXa', '$1')"),
            json!("$1X$1")
        );
        assert_eq!(
            ev("sprig.regexSplit(',', 'a,b,c', -1)"),
            json!(["a", "b", "c"])
        );
        assert_eq!(ev("sprig.regexQuoteMeta('a.b')"), json!("a\\.b"));
        let e = eval("sprig.regexMatch('(', 'a')", &Vars::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid regular expression"), "{e}");
    }

    #[test]
    fn arity_and_failures_are_reported() {
        let e = eval("sprig.upper()", &Vars::new()).unwrap_err().to_string();
        assert!(
            e.contains("sprig.upper() takes 1 argument(s), got 0"),
            "{e}"
        );
        let e = eval("sprig.fail('boom')", &Vars::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sprig.fail(): boom"), "{e}");
        let e = eval("sprig.first(1)", &Vars::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a list"), "{e}");
        assert!(super::names().any(|n| n == "toJson"));
    }
}
