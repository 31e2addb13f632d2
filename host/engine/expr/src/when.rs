//! Argo `when` conditions, evaluated with govaluate semantics after substitution.
//!
//! Supported: `==`, `!=`, `<`, `<=`, `>`, `>=`, `=~`, `!~`, `in (a, b)`, `&&`, `||`, `!`,
//! `+`, `-`, `*`, `/`, `%`, `**`, unary `-`, parentheses, `'…'`/`"…"` strings, numbers,
//! `true`/`false`. As in Argo, a bare word (what govaluate would call a variable) is a string,
//! so `heads == heads` is true; unlike govaluate a bare word may contain `-`, `.` and `/`
//! (`hello-world`, `v1.2`), which govaluate would reject. `[any text]` is also a string.
//!
//! Precedence, loosest first: `||`, `&&`, comparisons (incl. `=~`, `!~`, `in`), `+ -`,
//! `* / %`, `**`, prefix `! -`.

use regex::Regex;

use crate::ExprError;
use crate::expression::format_float;

/// Evaluate an already-substituted `when` condition. An empty condition is true.
pub fn eval_when(cond: &str) -> Result<bool, ExprError> {
    let fail = |message: String| ExprError::When {
        condition: cond.to_string(),
        message,
    };
    if cond.contains("{{") {
        return Err(fail(
            "it still contains '{{': a variable it uses was not resolved".to_string(),
        ));
    }
    if cond.trim().is_empty() {
        return Ok(true);
    }
    let tokens = lex(cond).map_err(fail)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let node = p.or().map_err(fail)?;
    if let Some(t) = p.tokens.get(p.pos) {
        return Err(fail(format!(
            "unexpected {} after a complete expression",
            t.describe()
        )));
    }
    match eval(&node).map_err(fail)? {
        V::Bool(b) => Ok(b),
        other => Err(fail(format!(
            "expected a boolean result, got {}",
            other.describe()
        ))),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Bool(bool),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("number {}", format_float(*n)),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Bool(b) => format!("'{b}'"),
            Tok::Op(o) => format!("'{o}'"),
            Tok::LParen => "'('".to_string(),
            Tok::RParen => "')'".to_string(),
            Tok::Comma => "','".to_string(),
        }
    }
}

const OPS: &[&str] = &[
    "==", "!=", "<=", ">=", "=~", "!~", "&&", "||", "**", "<", ">", "+", "-", "*", "/", "%", "!",
];

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, e)) => s.push(e),
                        None => return Err(format!("unterminated string starting at {i}")),
                    },
                    Some((_, q)) if q == c => break,
                    Some((_, x)) => s.push(x),
                    None => return Err(format!("unterminated string starting at {i}")),
                }
            }
            out.push(Tok::Str(s));
        } else if c == '[' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some((_, ']')) => break,
                    Some((_, x)) => s.push(x),
                    None => return Err(format!("unterminated '[' at {i}")),
                }
            }
            out.push(Tok::Str(s));
        } else if c == '(' || c == ')' || c == ',' {
            chars.next();
            out.push(match c {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                _ => Tok::Comma,
            });
        } else if c.is_alphanumeric() || c == '_' || c == '.' {
            // A number (digits and dots, e.g. `3`, `2.5`, `.5`) or else a bare word.
            let mut end = i;
            let number_like = c.is_ascii_digit() || c == '.';
            let mut numeric = number_like;
            while let Some(&(j, d)) = chars.peek() {
                let continues = if numeric {
                    d.is_ascii_digit() || d == '.'
                } else {
                    is_word_char(d)
                };
                if !continues {
                    // `3abc`, `1.2.3-rc`: not a number after all, read on as a word.
                    if numeric && (d.is_alphanumeric() || d == '_') {
                        numeric = false;
                        continue;
                    }
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let text = &src[i..end.max(i + c.len_utf8())];
            out.push(match text {
                "true" => Tok::Bool(true),
                "false" => Tok::Bool(false),
                "in" => Tok::Op("in"),
                _ if numeric => match text.parse::<f64>() {
                    Ok(n) => Tok::Num(n),
                    Err(_) => Tok::Str(text.to_string()),
                },
                _ => Tok::Str(text.to_string()),
            });
        } else {
            let rest = &src[i..];
            let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(format!("unexpected character {c:?} at {i}"));
            };
            for _ in 0..op.len() {
                chars.next();
            }
            out.push(Tok::Op(op));
        }
    }
    Ok(out)
}

