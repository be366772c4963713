//! The SCIM filter language (RFC 7644 §3.4.2.2): filter text to a tree, and the tree back to text.
//!
//! Besides the RFC grammar the parser accepts the form Entra ID and others send,
//! `emails[type eq "work"].value eq "x"`. It is read as the value filter
//! `emails[type eq "work" and value eq "x"]`: one element must match both, which is what
//! the sender means, and the tree prints back as that RFC form.

use std::fmt;

use serde_json::{Number, Value, json};

use super::error::{ScimError, quoted};
use super::path::{AttrPath, is_attr_name};

/// The longest filter accepted, in characters; longer ones are refused before parsing.
pub const MAX_FILTER_CHARS: usize = 4096;

/// How deep `( )`, `not ( )` and `[ ]` may nest; it bounds the parser's recursion.
pub(crate) const MAX_FILTER_DEPTH: usize = 32;

/// An attribute operator comparing an attribute's value with a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `eq`: equal.
    Eq,
    /// `ne`: not equal.
    Ne,
    /// `co`: the value contains the literal.
    Co,
    /// `sw`: the value starts with the literal.
    Sw,
    /// `ew`: the value ends with the literal.
    Ew,
    /// `gt`: greater than.
    Gt,
    /// `lt`: less than.
    Lt,
    /// `ge`: greater than or equal.
    Ge,
    /// `le`: less than or equal.
    Le,
}

impl CompareOp {
    const ALL: [Self; 9] = [Self::Eq, Self::Ne, Self::Co, Self::Sw, Self::Ew, Self::Gt, Self::Lt, Self::Ge, Self::Le];

    /// The operator's keyword in lowercase, as printed and as handed to mapping scripts.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Co => "co",
            Self::Sw => "sw",
            Self::Ew => "ew",
            Self::Gt => "gt",
            Self::Lt => "lt",
            Self::Ge => "ge",
            Self::Le => "le",
        }
    }

    /// The operator a keyword names, in any case (`eq`, `EQ`); `None` for any other word.
    pub(crate) fn from_keyword(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed filter. Paths keep the case they were written in; keywords do not survive
/// parsing, so `USERNAME EQ "x"` and `USERNAME eq "x"` give the same tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `path op value`; `value` is a JSON literal: string, number, boolean or null.
    Compare {
        /// The attribute compared.
        path: AttrPath,
        /// The operator.
        op: CompareOp,
        /// The literal compared with.
        value: Value,
    },
    /// `path pr`: the attribute has a non-empty value.
    Present {
        /// The attribute that must have a value.
        path: AttrPath,
    },
    /// Both filters match.
    And(Box<Filter>, Box<Filter>),
    /// Either filter matches.
    Or(Box<Filter>, Box<Filter>),
    /// `not (filter)`.
    Not(Box<Filter>),
    /// `path[filter]`: one value of the complex attribute `path` (which has no sub-attribute)
    /// matches `filter`, whose paths are sub-attribute names of `path` without prefix.
    ValuePath {
        /// The complex attribute whose values are tried.
        path: AttrPath,
        /// The filter one of its values must match.
        filter: Box<Filter>,
    },
}

impl Filter {
    /// The attribute and value when the whole filter is a single `attr eq value`, the
    /// lookup a mapping script can most often hand to the legacy API as it is.
    pub(crate) fn as_simple_eq(&self) -> Option<(&AttrPath, &Value)> {
        match self {
            Self::Compare { path, op: CompareOp::Eq, value } => Some((path, value)),
            _ => None,
        }
    }

    /// Whether any path of the filter names the attribute `name` (ignoring case), at the top
    /// level or inside a `[ ]`, whatever its schema URN: what a listing must build before it
    /// filters.
    pub(crate) fn names_attribute(&self, name: &str) -> bool {
        match self {
            Self::Compare { path, .. } | Self::Present { path } => path.name.eq_ignore_ascii_case(name),
            Self::And(a, b) | Self::Or(a, b) => a.names_attribute(name) || b.names_attribute(name),
            Self::Not(inner) => inner.names_attribute(name),
            Self::ValuePath { path, filter } => path.name.eq_ignore_ascii_case(name) || filter.names_attribute(name),
        }
    }

    /// The filters of the top-level `and` chain, left to right; the filter itself when it is
    /// no `and`. A resource matches when it matches every one of them.
    pub(crate) fn conjuncts(&self) -> Vec<&Filter> {
        self.chain(true)
    }

    /// The filters of the top-level `or` chain, left to right; the filter itself when it is
    /// no `or`. A resource matches when it matches any one of them.
    pub(crate) fn disjuncts(&self) -> Vec<&Filter> {
        self.chain(false)
    }

