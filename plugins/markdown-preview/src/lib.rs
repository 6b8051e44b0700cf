//! `markdown-preview`: CommonMark with GFM tables, task lists and
//! strikethrough, to sanitized HTML.
//!
//! Sanitizing is done on the parser's event stream, before any HTML exists:
//! raw HTML in the Markdown is rendered as visible text (so no `<script>`,
//! no event-handler attributes can appear), and link and image targets are
//! kept only for `http`, `https`, `mailto` and relative URLs (images also
//! `data:image/…`). Everything else is escaped by the HTML writer. Fenced
//! code blocks are highlighted like `code-preview`.

use std::time::{Duration, Instant};

use highlight::{BASE_STYLE, Highlighter};
use pd2_plugin_sdk::{Content, FileInfo, Hook, Manifest, Plugin, Preview, html, log, settings};
use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Bytes rendered at most; the rest is cut with a notice.
    pub max_bytes: u64,
    /// Milliseconds spent highlighting code blocks at most.
    pub highlight_budget_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            highlight_budget_ms: 1_000,
        }
    }
}

const STYLE: &str = "body{font:15px/1.6 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;\
max-width:900px;margin:0 auto;padding:16px 24px;color:#1f2328}\
code{font:13px ui-monospace,Menlo,Consolas,monospace;background:#f2f3f5;padding:1px 4px;border-radius:4px}\
pre code{background:none;padding:0}pre{background:#f6f8fa;border-radius:6px}\
table.md{border-collapse:collapse;width:auto}table.md td,table.md th{border:1px solid #d0d7de;padding:4px 10px;white-space:normal}\
blockquote{margin:0;padding:0 12px;color:#59636e;border-left:4px solid #d0d7de}img{max-width:100%}\
li:has(>input[type=checkbox]){list-style:none}li>input[type=checkbox]{margin:0 .4em 0 -1.3em}\
.footnote-definition{font-size:90%;margin-top:6px}.footnote-definition p{display:inline}\
.footnote-definition-label{margin-right:.4em}";

/// Whether a link target may stay. Browsers ignore control characters and
/// whitespace inside a scheme, so those are dropped before looking at it.
pub fn safe_url(url: &str, image: bool) -> bool {
    let compact: String = url
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let scheme_end = compact.find(':');
    let path_start = compact.find(['/', '?', '#']);
    match scheme_end {
        // No scheme (or a colon only after the path started): relative.
        None => true,
        Some(colon) if path_start.is_some_and(|p| p < colon) => true,
        Some(_) => {
            compact.starts_with("http:")
                || compact.starts_with("https:")
                || (!image && compact.starts_with("mailto:"))
                || (image && compact.starts_with("data:image/"))
        }
    }
}

/// Markdown to an HTML fragment, sanitized, code highlighted until
/// `deadline`.
pub fn render_markdown(text: &str, deadline: Instant) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES;
    let mut highlighter: Option<Highlighter> = None;
    let mut code: Option<(String, String)> = None; // (language, text)
    let mut events: Vec<Event> = Vec::new();
    for event in Parser::new_ext(text, options) {
        if let Some((_, buffer)) = code.as_mut() {
            match event {
                Event::Text(t) => buffer.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    let (lang, buffer) = code.take().unwrap_or_default();
                    events.push(Event::Html(CowStr::from(code_block(
                        &lang,
                        &buffer,
                        &mut highlighter,
                        deadline,
                    ))));
                }
                _ => {}
            }
            continue;
        }
        let event = match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split([' ', ',', '{']).next().unwrap_or("").to_owned()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((lang, String::new()));
                continue;
            }
            // Raw HTML is shown, not interpreted.
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Link {
                link_type,
                dest_url: if safe_url(&dest_url, false) {
                    dest_url
                } else {
                    CowStr::from("#")
                },
                title,
                id,
            }),
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Image {
                link_type,
                dest_url: if safe_url(&dest_url, true) {
                    dest_url
                } else {
                    CowStr::from("")
                },
                title,
                id,
            }),
            Event::Start(Tag::Table(alignments)) => {
                events.push(Event::Html(CowStr::from("<div class=\"table\">")));
                Event::Start(Tag::Table(alignments))
            }
            Event::End(TagEnd::Table) => {
                events.push(Event::End(TagEnd::Table));
                Event::Html(CowStr::from("</div>"))
            }
            other => other,
        };
        events.push(event);
    }
    anchor_headings(&mut events);
    let mut out = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events.into_iter());
    out.replace("<table>", "<table class=\"md\">")
}

