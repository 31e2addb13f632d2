//! expr-lang expressions as Argo evaluates them: the variables become nested maps
//! (`inputs.parameters.x`), every value stays a string, and the environment adds Argo's
//! functions (`asInt`, `asFloat`, `toJson`, `jsonpath`) and Sprig's (`sprig.<fn>(…)`).

use std::sync::LazyLock;

use expr::{Context, Environment, Value};

use crate::{ExprError, Vars, lexer};

/// The environment every expression runs in: expr-lang's builtins, Argo's additions and Sprig.
static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    add_argo_functions(&mut env);
    crate::sprig::add_functions(&mut env);
    env
});

/// Evaluate a bare expr-lang expression over `vars` and return its value as JSON.
///
/// Used for `valueFrom.expression`, `retryStrategy.expression` (with `lastRetry.*` vars),
/// `fromExpression` and `when: "{{=…}}"`. A nil result is `Value::Null`.
pub fn eval(expression: &str, vars: &Vars) -> Result<serde_json::Value, ExprError> {
    let ctx = context(vars);
    let value = run(expression, &ctx)?;
    Ok(value_to_json(&value))
}

/// Most tokens an expression may have. expr-lang parses and evaluates recursively (about 7 KiB
/// of stack per token in a debug build), so size is bounded and the stack grown to fit.
const MAX_TOKENS: usize = 4000;
const STACK_PER_TOKEN: usize = 16 << 10;
const STACK_BASE: usize = 256 << 10;

/// Compile and run `expression` in `ctx`, mapping expr-lang's errors to [`ExprError`].
pub(crate) fn run(expression: &str, ctx: &Context) -> Result<Value, ExprError> {
    let parse_error = |message: String| ExprError::Parse {
        expression: expression.to_string(),
        message,
    };
    let source = lexer::rewrite_sprig(expression);
    let tokens = lexer::tokens(&source);
    if tokens.len() > MAX_TOKENS {
        return Err(parse_error(format!(
            "too complex: {} tokens, at most {MAX_TOKENS} are allowed",
            tokens.len()
        )));
    }
    lexer::check_map_literals(&tokens).map_err(parse_error)?;
    let stack = STACK_BASE + STACK_PER_TOKEN * tokens.len();
    stacker::maybe_grow(stack, stack, || {
        // expr-lang has `unreachable!`s on some inputs: report them rather than unwind into
        // the engine.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let program =
                expr::compile(&source).map_err(|e| parse_error(clean_message(&e.to_string())))?;
            ENVIRONMENT.run(&program, ctx).map_err(|e| ExprError::Eval {
                expression: expression.to_string(),
                message: clean_message(&e.to_string()),
            })
        }))
        .unwrap_or_else(|panic| {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no detail");
            Err(ExprError::Eval {
                expression: expression.to_string(),
                message: format!("expr-lang failed internally ({detail})"),
            })
        })
    })
}

/// Undo the `sprig.` → `sprig_` rewrite in messages shown to users.
fn clean_message(message: &str) -> String {
    message.trim().replace("sprig_", "sprig.")
}

/// The expression environment for `vars`: dotted keys become nested maps, values stay strings.
///
/// When a key is both a value and a prefix of other keys (`item` and `item.a`), the more
/// specific keys win, as in Argo.
pub fn context(vars: &Vars) -> Context {
    let mut root = Value::Map(Default::default());
    for (key, value) in vars.iter() {
        if !vars.has_children(key) {
            insert_path(&mut root, key.split('.'), value);
        }
    }
    Context::try_from(root).unwrap_or_default()
}

/// Set `segments` (a path of map keys) under `node` to the string `value`, turning any
/// non-map on the way into a map.
fn insert_path<'a>(node: &mut Value, mut segments: impl Iterator<Item = &'a str>, value: &str) {
    let Some(segment) = segments.next() else {
        *node = Value::String(value.to_string());
        return;
    };
    if !matches!(node, Value::Map(_)) {
        *node = Value::Map(Default::default());
    }
    if let Value::Map(map) = node {
        let child = map.entry(segment.to_string()).or_insert(Value::Nil);
        insert_path(child, segments, value);
    }
}