    /// The tree as JSON for mapping scripts, e.g.
    /// `{"op":"and","filters":[{"op":"eq","attribute":"userName","value":"bjensen"},{"op":"pr","attribute":"title"}]}`.
    ///
    /// Shapes: `{"op","attribute","value"}` for comparisons, `{"op":"pr","attribute"}`,
    /// `{"op":"and"|"or","filters":[…]}` with chains of the same operator flattened,
    /// `{"op":"not","filter"}` and `{"op":"valuePath","attribute","filter"}`.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Compare { path, op, value } => {
                json!({ "op": op.as_str(), "attribute": path.to_string(), "value": value })
            }
            Self::Present { path } => json!({ "op": "pr", "attribute": path.to_string() }),
            Self::And(..) | Self::Or(..) => {
                let is_and = matches!(self, Self::And(..));
                let filters: Vec<Value> = self.chain(is_and).into_iter().map(Self::to_json).collect();
                json!({ "op": if is_and { "and" } else { "or" }, "filters": filters })
            }
            Self::Not(inner) => json!({ "op": "not", "filter": inner.to_json() }),
            Self::ValuePath { path, filter } => {
                json!({ "op": "valuePath", "attribute": path.to_string(), "filter": filter.to_json() })
            }
        }
    }

    /// The operands of a chain of `and` (or of `or`), however it is bracketed, left to right.
    ///
    /// Chains are walked with a work list, not recursion: a 4096-character filter can chain
    /// 500 terms, and everything that walks the tree goes through here or `left_spine`.
    fn chain(&self, is_and: bool) -> Vec<&Filter> {
        let mut out = Vec::new();
        let mut pending = vec![self];
        while let Some(filter) = pending.pop() {
            match (filter, is_and) {
                (Self::And(a, b), true) | (Self::Or(a, b), false) => {
                    pending.push(b);
                    pending.push(a);
                }
                _ => out.push(filter),
            }
        }
        out
    }

    /// Splits a left-associated chain `((a op b) op c)` into `a` and `[b, c]`, keeping the
    /// bracketing the printer must reproduce.
    fn left_spine(&self, is_and: bool) -> (&Filter, Vec<&Filter>) {
        let mut rights = Vec::new();
        let mut current = self;
        while let (Self::And(left, right), true) | (Self::Or(left, right), false) = (current, is_and) {
            rights.push(&**right);
            current = left;
        }
        rights.reverse();
        (current, rights)
    }
}

/// Prints canonical filter text that parses back to the same tree: lowercase keywords,
/// JSON literals, and parentheses only where precedence (`not` > `and` > `or`, each
/// left-associative) needs them.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Self::Present { path } => write!(f, "{path} pr"),
            Self::And(..) | Self::Or(..) => {
                let is_and = matches!(self, Self::And(..));
                let (first, rest) = self.left_spine(is_and);
                write_operand(f, first, is_and && matches!(first, Self::Or(..)))?;
                for operand in rest {
                    f.write_str(if is_and { " and " } else { " or " })?;
                    let grouped = matches!(operand, Self::Or(..)) || (is_and && matches!(operand, Self::And(..)));
                    write_operand(f, operand, grouped)?;
                }
                Ok(())
            }
            Self::Not(inner) => write!(f, "not ({inner})"),
            Self::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, filter: &Filter, grouped: bool) -> fmt::Result {
    if grouped { write!(f, "({filter})") } else { write!(f, "{filter}") }
}

/// Parses a filter, as given in `filter=` or a `.search` body, into its tree.
///
/// Keywords and attribute names are case-insensitive. Every failure is
/// `ScimError::InvalidFilter` with the 0-based character offset of the problem; input longer
/// than [`MAX_FILTER_CHARS`] or nested deeper than [`MAX_FILTER_DEPTH`] is refused the same
/// way. Attribute names are not checked against a schema here (see `evaluate`).
pub fn parse_filter(text: &str) -> Result<Filter, ScimError> {
    let chars: Vec<char> = text.chars().take(MAX_FILTER_CHARS + 1).collect();
    if chars.len() > MAX_FILTER_CHARS {
        return Err(invalid(MAX_FILTER_CHARS, format!("filter is longer than {MAX_FILTER_CHARS} characters")));
    }
    let mut parser =
        Parser { tokens: tokenize(&chars)?, next: 0, end: Token { tok: Tok::End, pos: chars.len() }, depth: 0 };
    let filter = parser.parse_or(false)?;
    let after = parser.bump();
    match after.tok {
        Tok::End => Ok(filter),
        Tok::RParen => Err(invalid(after.pos, "\")\" without a matching \"(\"")),
        Tok::RBracket => Err(invalid(after.pos, "\"]\" without a matching \"[\"")),
        other => Err(invalid(
            after.pos,
            format!("expected \"and\", \"or\" or the end of the filter, found {}", describe(&other)),
        )),
    }
}

fn invalid(position: usize, detail: impl Into<String>) -> ScimError {
    ScimError::InvalidFilter { position, detail: detail.into() }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// An attribute path or a keyword; which one is the parser's decision.
    Word(String),
    Str(String),
    Num(Number),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Character offset of the token's first character.
    pos: usize,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::LBracket => "\"[\"".into(),
        Tok::RBracket => "\"]\"".into(),
        Tok::Word(word) => quoted(word),
        Tok::Str(_) => "a string".into(),
        Tok::Num(_) => "a number".into(),
        Tok::End => "the end of the filter".into(),
    }
}

/// Characters of attribute paths and keywords; `:` and `.` keep a URN-qualified path one word.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$' | ':' | '.')
}