/// Gives every heading without an explicit id one made from its text the
/// way GitHub does (lower case, spaces to `-`, punctuation dropped, `-1`,
/// `-2` … for repeats), so `README.md#setup` links work.
fn anchor_headings(events: &mut [Event]) {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut i = 0;
    while i < events.len() {
        if let Event::Start(Tag::Heading { id: None, .. }) = &events[i] {
            let mut text = String::new();
            for event in &events[i + 1..] {
                match event {
                    Event::End(TagEnd::Heading(_)) => break,
                    Event::Text(t) | Event::Code(t) => text.push_str(t),
                    _ => {}
                }
            }
            let base: String = text
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect();
            let n = seen.entry(base.clone()).or_insert(0);
            let slug = if *n == 0 { base } else { format!("{base}-{n}") };
            *n += 1;
            if let Event::Start(Tag::Heading { id, .. }) = &mut events[i] {
                *id = Some(CowStr::from(slug));
            }
        }
        i += 1;
    }
}

/// A fenced block: highlighted when its language is known and time is
/// left, escaped otherwise. The grammars load only for the first such block.
fn code_block(
    lang: &str,
    text: &str,
    highlighter: &mut Option<Highlighter>,
    deadline: Instant,
) -> String {
    if !lang.is_empty() && Instant::now() < deadline {
        let h = highlighter.get_or_insert_with(Highlighter::load);
        if let Some(syntax) = h.for_token(lang) {
            let (lines, _) = h.lines_until(text, syntax, Some(deadline));
            return format!("<pre><code>{}</code></pre>", lines.join("\n"));
        }
    }
    format!(
        "<pre><code>{}</code></pre>",
        html::escape(text.trim_end_matches('\n'))
    )
}

pub struct MarkdownPreview;

impl Plugin for MarkdownPreview {
    fn manifest() -> Manifest {
        Manifest::new("markdown-preview", env!("CARGO_PKG_VERSION"))
            .description("Markdown (CommonMark + GFM) to sanitized HTML")
            .hook(Hook::Render)
            .paths(["*.md", "*.markdown", "*.mdown"])
            .mime_types(["text/markdown"])
            .priority(10)
    }

    fn render(info: &FileInfo, content: &dyn Content) -> Option<Preview> {
        let s: Settings = settings().unwrap_or_else(|e| {
            log::warn(&format!("{e}; using the defaults"));
            Settings::default()
        });
        // Never past three quarters of the time the host says is left (see
        // code-preview): fenced code after that is shown plain.
        let budget = Duration::from_millis(s.highlight_budget_ms)
            .min(pd2_plugin_sdk::time_left().mul_f32(0.75));
        let deadline = Instant::now() + budget;
        let size = content.size();
        let shown = size.min(s.max_bytes);
        let bytes = content.read(0, shown as u32);
        let text = String::from_utf8_lossy(&bytes);
        let notice = if shown < size {
            format!(
                "<p class=\"notice\">Showing the first {shown} of {size} bytes (max_bytes).</p>"
            )
        } else {
            String::new()
        };
        let body = format!("{notice}{}", render_markdown(&text, deadline));
        Some(Preview::html(html::document(
            &info.path,
            &format!("{BASE_STYLE}{STYLE}"),
            &body,
        )))
    }
}

pd2_plugin_sdk::export_plugin!(MarkdownPreview);

#[cfg(test)]
mod tests {
    use pd2_plugin_sdk::{Plugin, testing};

    use super::*;

    fn render(md: &str) -> String {
        let (info, file) = testing::file("README.md", "text/markdown; charset=utf-8", md);
        String::from_utf8(MarkdownPreview::render(&info, &file).unwrap().body).unwrap()
    }

    #[test]
    fn headings_get_anchors_like_github() {
        let html = render("# Set up\n\n## Set up\n\n## Run `make`!\n");
        assert!(html.contains("<h1 id=\"set-up\">"), "{html}");
        assert!(html.contains("<h2 id=\"set-up-1\">"), "{html}");
        assert!(html.contains("<h2 id=\"run-make\">"), "{html}");
    }

    #[test]
    fn fenced_code_is_single_spaced() {
        let html = render("```java\nclass A {\n  void f() {}\n}\n```\n");
        let start = html.find("<pre><code>").expect("a code block");
        let end = html[start..].find("</code></pre>").expect("its end") + start;
        let block = &html[start..end];
        assert_eq!(
            block.matches('\n').count(),
            2,
            "one newline between each of 3 lines: {block}"
        );
        assert!(!block.contains("\n\n"), "{block}");
    }

