//! `code-preview`: syntax-highlighted, self-contained HTML (inline styles,
//! no scripts) with line numbers, for the languages a programming course
//! uses. The language comes from the file name or extension, else from the
//! first line (shebangs). Input that is not UTF-8 is shown with replacement
//! characters and a notice; a file over `max_bytes` or `max_lines` is shown
//! as escaped plain text with a notice instead of being highlighted, so
//! huge files never run into the time limit.

use std::time::Duration;

use highlight::{numbered, plain_lines};
use pd2_plugin_sdk::{
    Content, FileInfo, Hook, Manifest, Plugin, Preview, html, settings_or_default,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Bytes highlighted at most; larger files are shown plain, truncated.
    pub max_bytes: u64,
    /// Lines highlighted at most; longer files are shown plain.
    pub max_lines: usize,
    /// Milliseconds spent highlighting at most; later lines are shown plain
    /// (keep it well below `plugins.timeout_ms`).
    pub highlight_budget_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_lines: 20_000,
            highlight_budget_ms: 1_000,
        }
    }
}

/// Files this plugin renders.
pub const PATHS: &[&str] = &[
    "*.c",
    "*.h",
    "*.cc",
    "*.cpp",
    "*.cxx",
    "*.c++",
    "*.hh",
    "*.hpp",
    "*.hxx",
    "*.java",
    "*.py",
    "*.pyw",
    "*.rs",
    "*.js",
    "*.mjs",
    "*.cjs",
    "*.jsx",
    "*.ts",
    "*.tsx",
    "*.go",
    "*.cs",
    "*.kt",
    "*.kts",
    "*.scala",
    "*.sh",
    "*.bash",
    "*.zsh",
    "*.sql",
    "*.json",
    "*.yaml",
    "*.yml",
    "*.toml",
    "*.xml",
    "*.html",
    "*.htm",
    "*.css",
    "*.scss",
    "*.rb",
    "*.php",
    "*.swift",
    "*.lua",
    "*.pl",
    "*.r",
    "*.hs",
    "*.ml",
    "*.m",
    "*.asm",
    "*.s",
    "*.gradle",
    "*.cmake",
    "*.mk",
    "Makefile",
    "makefile",
    "GNUmakefile",
    "Dockerfile",
    "CMakeLists.txt",
];

/// Whether `name` is one of [`PATHS`] (`*.ext` case-insensitively, or the
/// whole name).
pub fn is_source_name(name: &str) -> bool {
    PATHS
        .iter()
        .any(|pattern| match pattern.strip_prefix("*.") {
            Some(ext) => name
                .rsplit_once('.')
                .is_some_and(|(stem, e)| !stem.is_empty() && e.eq_ignore_ascii_case(ext)),
            None => name == *pattern,
        })
}

pub struct CodePreview;

impl Plugin for CodePreview {
    fn manifest() -> Manifest {
        // No matchers: besides the names in `PATHS`, a script without an
        // extension is recognised by its shebang, which only the content
        // shows. Anything else is declined at once (and the decline cached).
        Manifest::new("code-preview", env!("CARGO_PKG_VERSION"))
            .description(
                "Syntax-highlighted source code with line numbers (by name, extension or shebang)",
            )
            .hook(Hook::Render)
    }

    fn render(info: &FileInfo, content: &dyn Content) -> Option<Preview> {
        if !is_source_name(info.name()) && !content.read(0, 2).starts_with(b"#!") {
            return None;
        }
        let s: Settings = settings_or_default();
        let size = content.size();
        let shown = size.min(s.max_bytes);
        let bytes = content.read(0, shown as u32);
        if bytes.iter().take(8192).any(|b| *b == 0) {
            // A binary under a source name: nothing sensible to show.
            return None;
        }
        let (text, lossy) = match String::from_utf8(bytes) {
            Ok(text) => (text, false),
            Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
        };
        let line_count = text.lines().count();
        let mut notices = Vec::new();
        if lossy {
            notices
                .push("This file is not valid UTF-8; undecodable bytes are shown as �.".to_owned());
        }
        let plain = shown < size || line_count > s.max_lines;
        let (lines, style) = if plain {
            notices.push(if shown < size {
                format!(
                    "Showing the first {shown} of {size} bytes without highlighting (max_bytes)."
                )
            } else {
                format!(
                    "{line_count} lines: shown without highlighting (max_lines is {}).",
                    s.max_lines
                )
            });
            (plain_lines(&text), highlight::BASE_STYLE.to_owned())
        } else {
            // The setting, but never past three quarters of the time the
            // host says is left: the rest is for the plain tail and the
            // output, so a loaded machine gets a partly highlighted file
            // instead of a call cut off at the time limit.
            let deadline = pd2_plugin_sdk::deadline(Duration::from_millis(s.highlight_budget_ms));
            let first_line = text.lines().next().unwrap_or("");
            let lang =
                highlight::for_file(&info.path, first_line).unwrap_or(&highlight::lang::PLAIN);
            let (lines, highlighted) = highlight::lines_until(&text, lang, Some(deadline));
            if highlighted < lines.len() {
                notices.push(format!(
                    "Highlighted the first {highlighted} of {} lines; the rest is plain (out of time: highlight_budget_ms or the server's time limit).",
                    lines.len()
                ));
            }
            (lines, highlight::style())
        };
        let notices: String = notices
            .iter()
            .map(|n| format!("<p class=\"notice\">{}</p>", html::escape(n)))
            .collect();
        Some(Preview::html(html::document(
            &info.path,
            &style,
            &format!("{notices}{}", numbered(&lines)),
        )))
    }
}

