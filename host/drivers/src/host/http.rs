//! `weft:plugin/http`: outbound HTTP to allow-listed hosts only.
//!
//! This build speaks plain HTTP/1.1 itself (`http://` URLs); `https://` answers
//! `not-configured` until a TLS client is wired in. `${secret:NAME}` in headers
//! and body is replaced host-side with granted secrets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_bindings::driver::weft::plugin::http::{Host, Request, Response};
use weft_bindings::driver::weft::plugin::types::CapabilityError;

use crate::runtime::HostState;

/// Responses are capped at this size.
const MAX_BODY: usize = 16 * 1024 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `scheme`, `host`, `port`, `path` of an absolute URL.
fn split_url(url: &str) -> Result<(&str, String, u16, String), CapabilityError> {
    let bad = || CapabilityError::Invalid(format!("not an absolute http(s) URL: {url}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.to_string(), p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (authority.to_string(), default_port),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((scheme, host.to_ascii_lowercase(), port, path))
}

/// Is `host:port` allowed by the allow-list (`example.com`, `*.example.com`, `host:port`, `*`)?
pub fn host_allowed(allow: &[String], host: &str, port: u16) -> bool {
    allow.iter().any(|a| {
        if a == "*" {
            return true;
        }
        let a = a.to_ascii_lowercase();
        let (pat, pport) = match a.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().ok()),
            None => (a.clone(), None),
        };
        if pport.is_some_and(|p| p != port) {
            return false;
        }
        match pat.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => pat == host,
        }
    })
}

fn substitute(state: &HostState, s: &str) -> Result<String, CapabilityError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${secret:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 9..];
        let end = after
            .find('}')
            .ok_or_else(|| CapabilityError::Invalid("unterminated ${secret:…}".into()))?;
        out.push_str(&super::secrets::lookup(state, &after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

async fn send_plain(host: &str, port: u16, raw: Vec<u8>) -> Result<Response, CapabilityError> {
    let failed = |e: std::io::Error| CapabilityError::Failed(e.to_string());
    let mut conn = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(failed)?;
    conn.write_all(&raw).await.map_err(failed)?;
    let mut buf = Vec::new();
    (&mut conn)
        .take(MAX_BODY as u64 + 64 * 1024)
        .read_to_end(&mut buf)
        .await
        .map_err(failed)?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| CapabilityError::Failed("malformed HTTP response".into()))?;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| CapabilityError::Failed("malformed HTTP status line".into()))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..i])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

impl Host for HostState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, CapabilityError>> {
        let (scheme, host, port, path) = match split_url(&req.url) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if !host_allowed(&self.call.grants.http_hosts, &host, port) {
            return Ok(Err(super::not_granted(format!(
                "plugin '{}' may not reach {host}:{port}",
                self.call.plugin
            ))));
        }
        if scheme == "https" {
            return Ok(Err(CapabilityError::NotConfigured(
                "https is not available in this build".into(),
            )));
        }
        let mut raw = format!(
            "{} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
            req.method
        );
        for (k, v) in &req.headers {
            match substitute(self, v) {
                Ok(v) => raw.push_str(&format!("{k}: {v}\r\n")),
                Err(e) => return Ok(Err(e)),
            }
        }
        let body = match req.body {
            Some(b) => match String::from_utf8(b) {
                Ok(s) => match substitute(self, &s) {
                    Ok(s) => s.into_bytes(),
                    Err(e) => return Ok(Err(e)),
                },
                Err(e) => e.into_bytes(),
            },
            None => Vec::new(),
        };
        raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(&body);
        let timeout = req
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT);
        Ok(
            match tokio::time::timeout(timeout, send_plain(&host, port, raw)).await {
                Ok(r) => r,
                Err(_) => Err(CapabilityError::Failed(format!(
                    "timed out after {timeout:?}"
                ))),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let allow = vec![
            "example.com".to_string(),
            "*.svc.local".into(),
            "127.0.0.1:8080".into(),
        ];
        assert!(host_allowed(&allow, "example.com", 443));
        assert!(host_allowed(&allow, "a.svc.local", 80));
        assert!(!host_allowed(&allow, "svc.local", 80));
        assert!(host_allowed(&allow, "127.0.0.1", 8080));
        assert!(!host_allowed(&allow, "127.0.0.1", 8081));
        assert!(!host_allowed(&allow, "evil.com", 80));
        assert_eq!(split_url("http://h:81/x?y").unwrap().1, "h");
        assert!(host_allowed(&["*".to_string()], "anything.example", 1));
        assert!(!host_allowed(&[], "anything.example", 1));
    }
}