    /// No tag in the output runs script: checked inside real tags only
    /// (escaped text like `&lt;script&gt;` is harmless and expected).
    fn assert_safe(html: &str) {
        let lower = html.to_lowercase();
        for tag in lower
            .split('<')
            .skip(1)
            .map(|t| t.split('>').next().unwrap_or(""))
        {
            let name = tag.split([' ', '\t', '\n', '/']).next().unwrap_or("");
            assert!(
                !["script", "iframe", "object", "embed", "svg", "math"].contains(&name),
                "<{tag}> in {html}"
            );
            assert!(
                !tag.contains("javascript:") && !tag.contains("vbscript:"),
                "<{tag}> in {html}"
            );
            let attrs: Vec<&str> = tag.split_whitespace().skip(1).collect();
            assert!(
                !attrs.iter().any(|a| a.starts_with("on")),
                "<{tag}> in {html}"
            );
        }
    }

    #[test]
    fn gfm_tables_task_lists_strikethrough() {
        let html = render(
            "# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n- [ ] todo\n\n~~old~~ *new*\n",
        );
        assert!(html.contains("<h1 id=\"title\">Title</h1>"));
        assert!(
            html.contains("<table class=\"md\">") && html.contains("<td>2</td>"),
            "{html}"
        );
        assert!(
            html.contains("type=\"checkbox\"") && html.contains("checked"),
            "{html}"
        );
        assert!(html.contains("<del>old</del>") && html.contains("<em>new</em>"));
    }

    #[test]
    fn hostile_markdown_is_neutralised() {
        let hostile = [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<a href=\"javascript:alert(1)\" onclick=\"x()\">hi</a>",
            "[click](javascript:alert(1))",
            "[click](JaVaScRiPt:alert(1))",
            "[click](java\tscript:alert(1))",
            "[click]( vbscript:msgbox)",
            "<javascript:alert(1)>",
            "![x](javascript:alert(1))",
            "[ref]\n\n[ref]: javascript:alert(1)",
            "<iframe src=\"https://evil\"></iframe>",
            "<div style=\"position:fixed\">x</div>",
        ];
        for md in hostile {
            let html = render(md);
            assert_safe(&html);
        }
        assert!(!render("<div style=\"position:fixed\">x</div>").contains("<div style"));
        // Raw HTML stays readable as text.
        assert!(render("<b>bold?</b>").contains("&lt;b&gt;bold?&lt;/b&gt;"));
    }

    #[test]
    fn safe_links_survive() {
        let html = render(
            "[a](https://example.com/x?y=1) [b](docs/readme.md) [c](#top) [d](mailto:ta@example.com) ![i](data:image/png;base64,AAAA)",
        );
        assert!(html.contains("href=\"https://example.com/x?y=1\""));
        assert!(html.contains("href=\"docs/readme.md\"") && html.contains("href=\"#top\""));
        assert!(html.contains("href=\"mailto:ta@example.com\""));
        assert!(html.contains("src=\"data:image/png;base64,AAAA\""));
        assert!(safe_url("a/b:c", false), "colon after the path started");
        assert!(!safe_url("data:text/html,<script>", true));
    }

    #[test]
    fn fenced_code_is_highlighted_and_escaped() {
        let html = render(
            "```rust\nfn main() { let s = \"</script>\"; }\n```\n\n```\n<plain>\n```\n\n```nosuchlang\nx < y\n```\n",
        );
        assert!(html.contains("<span style=\"color:"), "{html}");
        assert!(
            html.contains("&lt;/script&gt;")
                && html.contains("&lt;plain&gt;")
                && html.contains("x &lt; y")
        );
        assert_safe(&html);
    }

    #[test]
    fn empty_huge_and_invalid_utf8() {
        assert!(render("").contains("<body>"));
        let html = {
            let (info, file) = testing::file("x.md", "text/markdown", vec![b'#', b' ', 0xFF, b'a']);
            String::from_utf8(MarkdownPreview::render(&info, &file).unwrap().body).unwrap()
        };
        assert!(html.contains("<h1 id=\"a\">�a</h1>"), "{html}");
        testing::set_settings(serde_json::json!({"max_bytes": 10}));
        let html = render(&"word ".repeat(100));
        assert!(html.contains("Showing the first 10 of 500 bytes"));
        testing::set_settings(serde_json::json!({}));
    }
}