/// Render a JSON value as Argo puts it into text: strings as they are, integers without `.0`,
/// floats in their shortest form, `true`/`false`, `null`, lists and maps as compact JSON.
pub fn to_string_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                n.to_string()
            } else {
                n.as_f64().map_or_else(|| n.to_string(), format_float)
            }
        }
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// Shortest text for a float: `2` for 2.0, `0.1`, `1e21`, `NaN`, `+Inf`.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else if f != 0.0 && (f.abs() >= 1e21 || f.abs() < 1e-6) {
        format!("{f:e}")
    } else {
        format!("{f}")
    }
}

/// Convert an expr-lang value to JSON. Map keys are sorted (as Go's `encoding/json` does);
/// non-finite floats become strings; bytes become base64 text via their UTF-8 lossy form.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    #[allow(unreachable_patterns)] // temporal variants exist only with expr-lang's `temporal`
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(format_float(*f))),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Bytes(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(value_to_json).collect()),
        Value::Map(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), value_to_json(v)))
                    .collect(),
            )
        }
        Value::KeyedMap(m) => {
            let mut entries: Vec<_> = m
                .iter()
                .map(|(k, v)| (key_string(k), value_to_json(v)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().collect())
        }
        other => serde_json::Value::String(other.to_string()),
    }
}

fn key_string(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => to_string_value(&value_to_json(other)),
    }
}

/// Convert JSON to an expr-lang value (integers stay integers).
pub fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        ),
    }
}

/// Render a value as text for `{{=…}}`: see [`to_string_value`].
pub(crate) fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => to_string_value(&value_to_json(other)),
    }
}

/// JSON the way Go's `json.Marshal` writes it: compact, keys sorted, `<`, `>`, `&`, U+2028 and
/// U+2029 escaped.
pub(crate) fn go_json(v: &Value) -> String {
    let text = value_to_json(v).to_string();
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn err(message: String) -> expr::Error {
    expr::Error::ExprError(message)
}

/// `asInt`/`asFloat` accept numbers and numeric text (surrounding whitespace ignored).
fn as_int(name: &str, args: &[Value]) -> expr::Result<Value> {
    match args {
        [Value::Integer(i)] => Ok(Value::Integer(*i)),
        [Value::Float(f)] => Ok(Value::Integer(*f as i64)),
        [Value::String(s)] => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::Integer(i));
            }
            match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Value::Integer(f as i64)),
                _ => Err(err(format!("{name}({s:?}): not an integer"))),
            }
        }
        [other] => Err(err(format!(
            "{name}({}): not an integer",
            render_debug(other)
        ))),
        _ => Err(err(format!(
            "{name}() takes exactly one argument, got {}",
            args.len()
        ))),
    }
}

fn as_float(name: &str, args: &[Value]) -> expr::Result<Value> {
    match args {
        [Value::Integer(i)] => Ok(Value::Float(*i as f64)),
        [Value::Float(f)] => Ok(Value::Float(*f)),
        [Value::String(s)] => s
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| err(format!("{name}({s:?}): not a number"))),
        [other] => Err(err(format!(
            "{name}({}): not a number",
            render_debug(other)
        ))),
        _ => Err(err(format!(
            "{name}() takes exactly one argument, got {}",
            args.len()
        ))),
    }
}

pub(crate) fn render_debug(v: &Value) -> String {
    match v {
        Value::Nil => "nil".to_string(),
        Value::String(s) => format!("{s:?}"),
        other => render(other),
    }
}

/// Argo's `jsonpath(json_text, path)`: a definite path (`$.a.b`, `$.a[0]`) yields the value
/// or nil; a wildcard, filter, slice, union or descendant path yields the list of matches.
pub fn jsonpath(json: &str, path: &str) -> Result<serde_json::Value, String> {
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("argument is not JSON: {e}"))?;
    let query = serde_json_path::JsonPath::parse(path)
        .map_err(|e| format!("invalid JSONPath {path:?}: {e}"))?;
    let nodes = query.query(&doc);
    if is_definite(path) {
        Ok(nodes.first().cloned().unwrap_or(serde_json::Value::Null))
    } else {
        Ok(serde_json::Value::Array(
            nodes.all().into_iter().cloned().collect(),
        ))
    }
}