fn tokenize(chars: &[char]) -> Result<Vec<Token>, ScimError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let pos = i;
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' | ')' | '[' | ']' => {
                i += 1;
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    _ => Tok::RBracket,
                }
            }
            '"' => {
                let (text, next) = lex_string(chars, i)?;
                i = next;
                Tok::Str(text)
            }
            c if c.is_ascii_digit() || c == '-' => {
                i = scan(chars, i, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'));
                let text: String = chars.get(pos..i).unwrap_or_default().iter().collect();
                let number =
                    json_number(&text).ok_or_else(|| invalid(pos, format!("{} is not a number", quoted(&text))))?;
                Tok::Num(number)
            }
            c if is_word_char(c) => {
                i = scan(chars, i, is_word_char);
                Tok::Word(chars.get(pos..i).unwrap_or_default().iter().collect())
            }
            other => return Err(invalid(pos, format!("unexpected character {other:?}"))),
        };
        tokens.push(Token { tok, pos });
    }
    Ok(tokens)
}

/// The offset of the first character from `start` on that is not `accept`ed.
fn scan(chars: &[char], start: usize, accept: impl Fn(char) -> bool) -> usize {
    start + chars.iter().skip(start).take_while(|&&c| accept(c)).count()
}

/// A JSON number (`-? int frac? exp?`): integers exactly as i64 or u64, everything else
/// as the nearest f64 (Rust's parser rounds correctly, so printed numbers read back equal).
fn json_number(text: &str) -> Option<Number> {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let int = digits(unsigned);
    let mut rest = unsigned.get(int..)?;
    if int == 0 || (int > 1 && unsigned.starts_with('0')) {
        return None;
    }
    let integral = rest.is_empty();
    if let Some(frac) = rest.strip_prefix('.') {
        let n = digits(frac);
        rest = frac.get(n..).filter(|_| n > 0)?;
    }
    if let Some(exp) = rest.strip_prefix(['e', 'E']) {
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        let n = digits(exp);
        rest = exp.get(n..).filter(|_| n > 0)?;
    }
    if !rest.is_empty() {
        return None;
    }
    if integral {
        if let Ok(i) = text.parse::<i64>() {
            return Some(Number::from(i));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Some(Number::from(u));
        }
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

/// Reads the JSON string starting at the quote at `start`; returns its value and the offset
/// after the closing quote. Raw control characters are let through, as lenient IdPs expect.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), ScimError> {
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err(invalid(start, "unterminated string: expected a closing '\"'")),
            Some('"') => return Ok((out, i + 1)),
            Some('\\') => {
                let escaped = match chars.get(i + 1) {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('/') => '/',
                    Some('b') => '\u{8}',
                    Some('f') => '\u{c}',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some('u') => {
                        let (c, next) = lex_unicode_escape(chars, i)?;
                        out.push(c);
                        i = next;
                        continue;
                    }
                    _ => {
                        return Err(invalid(
                            i,
                            "invalid escape: expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX",
                        ));
                    }
                };
                out.push(escaped);
                i += 2;
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// Reads `\uXXXX` at `start` (a UTF-16 surrogate pair takes two escapes).
fn lex_unicode_escape(chars: &[char], start: usize) -> Result<(char, usize), ScimError> {
    let bad = || invalid(start, "invalid unicode escape: expected \\u and 4 hex digits naming a character");
    let unit = |at: usize| -> Option<u32> {
        if chars.get(at) != Some(&'\\') || chars.get(at + 1) != Some(&'u') {
            return None;
        }
        let hex: String = chars.get(at + 2..at + 6)?.iter().collect();
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(&hex, 16).ok()
    };
    let high = unit(start).ok_or_else(bad)?;
    if !(0xD800..0xDC00).contains(&high) {
        return char::from_u32(high).map(|c| (c, start + 6)).ok_or_else(bad);
    }
    let low = unit(start + 6).filter(|low| (0xDC00..0xE000).contains(low)).ok_or_else(bad)?;
    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).map(|c| (c, start + 12)).ok_or_else(bad)
}

/// Recursive descent over the tokens: `or` → `and` → unary (`not`, `( )`, attribute expression).
struct Parser {
    tokens: Vec<Token>,
    next: usize,
    end: Token,
    /// Current nesting of `( )`, `not ( )` and `[ ]`.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.next).unwrap_or(&self.end)
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        self.next = (self.next + 1).min(self.tokens.len());
        token
    }

    fn peek_is(&self, keyword: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(word) if word.eq_ignore_ascii_case(keyword))
    }

    /// `in_brackets` is true inside `attr[ … ]`, where paths are bare sub-attribute names.
    fn parse_or(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let mut left = self.parse_and(in_brackets)?;
        while self.peek_is("or") {
            self.bump();
            let right = self.parse_and(in_brackets)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let mut left = self.parse_unary(in_brackets)?;
        while self.peek_is("and") {
            self.bump();
            let right = self.parse_unary(in_brackets)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_unary(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let token = self.bump();
        match token.tok {
            Tok::LParen => self.group(token.pos, in_brackets, Tok::RParen),
            // `not` followed by an operator is an attribute that happens to be called "not"
            Tok::Word(word) if word.eq_ignore_ascii_case("not") && !self.peek_is_operator() => {
                let open = self.bump();
                if open.tok != Tok::LParen {
                    return Err(invalid(
                        open.pos,
                        format!("expected \"(\" after \"not\", found {}", describe(&open.tok)),
                    ));
                }
                Ok(Filter::Not(Box::new(self.group(open.pos, in_brackets, Tok::RParen)?)))
            }
            Tok::Word(word) => self.attribute_expression(&word, token.pos, in_brackets),
            other => Err(invalid(
                token.pos,
                format!("expected an attribute path, \"(\" or \"not\", found {}", describe(&other)),
            )),
        }
    }

    fn peek_is_operator(&self) -> bool {
        match &self.peek().tok {
            Tok::Word(word) => word.eq_ignore_ascii_case("pr") || CompareOp::from_keyword(word).is_some(),
            _ => false,
        }
    }

    /// Parses what follows an opening `(` or `[` at `open`, up to and including `close`.
    fn group(&mut self, open: usize, in_brackets: bool, close: Tok) -> Result<Filter, ScimError> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(invalid(open, format!("filter nests deeper than {MAX_FILTER_DEPTH} levels")));
        }
        let inner = self.parse_or(in_brackets)?;
        let after = self.bump();
        if after.tok != close {
            return Err(invalid(
                after.pos,
                format!(
                    "expected {} to close the {} at {open}, found {}",
                    describe(&close),
                    opener(&close),
                    describe(&after.tok)
                ),
            ));
        }
        self.depth -= 1;
        Ok(inner)
    }

    /// `path pr`, `path op value`, `path[filter]` or `path[filter].sub op value`.
    fn attribute_expression(&mut self, word: &str, pos: usize, in_brackets: bool) -> Result<Filter, ScimError> {
        let path = parse_path(word, pos, in_brackets)?;
        if self.peek().tok != Tok::LBracket {
            return self.comparison(path, word);
        }
        let open = self.bump().pos;
        if in_brackets {
            return Err(invalid(open, "a \"[ ]\" filter cannot be nested inside another"));
        }
        if path.sub.is_some() {
            return Err(invalid(
                open,
                format!("{} names a sub-attribute; \"[ ]\" filters a complex attribute", quoted(word)),
            ));
        }
        let mut inner = self.group(open, true, Tok::RBracket)?;
        // the IdP form `attr[filter].sub op value`: the same element must match both
        if let Tok::Word(next) = &self.peek().tok
            && let Some(sub) = next.strip_prefix('.')
        {
            let (sub, sub_pos) = (sub.to_owned(), self.peek().pos + 1);
            let label = format!("{word}[…]{next}");
            self.bump();
            if !is_attr_name(&sub) {
                return Err(invalid(
                    sub_pos,
                    format!("expected a sub-attribute name after \"]\", found {}", quoted(&sub)),
                ));
            }
            let last = self.comparison(AttrPath::simple(sub), &label)?;
            inner = Filter::And(Box::new(inner), Box::new(last));
        }
        Ok(Filter::ValuePath { path, filter: Box::new(inner) })
    }

    /// The operator and value after `path` (written as `label`).
    fn comparison(&mut self, path: AttrPath, label: &str) -> Result<Filter, ScimError> {
        let token = self.bump();
        let op = match &token.tok {
            Tok::Word(word) if word.eq_ignore_ascii_case("pr") => return Ok(Filter::Present { path }),
            Tok::Word(word) => CompareOp::from_keyword(word),
            _ => None,
        };
        let Some(op) = op else {
            return Err(invalid(
                token.pos,
                format!("expected a comparison operator after {}, found {}", quoted(label), describe(&token.tok)),
            ));
        };
        let token = self.bump();
        let value = match token.tok {
            Tok::Str(text) => Value::String(text),
            Tok::Num(number) => Value::Number(number),
            Tok::Word(word) if word.eq_ignore_ascii_case("true") => Value::Bool(true),
            Tok::Word(word) if word.eq_ignore_ascii_case("false") => Value::Bool(false),
            Tok::Word(word) if word.eq_ignore_ascii_case("null") => Value::Null,
            other => {
                return Err(invalid(
                    token.pos,
                    format!(
                        "expected a value (string, number, true, false or null) after \"{op}\", found {}",
                        describe(&other)
                    ),
                ));
            }
        };
        if value.is_null() && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Err(invalid(token.pos, format!("null can only be compared with eq or ne, not {op}")));
        }
        Ok(Filter::Compare { path, op, value })
    }
}

