//! Argo's template language, pure and without IO.
//!
//! This crate owns everything a workflow author writes between `{{` and `}}` and in
//! `when`/`depends` fields, so the engine can stay a state machine over already-evaluated values:
//!
//! - [`substitute`]: `{{name}}` look-ups and `{{=expr}}` expressions in any text
//!   ([`template`]).
//! - [`eval`]: a bare expr-lang expression (`valueFrom.expression`, `retryStrategy.expression`,
//!   …) over the variables, with Argo's extra functions (`asInt`, `asFloat`, `toJson`,
//!   `jsonpath`) and Sprig (`sprig.upper(…)`) ([`expression`], [`sprig`]).
//! - [`eval_when`]: a `when` condition with govaluate semantics ([`when`]).
//! - [`Depends`]: a DAG task's enhanced `depends` expression ([`depends`]).
//! - [`references`]: the names a text refers to, for lint.
//!
//! Variables are the flat, dotted, string-valued map Argo keeps ([`Vars`]); expressions see
//! them as nested maps. The crate depends on nothing in weft.
//!
//! ```
//! use weft_expr::{Depends, Missing, Vars, eval_when, substitute};
//!
//! let mut vars = Vars::new();
//! vars.insert("steps.flip-coin.outputs.result", "heads");
//! vars.insert("inputs.parameters.x", "41");
//!
//! let when = substitute("{{steps.flip-coin.outputs.result}} == heads", &vars, Missing::Error)?;
//! assert!(eval_when(&when)?);
//! assert_eq!(substitute("{{=asInt(inputs.parameters.x) + 1}}", &vars, Missing::Error)?, "42");
//! assert_eq!(substitute("{{later.value}}", &vars, Missing::Keep)?, "{{later.value}}");
//!
//! let depends = Depends::parse("A && (B.Succeeded || C.Failed)")?;
//! assert_eq!(depends.tasks(), ["A", "B", "C"]);
//! # Ok::<(), weft_expr::ExprError>(())
//! ```
//!
//! Nothing here panics on any input: expr-lang's own panics are caught, nesting and expression
//! size are bounded so recursion cannot overflow the stack, and template scanning is linear.

pub mod depends;
pub mod expression;
mod lexer;
pub mod sprig;
pub mod template;
pub mod when;

use std::collections::BTreeMap;
use std::ops::Bound;

pub use depends::{DependResult, Depends};
pub use expression::{eval, to_string_value};
pub use template::{Reference, references, substitute};
pub use when::eval_when;

/// Variables visible to a template, as Argo keeps them: flat dotted keys to string values,
/// e.g. `inputs.parameters.message` → `hi`, `steps.flip-coin.outputs.result` → `heads`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vars {
    map: BTreeMap<String, String>,
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `key` to `value`, replacing any earlier value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.map.insert(key.into(), value.into());
    }

    /// Remove `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Add every variable of `other`; where both have a key, `other` wins.
    pub fn extend(&mut self, other: &Vars) {
        for (k, v) in &other.map {
            self.map.insert(k.clone(), v.clone());
        }
    }

    /// Keys in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Key/value pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Is `path` a variable, or the dotted prefix of one (`inputs.parameters` when
    /// `inputs.parameters.x` is set)?
    pub fn defines(&self, path: &str) -> bool {
        if self.map.contains_key(path) {
            return true;
        }
        self.has_children(path)
    }

    /// Is there a key that starts with `path.`?
    pub(crate) fn has_children(&self, path: &str) -> bool {
        let prefix = format!("{path}.");
        self.map
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Vars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut vars = Vars::new();
        for (k, v) in iter {
            vars.insert(k, v);
        }
        vars
    }
}

/// What [`substitute`] does with a `{{name}}` it cannot resolve (and with a `{{=expr}}` that
/// refers to an unknown variable, fails or yields nil).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Leave the tag in the text exactly as written, for a later pass with more variables.
    Keep,
    /// Fail with an [`ExprError`].
    Error,
}

