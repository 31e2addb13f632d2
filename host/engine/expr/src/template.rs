//! `{{…}}` templates: finding tags in text, substituting them, listing what they refer to.
//!
//! Only `{{` opens a tag, so JSON like `{"a": {"b": 1}}` passes through untouched. A simple tag
//! (`{{ inputs.parameters.x }}`) is closed by the first `}}` and its trimmed body is looked up
//! in the variables. An expression tag (`{{= … }}`) is closed by the first `}}` outside string
//! literals and braces, so `{{= toJson({'a': {'b': 1}}) }}` works; if that scan runs off the
//! end of the text, the first `}}` closes it, as in Argo. Scanning is linear in the text length.

use expr::Context;

use crate::expression::{self, render};
use crate::{ExprError, Missing, Vars, lexer, snippet};

/// A name a text refers to, for lint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reference {
    /// The dotted variable name, e.g. `inputs.parameters.x` or `steps.flip-coin.outputs.result`.
    pub name: String,
    /// Found inside a `{{=…}}` expression rather than a simple `{{…}}` tag.
    pub expression: bool,
    /// Byte offset in the text: of the `{{` for a simple tag, of the name for an expression.
    pub offset: usize,
}

/// One piece of a template text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    /// A `{{…}}` tag at byte `start`; `body` is what lies between the braces.
    Tag {
        start: usize,
        source: &'a str,
        body: &'a str,
    },
    /// A `{{` at byte `start` with no closing `}}`; `source` is the rest of the text.
    Unterminated {
        start: usize,
        source: &'a str,
    },
}

/// Split `text` into literal text and tags.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    // After one expression tag whose smart scan found no end, later ones would not either:
    // stop trying so the whole scan stays linear.
    let mut smart = true;
    while let Some(found) = text[pos..].find("{{") {
        let open = pos + found;
        let body_start = open + 2;
        let smart_close = if smart && text[body_start..].starts_with('=') {
            let c = expression_end(text, body_start + 1);
            smart = c.is_some();
            c
        } else {
            None
        };
        let close = smart_close.or_else(|| text[body_start..].find("}}").map(|c| body_start + c));
        let Some(close) = close else {
            if pos < open {
                out.push(Piece::Text(&text[pos..open]));
            }
            out.push(Piece::Unterminated {
                start: open,
                source: &text[open..],
            });
            return out;
        };
        // `{{ a {{b}}`: the innermost `{{` opens the tag; what precedes it is text. (Not for
        // an expression closed by the smart scan: its `{{` may sit inside a string literal.)
        let open = match text[body_start..close].rfind("{{") {
            Some(inner) if smart_close.is_none() => body_start + inner,
            _ => open,
        };
        if pos < open {
            out.push(Piece::Text(&text[pos..open]));
        }
        out.push(Piece::Tag {
            start: open,
            source: &text[open..close + 2],
            body: &text[open + 2..close],
        });
        pos = close + 2;
    }
    if pos < text.len() {
        out.push(Piece::Text(&text[pos..]));
    }
    out
}

/// Where the `}}` closing an expression that starts at byte `from` is: the first one outside
/// string literals and `{…}` pairs. `None` if there is none.
fn expression_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    if bytes[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= bytes.len() {
                    return None;
                }
            }
            b'{' => depth += 1,
            b'}' if depth == 0 && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Replace every `{{ name }}` and `{{= expr }}` in `text`.
