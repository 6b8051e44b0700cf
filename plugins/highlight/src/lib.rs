//! Syntax highlighting to self-contained HTML (inline styles, no classes,
//! no scripts), shared by `code-preview` and `markdown-preview`.
//!
//! Loading the grammars is the expensive step (tens of milliseconds in a
//! fresh wasm instance, and every plugin call is a fresh instance), so it
//! happens only in [`Highlighter::load`], which callers use only when there
//! is code to highlight; everything else here is cheap. Rendered previews
//! are cached by the server, so the cost is paid once per file and build.

use std::time::Instant;

use pd2_plugin_sdk::html::escape;
use syntect::{
    easy::HighlightLines,
    highlighting::{Color, Theme, ThemeSet},
    html::{IncludeBackground, styled_line_to_highlighted_html},
    parsing::{SyntaxReference, SyntaxSet},
    util::LinesWithEndings,
};

const THEME: &str = "InspiredGitHub";

pub struct Highlighter {
    syntaxes: SyntaxSet,
    theme: Theme,
}

impl Highlighter {
    /// syntect's defaults plus bat's extra grammars (TypeScript, Kotlin,
    /// TOML, …) and a light theme.
    pub fn load() -> Self {
        let mut themes = ThemeSet::load_defaults();
        Self {
            syntaxes: two_face::syntax::extra_newlines(),
            theme: themes.themes.remove(THEME).unwrap_or_default(),
        }
    }

    /// The grammar for a file: by name or extension, then by its first line
    /// (`#!/bin/bash`, `<?xml`), else plain text.
    pub fn for_file(&self, path: &str, first_line: &str) -> &SyntaxReference {
        let name = path.rsplit('/').next().unwrap_or(path);
        let extension = name.rsplit_once('.').map(|(_, e)| e).unwrap_or(name);
        self.syntaxes
            .find_syntax_by_extension(name)
            .or_else(|| self.syntaxes.find_syntax_by_extension(extension))
            .or_else(|| {
                self.syntaxes
                    .find_syntax_by_extension(&extension.to_ascii_lowercase())
            })
            .or_else(|| self.syntaxes.find_syntax_by_first_line(first_line))
            .unwrap_or_else(|| self.syntaxes.find_syntax_plain_text())
    }

    /// The grammar named by a Markdown fence (`rust`, `c++`, `py`), if any.
    pub fn for_token(&self, token: &str) -> Option<&SyntaxReference> {
        self.syntaxes.find_syntax_by_token(token)
    }

    /// One HTML fragment per line. A line the grammar chokes on is shown
    /// escaped rather than failing the whole preview.
    pub fn lines(&self, code: &str, syntax: &SyntaxReference) -> Vec<String> {
        self.lines_until(code, syntax, None).0
    }

    /// Like [`Highlighter::lines`], but once `deadline` passes the remaining
    /// lines are only escaped. Returns how many lines were highlighted.
    /// Regex-driven highlighting in wasm costs about half a millisecond per
    /// line of dense code, so large files would otherwise run into the
    /// plugin's time limit and get no preview at all.
    pub fn lines_until(
        &self,
        code: &str,
        syntax: &SyntaxReference,
        deadline: Option<Instant>,
    ) -> (Vec<String>, usize) {
        let mut h = HighlightLines::new(syntax, &self.theme);
        let mut highlighted = 0;
        let lines = LinesWithEndings::from(code)
            .map(|line| {
                let text = line.trim_end_matches(['\n', '\r']);
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return escape(text);
                }
                highlighted += 1;
                h.highlight_line(line, &self.syntaxes)
                    .ok()
                    .and_then(|ranges| {
                        // The grammar needs the line ending, the HTML must
                        // not have it: inside the last span it would put a
                        // blank line after every line of a code block (and
                        // a Windows `\r` into the page).
                        let ranges: Vec<_> = ranges
                            .into_iter()
                            .map(|(style, piece)| (style, piece.trim_end_matches(['\n', '\r'])))
                            .filter(|(_, piece)| !piece.is_empty())
                            .collect();
                        styled_line_to_highlighted_html(&ranges, IncludeBackground::No).ok()
                    })
                    .unwrap_or_else(|| escape(text))
            })
            .collect();
        (lines, highlighted)
    }

    /// CSS for the page: the theme's colours.
    pub fn style(&self) -> String {
        let css = |c: Option<Color>, fallback: &str| {
            c.map(|c| format!("#{:02x}{:02x}{:02x}", c.r, c.g, c.b))
                .unwrap_or_else(|| fallback.to_owned())
        };
        format!(
            "{}pre,table{{background:{};color:{}}}",
            BASE_STYLE,
            css(self.theme.settings.background, "#fff"),
            css(self.theme.settings.foreground, "#333")
        )
    }
}

