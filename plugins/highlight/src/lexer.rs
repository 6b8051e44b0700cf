//! The scanner for code: one pass over the text, left to right, producing
//! classified byte ranges. Everything a language needs is data in its
//! [`Lang`]; there are no regular expressions and no backtracking, so the
//! cost is linear in the input (a few nanoseconds per byte, also in wasm).
//!
//! Decisions are made on ASCII bytes only; any byte of a multi-byte UTF-8
//! character counts as part of an identifier. Token boundaries therefore
//! always fall on character boundaries.

use std::time::Instant;

use crate::lang::{Lang, Quote};

/// What a piece of code is, as far as colouring goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Keyword,
    Type,
    Function,
    String,
    Number,
    Comment,
    /// Annotations, attributes, decorators, preprocessor lines.
    Meta,
    /// `true`, `null`, `None`, constants in capitals.
    Constant,
    Variable,
    /// Markup element names.
    Tag,
    /// Markup attribute names.
    Attribute,
    /// Keys of JSON, YAML, TOML and CSS properties.
    Key,
}

impl Class {
    /// The CSS class of the span (see [`crate::THEME_STYLE`]): two
    /// letters, so it never meets a page's own one-letter classes.
    pub fn css(self) -> &'static str {
        match self {
            Class::Keyword => "kw",
            Class::Type => "ty",
            Class::Function => "fn",
            Class::String => "st",
            Class::Number => "nu",
            Class::Comment => "co",
            Class::Meta => "me",
            Class::Constant => "bu",
            Class::Variable => "va",
            Class::Tag => "tg",
            Class::Attribute => "at",
            Class::Key => "ke",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub class: Class,
}

/// Checked against the deadline every this many bytes.
const CHECK_EVERY: usize = 4096;

/// Collects tokens; stops (and says where) once the deadline passes.
pub struct Out<'a> {
    pub tokens: &'a mut Vec<Token>,
    deadline: Option<Instant>,
    next_check: usize,
}

impl<'a> Out<'a> {
    pub fn new(tokens: &'a mut Vec<Token>, deadline: Option<Instant>) -> Self {
        Self {
            tokens,
            deadline,
            next_check: 0,
        }
    }

    pub fn push(&mut self, start: usize, end: usize, class: Class) {
        if end > start {
            self.tokens.push(Token { start, end, class });
        }
    }

    /// Whether time is up at byte `at` (checked only now and then).
    pub fn out_of_time(&mut self, at: usize) -> bool {
        if at < self.next_check {
            return false;
        }
        self.next_check = at + CHECK_EVERY;
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

pub fn is_ident_start(lang: &Lang, c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 || lang.ident_start_extra.contains(&c)
}

fn is_ident(lang: &Lang, c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 || lang.ident_extra.contains(&c)
}

fn line_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| from + p)
}

fn next_non_space(b: &[u8], from: usize) -> Option<u8> {
    b[from..]
        .iter()
        .copied()
        .find(|c| *c != b' ' && *c != b'\t')
}

/// The end of a comment that opened at `i` (after its `open`), nested when
/// the language nests them; unterminated comments run to the end.
fn comment_end(b: &[u8], mut i: usize, open: &str, close: &str, nested: bool) -> usize {
    let (open, close) = (open.as_bytes(), close.as_bytes());
    let mut depth = 1;
    while i < b.len() {
        if b[i..].starts_with(close) {
            i += close.len();
            depth -= 1;
            if depth == 0 {
                return i;
            }
        } else if nested && b[i..].starts_with(open) {
            i += open.len();
            depth += 1;
        } else {
            i += 1;
        }
    }
    b.len()
}

/// The end of a string whose quote opened at `i` (before its `open`). A
/// single-line string left open ends at the line's end.
pub fn string_end(b: &[u8], i: usize, q: &Quote) -> usize {
    let close = q.close.as_bytes();
    let mut j = i + q.open.len();
    while j < b.len() {
        if q.escapes && b[j] == b'\\' {
            j += 2;
        } else if b[j..].starts_with(close) {
            return j + close.len();
        } else if b[j] == b'\n' && !q.multiline {
            return j;
        } else {
            j += 1;
        }
    }
    b.len()
}

