//! XML and HTML (with `<script>` and `<style>` scanned as JavaScript and
//! CSS), and CSS itself: small state machines over the same token list.

use crate::{
    lang::{self, Lang, Quote},
    lexer::{self, Class, Out},
};

const DOUBLE: Quote = Quote {
    open: "\"",
    close: "\"",
    escapes: false,
    multiline: true,
};
const SINGLE: Quote = Quote {
    open: "'",
    close: "'",
    escapes: false,
    multiline: true,
};

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b[from.min(b.len())..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Like [`find`], ASCII case ignored (`</SCRIPT`).
fn find_ignore_case(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b[from.min(b.len())..]
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| from + p)
}

fn name_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !b[i].is_ascii_whitespace() && !b"=>/<\"'".contains(&b[i]) {
        i += 1;
    }
    i
}

pub fn scan_markup(text: &str, out: &mut Out) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if out.out_of_time(i) {
            return false;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            let e = find(b, i + 4, b"-->").map_or(b.len(), |p| p + 3);
            out.push(i, e, Class::Comment);
            i = e;
        } else if rest.starts_with(b"<![CDATA[") {
            let e = find(b, i, b"]]>").map_or(b.len(), |p| p + 3);
            out.push(i, e, Class::String);
            i = e;
        } else if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            let e = find(b, i, b">").map_or(b.len(), |p| p + 1);
            out.push(i, e, Class::Meta);
            i = e;
        } else if b[i] == b'<'
            && b.get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'/')
        {
            let closing = b[i + 1] == b'/';
            let s = i + 1 + usize::from(closing);
            let e = name_end(b, s);
            out.push(s, e, Class::Tag);
            let name = &b[s..e];
            i = attributes(b, e, out);
            let embedded = if closing {
                None
            } else if name.eq_ignore_ascii_case(b"script") {
                Some((&lang::JAVASCRIPT, &b"</script"[..]))
            } else if name.eq_ignore_ascii_case(b"style") {
                Some((&lang::CSS, &b"</style"[..]))
            } else {
                None
            };
            if let Some((lang, end_tag)) = embedded {
                let end = find_ignore_case(b, i, end_tag).unwrap_or(b.len());
                if !embedded_scan(lang, text, i, end, out) {
                    return false;
                }
                i = end;
            }
        } else if b[i] == b'&' {
            let e = b[i..]
                .iter()
                .take(12)
                .position(|c| *c == b';')
                .map_or(i + 1, |p| i + p + 1);
            if e > i + 1 {
                out.push(i, e, Class::Constant);
            }
            i = e;
        } else {
            i += 1;
        }
    }
    true
}

fn embedded_scan(lang: &Lang, text: &str, start: usize, end: usize, out: &mut Out) -> bool {
    if lang.mode == lang::Mode::Css {
        scan_css(lang, text, start, end, out)
    } else {
        lexer::scan(lang, text, start, end, out)
    }
}

/// Attribute names and values up to and including the tag's `>`.
fn attributes(b: &[u8], mut i: usize, out: &mut Out) -> usize {
    while i < b.len() {
        match b[i] {
            b'>' => return i + 1,
            c if c.is_ascii_whitespace() || c == b'/' || c == b'=' => i += 1,
            b'"' | b'\'' => {
                let q = if b[i] == b'"' { &DOUBLE } else { &SINGLE };
                let e = lexer::string_end(b, i, q);
                out.push(i, e, Class::String);
                i = e;
            }
            b'<' => return i,
            _ => {
                let e = name_end(b, i).max(i + 1);
                // A value without quotes follows an `=`.
                let class = if i > 0 && b[i - 1] == b'=' {
                    Class::String
                } else {
                    Class::Attribute
                };
                out.push(i, e, class);
                i = e;
            }
        }
    }
    i
}

fn css_word_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b"-_".contains(&b[i]) || b[i] >= 0x80) {
        i += 1;
    }
    i
}