fn opener(close: &Tok) -> &'static str {
    if *close == Tok::RBracket { "\"[\"" } else { "\"(\"" }
}

fn parse_path(word: &str, pos: usize, in_brackets: bool) -> Result<AttrPath, ScimError> {
    let path = AttrPath::parse(word).map_err(|err| match err {
        ScimError::InvalidPath { detail, .. } => invalid(pos, format!("expected an attribute path: {detail}")),
        other => invalid(pos, other.to_string()),
    })?;
    if in_brackets && (path.urn.is_some() || path.sub.is_some()) {
        return Err(invalid(pos, format!("expected a bare sub-attribute name inside \"[ ]\", found {}", quoted(word))));
    }
    Ok(path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The filter examples of RFC 7644 §3.4.2.2, in the RFC's order.
    pub(crate) const RFC_EXAMPLES: [&str; 17] = [
        r#"userName eq "bjensen""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"title pr"#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    ];

    fn parse(text: &str) -> Filter {
        parse_filter(text).unwrap_or_else(|e| panic!("{text:?} rejected: {e}"))
    }

    fn path(text: &str) -> AttrPath {
        AttrPath::parse(text).unwrap()
    }

    fn cmp(p: &str, op: CompareOp, value: Value) -> Filter {
        Filter::Compare { path: path(p), op, value }
    }

    fn pr(p: &str) -> Filter {
        Filter::Present { path: path(p) }
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }

    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }

    fn not(a: Filter) -> Filter {
        Filter::Not(Box::new(a))
    }

    fn vp(p: &str, inner: Filter) -> Filter {
        Filter::ValuePath { path: path(p), filter: Box::new(inner) }
    }

    fn assert_round_trip(filter: &Filter) {
        let text = filter.to_string();
        let back = parse_filter(&text).unwrap_or_else(|e| panic!("printed {text:?} does not parse: {e}\n{filter:?}"));
        assert_eq!(&back, filter, "{text}");
    }

    #[test]
    fn the_rfc_examples_parse_print_and_parse_back() {
        for text in RFC_EXAMPLES {
            let filter = parse(text);
            assert_round_trip(&filter);
            // the RFC writes them canonically, except for the redundant parentheses of example 15
            if !text.contains("(emails.type") {
                assert_eq!(filter.to_string(), text);
            }
        }
    }

    #[test]
    fn the_rfc_examples_give_the_expected_trees() {
        let s = |t: &str| Value::String(t.into());
        let cases = [
            (RFC_EXAMPLES[1], cmp("name.familyName", CompareOp::Co, s("O'Malley"))),
            (RFC_EXAMPLES[3], cmp("urn:ietf:params:scim:schemas:core:2.0:User:userName", CompareOp::Sw, s("J"))),
            (RFC_EXAMPLES[4], pr("title")),
            (RFC_EXAMPLES[10], or(pr("title"), cmp("userType", CompareOp::Eq, s("Intern")))),
            (
                RFC_EXAMPLES[13],
                and(
                    cmp("userType", CompareOp::Ne, s("Employee")),
                    not(or(
                        cmp("emails", CompareOp::Co, s("example.com")),
                        cmp("emails.value", CompareOp::Co, s("example.org")),
                    )),
                ),
            ),
            (
                RFC_EXAMPLES[14],
                and(cmp("userType", CompareOp::Eq, s("Employee")), cmp("emails.type", CompareOp::Eq, s("work"))),
            ),
            (
                RFC_EXAMPLES[16],
                or(
                    vp(
                        "emails",
                        and(cmp("type", CompareOp::Eq, s("work")), cmp("value", CompareOp::Co, s("@example.com"))),
                    ),
                    vp("ims", and(cmp("type", CompareOp::Eq, s("xmpp")), cmp("value", CompareOp::Co, s("@foo.com")))),
                ),
            ),
        ];
        for (text, tree) in cases {
            assert_eq!(parse(text), tree, "{text}");
        }
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let one = || Value::from(1);
        let (a, b, c) =
            (|| cmp("a", CompareOp::Eq, one()), || cmp("b", CompareOp::Eq, one()), || cmp("c", CompareOp::Eq, one()));
        let cases = [
            ("a eq 1 or b eq 1 and c eq 1", or(a(), and(b(), c()))),
            ("a eq 1 and b eq 1 or c eq 1", or(and(a(), b()), c())),
            ("(a eq 1 or b eq 1) and c eq 1", and(or(a(), b()), c())),
            ("a eq 1 and b eq 1 and c eq 1", and(and(a(), b()), c())),
            ("a eq 1 and (b eq 1 and c eq 1)", and(a(), and(b(), c()))),
            ("a eq 1 or (b eq 1 or c eq 1)", or(a(), or(b(), c()))),
            ("not (a eq 1) and b eq 1", and(not(a()), b())),
            ("not(a eq 1 or b eq 1)", not(or(a(), b()))),
            ("((a eq 1))", a()),
        ];
        for (text, tree) in cases {
            assert_eq!(parse(text), tree, "{text}");
            assert_round_trip(&tree);
        }
    }

    #[test]
    fn prints_parentheses_only_where_needed() {
        let cases = [
            ("a pr or b pr and c pr", "a pr or b pr and c pr"),
            ("(a pr or b pr) and c pr", "(a pr or b pr) and c pr"),
            ("(a pr and b pr) or c pr", "a pr and b pr or c pr"),
            ("a pr and (b pr and c pr)", "a pr and (b pr and c pr)"),
            ("NOT ((a pr))", "not (a pr)"),
            ("emails[(type eq \"a\")]", "emails[type eq \"a\"]"),
            ("x eq \"tab\\there \\\"q\\\" \\u00e9\\ud83d\\ude00\"", "x eq \"tab\\there \\\"q\\\" é😀\""),
        ];
        for (text, printed) in cases {
            assert_eq!(parse(text).to_string(), printed, "{text}");
        }
    }

    #[test]
    fn keywords_and_literals_are_case_insensitive() {
        let tree = parse(r#"USERNAME EQ "x" AND active Eq TRUE Or Title PR"#);
        assert_eq!(
            tree,
            or(and(cmp("USERNAME", CompareOp::Eq, "x".into()), cmp("active", CompareOp::Eq, true.into())), pr("Title"))
        );
        assert_eq!(parse("a ne NULL"), cmp("a", CompareOp::Ne, Value::Null));
        assert_eq!(parse("a eq False"), cmp("a", CompareOp::Eq, false.into()));
        assert_eq!(parse("NOT (a pr)"), not(pr("a")));
    }

    #[test]
    fn reads_json_literals() {
        let cases: [(&str, Value); 13] = [
            (r#"a eq "a\"b\\c\/d\u00e9\n""#, "a\"b\\c/dé\n".into()),
            (r#"a eq "\ud83d\ude00""#, "😀".into()),
            (r#"a eq "héllo wörld ✓""#, "héllo wörld ✓".into()),
            ("a eq 42", 42.into()),
            ("a eq -7", (-7).into()),
            ("a eq 0", 0.into()),
            ("a eq 1.5", 1.5.into()),
            ("a eq -1.5e3", (-1500.0).into()),
            ("a eq 2E-2", 0.02.into()),
            ("a eq 18446744073709551615", u64::MAX.into()),
            ("a eq -9223372036854775808", i64::MIN.into()),
            ("a eq 18446744073709551616", 18446744073709551616.0.into()),
            ("a eq 6.438699999999999e-21", 6.438699999999999e-21.into()),
        ];
        for (text, value) in cases {
            assert_eq!(parse(text), cmp("a", CompareOp::Eq, value), "{text}");
        }
    }

    #[test]
    fn reads_paths_with_urns_and_sub_attributes() {
        let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let tree = parse(&format!(r#"{ent}:department eq "x" and {ent}:manager.value pr"#));
        let Filter::And(a, b) = tree else { panic!("not an and") };
        let Filter::Compare { path: department, .. } = *a else { panic!("not a comparison") };
        assert_eq!(department.urn.as_deref(), Some(ent));
        assert_eq!(department.name, "department");
        assert_eq!(
            *b,
            Filter::Present {
                path: AttrPath { urn: Some(ent.into()), name: "manager".into(), sub: Some("value".into()) }
            }
        );
        assert_eq!(
            parse(&format!(r#"{ent}:manager[value eq "m"]"#)).to_string(),
            format!(r#"{ent}:manager[value eq "m"]"#)
        );
    }

    #[test]
    fn the_idp_form_is_a_value_filter_on_one_element() {
        let work = cmp("type", CompareOp::Eq, "work".into());
        let cases = [
            (
                r#"emails[type eq "work"].value eq "x""#,
                vp("emails", and(work.clone(), cmp("value", CompareOp::Eq, "x".into()))),
            ),
            (r#"emails[type eq "work"] .value pr"#, vp("emails", and(work.clone(), pr("value")))),
            (
                r#"emails[type eq "work" or type eq "home"].value eq "x" and active eq true"#,
                and(
                    vp(
                        "emails",
                        and(
                            or(work.clone(), cmp("type", CompareOp::Eq, "home".into())),
                            cmp("value", CompareOp::Eq, "x".into()),
                        ),
                    ),
                    cmp("active", CompareOp::Eq, true.into()),
                ),
            ),
        ];
        for (text, tree) in cases {
            assert_eq!(parse(text), tree, "{text}");
            assert_round_trip(&tree);
        }
        assert_eq!(
            parse(r#"emails[type eq "work"].value eq "x""#).to_string(),
            r#"emails[type eq "work" and value eq "x"]"#
        );
    }

    #[test]
    fn bad_filters_say_where_and_what() {
        let long = format!("userName eq \"{}\"", "a".repeat(5000));
        let deep = format!("{}a pr{}", "(".repeat(100), ")".repeat(100));
        let cases: Vec<(&str, usize, &str)> = vec![
            ("userName eq", 11, "expected a value"),
            (r#"userName xx "a""#, 9, r#"expected a comparison operator after "userName""#),
            (r#"userName"#, 8, r#"expected a comparison operator after "userName", found the end"#),
            (r#"(userName eq "a""#, 16, r#"expected ")" to close the "(" at 0"#),
            (r#"userName eq "unterminated"#, 12, "unterminated string"),
            (r#"emails[type eq "a""#, 18, r#"expected "]" to close the "[" at 6"#),
            (r#"not userName eq "a""#, 4, r#"expected "(" after "not""#),
            (r#"not"#, 3, r#"expected "(" after "not""#),
            (&long, MAX_FILTER_CHARS, "longer than 4096"),
            (&deep, 32, "deeper than 32"),
            ("", 0, "expected an attribute path"),
            ("   ", 3, "expected an attribute path"),
            (r#"userName eq "a" and"#, 19, "expected an attribute path"),
            (r#"userName eq "a" userType eq "b""#, 16, r#"expected "and", "or" or the end"#),
            (r#"userName eq "a")"#, 15, r#"")" without a matching "(""#),
            (r#"userName eq bjensen"#, 12, "expected a value"),
            (r#"userName gt null"#, 12, "null can only be compared with eq or ne"),
            (r#"userName eq "\x""#, 13, "invalid escape"),
            (r#"userName eq "\ud83d""#, 13, "invalid unicode escape"),
            (r#"userName eq "\u12""#, 13, "invalid unicode escape"),
            ("loginCount eq 1.2.3", 14, "is not a number"),
            ("loginCount eq -", 14, "is not a number"),
            ("loginCount eq 01", 14, "is not a number"),
            ("loginCount eq 1.", 14, "is not a number"),
            ("loginCount eq 1e", 14, "is not a number"),
            ("loginCount eq 1e400", 14, "is not a number"),
            ("loginCount eq 0x10", 14, "is not a number"),
            ("loginCount eq -inf", 14, "is not a number"),
            ("üser eq 1", 0, "unexpected character 'ü'"),
            (r#"userName eq "a" && x pr"#, 16, "unexpected character '&'"),
            ("name.given.name pr", 0, "expected an attribute path"),
            ("1abc pr", 0, "is not a number"),
            (r#"emails[type[value eq 1]]"#, 11, "cannot be nested"),
            (r#"name.givenName[value eq "a"]"#, 14, "names a sub-attribute"),
            (r#"emails[name.givenName eq "a"]"#, 7, "bare sub-attribute name"),
            (r#"emails[type eq "work"].value"#, 28, "expected a comparison operator"),
            (r#"emails[type eq "work"].1x eq "a""#, 23, "expected a sub-attribute name"),
            (r#"emails[type eq "work")"#, 21, r#"expected "]""#),
            (r#"(a pr]"#, 5, r#"expected ")""#),
            ("a pr ]", 5, r#""]" without a matching "[""#),
            ("eq \"x\"", 3, "expected a comparison operator after \"eq\""),
            ("a eq \"x\" or or", 14, "expected a comparison operator after \"or\""),
        ];
        for (text, position, detail) in cases {
            match parse_filter(text) {
                Err(ScimError::InvalidFilter { position: at, detail: got }) => {
                    assert_eq!(at, position, "{text:.60}: {got}");
                    assert!(got.contains(detail), "{text:.60}: {got:?} lacks {detail:?}");
                    assert!(got.chars().next().is_some_and(|c| !c.is_uppercase()) && !got.ends_with('.'), "{got}");
                }
                other => panic!("{text:.60}: {other:?}"),
            }
        }
    }

    #[test]
    fn nesting_up_to_the_limit_is_fine() {
        let deep = format!("{}a pr{}", "(".repeat(MAX_FILTER_DEPTH), ")".repeat(MAX_FILTER_DEPTH));
        assert_eq!(parse(&deep), pr("a"));
        let nots = format!("{}a pr{}", "not (".repeat(MAX_FILTER_DEPTH), ")".repeat(MAX_FILTER_DEPTH));
        assert_round_trip(&parse(&nots));
        let long_chain = vec!["a pr"; 400].join(" and ");
        assert_eq!(parse(&long_chain).conjuncts().len(), 400);
        let exactly_max = format!("a eq \"{}\"", "é".repeat(MAX_FILTER_CHARS - 7));
        assert_eq!(exactly_max.chars().count(), MAX_FILTER_CHARS);
        assert!(parse_filter(&exactly_max).is_ok());
    }

    #[test]
    fn an_attribute_may_share_a_keyword_name() {
        assert_eq!(parse("not pr"), pr("not"));
        assert_eq!(parse("and eq 1 and or pr"), and(cmp("and", CompareOp::Eq, 1.into()), pr("or")));
        assert_round_trip(&parse("not (not eq true)"));
    }

    #[test]
    fn names_attribute_finds_a_name_anywhere_in_the_tree() {
        let cases = [
            ("meta.version eq \"W/\\\"1\\\"\"", true),
            ("userName co \"42\"", false),
            ("userName co \"42\" or not (META.lastModified gt \"2024-01-01T00:00:00Z\")", true),
            ("urn:ietf:params:scim:schemas:core:2.0:User:meta.created pr", true),
            ("emails[type eq \"work\" and value co \"meta\"]", false),
            ("userName eq \"meta\"", false),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_filter(text).unwrap().names_attribute("meta"), expected, "{text}");
        }
    }

    #[test]
    fn to_json_gives_scripts_a_flat_tree() {
        let cases = [
            (r#"userName eq "bjensen""#, json!({"op": "eq", "attribute": "userName", "value": "bjensen"})),
            ("title pr", json!({"op": "pr", "attribute": "title"})),
            (
                "a pr and (b pr and c pr) and d gt 1.5",
                json!({"op": "and", "filters": [
                    {"op": "pr", "attribute": "a"}, {"op": "pr", "attribute": "b"},
                    {"op": "pr", "attribute": "c"}, {"op": "gt", "attribute": "d", "value": 1.5},
                ]}),
            ),
            (
                "a pr or b pr and c pr or d eq null",
                json!({"op": "or", "filters": [
                    {"op": "pr", "attribute": "a"},
                    {"op": "and", "filters": [{"op": "pr", "attribute": "b"}, {"op": "pr", "attribute": "c"}]},
                    {"op": "eq", "attribute": "d", "value": null},
                ]}),
            ),
            (
                r#"NOT (name.familyName SW "J")"#,
                json!({"op": "not", "filter": {"op": "sw", "attribute": "name.familyName", "value": "J"}}),
            ),
            (
                r#"emails[type eq "work"].value eq "x""#,
                json!({"op": "valuePath", "attribute": "emails", "filter": {"op": "and", "filters": [
                    {"op": "eq", "attribute": "type", "value": "work"},
                    {"op": "eq", "attribute": "value", "value": "x"},
                ]}}),
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value ne \"m\"",
                json!({"op": "ne", "attribute": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m"}),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).to_json(), expected, "{text}");
        }
    }

    #[test]
    fn simple_eq_and_conjuncts() {
        let simple = parse(r#"userName eq "bjensen""#);
        let (path, value) = simple.as_simple_eq().unwrap();
        assert_eq!((path.name.as_str(), value), ("userName", &json!("bjensen")));
        for text in [r#"userName ne "b""#, "title pr", r#"userName eq "a" and title pr"#, r#"not (userName eq "a")"#] {
            assert!(parse(text).as_simple_eq().is_none(), "{text}");
        }

        let tree = parse(r#"a eq 1 and (b pr and c pr) and (d pr or e pr)"#);
        let conjuncts: Vec<String> = tree.conjuncts().iter().map(ToString::to_string).collect();
        assert_eq!(conjuncts, ["a eq 1", "b pr", "c pr", "d pr or e pr"]);
        assert_eq!(parse("a pr or b pr").conjuncts(), [&parse("a pr or b pr")]);
        let disjuncts: Vec<String> =
            parse("a pr or (b pr or c pr) and d pr or e pr").disjuncts().iter().map(ToString::to_string).collect();
        assert_eq!(disjuncts, ["a pr", "(b pr or c pr) and d pr", "e pr"]);
    }

    /// xorshift64*: a small seeded generator, so failures reproduce.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const NAMES: [&str; 10] = ["userName", "name", "emails", "x", "A-b_c9", "$ref", "and", "or", "pr", "true"];

    fn random_path(rng: &mut Rng, bare: bool) -> AttrPath {
        let name = (*rng.pick(&NAMES)).to_owned();
        if bare {
            return AttrPath::simple(name);
        }
        let urn = (rng.below(5) == 0)
            .then(|| (*rng.pick(&["urn:ietf:params:scim:schemas:core:2.0:User", "urn:x:y.z:Ext"])).to_owned());
        let sub = (rng.below(3) == 0).then(|| (*rng.pick(&NAMES)).to_owned());
        AttrPath { urn, name, sub }
    }

    fn random_value(rng: &mut Rng, op: CompareOp) -> Value {
        match rng.below(if matches!(op, CompareOp::Eq | CompareOp::Ne) { 7 } else { 6 }) {
            0 => Value::Bool(rng.below(2) == 0),
            1 => Value::from(rng.next() as i64),
            2 => Value::from(rng.next()),
            3 => serde_json::from_str(&format!("{}e{}", rng.below(1_000_000), rng.below(60) as i64 - 30)).unwrap(),
            4 => Value::from((rng.next() as i32) as f64 / 1000.0),
            5 => {
                let alphabet = ['a', 'Z', ' ', '"', '\\', '/', '\n', '\u{1}', 'é', '😀', '(', ']', '\u{7f}'];
                Value::String((0..rng.below(8)).map(|_| *rng.pick(&alphabet)).collect())
            }
            _ => Value::Null,
        }
    }

    fn random_filter(rng: &mut Rng, depth: usize, in_brackets: bool) -> Filter {
        let choice = if depth == 0 { rng.below(2) } else { rng.below(7) };
        match choice {
            0 => {
                let op = *rng.pick(&CompareOp::ALL);
                Filter::Compare { path: random_path(rng, in_brackets), op, value: random_value(rng, op) }
            }
            1 => Filter::Present { path: random_path(rng, in_brackets) },
            2 | 3 => and(random_filter(rng, depth - 1, in_brackets), random_filter(rng, depth - 1, in_brackets)),
            4 => or(random_filter(rng, depth - 1, in_brackets), random_filter(rng, depth - 1, in_brackets)),
            5 => not(random_filter(rng, depth - 1, in_brackets)),
            _ if in_brackets => not(random_filter(rng, depth - 1, in_brackets)),
            _ => {
                let mut path = random_path(rng, false);
                path.sub = None;
                Filter::ValuePath { path, filter: Box::new(random_filter(rng, depth - 1, true)) }
            }
        }
    }

    #[test]
    fn random_trees_print_and_parse_back_to_themselves() {
        let mut rng = Rng(0x5C1A_F117_E12D_2024);
        for _ in 0..4000 {
            let depth = rng.below(6);
            let filter = random_filter(&mut rng, depth, false);
            assert_round_trip(&filter);
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng(0xDEAD_BEEF_0BAD_F00D);
        let vocabulary = [
            "(",
            ")",
            "[",
            "]",
            " ",
            "and",
            "or",
            "not",
            "NOT",
            "eq",
            "pr",
            "gt",
            "\"x\"",
            "\"",
            "\\",
            "1",
            "-2.5e3",
            "true",
            "null",
            "userName",
            "emails",
            ".value",
            "urn:a:b:c",
            ":",
            ".",
            "é",
            "😀",
            "\u{0}",
            "[type eq 1]",
        ];
        for round in 0..6000 {
            let text = match round % 3 {
                0 => {
                    let bytes: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                1 => (0..rng.below(30))
                    .map(|_| *rng.pick(&vocabulary))
                    .collect::<Vec<_>>()
                    .join(if rng.below(2) == 0 { " " } else { "" }),
                _ => {
                    let mut chars: Vec<char> = rng.pick(&RFC_EXAMPLES).chars().collect();
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(chars.len() + 1);
                        match rng.below(3) {
                            0 if at < chars.len() => {
                                chars.remove(at);
                            }
                            1 if at < chars.len() => {
                                chars[at] = *rng.pick(&['(', ')', '[', ']', '"', '\\', ' ', '.', 'é', 'x'])
                            }
                            _ => chars.insert(at, *rng.pick(&['(', ')', '[', ']', '"', '\\', ' ', '.', '😀', '-'])),
                        }
                    }
                    chars.into_iter().collect()
                }
            };
            match parse_filter(&text) {
                Ok(filter) => assert_round_trip(&filter),
                Err(ScimError::InvalidFilter { position, .. }) => assert!(position <= text.chars().count(), "{text:?}"),
                Err(other) => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
