//! Argo DAG `depends` (enhanced depends): `A && (B.Succeeded || C.Failed) && !D.Skipped`.
//!
//! A bare task name means `(A.Succeeded || A.Skipped || A.Daemoned)`. Evaluation is
//! three-valued: a task that has not completed is unknown, and the whole expression is unknown
//! unless `&&`/`||` decide it without that task.

use std::fmt;

use crate::ExprError;

/// A task result a `depends` expression can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DependResult {
    Succeeded,
    Failed,
    Errored,
    Skipped,
    Omitted,
    Daemoned,
    /// Succeeded or Failed.
    Completed,
    /// For an expanded (looped) task: at least one child succeeded.
    AnySucceeded,
    /// For an expanded (looped) task: every child failed.
    AllFailed,
}

impl DependResult {
    pub const ALL: [DependResult; 9] = [
        Self::Succeeded,
        Self::Failed,
        Self::Errored,
        Self::Skipped,
        Self::Omitted,
        Self::Daemoned,
        Self::Completed,
        Self::AnySucceeded,
        Self::AllFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Errored => "Errored",
            Self::Skipped => "Skipped",
            Self::Omitted => "Omitted",
            Self::Daemoned => "Daemoned",
            Self::Completed => "Completed",
            Self::AnySucceeded => "AnySucceeded",
            Self::AllFailed => "AllFailed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for DependResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// `task` (result `None`: Succeeded, Skipped or Daemoned) or `task.Result`.
    Task(String, Option<DependResult>),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

/// A parsed `depends` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depends {
    root: Node,
}

/// Nesting limit for parentheses and `!`, so no input can overflow the stack.
const MAX_DEPTH: usize = 100;

impl Depends {
    /// Parse `s`. Errors name the position (byte offset) and the offending token.
    pub fn parse(s: &str) -> Result<Depends, ExprError> {
        let tokens = lex(s)?;
        let mut p = Parser {
            src: s,
            tokens,
            pos: 0,
            depth: 0,
        };
        if p.tokens.is_empty() {
            return Err(p.error(0, "the expression is empty".to_string()));
        }
        let root = p.or()?;
        if let Some(t) = p.tokens.get(p.pos) {
            return Err(p.error(
                t.at,
                format!("unexpected {} after a complete expression", t.tok),
            ));
        }
        Ok(Depends { root })
    }

    /// Task names referenced, in order of first appearance, without duplicates.
    pub fn tasks(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        fn walk(n: &Node, out: &mut Vec<String>) {
            match n {
                Node::Task(t, _) => {
                    if !out.contains(t) {
                        out.push(t.clone());
                    }
                }
                Node::Not(n) => walk(n, out),
                Node::And(ns) | Node::Or(ns) => ns.iter().for_each(|n| walk(n, out)),
            }
        }
        walk(&self.root, &mut out);
        out
    }

    /// Evaluate with `lookup(task, result)`: `Some(true/false)` once the task has completed,
    /// `None` while it has not. Returns `None` when the outcome is not decidable yet.
    /// `Completed`, `AnySucceeded` and `AllFailed` are passed to `lookup` as written.
    pub fn eval(&self, lookup: &dyn Fn(&str, DependResult) -> Option<bool>) -> Option<bool> {
        eval(&self.root, lookup)
    }
}

fn eval(n: &Node, lookup: &dyn Fn(&str, DependResult) -> Option<bool>) -> Option<bool> {
    match n {
        Node::Task(t, Some(r)) => lookup(t, *r),
        Node::Task(t, None) => any([
            lookup(t, DependResult::Succeeded),
            lookup(t, DependResult::Skipped),
            lookup(t, DependResult::Daemoned),
        ]),
        Node::Not(n) => eval(n, lookup).map(|b| !b),
        Node::And(ns) => {
            let mut all = Some(true);
            for n in ns {
                match eval(n, lookup) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => all = None,
                }
            }
            all
        }
        Node::Or(ns) => any(ns.iter().map(|n| eval(n, lookup))),
    }
}

/// Three-valued OR: true if any is true, false if all are false, else unknown.
fn any(values: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    let mut result = Some(false);
    for v in values {
        match v {
            Some(true) => return Some(true),
            Some(false) => {}
            None => result = None,
        }
    }
    result
}