pub fn scan_css(lang: &Lang, text: &str, start: usize, end: usize, out: &mut Out) -> bool {
    let b = &text.as_bytes()[..end];
    let mut i = start;
    let mut depth = 0usize;
    let mut in_value = false;
    let mut property = false;
    'outer: while i < b.len() {
        if out.out_of_time(i) {
            return false;
        }
        let rest = &b[i..];
        for (open, close) in lang.block_comments {
            if rest.starts_with(open.as_bytes()) {
                let e =
                    find(b, i + open.len(), close.as_bytes()).map_or(b.len(), |p| p + close.len());
                out.push(i, e, Class::Comment);
                i = e;
                continue 'outer;
            }
        }
        for open in lang.line_comments {
            // `//` inside `url(http://…)` is not a comment.
            if rest.starts_with(open.as_bytes()) && (i == 0 || b[i - 1] != b':') {
                let e = b[i..]
                    .iter()
                    .position(|c| *c == b'\n')
                    .map_or(b.len(), |p| i + p);
                out.push(i, e, Class::Comment);
                i = e;
                continue 'outer;
            }
        }
        let c = b[i];
        match c {
            b'"' | b'\'' => {
                let q = &lang.quotes[usize::from(c == b'\'')];
                let e = lexer::string_end(b, i, q);
                out.push(i, e, Class::String);
                i = e;
            }
            b'{' => {
                depth += 1;
                in_value = false;
                i += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                in_value = false;
                i += 1;
            }
            b';' => {
                in_value = false;
                i += 1;
            }
            b':' if property => {
                in_value = true;
                property = false;
                i += 1;
            }
            b'@' | b'$' | b'!' => {
                let e = css_word_end(b, i + 1);
                let class = match c {
                    b'$' => Class::Variable,
                    _ => Class::Keyword,
                };
                out.push(i, e, class);
                i = e.max(i + 1);
            }
            b'#' | b'.'
                if !in_value
                    && b.get(i + 1)
                        .is_some_and(|n| n.is_ascii_alphabetic() || *n == b'-' || *n == b'_') =>
            {
                let e = css_word_end(b, i + 1);
                out.push(i, e, Class::Type);
                i = e;
            }
            b'#' if in_value => {
                let e = css_word_end(b, i + 1);
                out.push(i, e, Class::Number);
                i = e;
            }
            b':' if !in_value => {
                // A pseudo-class or -element: `a:hover`, `p::before`.
                let s = i;
                while i < b.len() && b[i] == b':' {
                    i += 1;
                }
                let e = css_word_end(b, i);
                out.push(s, e, Class::Meta);
                i = e;
            }
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                let mut e = i;
                while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'.' || b[e] == b'%')
                {
                    e += 1;
                }
                out.push(i, e, Class::Number);
                i = e;
            }
            c if c.is_ascii_alphabetic() || c == b'-' || c == b'_' => {
                let e = css_word_end(b, i);
                let next = b[e..].iter().copied().find(|c| *c != b' ' && *c != b'\t');
                let class = if b.get(e) == Some(&b'(') {
                    Some(Class::Function)
                } else if in_value {
                    Some(Class::Constant)
                } else if depth > 0 && next == Some(b':') && !nested_selector(b, e) {
                    property = true;
                    Some(Class::Key)
                } else {
                    Some(Class::Tag)
                };
                if let Some(class) = class {
                    out.push(i, e, class);
                }
                i = e.max(i + 1);
            }
            _ => i += 1,
        }
    }
    true
}

/// In SCSS, `a:hover {` inside a block is a selector, not a property:
/// a `{` comes before any `;` or `}`.
fn nested_selector(b: &[u8], from: usize) -> bool {
    b[from..]
        .iter()
        .find(|c| matches!(c, b'{' | b';' | b'}' | b'\n'))
        .is_some_and(|c| *c == b'{')
}
