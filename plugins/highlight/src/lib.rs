//! Syntax highlighting to self-contained HTML, shared by `code-preview`,
//! `markdown-preview` and `notebook-preview`.
//!
//! The engine is a hand-written, table-driven scanner (see [`lexer`]): one
//! linear pass, no regular expressions, no grammar to load. It was chosen
//! by measurement (BENCHMARKS.md, "Highlighting engines"): syntect's regex
//! grammars cost ~0.45 ms per dense line in wasm plus ~33 ms of set-up in
//! every fresh instance; tree-sitter needs a C toolchain for wasm and a
//! grammar per language; this scanner highlights 10,000 lines of Java in a
//! few milliseconds and every language is a table in [`lang`].
//!
//! Output uses short CSS classes (`<span class="kw">`); [`style`] holds a
//! light and a dark palette chosen by `prefers-color-scheme`.

use std::time::Instant;

use pd2_plugin_sdk::html::escape_into;

pub mod lang;
pub mod lexer;
mod markup;

pub use lang::{Lang, for_file, for_token};
use lexer::{Out, Token};

/// Highlights `code` completely.
pub fn lines(code: &str, lang: &Lang) -> Vec<String> {
    lines_until(code, lang, None).0
}

/// Highlights until `deadline`; lines the scanner has not reached by then
/// are only escaped. Returns the lines and how many are highlighted.
pub fn lines_until(code: &str, lang: &Lang, deadline: Option<Instant>) -> (Vec<String>, usize) {
    let mut tokens = Vec::with_capacity(code.len() / 6);
    let mut out = Out::new(&mut tokens, deadline);
    let finished = match lang.mode {
        lang::Mode::Code => lexer::scan(lang, code, 0, code.len(), &mut out),
        lang::Mode::Markup => markup::scan_markup(code, &mut out),
        lang::Mode::Css => markup::scan_css(lang, code, 0, code.len(), &mut out),
    };
    // Unfinished: only lines before the last token are trustworthy (a
    // string or comment may have been cut).
    let reached = if finished {
        usize::MAX
    } else {
        tokens.last().map_or(0, |t| t.start)
    };
    render(code, &tokens, reached)
}

fn render(code: &str, tokens: &[Token], reached: usize) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut highlighted = 0;
    let mut t = 0;
    let mut start = 0;
    while start < code.len() {
        let end = code[start..].find('\n').map_or(code.len(), |p| start + p);
        let content_end = if code[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        let mut html = String::with_capacity((content_end - start) * 2);
        if end <= reached {
            highlighted += 1;
            let mut pos = start;
            while t < tokens.len() && tokens[t].start < end {
                let token = tokens[t];
                let s = token.start.max(pos).min(content_end);
                let e = token.end.min(content_end);
                escape_into(&mut html, &code[pos..s]);
                if e > s {
                    html.push_str("<span class=\"");
                    html.push_str(token.class.css());
                    html.push_str("\">");
                    escape_into(&mut html, &code[s..e]);
                    html.push_str("</span>");
                }
                pos = pos.max(e);
                if token.end > end + 1 {
                    // Goes on in the next line (a block comment, a string).
                    break;
                }
                t += 1;
            }
            escape_into(&mut html, &code[pos.min(content_end)..content_end]);
        } else {
            escape_into(&mut html, &code[start..content_end]);
        }
        lines.push(html);
        start = end + 1;
    }
    (lines, highlighted)
}

/// Lines escaped but not highlighted (too large, or no language).
pub fn plain_lines(code: &str) -> Vec<String> {
    code.lines()
        .map(|line| {
            let mut html = String::with_capacity(line.len());
            escape_into(&mut html, line.strip_suffix('\r').unwrap_or(line));
            html
        })
        .collect()
}

/// Layout shared by every code view: tabs of 4, long lines wrap inside
/// the code column (the gutter stays put), a line named by the URL
/// fragment (`#L12`) is marked; light and dark by the reader's setting.
pub const BASE_STYLE: &str = ":root{color-scheme:light dark}\
body{margin:0;font:14px/1.5 ui-monospace,Menlo,Consolas,monospace;background:#fff;color:#1f2328}\
table{border-collapse:collapse;width:100%}td{padding:0 10px;vertical-align:top;tab-size:4}\
td.c{white-space:pre-wrap;overflow-wrap:anywhere}\
td.n{color:#8c959f;text-align:right;user-select:none;border-right:1px solid #d0d7de;width:1%;white-space:nowrap}\
td.n a{color:inherit;text-decoration:none}tr:target{background:#fff8c5}\
.notice{font:14px sans-serif;background:#fff8e1;color:#7a5a00;padding:6px 10px;margin:0}\
pre{padding:8px 10px;overflow:auto;tab-size:4;background:#f6f8fa}\
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}\
td.n{color:#6e7681;border-color:#30363d}tr:target{background:#3b2e00}\
.notice{background:#2d2400;color:#e3b341}pre{background:#161b22}}";

/// The colours of the classes [`lexer::Class::css`] names: GitHub's
/// palettes, light and dark.
pub const THEME_STYLE: &str = ".kw{color:#cf222e}.ty,.va{color:#953800}.fn{color:#8250df}\
.st{color:#0a3069}.nu,.bu,.at,.ke{color:#0550ae}.co{color:#6e7781;font-style:italic}\
.me,.tg{color:#116329}\
@media (prefers-color-scheme:dark){.kw{color:#ff7b72}.ty,.va{color:#ffa657}.fn{color:#d2a8ff}\
.st{color:#a5d6ff}.nu,.bu,.at,.ke{color:#79c0ff}.co{color:#8b949e}.me,.tg{color:#7ee787}}";

/// Everything a code page needs.
pub fn style() -> String {
    format!("{BASE_STYLE}{THEME_STYLE}")
}

/// A table with line numbers; each row is the line's anchor (`#L12`).
pub fn numbered(lines: &[String]) -> String {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 80).sum());
    out.push_str("<table>");
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        out.push_str(&format!(
            "<tr id=\"L{n}\"><td class=\"n\"><a href=\"#L{n}\">{n}</a></td><td class=\"c\">{line}</td></tr>"
        ));
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests;