/// Does `path` select at most one node? Scans outside quotes for `*`, `..`, `?`, `:` and `,`.
fn is_definite(path: &str) -> bool {
    let mut quote = None;
    let mut prev = '\0';
    for c in path.chars() {
        match quote {
            Some(q) if c == q && prev != '\\' => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '*' | '?' | ':' | ',' => return false,
                '.' if prev == '.' => return false,
                _ => {}
            },
        }
        prev = c;
    }
    true
}

fn add_argo_functions(env: &mut Environment<'static>) {
    env.add_function("asInt", |c| as_int("asInt", &c.args));
    env.add_function("asFloat", |c| as_float("asFloat", &c.args));
    env.add_function("toJson", |c| match c.args.as_slice() {
        [v] => Ok(Value::String(go_json(v))),
        _ => Err(err(format!(
            "toJson() takes exactly one argument, got {}",
            c.args.len()
        ))),
    });
    env.add_function("jsonpath", |c| match c.args.as_slice() {
        [Value::String(json), Value::String(path)] => jsonpath(json, path)
            .map(|v| json_to_value(&v))
            .map_err(|m| err(format!("jsonpath(): {m}"))),
        _ => Err(err(
            "jsonpath() takes a JSON string and a JSONPath string, e.g. jsonpath(inputs.parameters.json, '$.a')"
                .to_string(),
        )),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().copied().collect()
    }

    #[test]
    fn context_nests_dotted_keys() {
        let v = vars(&[
            ("inputs.parameters.x", "5"),
            ("steps.flip-coin.outputs.result", "heads"),
            ("workflow.name", "wf"),
        ]);
        assert_eq!(eval("inputs.parameters.x", &v).unwrap(), json!("5"));
        assert_eq!(
            eval("steps['flip-coin'].outputs.result", &v).unwrap(),
            json!("heads")
        );
        assert_eq!(eval("workflow.name + '-x'", &v).unwrap(), json!("wf-x"));
        assert_eq!(eval("inputs.parameters.missing", &v).unwrap(), json!(null));
    }

    #[test]
    fn more_specific_keys_win() {
        let v = vars(&[("item", "{\"a\":\"1\"}"), ("item.a", "1")]);
        assert_eq!(eval("item.a", &v).unwrap(), json!("1"));
        assert_eq!(eval("toJson(item)", &v).unwrap(), json!("{\"a\":\"1\"}"));
    }

    #[test]
    fn argo_functions() {
        let v = vars(&[
            ("inputs.parameters.x", " 41\n"),
            ("j", r#"{"a":{"b":[1,2]}}"#),
        ]);
        assert_eq!(
            eval("asInt(inputs.parameters.x) + 1", &v).unwrap(),
            json!(42)
        );
        assert_eq!(eval("asInt('3.0')", &v).unwrap(), json!(3));
        assert_eq!(eval("asFloat('1.5') * 2", &v).unwrap(), json!(3.0));
        assert_eq!(eval("int('7')", &v).unwrap(), json!(7));
        assert_eq!(eval("string(5)", &v).unwrap(), json!("5"));
        assert_eq!(eval("jsonpath(j, '$.a.b[1]')", &v).unwrap(), json!(2));
        assert_eq!(eval("jsonpath(j, '$.a.b[*]')", &v).unwrap(), json!([1, 2]));
        assert_eq!(eval("jsonpath(j, '$.nope')", &v).unwrap(), json!(null));
        assert_eq!(
            eval("toJson({'b': 1, 'a': '<x>'})", &v).unwrap(),
            json!(r#"{"a":"\u003cx\u003e","b":1}"#)
        );
        assert_eq!(eval("toJson([1, 'a'])", &v).unwrap(), json!("[1,\"a\"]"));
    }

    #[test]
    fn argo_function_errors_are_actionable() {
        let v = vars(&[("x", "abc")]);
        let e = eval("asInt(x)", &v).unwrap_err().to_string();
        assert!(
            e.contains("asInt(\"abc\")") && e.contains("asInt(x)"),
            "{e}"
        );
        let e = eval("jsonpath(x, '$.a')", &v).unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
        let e = eval("1 +", &v).unwrap_err();
        assert!(matches!(e, ExprError::Parse { .. }), "{e}");
        let e = eval("nope + 1", &v).unwrap_err().to_string();
        assert!(e.contains("unknown variable: nope"), "{e}");
        let e = eval("sprig.nosuch(1)", &v).unwrap_err().to_string();
        assert!(e.contains("sprig.nosuch"), "{e}");
    }

    #[test]
    fn map_literals_with_non_literal_values_are_rejected_not_panicking() {
        let v = vars(&[("x", "1")]);
        for e in [
            "{'a': x}",
            "{'a': [1]}",
            "{a: {b: 1}}",
            "{'a': 1, 'b': x}",
            "{'a': -1}",
        ] {
            let err = eval(e, &v).unwrap_err().to_string();
            assert!(err.contains("sprig.dict"), "{e}: {err}");
        }
        assert_eq!(
            eval("{'a': 1, b: 'x', c: nil}", &v).unwrap(),
            json!({"a": 1, "b": "x", "c": null})
        );
        assert_eq!(eval("x == '1' ? 'y' : 'n'", &v).unwrap(), json!("y"));
        assert_eq!(eval("[1, 2, 3][1:2]", &v).unwrap(), json!([2]));
    }

    #[test]
    fn big_expressions_grow_the_stack_or_are_refused() {
        let v = Vars::new();
        let sum = format!("1{}", " + 1".repeat(1500));
        assert_eq!(eval(&sum, &v).unwrap(), json!(1501));
        let nested = format!("{}1{}", "(".repeat(1000), ")".repeat(1000));
        assert_eq!(eval(&nested, &v).unwrap(), json!(1));
        let too_big = format!("1{}", " + 1".repeat(3000));
        let e = eval(&too_big, &v).unwrap_err().to_string();
        assert!(e.contains("too complex"), "{e}");
        let deep = format!("a{}", ".b".repeat(1500));
        assert!(eval(&deep, &v).is_err());
    }

    #[test]
    fn retry_expression_vars() {
        let v = vars(&[
            ("lastRetry.exitCode", "2"),
            ("lastRetry.status", "Failed"),
            ("lastRetry.duration", "12.5"),
        ]);
        let e = "asInt(lastRetry.exitCode) > 1 && lastRetry.status == 'Failed' && asFloat(lastRetry.duration) < 20";
        assert_eq!(eval(e, &v).unwrap(), json!(true));
    }

    #[test]
    fn rendering() {
        assert_eq!(to_string_value(&json!("a")), "a");
        assert_eq!(to_string_value(&json!(3)), "3");
        assert_eq!(to_string_value(&json!(3.0)), "3");
        assert_eq!(to_string_value(&json!(0.1)), "0.1");
        assert_eq!(to_string_value(&json!(-2.5)), "-2.5");
        assert_eq!(to_string_value(&json!(1e22)), "1e22");
        assert_eq!(to_string_value(&json!(true)), "true");
        assert_eq!(to_string_value(&json!(null)), "null");
        assert_eq!(to_string_value(&json!([1, "a"])), "[1,\"a\"]");
        assert_eq!(to_string_value(&json!({"a": {"b": 1}})), r#"{"a":{"b":1}}"#);
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(value_to_json(&Value::Float(f64::INFINITY)), json!("+Inf"));
    }

    #[test]
    fn definite_paths() {
        assert!(is_definite("$.a.b[0]"));
        assert!(is_definite("$['a.*']"));
        assert!(!is_definite("$..a"));
        assert!(!is_definite("$.a[*]"));
        assert!(!is_definite("$.a[?@.b > 1]"));
        assert!(!is_definite("$.a[0:2]"));
    }
}