impl fmt::Display for Depends {
    /// The expression in canonical form, fully parenthesised where it matters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write(n: &Node, f: &mut fmt::Formatter<'_>, nested: bool) -> fmt::Result {
            match n {
                Node::Task(t, None) => f.write_str(t),
                Node::Task(t, Some(r)) => write!(f, "{t}.{r}"),
                Node::Not(n) => {
                    f.write_str("!")?;
                    write(n, f, true)
                }
                Node::And(ns) | Node::Or(ns) => {
                    let op = if matches!(n, Node::And(_)) {
                        " && "
                    } else {
                        " || "
                    };
                    if nested {
                        f.write_str("(")?;
                    }
                    for (i, n) in ns.iter().enumerate() {
                        if i > 0 {
                            f.write_str(op)?;
                        }
                        write(n, f, true)?;
                    }
                    if nested {
                        f.write_str(")")?;
                    }
                    Ok(())
                }
            }
        }
        write(&self.root, f, false)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Name(String),
    And,
    Or,
    Not,
    LParen,
    RParen,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Name(n) => write!(f, "'{n}'"),
            Tok::And => f.write_str("'&&'"),
            Tok::Or => f.write_str("'||'"),
            Tok::Not => f.write_str("'!'"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
        }
    }
}

struct Spanned {
    tok: Tok,
    at: usize,
}

