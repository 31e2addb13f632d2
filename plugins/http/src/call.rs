//! The pure half of the http driver: reading an Argo `http` template and
//! judging a response by `successCondition`. No host calls, so it also
//! compiles for the host, where `host/drivers/tests` runs its unit tests (the
//! plugin crate itself is a Wasm component and cannot be tested there).

use expr::{Context, Value};

/// The parts of an Argo `http` template this driver uses.
#[derive(Debug, PartialEq)]
pub struct Call {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: Option<u64>,
    pub success_condition: Option<String>,
}

/// Read the `http` object of a resolved template.
pub fn parse(template: &serde_json::Value) -> Result<Call, String> {
    let h = template
        .get("http")
        .and_then(|h| h.as_object())
        .ok_or("the template has no `http` object")?;
    let url = h
        .get("url")
        .and_then(|u| u.as_str())
        .filter(|u| !u.is_empty())
        .ok_or("http.url is required")?
        .to_string();
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("http.url {url:?} contains whitespace"));
    }
    let method = h
        .get("method")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
        .unwrap_or("GET")
        .to_ascii_uppercase();
    if !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!("http.method {method:?} is not an HTTP method"));
    }
    let mut headers = Vec::new();
    for (i, hd) in h
        .get("headers")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = hd
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("http.headers[{i}].name is required"))?;
        if name.contains([':', '\r', '\n']) {
            return Err(format!(
                "http.headers[{i}].name {name:?} is not a header name"
            ));
        }
        let value = if let Some(v) = hd.get("value").and_then(|v| v.as_str()) {
            v.to_string()
        } else if let Some(r) = hd.pointer("/valueFrom/secretKeyRef") {
            let sname = r.get("name").and_then(|v| v.as_str()).unwrap_or("");
            let key = r.get("key").and_then(|v| v.as_str()).unwrap_or("");
            if sname.is_empty() || key.is_empty() {
                return Err(format!(
                    "http.headers[{i}].valueFrom.secretKeyRef needs a name and a key"
                ));
            }
            format!("${{secret:{sname}.{key}}}")
        } else {
            String::new()
        };
        if value.contains(['\r', '\n']) {
            return Err(format!("http.headers[{i}] ({name}) contains a line break"));
        }
        headers.push((name.to_string(), value));
    }
    let body = h
        .get("body")
        .and_then(|b| b.as_str())
        .map(|b| b.as_bytes().to_vec());
    let timeout_ms = match h.get("timeoutSeconds") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| format!("http.timeoutSeconds {v} is not a number of seconds"))?
                .saturating_mul(1000),
        ),
    };
    let success_condition = h
        .get("successCondition")
        .and_then(|s| s.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(Call {
        method,
        url,
        headers,
        body,
        timeout_ms,
        success_condition,
    })
}

/// Go's `http.CanonicalHeaderKey`: `content-type` → `Content-Type`.
pub fn canonical_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// Did the call succeed? `Err` when the condition cannot be evaluated.
pub fn succeeded(
    condition: Option<&str>,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<bool, String> {
    let Some(cond) = condition else {
        return Ok((200..300).contains(&status));
    };
    let mut hmap: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in headers {
        let k = canonical_header(k);
        match hmap.iter_mut().find(|(n, _)| *n == k) {
            Some((_, vs)) => vs.push(v.clone()),
            None => hmap.push((k, vec![v.clone()])),
        }
    }
    let response: Value = [
        ("statusCode", Value::Integer(status.into())),
        ("body", Value::String(body.to_string())),
        ("headers", hmap.into_iter().collect::<Value>()),
    ]
    .into_iter()
    .collect();
    let mut ctx = Context::default();
    ctx.insert("response".to_string(), response);
    match expr::eval(cond, &ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "successCondition `{cond}` gave {other}, not a boolean"
        )),
        Err(e) => Err(format!("successCondition `{cond}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_argo_fields() {
        let c = parse(&json!({"http": {
            "url": "http://h/x", "method": "post", "body": "b", "timeoutSeconds": 3,
            "successCondition": "response.statusCode == 201",
            "headers": [{"name": "A", "value": "1"},
                        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
        }}))
        .unwrap();
        assert_eq!(c.method, "POST");
        assert_eq!(c.timeout_ms, Some(3000));
        assert_eq!(c.headers[1].1, "${secret:s.k}");
        assert!(parse(&json!({"http": {}})).is_err());
    }

    #[test]
    fn conditions() {
        let h = vec![("content-type".to_string(), "text/plain".to_string())];
        assert!(succeeded(None, 204, &h, "").unwrap());
        assert!(!succeeded(None, 404, &h, "").unwrap());
        let c = Some("response.statusCode == 404 && response.body contains \"gone\"");
        assert!(succeeded(c, 404, &h, "it is gone").unwrap());
        let c = Some("response.headers[\"Content-Type\"][0] == \"text/plain\"");
        assert!(succeeded(c, 200, &h, "").unwrap());
        assert!(succeeded(Some("response.statusCode"), 200, &h, "").is_err());
    }
}