#[derive(Debug)]
enum Node {
    Lit(V),
    List(Vec<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    /// `first op1 n1 op2 n2 …` at one precedence level, evaluated left to right (kept flat so
    /// long chains do not nest deeply).
    Chain(Box<Node>, Vec<(&'static str, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
enum V {
    Num(f64),
    Str(String),
    Bool(bool),
    List(Vec<V>),
}

impl V {
    fn describe(&self) -> String {
        match self {
            V::Num(n) => format!("number {}", format_float(*n)),
            V::Str(s) => format!("string {s:?}"),
            V::Bool(b) => format!("boolean {b}"),
            V::List(l) => format!("list of {} values", l.len()),
        }
    }
}

/// Nesting limit, so a deeply nested condition cannot overflow the stack.
const MAX_DEPTH: usize = 200;

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
    /// Current nesting of parentheses and prefix operators.
    depth: usize,
}

impl Parser {
    fn peek_op(&self, ops: &[&'static str]) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some(Tok::Op(o)) if ops.contains(o) => Some(o),
            _ => None,
        }
    }

    fn binary(
        &mut self,
        ops: &[&'static str],
        next: fn(&mut Self) -> Result<Node, String>,
    ) -> Result<Node, String> {
        let first = next(self)?;
        let mut rest = Vec::new();
        while let Some(op) = self.peek_op(ops) {
            self.pos += 1;
            rest.push((op, next(self)?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Node::Chain(Box::new(first), rest)
        })
    }

    fn or(&mut self) -> Result<Node, String> {
        self.binary(&["||"], Self::and)
    }
    fn and(&mut self) -> Result<Node, String> {
        self.binary(&["&&"], Self::cmp)
    }
    fn cmp(&mut self) -> Result<Node, String> {
        self.binary(
            &["==", "!=", "<", "<=", ">", ">=", "=~", "!~", "in"],
            Self::add,
        )
    }
    fn add(&mut self) -> Result<Node, String> {
        self.binary(&["+", "-"], Self::mul)
    }
    fn mul(&mut self) -> Result<Node, String> {
        self.binary(&["*", "/", "%"], Self::pow)
    }
    fn pow(&mut self) -> Result<Node, String> {
        self.binary(&["**"], Self::unary)
    }

    fn unary(&mut self) -> Result<Node, String> {
        let Some(op) = self.peek_op(&["!", "-"]) else {
            return self.primary();
        };
        self.pos += 1;
        let inner = self.nested(Self::unary)?;
        Ok(if op == "!" {
            Node::Not(Box::new(inner))
        } else {
            Node::Neg(Box::new(inner))
        })
    }

    /// Run `f` one nesting level deeper, failing past `MAX_DEPTH`.
    fn nested(&mut self, f: fn(&mut Self) -> Result<Node, String>) -> Result<Node, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        let node = f(self);
        self.depth -= 1;
        node
    }

    fn primary(&mut self) -> Result<Node, String> {
        let Some(tok) = self.tokens.get(self.pos).cloned() else {
            return Err("unexpected end of condition".to_string());
        };
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Node::Lit(V::Num(n))),
            Tok::Str(s) => Ok(Node::Lit(V::Str(s))),
            Tok::Bool(b) => Ok(Node::Lit(V::Bool(b))),
            Tok::LParen => {
                let mut items = vec![self.nested(Self::or)?];
                while self.tokens.get(self.pos) == Some(&Tok::Comma) {
                    self.pos += 1;
                    items.push(self.nested(Self::or)?);
                }
                match self.tokens.get(self.pos) {
                    Some(Tok::RParen) => self.pos += 1,
                    Some(t) => return Err(format!("expected ')' but found {}", t.describe())),
                    None => return Err("missing ')'".to_string()),
                }
                Ok(if items.len() == 1 {
                    items.pop().map_or(Node::List(Vec::new()), |n| n)
                } else {
                    Node::List(items)
                })
            }
            other => Err(format!("unexpected {}", other.describe())),
        }
    }
}

fn eval(node: &Node) -> Result<V, String> {
    match node {
        Node::Lit(v) => Ok(v.clone()),
        Node::List(items) => Ok(V::List(items.iter().map(eval).collect::<Result<_, _>>()?)),
        Node::Not(n) => match eval(n)? {
            V::Bool(b) => Ok(V::Bool(!b)),
            v => Err(format!("'!' needs a boolean, got {}", v.describe())),
        },
        Node::Neg(n) => match eval(n)? {
            V::Num(x) => Ok(V::Num(-x)),
            v => Err(format!("'-' needs a number, got {}", v.describe())),
        },
        Node::Chain(first, rest) => {
            let mut acc = eval(first)?;
            for (op, node) in rest {
                acc = match *op {
                    "&&" | "||" => {
                        let V::Bool(b) = acc else {
                            return Err(format!("'{op}' needs booleans, got {}", acc.describe()));
                        };
                        if b == (*op == "||") {
                            continue; // short-circuit: decided without the right side
                        }
                        match eval(node)? {
                            V::Bool(b) => V::Bool(b),
                            v => {
                                return Err(format!("'{op}' needs booleans, got {}", v.describe()));
                            }
                        }
                    }
                    op => binary(op, acc, eval(node)?)?,
                };
            }
            Ok(acc)
        }
    }
}

fn text(v: &V) -> Option<String> {
    match v {
        V::Str(s) => Some(s.clone()),
        V::Num(n) => Some(format_float(*n)),
        _ => None,
    }
}

fn binary(op: &str, l: V, r: V) -> Result<V, String> {
    use V::*;
    let mismatch = |l: &V, r: &V| {
        format!(
            "'{op}' cannot compare {} with {}",
            l.describe(),
            r.describe()
        )
    };
    Ok(match (op, &l, &r) {
        ("==", _, _) => Bool(l == r),
        ("!=", _, _) => Bool(l != r),
        ("<" | "<=" | ">" | ">=", Num(a), Num(b)) => Bool(order(op, a.partial_cmp(b))),
        ("<" | "<=" | ">" | ">=", Str(a), Str(b)) => Bool(order(op, Some(a.cmp(b)))),
        ("<" | "<=" | ">" | ">=", _, _) => return Err(mismatch(&l, &r)),
        ("=~" | "!~", _, _) => {
            let (Some(s), Some(pattern)) = (text(&l), text(&r)) else {
                return Err(mismatch(&l, &r));
            };
            let re = Regex::new(&pattern)
                .map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))?;
            Bool(re.is_match(&s) == (op == "=~"))
        }
        ("in", _, List(items)) => Bool(items.contains(&l)),
        ("in", _, _) => Bool(l == r),
        ("+", Num(a), Num(b)) => Num(a + b),
        ("+", Str(_), _) | ("+", _, Str(_)) => match (text(&l), text(&r)) {
            (Some(a), Some(b)) => Str(a + &b),
            _ => {
                return Err(format!(
                    "'+' cannot add {} and {}",
                    l.describe(),
                    r.describe()
                ));
            }
        },
        ("-", Num(a), Num(b)) => Num(a - b),
        ("*", Num(a), Num(b)) => Num(a * b),
        ("/", Num(a), Num(b)) => Num(a / b),
        ("%", Num(a), Num(b)) => Num(a % b),
        ("**", Num(a), Num(b)) => Num(a.powf(*b)),
        _ => {
            return Err(format!(
                "'{op}' needs numbers, got {} and {}",
                l.describe(),
                r.describe()
            ));
        }
    })
}

