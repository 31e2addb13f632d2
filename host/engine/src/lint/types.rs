//! Field types and values the typed model accepts (or reports less clearly)
//! but Argo rejects: `retryStrategy.limit`, `parallelism`,
//! `activeDeadlineSeconds`, `withItems`, `when` quoting, parameter `enum`.

use serde_json::Value;

use super::Ctx;

/// Workflow-level fields.
pub(super) fn spec(cx: &mut Ctx, spec: &Value, base: &str) {
    if let Some(p) = spec.get("parallelism") {
        parallelism(cx, p, &format!("{base}/parallelism"));
    }
    if let Some(a) = spec.get("activeDeadlineSeconds") {
        deadline(cx, a, &format!("{base}/activeDeadlineSeconds"));
    }
    retry(cx, spec, base);
}

/// Template-level fields (also `templateDefaults`).
pub(super) fn template(cx: &mut Ctx, t: &Value, path: &str) {
    if let Some(p) = t.get("parallelism") {
        parallelism(cx, p, &format!("{path}/parallelism"));
    }
    if let Some(a) = t.get("activeDeadlineSeconds") {
        deadline(cx, a, &format!("{path}/activeDeadlineSeconds"));
    }
    retry(cx, t, path);
}

/// Step- and task-level fields.
pub(super) fn step(cx: &mut Ctx, step: &Value, path: &str) {
    if let Some(w) = step.get("withItems")
        && !w.is_array()
    {
        cx.error(
            &format!("{path}/withItems"),
            format!("`withItems` must be a list, got {}", describe(w)),
        );
    }
    if let Some(when) = step.get("when") {
        match when.as_str() {
            Some(w) => {
                if let Some(q) = unbalanced_quote(w) {
                    cx.error(
                        &format!("{path}/when"),
                        format!("`when` has an unterminated {q} quote: {w:?}"),
                    );
                }
            }
            None if !when.is_null() => cx.error(
                &format!("{path}/when"),
                format!("`when` must be a string, got {}", describe(when)),
            ),
            None => {}
        }
    }
}

/// A parameter whose `value` is not one of its `enum`.
pub(super) fn enumeration(cx: &mut Ctx, p: &Value, path: &str) {
    let (Some(allowed), Some(value)) = (p.get("enum").and_then(Value::as_array), p.get("value"))
    else {
        return;
    };
    let value = scalar(value);
    if allowed.is_empty() || value.contains("{{") {
        return;
    }
    let allowed: Vec<String> = allowed.iter().map(scalar).collect();
    if !allowed.contains(&value) {
        cx.error(
            &format!("{path}/value"),
            format!("value {value:?} is not in `enum` [{}]", allowed.join(", ")),
        );
    }
}

fn retry(cx: &mut Ctx, holder: &Value, path: &str) {
    let Some(limit) = holder.pointer("/retryStrategy/limit") else {
        return;
    };
    let ok = match limit {
        Value::Number(n) => n.as_i64().is_some_and(|i| i >= 0),
        Value::String(s) => s.contains("{{") || s.trim().parse::<u64>().is_ok(),
        Value::Null => true,
        _ => false,
    };
    if !ok {
        cx.error(
            &format!("{path}/retryStrategy/limit"),
            format!(
                "`retryStrategy.limit` must be a non-negative integer or a {{{{…}}}} variable, got {}",
                describe(limit)
            ),
        );
    }
}

fn parallelism(cx: &mut Ctx, v: &Value, path: &str) {
    let ok = match v {
        Value::Number(n) => n.as_i64().is_some_and(|i| i >= 0),
        Value::String(s) => s.contains("{{"),
        Value::Null => true,
        _ => false,
    };
    if !ok {
        cx.error(
            path,
            format!(
                "`parallelism` must be a non-negative integer, got {}",
                describe(v)
            ),
        );
    }
}

fn deadline(cx: &mut Ctx, v: &Value, path: &str) {
    let ok = match v {
        Value::Number(n) => n.as_i64().is_some(),
        Value::String(_) | Value::Null => true,
        _ => false,
    };
    if !ok {
        cx.error(
            path,
            format!(
                "`activeDeadlineSeconds` must be an integer or a string, got {}",
                describe(v)
            ),
        );
    }
}

/// The quote character left open in a `when` condition, outside `{{…}}` tags.
fn unbalanced_quote(when: &str) -> Option<char> {
    let mut open: Option<char> = None;
    let mut rest = when;
    while !rest.is_empty() {
        if open.is_none()
            && let Some(after) = rest.strip_prefix("{{")
        {
            // Skip the tag: its quotes belong to the expression inside.
            rest = after.find("}}").map_or("", |i| &after[i + 2..]);
            continue;
        }
        let mut chars = rest.chars();
        let c = chars.next().unwrap_or_default();
        match (open, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => open = None,
            (None, '\'' | '"') => open = Some(c),
            _ => {}
        }
        rest = chars.as_str();
    }
    open
}

/// A scalar as Argo's AnyString text.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A value for a message: `"abc"`, `1.5`, `a list`, `a mapping`.
fn describe(v: &Value) -> String {
    match v {
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}