pd2_plugin_sdk::export_plugin!(CodePreview);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pd2_plugin_sdk::{Plugin, testing};

    use super::CodePreview;

    fn render(path: &str, data: impl Into<Vec<u8>>) -> Option<String> {
        let (info, file) = testing::file(path, "text/plain; charset=utf-8", data);
        CodePreview::render(&info, &file).map(|p| {
            assert_eq!(p.content_type, "text/html; charset=utf-8");
            String::from_utf8(p.body).unwrap()
        })
    }

    #[test]
    fn highlights_with_line_numbers_and_no_script() {
        let html = render(
            "src/Main.java",
            "public class Main {\n  // </script><script>alert(1)\n}\n",
        )
        .unwrap();
        assert!(
            html.contains("<tr id=\"L3\"><td class=\"n\"><a href=\"#L3\">3</a></td>"),
            "{html}"
        );
        assert!(html.contains("<span class=\""), "highlighted");
        assert!(!html.to_lowercase().contains("<script"), "{html}");
        assert!(html.contains("&lt;/script&gt;"));
    }

    /// Every name the plugin takes has a language (the highlighter's own
    /// tests check each language's colours).
    #[test]
    fn every_name_it_takes_is_highlighted() {
        for pattern in super::PATHS {
            let name = match pattern.strip_prefix("*.") {
                Some(ext) => format!("a.{ext}"),
                None => (*pattern).to_owned(),
            };
            assert!(
                highlight::for_file(&name, "").is_some(),
                "{pattern} has no language"
            );
        }
        let html = render("A.java", "class A { void f() {} }").unwrap();
        assert!(html.contains("<span class=\"fn\">f</span>"), "{html}");
    }

    #[test]
    fn shebang_scripts_are_highlighted_and_other_names_declined() {
        let html = render("run", "#!/usr/bin/env python3\nprint('hi')\n").expect("a preview");
        assert!(html.contains("<span class="), "highlighted: {html}");
        assert!(render("notes", "just words\n").is_none());
        assert!(render("a.TXT", "words\n").is_none());
        assert!(super::is_source_name("Main.JAVA") && super::is_source_name("Makefile"));
        assert!(!super::is_source_name(".java"));
    }

    #[test]
    fn empty_files_and_invalid_utf8() {
        let empty = render("a.py", "").unwrap();
        assert!(empty.contains("<table></table>"));
        let html = render("a.c", vec![b'i', b'n', b't', 0xFF, 0xFE, b';']).unwrap();
        assert!(
            html.contains("not valid UTF-8") && html.contains('�'),
            "{html}"
        );
        assert_eq!(
            render("a.c", vec![0x7F, b'E', b'L', b'F', 0, 0]),
            None,
            "binary declined"
        );
    }

    #[test]
    fn huge_files_are_plain_with_a_notice() {
        let big = "x = 1\n".repeat(300_000); // 1.8 MB, 300k lines
        let (info, file) = testing::file("big.py", "text/x-python", big.clone());
        let html = String::from_utf8(CodePreview::render(&info, &file).unwrap().body).unwrap();
        assert!(html.contains("without highlighting (max_bytes)"), "notice");
        assert!(!html.contains("<span class="), "not highlighted");
        assert_eq!(file.bytes_read(), 1024 * 1024, "reads only max_bytes");

        testing::set_settings(serde_json::json!({"highlight_budget_ms": 0}));
        let html = render("budget.py", "x = 1\ny = 2\n").unwrap();
        assert!(
            html.contains("Highlighted the first 0 of 2 lines"),
            "{html}"
        );
        testing::set_settings(serde_json::json!({}));

        // Near the server's time limit, the same.
        testing::set_time_left(Duration::ZERO);
        let html = render("late.py", "x = 1\ny = 2\n").unwrap();
        assert!(
            html.contains("Highlighted the first 0 of 2 lines"),
            "{html}"
        );
        testing::set_time_left(Duration::from_secs(3600));

        let many_lines = "x\n".repeat(21_000);
        let html = render("many.py", many_lines).unwrap();
        assert!(
            html.contains("21000 lines: shown without highlighting"),
            "max_lines notice"
        );
    }
}
