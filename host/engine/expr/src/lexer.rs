//! A forgiving token scan of expr-lang source, enough to rewrite `sprig.fn(` calls and to list
//! the variable paths an expression reads. Not a parser: expr-lang itself parses and reports
//! syntax errors; this never fails.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Ident,
    /// A string literal; `text` is the content without quotes (escapes left as written).
    Str,
    Number,
    Punct,
}

#[derive(Debug, Clone)]
pub(crate) struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    /// Byte offset of the token in the source (of the opening quote for strings).
    pub start: usize,
}

const KEYWORDS: &[&str] = &[
    "true",
    "false",
    "nil",
    "in",
    "not",
    "and",
    "or",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "let",
    "if",
    "else",
];

pub(crate) fn tokens(src: &str) -> Vec<Token<'_>> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b == b'"' || b == b'\'' || b == b'`' {
            i += 1;
            while i < bytes.len() && bytes[i] != b {
                if bytes[i] == b'\\' && b != b'`' {
                    i += 1;
                }
                i += 1;
            }
            let content_end = i.min(bytes.len());
            i = (i + 1).min(bytes.len());
            out.push(Token {
                kind: Kind::Str,
                text: &src[start + 1..content_end.max(start + 1)],
                start,
            });
            continue;
        }
        if b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b == b'#' {
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token {
                kind: Kind::Ident,
                text: &src[start..i],
                start,
            });
            continue;
        }
        if b.is_ascii_digit() {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric()
                    || bytes[i] == b'_'
                    || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            out.push(Token {
                kind: Kind::Number,
                text: &src[start..i],
                start,
            });
            continue;
        }
        // `?.` is one token so that optional chaining reads like `.`.
        let len = if src[i..].starts_with("?.") {
            2
        } else {
            src[i..].chars().next().map_or(1, char::len_utf8)
        };
        i += len;
        out.push(Token {
            kind: Kind::Punct,
            text: &src[start..i],
            start,
        });
    }
    out
}

fn is_dot(t: Option<&Token<'_>>) -> bool {
    t.is_some_and(|t| t.kind == Kind::Punct && (t.text == "." || t.text == "?."))
}

fn is_punct(t: Option<&Token<'_>>, p: &str) -> bool {
    t.is_some_and(|t| t.kind == Kind::Punct && t.text == p)
}

/// Rewrite `sprig.name(` to `sprig_name(` outside string literals: expr-lang has no callable
/// maps, so each Sprig function is registered as `sprig_<name>`. Keeps byte offsets when the
/// source has no spaces around the dot.
pub(crate) fn rewrite_sprig(src: &str) -> Cow<'_, str> {
    if !src.contains("sprig") {
        return Cow::Borrowed(src);
    }
    let toks = tokens(src);
    let mut out = String::new();
    let mut copied = 0;
    for (i, t) in toks.iter().enumerate() {
        if t.kind == Kind::Ident
            && t.text == "sprig"
            && !is_dot(i.checked_sub(1).and_then(|j| toks.get(j)))
            && is_punct(toks.get(i + 1), ".")
            && toks.get(i + 2).is_some_and(|n| n.kind == Kind::Ident)
            && is_punct(toks.get(i + 3), "(")
        {
            out.push_str(&src[copied..t.start]);
            out.push_str("sprig_");
            copied = toks[i + 2].start;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(src);
    }
    out.push_str(&src[copied..]);
    Cow::Owned(out)
}

/// expr-lang 2.1 accepts only literal values in map literals (`{'a': 1}`) and panics on others
/// (`{'a': x}`, `{'a': [1]}`): reject those with advice instead.
pub(crate) fn check_map_literals(toks: &[Token<'_>]) -> Result<(), String> {
    for (i, t) in toks.iter().enumerate() {
        let is_key = matches!(t.kind, Kind::Ident | Kind::Str)
            && is_punct(toks.get(i + 1), ":")
            && (is_punct(i.checked_sub(1).and_then(|j| toks.get(j)), "{")
                || is_punct(i.checked_sub(1).and_then(|j| toks.get(j)), ","));
        if !is_key {
            continue;
        }
        let j = i + 2;
        let literal = toks.get(j).is_some_and(|v| {
            matches!(v.kind, Kind::Str | Kind::Number)
                || (v.kind == Kind::Ident && matches!(v.text, "true" | "false" | "nil"))
        });
        if !literal || !(is_punct(toks.get(j + 1), ",") || is_punct(toks.get(j + 1), "}")) {
            return Err(format!(
                "map literal value for key {:?} must be a literal (string, number, true, false, \
                 nil) with this expr-lang version; build the map with sprig.dict({:?}, value) instead",
                t.text, t.text
            ));
        }
    }
    Ok(())
}

/// A variable path an expression reads, e.g. `steps.flip-coin.outputs.result` for
/// `steps['flip-coin'].outputs.result`, with the byte offset of its first identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub name: String,
    pub offset: usize,
}