///
/// A simple tag is replaced by the variable's value as it is. An expression is evaluated with
/// [`crate::eval`]'s environment and rendered with [`crate::to_string_value`]. With
/// [`Missing::Keep`], a tag naming an unknown variable, an expression that refers to one, fails
/// or yields nil, and an unterminated `{{` are left in the text as written; with
/// [`Missing::Error`] each is an error.
pub fn substitute(text: &str, vars: &Vars, missing: Missing) -> Result<String, ExprError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut ctx: Option<Context> = None;
    for piece in pieces(text) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Unterminated { start, source } => match missing {
                Missing::Keep => out.push_str(source),
                Missing::Error => {
                    return Err(ExprError::Unterminated {
                        offset: start,
                        snippet: snippet(source, 40),
                    });
                }
            },
            Piece::Tag { source, body, .. } => {
                if let Some(expr) = body.strip_prefix('=') {
                    let ctx = ctx.get_or_insert_with(|| expression::context(vars));
                    match expression_tag(expr.trim(), vars, ctx, missing)? {
                        Some(value) => out.push_str(&value),
                        None => out.push_str(source),
                    }
                } else {
                    let name = body.trim();
                    match (vars.get(name), missing) {
                        (Some(value), _) => out.push_str(value),
                        (None, Missing::Keep) => out.push_str(source),
                        (None, Missing::Error) => {
                            return Err(ExprError::Unresolved {
                                name: name.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Evaluate one `{{=…}}`: `Ok(None)` means "keep the tag as written".
fn expression_tag(
    expr: &str,
    vars: &Vars,
    ctx: &Context,
    missing: Missing,
) -> Result<Option<String>, ExprError> {
    if missing == Missing::Keep && lexer::paths(expr).iter().any(|p| !vars.defines(&p.name)) {
        // Like Argo: wait for the variable (e.g. `retries`, `workflow.status`) to exist rather
        // than evaluate it as nil now.
        return Ok(None);
    }
    match expression::run(expr, ctx) {
        Ok(value) if !value.is_nil() => Ok(Some(render(&value))),
        _ if missing == Missing::Keep => Ok(None),
        result => {
            let undefined: Vec<String> = lexer::paths(expr)
                .into_iter()
                .filter(|p| !vars.defines(&p.name))
                .map(|p| p.name)
                .collect();
            if !undefined.is_empty() {
                return Err(ExprError::Eval {
                    expression: expr.to_string(),
                    message: format!("no such variable: {}", undefined.join(", ")),
                });
            }
            match result {
                Err(e) => Err(e),
                Ok(_) => Err(ExprError::Nil {
                    expression: expr.to_string(),
                }),
            }
        }
    }
}

/// The names `text` refers to, in order: each simple `{{name}}`, and the variable paths each
/// `{{=expr}}` reads (function names, literals and local names left out).
pub fn references(text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    for piece in pieces(text) {
        let Piece::Tag { start, body, .. } = piece else {
            continue;
        };
        if let Some(expr) = body.strip_prefix('=') {
            let base = start + 3;
            out.extend(lexer::paths(expr).into_iter().map(|p| Reference {
                name: p.name,
                expression: true,
                offset: base + p.offset,
            }));
        } else {
            out.push(Reference {
                name: body.trim().to_string(),
                expression: false,
                offset: start,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [
            ("inputs.parameters.message", "hi"),
            ("inputs.parameters.x", "41"),
            (
                "inputs.parameters.json",
                r#"{"a": {"b": "deep"}, "n": 2.5}"#,
            ),
            ("steps.flip-coin.outputs.result", "heads"),
            ("workflow.name", "wf-1"),
            ("item", r#"{"k":"v"}"#),
        ]
        .into_iter()
        .collect()
    }

    fn sub(text: &str) -> String {
        substitute(text, &vars(), Missing::Error).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn keep(text: &str) -> String {
        substitute(text, &vars(), Missing::Keep).unwrap()
    }

    #[test]
    fn simple_tags() {
        assert_eq!(sub("echo {{inputs.parameters.message}}"), "echo hi");
        assert_eq!(sub("{{ inputs.parameters.message }}!"), "hi!");
        assert_eq!(
            sub("{{steps.flip-coin.outputs.result}} == heads"),
            "heads == heads"
        );
        assert_eq!(sub("{{item}}"), r#"{"k":"v"}"#);
        assert_eq!(sub("no tags"), "no tags");
        assert_eq!(sub(""), "");
    }

    #[test]
    fn expressions() {
        assert_eq!(sub("{{=asInt(inputs.parameters.x) + 1}}"), "42");
        assert_eq!(sub("{{= sprig.upper(inputs.parameters.message) }}"), "HI");
        assert_eq!(
            sub("{{=jsonpath(inputs.parameters.json, '$.a.b')}}"),
            "deep"
        );
        assert_eq!(sub("{{=jsonpath(inputs.parameters.json, '$.n')}}"), "2.5");
        assert_eq!(
            sub("{{=jsonpath(inputs.parameters.json, '$.a')}}"),
            r#"{"b":"deep"}"#
        );
        assert_eq!(
            sub("{{=steps['flip-coin'].outputs.result == 'heads'}}"),
            "true"
        );
        assert_eq!(sub("{{=asFloat('2.0') * 2}}"), "4");
        assert_eq!(sub("{{=1.5 + 1}}"), "2.5");
        assert_eq!(sub("{{=[1, 'a']}}"), r#"[1,"a"]"#);
        assert_eq!(
            sub("{{= toJson(sprig.dict('a', {'b': 1})) }}"),
            r#"{"a":{"b":1}}"#
        );
        assert_eq!(sub("{{= '}}' + 'x' }}"), "}}x");
        assert_eq!(sub("{{= '{{' + workflow.name }}"), "{{wf-1");
        assert_eq!(
            sub("a {{=workflow.name}} b {{inputs.parameters.message}} c"),
            "a wf-1 b hi c"
        );
    }

    #[test]
    fn json_braces_are_not_tags() {
        let json = r#"{"a": {"b": 1}, "c": "{{inputs.parameters.message}}"}"#;
        assert_eq!(sub(json), r#"{"a": {"b": 1}, "c": "hi"}"#);
        assert_eq!(
            sub(r#"{"a": {"b": {"c": 1}}}"#),
            r#"{"a": {"b": {"c": 1}}}"#
        );
        assert_eq!(sub("}} { } }}}"), "}} { } }}}");
    }

    #[test]
    fn missing_simple_variable() {
        assert_eq!(
            keep("x={{inputs.parameters.nope}}"),
            "x={{inputs.parameters.nope}}"
        );
        assert_eq!(keep("{{ a }} {{workflow.name}}"), "{{ a }} wf-1");
        let e = substitute("{{ inputs.parameters.nope }}", &vars(), Missing::Error).unwrap_err();
        assert_eq!(
            e,
            ExprError::Unresolved {
                name: "inputs.parameters.nope".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "failed to resolve {{inputs.parameters.nope}}: no such variable"
        );
    }

    #[test]
    fn missing_in_expressions() {
        // Unknown variables: kept for a later pass, even where nil would "work" (sprig.int).
        assert_eq!(keep("{{=sprig.int(retries)}}"), "{{=sprig.int(retries)}}");
        assert_eq!(
            keep("{{=workflow.status == 'Succeeded'}}"),
            "{{=workflow.status == 'Succeeded'}}"
        );
        assert_eq!(
            keep("{{=asInt(nope)}} {{=workflow.name}}"),
            "{{=asInt(nope)}} wf-1"
        );
        assert_eq!(keep("{{=1 +}}"), "{{=1 +}}");
        let e = substitute("{{=asInt(nope)}}", &vars(), Missing::Error).unwrap_err();
        assert!(e.to_string().contains("no such variable: nope"), "{e}");
        let e = substitute("{{=inputs.parameters.nope}}", &vars(), Missing::Error).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to evaluate expression \"inputs.parameters.nope\": no such variable: inputs.parameters.nope"
        );
        let e = substitute("{{=[1][5]}}", &vars(), Missing::Error).unwrap_err();
        assert!(matches!(e, ExprError::Nil { .. }), "{e}");
        // Defined or not, an expression that succeeds is used in Error mode.
        assert_eq!(sub("{{=inputs.parameters.nope ?? 'dflt'}}"), "dflt");
        assert_eq!(
            keep("{{=inputs.parameters.nope ?? 'dflt'}}"),
            "{{=inputs.parameters.nope ?? 'dflt'}}"
        );
        let e = substitute("{{=1 +}}", &vars(), Missing::Error).unwrap_err();
        assert!(matches!(e, ExprError::Parse { .. }), "{e}");
    }

    #[test]
    fn unterminated_and_nested() {
        assert_eq!(keep("a {{ b"), "a {{ b");
        let e = substitute("a {{ b", &vars(), Missing::Error).unwrap_err();
        assert!(
            matches!(e, ExprError::Unterminated { offset: 2, .. }),
            "{e}"
        );
        assert_eq!(sub("{{ {{workflow.name}}"), "{{ wf-1");
        assert_eq!(keep("{{{workflow.name}}}"), "{{{workflow.name}}}");
        assert_eq!(keep("{{=a'}} {{workflow.name}}"), "{{=a'}} wf-1");
        assert_eq!(keep("{{}}x"), "{{}}x");
        assert!(substitute("{{ }}", &vars(), Missing::Error).is_err());
    }

    #[test]
    fn references_list_names() {
        let refs = references(
            "{{inputs.parameters.a}} {{=asInt(steps['x-y'].outputs.result) + sprig.int(retries)}} {{b}}",
        );
        let names: Vec<_> = refs
            .iter()
            .map(|r| (r.name.as_str(), r.expression))
            .collect();
        assert_eq!(
            names,
            [
                ("inputs.parameters.a", false),
                ("steps.x-y.outputs.result", true),
                ("retries", true),
                ("b", false)
            ]
        );
        assert_eq!(refs[0].offset, 0);
        let text = "ab {{= foo.bar }}";
        let r = &references(text)[0];
        assert_eq!(&text[r.offset..r.offset + 7], "foo.bar");
        assert!(references("{\"a\": {\"b\": 1}}").is_empty());
    }

    #[test]
    fn no_panics_on_odd_input() {
        let odd = [
            "{{",
            "}}",
            "{{=",
            "{{=}}",
            "{{ }}",
            "{{=\"}}",
            "{{='",
            "{{{{{{",
            "}}}}{{",
            "{{=`",
            "{{= {{ }} }}",
            "é{{é}}é",
            "{{=é}}",
            "{{=sprig.}}",
            "{{=sprig.upper(}}",
            "{{=[}}",
            "{{=#}}",
            "{{=$env}}",
            "{{=1/0}}",
            "{{=9223372036854775807 + 1}}",
            "{{=-}}",
        ];
        for text in odd {
            for missing in [Missing::Keep, Missing::Error] {
                let _ = substitute(text, &vars(), missing);
            }
            let _ = references(text);
        }
    }

    #[test]
    fn big_inputs_are_linear() {
        let start = std::time::Instant::now();
        let n = 10 << 20;
        for unit in ["{{", "{{='", "{{=", "{", "}}", "{{a}}", "{{ {{"] {
            let text = unit.repeat(n / unit.len());
            let _ = substitute(&text, &vars(), Missing::Keep);
            let _ = references(&text);
        }
        let text = format!("{}{{{{workflow.name}}}}", "x".repeat(n));
        assert!(sub(&text).ends_with("xwf-1"));
        assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
    }
}