/// Lines escaped but not highlighted (too large, or no grammar needed).
pub fn plain_lines(code: &str) -> Vec<String> {
    code.lines().map(escape).collect()
}

/// Layout shared by every code view: tabs of 4, long lines wrap inside
/// the code column (the gutter stays put), a line named by the URL
/// fragment (`#L12`) is marked.
pub const BASE_STYLE: &str = "body{margin:0;font:14px/1.5 ui-monospace,Menlo,Consolas,monospace}\
table{border-collapse:collapse;width:100%}td{padding:0 10px;vertical-align:top;tab-size:4}\
td.c{white-space:pre-wrap;overflow-wrap:anywhere}\
td.n{color:#999;text-align:right;user-select:none;border-right:1px solid #ddd;width:1%;white-space:nowrap}\
td.n a{color:inherit;text-decoration:none}tr:target{background:#fff3b0}\
.notice{font:14px sans-serif;background:#fff8e1;color:#7a5a00;padding:6px 10px;margin:0}\
pre{padding:8px 10px;overflow:auto;tab-size:4}";

/// A table with line numbers.
pub fn numbered(lines: &[String]) -> String {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 40).sum());
    out.push_str("<table>");
    for (i, line) in lines.iter().enumerate() {
        out.push_str(&format!(
            "<tr id=\"L{n}\"><td class=\"n\"><a href=\"#L{n}\">{n}</a></td><td class=\"c\">{line}</td></tr>",
            n = i + 1
        ));
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_grammars_by_name_extension_and_first_line() {
        let h = Highlighter::load();
        let name = |path: &str, first: &str| h.for_file(path, first).name.clone();
        assert_eq!(name("src/Main.java", ""), "Java");
        assert_eq!(name("a.py", ""), "Python");
        assert_eq!(name("lib.rs", ""), "Rust");
        assert_eq!(name("app.ts", ""), "TypeScript");
        assert_eq!(name("Main.kt", ""), "Kotlin");
        assert_eq!(name("Cargo.toml", ""), "TOML");
        assert_eq!(name("Makefile", ""), "Makefile");
        assert_eq!(name("run", "#!/bin/bash"), "Bourne Again Shell (bash)");
        assert_eq!(name("notes", "hello"), "Plain Text");
    }

    #[test]
    fn highlighted_lines_carry_no_line_endings() {
        let h = Highlighter::load();
        let lines = h.lines(
            "class A {\r\n  void f() {}\r\n}\n",
            h.for_file("A.java", ""),
        );
        assert_eq!(lines.len(), 3);
        for line in &lines {
            assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
        }
    }

    #[test]
    fn highlighting_escapes_and_styles() {
        let h = Highlighter::load();
        let lines = h.lines(
            "int a = 1; // <b>\nchar *s = \"x\";\n",
            h.for_file("a.c", ""),
        );
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("<span style=\"color:"), "{}", lines[0]);
        assert!(
            lines[0].contains("&lt;b&gt;") && !lines[0].contains("<b>"),
            "{}",
            lines[0]
        );
    }
}