fn error(src: &str, position: usize, message: String) -> ExprError {
    ExprError::Depends {
        expression: src.to_string(),
        position,
        message,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

fn lex(src: &str) -> Result<Vec<Spanned>, ExprError> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let tok = match c {
            c if c.is_whitespace() => continue,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '!' => Tok::Not,
            '&' | '|' => {
                if chars.next_if(|&(_, d)| d == c).is_none() {
                    return Err(error(
                        src,
                        at,
                        format!("unexpected '{c}' (did you mean '{c}{c}'?)"),
                    ));
                }
                if c == '&' { Tok::And } else { Tok::Or }
            }
            c if is_name_char(c) => {
                let mut end = at + c.len_utf8();
                while let Some((j, d)) = chars.next_if(|&(_, d)| is_name_char(d)) {
                    end = j + d.len_utf8();
                }
                Tok::Name(src[at..end].to_string())
            }
            c => return Err(error(src, at, format!("unexpected character {c:?}"))),
        };
        out.push(Spanned { tok, at });
    }
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Spanned>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, position: usize, message: String) -> ExprError {
        error(self.src, position, message)
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Node::Or(items)
        })
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Node::And(items)
        })
    }

    fn deeper(&mut self, at: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(at, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        let Some(Spanned { tok, at }) = self.tokens.get(self.pos) else {
            return Err(self.error(self.src.len(), "unexpected end of expression".to_string()));
        };
        let at = *at;
        match tok.clone() {
            Tok::Not => {
                self.pos += 1;
                self.deeper(at)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Node::Not(Box::new(inner)))
            }
            Tok::LParen => {
                self.pos += 1;
                self.deeper(at)?;
                let inner = self.or()?;
                self.depth -= 1;
                match self.tokens.get(self.pos) {
                    Some(Spanned {
                        tok: Tok::RParen, ..
                    }) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    Some(t) => Err(self.error(t.at, format!("expected ')' but found {}", t.tok))),
                    None => Err(self.error(self.src.len(), format!("missing ')' for '(' at {at}"))),
                }
            }
            Tok::Name(name) => {
                self.pos += 1;
                self.task(&name, at)
            }
            other => Err(self.error(
                at,
                format!("unexpected {other}, expected a task name, '!' or '('"),
            )),
        }
    }

    fn task(&self, name: &str, at: usize) -> Result<Node, ExprError> {
        let (task, result) = match name.split_once('.') {
            None => (name, None),
            Some((task, result)) => match DependResult::parse(result) {
                Some(r) => (task, Some(r)),
                None => {
                    let valid: Vec<_> = DependResult::ALL.iter().map(|r| r.as_str()).collect();
                    return Err(self.error(
                        at + task.len() + 1,
                        format!(
                            "unknown task result '{result}' in '{name}'; expected one of {}",
                            valid.join(", ")
                        ),
                    ));
                }
            },
        };
        if task.is_empty() {
            return Err(self.error(at, format!("missing task name in '{name}'")));
        }
        Ok(Node::Task(task.to_string(), result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use DependResult::*;

    /// Evaluate `expr` with `done` mapping task → its single phase; others not completed.
    fn run(expr: &str, done: &[(&str, DependResult)]) -> Option<bool> {
        let done: HashMap<&str, DependResult> = done.iter().copied().collect();
        Depends::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .eval(&|task, r| {
                done.get(task).map(|&phase| match r {
                    Completed => matches!(phase, Succeeded | Failed),
                    AnySucceeded => phase == Succeeded,
                    AllFailed => phase == Failed,
                    r => r == phase,
                })
            })
    }

    #[test]
    fn bare_name_means_succeeded_skipped_or_daemoned() {
        assert_eq!(run("A", &[("A", Succeeded)]), Some(true));
        assert_eq!(run("A", &[("A", Skipped)]), Some(true));
        assert_eq!(run("A", &[("A", Daemoned)]), Some(true));
        assert_eq!(run("A", &[("A", Failed)]), Some(false));
        assert_eq!(run("A", &[]), None);
    }

    #[test]
    fn every_result() {
        for r in DependResult::ALL {
            let e = format!("A.{r}");
            let phase = match r {
                Completed | AnySucceeded => Succeeded,
                AllFailed => Failed,
                r => r,
            };
            assert_eq!(run(&e, &[("A", phase)]), Some(true), "{e}");
            assert_eq!(run(&e, &[("A", Omitted)]), Some(r == Omitted), "{e}");
        }
        assert_eq!(run("A.Completed", &[("A", Failed)]), Some(true));
        assert_eq!(run("A.Completed", &[("A", Errored)]), Some(false));
    }

    #[test]
    fn operators_and_precedence() {
        let e = "A && (B.Succeeded || C.Failed) && !D.Skipped";
        let all = [
            ("A", Succeeded),
            ("B", Failed),
            ("C", Failed),
            ("D", Succeeded),
        ];
        assert_eq!(run(e, &all), Some(true));
        assert_eq!(
            run(
                e,
                &[
                    ("A", Succeeded),
                    ("B", Failed),
                    ("C", Succeeded),
                    ("D", Succeeded)
                ]
            ),
            Some(false)
        );
        assert_eq!(
            run(e, &[("A", Succeeded), ("B", Succeeded), ("D", Skipped)]),
            Some(false)
        );
        // && binds tighter than ||
        assert_eq!(
            run("A.Failed && B || C", &[("A", Succeeded), ("C", Succeeded)]),
            Some(true)
        );
        assert_eq!(run("!!A", &[("A", Succeeded)]), Some(true));
        assert_eq!(
            run("!(A || B)", &[("A", Failed), ("B", Failed)]),
            Some(true)
        );
    }

    #[test]
    fn undecided_unless_short_circuited() {
        assert_eq!(run("A && B", &[("A", Succeeded)]), None);
        assert_eq!(run("A && B", &[("A", Failed)]), Some(false));
        assert_eq!(run("B && A", &[("A", Failed)]), Some(false));
        assert_eq!(run("A || B", &[("B", Succeeded)]), Some(true));
        assert_eq!(run("A || B", &[("B", Failed)]), None);
        assert_eq!(run("!A", &[]), None);
    }

    #[test]
    fn tasks_in_order_without_duplicates() {
        let d = Depends::parse("(b-1.Succeeded || a_2) && b-1.Failed && !c").unwrap();
        assert_eq!(d.tasks(), ["b-1", "a_2", "c"]);
        assert_eq!(d.to_string(), "(b-1.Succeeded || a_2) && b-1.Failed && !c");
        assert_eq!(Depends::parse("((A))").unwrap().to_string(), "A");
    }

    #[test]
    fn errors_name_position_and_token() {
        let msg = |s: &str| Depends::parse(s).unwrap_err().to_string();
        assert_eq!(
            msg("A && )"),
            "invalid 'depends' expression \"A && )\" at position 5: unexpected ')', expected a task name, '!' or '('"
        );
        assert!(msg("A.Bogus").contains("position 2: unknown task result 'Bogus'"));
        assert!(msg("A & B").contains("position 2: unexpected '&' (did you mean '&&'?)"));
        assert!(msg("A B").contains("position 2: unexpected 'B' after a complete expression"));
        assert!(msg("(A").contains("missing ')'"));
        assert!(msg("").contains("empty"));
        assert!(msg("A &&").contains("unexpected end"));
        assert!(msg("A + B").contains("unexpected character '+'"));
        assert!(msg(".Succeeded").contains("missing task name"));
    }

    #[test]
    fn no_panics_or_overflow() {
        let deep = format!("{}A{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(Depends::parse(&deep).is_err());
        assert!(Depends::parse(&"!".repeat(100_000)).is_err());
        let long = vec!["A"; 100_000].join(" && ");
        assert_eq!(run(&long, &[("A", Succeeded)]), Some(true));
        for odd in [
            "(",
            ")",
            "!",
            "&&",
            "||",
            "é",
            "A.",
            "A..B",
            ".",
            "A.Succeeded.Failed",
        ] {
            let _ = Depends::parse(odd);
        }
    }
}