/// Why a template, expression, condition or `depends` could not be evaluated.
/// Every message names the text that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// `{{name}}` names no variable.
    #[error("failed to resolve {{{{{name}}}}}: no such variable")]
    Unresolved { name: String },
    /// A `{{` has no matching `}}`.
    #[error("unterminated '{{{{' at byte {offset}: {snippet:?} has no closing '}}}}'")]
    Unterminated { offset: usize, snippet: String },
    /// An expr-lang expression does not parse.
    #[error("invalid expression {expression:?}: {message}")]
    Parse { expression: String, message: String },
    /// An expr-lang expression failed while running.
    #[error("failed to evaluate expression {expression:?}: {message}")]
    Eval { expression: String, message: String },
    /// An expr-lang expression in `{{=…}}` evaluated to nil, which has no text form.
    #[error("expression {expression:?} evaluated to nil (does it refer to a missing variable?)")]
    Nil { expression: String },
    /// A `when` condition is malformed or does not evaluate to a boolean.
    #[error("invalid 'when' condition {condition:?}: {message}")]
    When { condition: String, message: String },
    /// A `depends` expression is malformed.
    #[error("invalid 'depends' expression {expression:?} at position {position}: {message}")]
    Depends {
        expression: String,
        position: usize,
        message: String,
    },
}

/// The first `max` characters of `s`, with `…` if cut (for error messages).
pub(crate) fn snippet(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_insert_get_extend_keys() {
        let mut a = Vars::new();
        a.insert("b", "1");
        a.insert("a", "2");
        let mut b = Vars::new();
        b.insert("a", "3");
        b.insert("c.d", "4");
        a.extend(&b);
        assert_eq!(a.get("a"), Some("3"));
        assert_eq!(a.get("b"), Some("1"));
        assert_eq!(a.get("zz"), None);
        assert_eq!(a.keys().collect::<Vec<_>>(), ["a", "b", "c.d"]);
        assert_eq!(a.len(), 3);
        assert!(a.defines("c") && a.defines("c.d") && !a.defines("c.e") && !a.defines("d"));
    }

    #[test]
    fn has_children_is_not_fooled_by_sort_order() {
        // '-' sorts before '.', so "a.b-x" lies between "a.b" and "a.b.c".
        let vars: Vars = [("a.b", "1"), ("a.b-x", "2"), ("a.b.c", "3")]
            .into_iter()
            .collect();
        assert!(vars.has_children("a.b"));
        assert!(!vars.has_children("a.b-x"));
    }

    /// Pseudo-random strings over the characters that matter to the parsers: nothing panics.
    #[test]
    fn fuzz_all_entry_points() {
        const ALPHABET: &[&str] = &[
            "{",
            "}",
            "{{",
            "}}",
            "{{=",
            "=",
            "(",
            ")",
            "[",
            "]",
            "'",
            "\"",
            "`",
            "\\",
            "!",
            "&&",
            "||",
            "&",
            "|",
            ".",
            ",",
            ":",
            "?",
            "??",
            "#",
            "$",
            "-",
            "+",
            "*",
            "/",
            "%",
            "..",
            "a",
            "x",
            "A",
            "B.Failed",
            "0",
            "9",
            "1.5",
            " ",
            "\n",
            "é",
            "in",
            "=~",
            "sprig.upper(",
            "sprig.dict(",
            "asInt(",
            "jsonpath(",
            "inputs.parameters.x",
            "true",
            "nil",
            "let ",
            ";",
            "==",
            "<",
            "0x",
            "e",
        ];
        let vars: Vars = [("inputs.parameters.x", "5"), ("a", "{\"k\":1}")]
            .into_iter()
            .collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let mut text = String::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 59) as usize + 1;
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(ALPHABET[(seed >> 33) as usize % ALPHABET.len()]);
            }
            let _ = substitute(&text, &vars, Missing::Keep);
            let _ = substitute(&text, &vars, Missing::Error);
            let _ = references(&text);
            let _ = eval(&text, &vars);
            let _ = eval_when(&text);
            if let Ok(d) = Depends::parse(&text) {
                let _ = d.tasks();
                let _ = d.eval(&|_, r| Some(r == DependResult::Succeeded));
                let _ = d.to_string();
            }
        }
    }

    #[test]
    fn errors_name_what_failed() {
        let e = ExprError::Unresolved {
            name: "inputs.parameters.x".into(),
        };
        assert_eq!(
            e.to_string(),
            "failed to resolve {{inputs.parameters.x}}: no such variable"
        );
        assert_eq!(snippet("abcdef", 3), "abc…");
        assert_eq!(snippet("ab", 3), "ab");
    }
}