/// The variable paths `src` reads: identifiers in root position followed by `.member` and
/// `['literal']` accesses. Function names, keywords, `#`-closures, `let` bindings and map-literal
/// keys are left out.
pub(crate) fn paths(src: &str) -> Vec<Path> {
    let toks = tokens(src);
    let lets: Vec<&str> = toks
        .windows(2)
        .filter(|w| w[0].kind == Kind::Ident && w[0].text == "let" && w[1].kind == Kind::Ident)
        .map(|w| w[1].text)
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let prev = i.checked_sub(1).and_then(|j| toks.get(j));
        let root = t.kind == Kind::Ident
            && !is_dot(prev)
            && !t.text.starts_with('#')
            && !t.text.starts_with('$')
            && !KEYWORDS.contains(&t.text)
            && !lets.contains(&t.text)
            && !is_punct(toks.get(i + 1), "(")
            // `{a: 1}` / `{x: 1, a: 2}`: a map-literal key, not a variable.
            && !(is_punct(toks.get(i + 1), ":") && (is_punct(prev, "{") || is_punct(prev, ",")));
        if !root {
            i += 1;
            continue;
        }
        let mut name = t.text.to_string();
        let mut j = i + 1;
        loop {
            if is_dot(toks.get(j))
                && toks.get(j + 1).is_some_and(|n| n.kind == Kind::Ident)
                && !is_punct(toks.get(j + 2), "(")
            {
                name.push('.');
                name.push_str(toks[j + 1].text);
                j += 2;
            } else if is_punct(toks.get(j), "[")
                && toks.get(j + 1).is_some_and(|n| n.kind == Kind::Str)
                && is_punct(toks.get(j + 2), "]")
            {
                name.push('.');
                name.push_str(toks[j + 1].text);
                j += 3;
            } else {
                break;
            }
        }
        // `sprig.upper(…)` before rewriting: a function, not a variable.
        let is_sprig_call = t.text == "sprig" && is_punct(toks.get(j + 1), "(");
        if !is_sprig_call && name != "sprig" {
            out.push(Path {
                name,
                offset: t.start,
            });
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str) -> Vec<String> {
        paths(src).into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn rewrites_sprig_calls_outside_strings() {
        assert_eq!(rewrite_sprig("sprig.upper(x)"), "sprig_upper(x)");
        assert_eq!(
            rewrite_sprig("sprig.add(1, sprig.int('2'))"),
            "sprig_add(1, sprig_int('2'))"
        );
        assert_eq!(rewrite_sprig("'sprig.upper(x)'"), "'sprig.upper(x)'");
        assert_eq!(rewrite_sprig("a.sprig.upper(x)"), "a.sprig.upper(x)");
        assert_eq!(rewrite_sprig("sprig . trim (x)"), "sprig_trim (x)");
        assert_eq!(rewrite_sprig("sprig.x"), "sprig.x");
    }

    #[test]
    fn lists_variable_paths() {
        assert_eq!(
            names("asInt(inputs.parameters.x) + 1"),
            ["inputs.parameters.x"]
        );
        assert_eq!(
            names("steps['flip-coin'].outputs.result == 'heads'"),
            ["steps.flip-coin.outputs.result"]
        );
        assert_eq!(names("sprig.upper(a.b)"), ["a.b"]);
        assert_eq!(names("let x = 1; x + y"), ["y"]);
        assert_eq!(names("filter(items, .a > #.b)"), ["items"]);
        assert_eq!(names("{a: 1, b: c}"), ["c"]);
        assert_eq!(names("c ? a : b"), ["c", "a", "b"]);
        assert_eq!(names("x matches 'y' and true"), ["x"]);
        assert_eq!(names("\"a.b\" + 'c'"), Vec::<String>::new());
    }

    #[test]
    fn never_panics_on_odd_input() {
        for src in [
            "'", "\"abc", "`", "a.", "a[", "a['x'", "é.ü", "1..2", "?.", "\\", "#",
        ] {
            let _ = tokens(src);
            let _ = paths(src);
            let _ = rewrite_sprig(src);
        }
    }
}