fn order(op: &str, o: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    matches!(
        (op, o),
        ("<", Some(Less))
            | ("<=", Some(Less | Equal))
            | (">", Some(Greater))
            | (">=", Some(Greater | Equal))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(c: &str) -> bool {
        eval_when(c).unwrap_or_else(|e| panic!("{c}: {e}"))
    }

    fn err(c: &str) -> String {
        eval_when(c).expect_err(c).to_string()
    }

    #[test]
    fn coinflip_bare_words() {
        assert!(t("heads == heads"));
        assert!(!t("tails == heads"));
        assert!(t("tails != heads"));
        assert!(t("hello-world == hello-world"));
        assert!(t("Succeeded == 'Succeeded'"));
        assert!(t("[with space] == 'with space'"));
    }

    #[test]
    fn numbers_and_strings() {
        assert!(t("5 > 3"));
        assert!(t("10 > 9")); // numerically, not as text
        assert!(!t("5 < 3"));
        assert!(t("2.5 >= 2.5"));
        assert!(t("5 == 5.0"));
        assert!(!t("'5' == 5"));
        assert!(t("\"a\" == \"a\""));
        assert!(t("'a' < 'b'"));
        assert!(t("1 + 2 * 3 == 7"));
        assert!(t("(1 + 2) * 3 == 9"));
        assert!(t("2 ** 3 == 8"));
        assert!(t("7 % 4 == 3"));
        assert!(t("-1 < 0"));
        assert!(t("10 / 4 == 2.5"));
        assert!(t("'a' + 'b' == ab"));
        assert!(t("'a' + 1 == a1"));
        assert!(t("'it\\'s' == \"it's\""));
        assert!(t("v1.2.3 == 'v1.2.3'"));
        assert!(t("3abc == '3abc'"));
    }

    #[test]
    fn logic_regex_in() {
        assert!(t("true"));
        assert!(!t("false"));
        assert!(t("!false"));
        assert!(t("true && !false || false"));
        assert!(t("false || 1 < 2 && 2 < 3"));
        assert!(t("hello =~ 'hel.*'"));
        assert!(!t("hello =~ '^el'"));
        assert!(t("hello !~ '^x'"));
        assert!(t("123 =~ '^1'"));
        assert!(t("b in (a, b, c)"));
        assert!(!t("z in (a, b, c)"));
        assert!(t("2 in (1, 2)"));
        assert!(t("a in ('a')"));
        // short-circuit: the right side is not evaluated
        assert!(!t("false && (1 < 'a')"));
        assert!(t("true || (1 < 'a')"));
    }

    #[test]
    fn empty_is_true() {
        assert!(t(""));
        assert!(t("   "));
    }

    #[test]
    fn errors_are_actionable() {
        assert!(err("{{steps.a.outputs.result}} == x").contains("not resolved"));
        assert!(err("5").contains("expected a boolean result, got number 5"));
        assert!(err("1 < 'a'").contains("cannot compare number 1 with string \"a\""));
        assert!(err("a ==").contains("unexpected end"));
        assert!(err("(a == b").contains("missing ')'"));
        assert!(err("a == b)").contains("unexpected ')'"));
        assert!(err("'abc").contains("unterminated string"));
        assert!(err("a =~ '('").contains("invalid regular expression"));
        assert!(err("a == b @ c").contains("unexpected character '@'"));
        assert!(err("true && 1").contains("needs booleans"));
        assert!(err("!5").contains("'!' needs a boolean"));
        assert!(err("a - b").contains("needs numbers"));
        let e = eval_when("x ==").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid 'when' condition \"x ==\""),
            "{e}"
        );
    }

    #[test]
    fn no_panics_or_overflow() {
        let deep = format!("{}true{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(eval_when(&deep).is_err());
        let nots = format!("{}true", "!".repeat(100_000));
        assert!(eval_when(&nots).is_err());
        let ok = format!("{}true{}", "(".repeat(50), ")".repeat(50));
        assert!(t(&ok));
        for odd in [
            "(", ")", ",", "!", "-", "in", "a in", "((a,b)", "é == é", "'", "[", "==", "a b",
        ] {
            let _ = eval_when(odd);
        }
        let long = "a == a && ".repeat(100_000) + "true";
        assert!(t(&long));
    }
}