/// Rust's `r#"…"#` (any number of `#`): `i` is at the first `#` or `"`.
fn raw_string_end(b: &[u8], i: usize) -> Option<usize> {
    let hashes = b[i..].iter().take_while(|c| **c == b'#').count();
    if b.get(i + hashes) != Some(&b'"') {
        return None;
    }
    let mut j = i + hashes + 1;
    while j < b.len() {
        if b[j] == b'"'
            && b[j + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == b'#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(b.len())
}

fn number_end(b: &[u8], mut i: usize) -> usize {
    let hex = b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X'));
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X' | b'b' | b'B' | b'o' | b'O')) {
        i += 2;
    }
    while i < b.len() {
        let c = b[i];
        let exponent_sign = !hex
            && (c == b'+' || c == b'-')
            && matches!(b[i - 1], b'e' | b'E')
            && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        let fraction = c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        if c.is_ascii_alphanumeric() || c == b'_' || exponent_sign || fraction {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// Matches `word` against a keyword list, ignoring case where the
/// language does (SQL).
fn listed(lang: &Lang, list: &[&str], word: &str) -> bool {
    if lang.case_insensitive {
        list.iter().any(|k| k.eq_ignore_ascii_case(word))
    } else {
        list.contains(&word)
    }
}

/// Scans code from `start` to `end` (`end` is where an embedding, like
/// HTML's `<script>`, hands back). Returns `false` when time ran out.
pub fn scan(lang: &Lang, text: &str, start: usize, end: usize, out: &mut Out) -> bool {
    let b = &text.as_bytes()[..end];
    let mut i = start;
    // Only blanks since the last newline (or the start).
    let mut line_start = true;
    // The last keyword seen, for `fn name`, `class Name`.
    let mut declarer: Option<Class> = None;
    let mut after_new = false;
    'outer: while i < b.len() {
        if out.out_of_time(i) {
            return false;
        }
        let c = b[i];
        if c == b'\n' {
            line_start = true;
            i += 1;
            continue;
        }
        if c == b' ' || c == b'\t' || c == b'\r' {
            i += 1;
            continue;
        }
        let at_line_start = line_start;
        line_start = false;
        let rest = &b[i..];
        for (open, close) in lang.block_comments {
            if rest.starts_with(open.as_bytes()) {
                let e = comment_end(b, i + open.len(), open, close, lang.nested_comments);
                out.push(i, e, Class::Comment);
                i = e;
                continue 'outer;
            }
        }
        for open in lang.line_comments {
            if rest.starts_with(open.as_bytes()) {
                let e = line_end(b, i);
                out.push(i, e, Class::Comment);
                i = e;
                continue 'outer;
            }
        }
        if lang.preprocessor && c == b'#' && at_line_start {
            // A directive runs to the line's end, continued by a `\`.
            let mut e = line_end(b, i);
            while e > i && e < b.len() && b[e - 1] == b'\\' {
                e = line_end(b, e + 1);
            }
            out.push(i, e, Class::Meta);
            i = e;
            continue;
        }
        if lang.sections && c == b'[' && at_line_start {
            let e = line_end(b, i);
            let close = b[i..e]
                .iter()
                .rposition(|c| *c == b']')
                .map_or(e, |p| i + p + 1);
            out.push(i, close, Class::Type);
            i = close;
            continue;
        }
        if lang.rust_attributes
            && c == b'#'
            && (rest.starts_with(b"#[") || rest.starts_with(b"#!["))
        {
            let mut depth = 0;
            let mut e = i;
            while e < b.len() {
                match b[e] {
                    b'[' => depth += 1,
                    b']' => {
                        depth -= 1;
                        if depth == 0 {
                            e += 1;
                            break;
                        }
                    }
                    b'\n' if depth == 0 => break,
                    _ => {}
                }
                e += 1;
            }
            out.push(i, e, Class::Meta);
            i = e;
            continue;
        }
        if lang.annotation == Some(c) && b.get(i + 1).is_some_and(|n| is_ident_start(lang, *n)) {
            let mut e = i + 1;
            while e < b.len()
                && (is_ident(lang, b[e])
                    || (b[e] == b'.' && b.get(e + 1).is_some_and(|n| is_ident_start(lang, *n))))
            {
                e += 1;
            }
            out.push(i, e, Class::Meta);
            i = e;
            continue;
        }
        if lang.lifetimes && c == b'\'' {
            // `'a` (Rust lifetimes, OCaml type variables) unless it is a
            // character literal `'a'`.
            let n = b[i + 1..]
                .iter()
                .take_while(|c| is_ident(lang, **c))
                .count();
            if n > 0 && b.get(i + 1 + n) != Some(&b'\'') {
                out.push(i, i + 1 + n, Class::Variable);
                i += 1 + n;
                continue;
            }
        }
        for q in lang.quotes {
            if rest.starts_with(q.open.as_bytes()) {
                let e = string_end(b, i, q);
                let class = if lang.colon_keys && next_non_space(b, e) == Some(b':') {
                    Class::Key
                } else {
                    Class::String
                };
                out.push(i, e, class);
                i = e;
                continue 'outer;
            }
        }
        if lang.sigils.contains(&c) {
            let e = match b.get(i + 1) {
                Some(&open @ (b'{' | b'(')) => {
                    let close = if open == b'{' { b'}' } else { b')' };
                    b[i..]
                        .iter()
                        .position(|c| *c == close || *c == b'\n')
                        .map_or(b.len(), |p| i + p + usize::from(b[i + p] == close))
                }
                Some(n) if is_ident(lang, *n) => {
                    i + 1
                        + b[i + 1..]
                            .iter()
                            .take_while(|c| is_ident(lang, **c))
                            .count()
                }
                Some(n) if lang.special_sigil_vars.contains(n) => i + 2,
                _ => i,
            };
            if e > i {
                out.push(i, e, Class::Variable);
                i = e;
                continue;
            }
        }
        if c.is_ascii_digit()
            || (c == b'.'
                && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && (i == 0 || !is_ident(lang, b[i - 1])))
        {
            let e = number_end(b, i);
            out.push(i, e, Class::Number);
            i = e;
            continue;
        }
        if is_ident_start(lang, c) {
            let s = i;
            i += 1;
            while i < b.len() && is_ident(lang, b[i]) {
                i += 1;
            }
            let word = &text[s..i];
            if lang.raw_hash_strings
                && (word == "r" || word == "br")
                && let Some(e) = raw_string_end(b, i)
            {
                out.push(s, e, Class::String);
                i = e;
                continue;
            }
            if let Some(q) = lang
                .quotes
                .iter()
                .find(|q| b[i..].starts_with(q.open.as_bytes()))
                && lang
                    .string_prefixes
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(word))
            {
                let e = string_end(b, i, q);
                out.push(s, e, Class::String);
                i = e;
                continue;
            }
            let next = next_non_space(b, i);
            let class = classify(lang, word, at_line_start, declarer, after_new, b, i, next);
            after_new = word == "new";
            declarer = if listed(lang, lang.function_declarers, word) {
                Some(Class::Function)
            } else if listed(lang, lang.type_declarers, word) {
                Some(Class::Type)
            } else {
                None
            };
            if let Some(class) = class {
                // A macro call's `!` belongs to its name.
                let e = if lang.macros && b.get(i) == Some(&b'!') && class == Class::Function {
                    i + 1
                } else {
                    i
                };
                out.push(s, e, class);
                i = e;
            }
            continue;
        }
        if c != b'.' {
            after_new = false;
        }
        i += 1;
    }
    true
}

#[allow(clippy::too_many_arguments)]
fn classify(
    lang: &Lang,
    word: &str,
    at_line_start: bool,
    declarer: Option<Class>,
    after_new: bool,
    b: &[u8],
    end: usize,
    next: Option<u8>,
) -> Option<Class> {
    if listed(lang, lang.constants, word) {
        return Some(Class::Constant);
    }
    if listed(lang, lang.keywords, word) {
        return Some(Class::Keyword);
    }
    if listed(lang, lang.types, word) {
        return Some(Class::Type);
    }
    if let Some(class) = declarer {
        return Some(class);
    }
    let colon_follows = b.get(end) == Some(&b':') && b.get(end + 1) != Some(&b':');
    if lang.colon_keys && colon_follows {
        return Some(Class::Key);
    }
    if lang.assign_keys && at_line_start && matches!(next, Some(b'=' | b':')) {
        return Some(Class::Key);
    }
    if lang.labels && at_line_start && colon_follows {
        return Some(Class::Function);
    }
    if lang.meta_prefix.is_some_and(|p| word.as_bytes()[0] == p) {
        return Some(Class::Meta);
    }
    let capital = word.as_bytes()[0].is_ascii_uppercase();
    if next == Some(b'(') {
        return Some(if after_new && capital {
            Class::Type
        } else {
            Class::Function
        });
    }
    if lang.macros && b.get(end) == Some(&b'!') && b.get(end + 1) != Some(&b'=') {
        return Some(Class::Function);
    }
    if lang.capitalized_types && capital {
        let all_caps = word.len() > 1
            && word
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
        return Some(if all_caps {
            Class::Constant
        } else {
            Class::Type
        });
    }
    None
}
