//! Bearer tokens from `weft.toml` (`[[server.tokens]]`), each granted a set of
//! namespaces and a role. With no tokens configured the API is open.
//!
//! Handlers take a [`Caller`] (an extractor: a missing or unknown token is
//! rejected with 401 before the handler runs) and ask it
//! [`Caller::allow`]`(namespace, role)`, which answers 403 when the token's
//! namespaces or role fall short.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
use crate::config::TokenConfig;

/// What a token may do, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Get, list, watch, logs.
    Read,
    /// Read, plus create/submit/lint workflows and act on them (resume, stop, …), post events.
    Submit,
    /// Everything: delete, templates, cron workflows, event bindings, sync limits.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "submit" => Some(Role::Submit),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
        }
    }
}

/// One configured token.
#[derive(Debug, Clone)]
pub struct Grant {
    /// A printable name for logs and `userinfo` (never the token itself).
    pub subject: String,
    /// Empty means every namespace (`"*"` in the configuration).
    pub namespaces: Vec<String>,
    pub role: Role,
}

/// The tokens the server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_token: HashMap<String, Grant>,
}

impl Tokens {
    /// From the configuration; an unknown role is an error naming it.
    pub fn from_config(list: &[TokenConfig]) -> Result<Tokens, String> {
        let mut by_token = HashMap::new();
        for (i, t) in list.iter().enumerate() {
            let role = Role::parse(&t.role).ok_or_else(|| {
                format!(
                    "server.tokens[{i}].role: {:?} is not one of \"read\", \"submit\", \"admin\"",
                    t.role
                )
            })?;
            if t.token.is_empty() {
                return Err(format!("server.tokens[{i}].token is empty"));
            }
            let namespaces = if t.namespaces.iter().any(|n| n == "*") {
                Vec::new()
            } else {
                t.namespaces.clone()
            };
            let subject = format!("token-{i}");
            by_token.insert(
                t.token.clone(),
                Grant {
                    subject,
                    namespaces,
                    role,
                },
            );
        }
        Ok(Tokens { by_token })
    }

    pub fn is_open(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// Who is calling: a grant, or anyone when the server is open.
#[derive(Debug, Clone)]
pub struct Caller {
    grant: Option<Arc<Grant>>,
}

impl Caller {
    /// May this caller act with `role` in `namespace` (`""`: cluster-scoped)?
    pub fn allow(&self, namespace: &str, role: Role) -> Result<(), ApiError> {
        let Some(g) = &self.grant else {
            return Ok(());
        };
        if g.role < role {
            return Err(ApiError::Forbidden(format!(
                "the token's role {:?} may not do this (needs {:?})",
                g.role.as_str(),
                role.as_str()
            )));
        }
        let ns_ok = g.namespaces.is_empty()
            || (!namespace.is_empty() && g.namespaces.iter().any(|n| n == namespace))
            // cluster-scoped objects: reading them is allowed to any token
            || (namespace.is_empty() && role == Role::Read);
        if !ns_ok {
            return Err(ApiError::Forbidden(format!(
                "the token may not access namespace {namespace:?}"
            )));
        }
        Ok(())
    }

    pub fn subject(&self) -> &str {
        self.grant
            .as_ref()
            .map_or("anonymous", |g| g.subject.as_str())
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if state.tokens.is_open() {
            return Ok(Caller { grant: None });
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Unauthenticated("token not valid: no bearer token".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header)
            .trim();
        let grant = state
            .tokens
            .by_token
            .get(token)
            .ok_or_else(|| ApiError::Unauthenticated("token not valid".into()))?;
        Ok(Caller {
            grant: Some(Arc::new(grant.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(namespaces: &[&str], role: Role) -> Caller {
        Caller {
            grant: Some(Arc::new(Grant {
                subject: "t".into(),
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                role,
            })),
        }
    }

    #[test]
    fn roles_and_namespaces() {
        let r = caller(&["a"], Role::Read);
        assert!(r.allow("a", Role::Read).is_ok());
        assert!(matches!(
            r.allow("a", Role::Submit),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            r.allow("b", Role::Read),
            Err(ApiError::Forbidden(_))
        ));
        assert!(r.allow("", Role::Read).is_ok());
        let admin = caller(&[], Role::Admin);
        assert!(admin.allow("anything", Role::Admin).is_ok());
        assert!(caller(&["a"], Role::Admin).allow("", Role::Admin).is_err());
    }

    #[test]
    fn bad_roles_are_named() {
        let err = Tokens::from_config(&[TokenConfig {
            token: "x".into(),
            namespaces: vec![],
            role: "root".into(),
        }])
        .unwrap_err();
        assert!(err.contains("root"), "{err}");
    }
}
