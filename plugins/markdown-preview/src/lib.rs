//! `markdown-preview`: Markdown like GitHub renders a README in a
//! repository (see the `markdown` crate): sanitized, code highlighted,
//! the ticket's own images inlined, links to its files marked.

use std::time::Duration;

use pd2_plugin_sdk::{
    Content, FileInfo, Hook, Manifest, Plugin, Preview, html, settings_or_default,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Bytes rendered at most; the rest is cut with a notice.
    pub max_bytes: u64,
    /// Milliseconds spent highlighting code blocks at most.
    pub highlight_budget_ms: u64,
    /// Largest image of the ticket inlined; larger ones get a placeholder.
    pub max_image_bytes: u64,
    /// Bytes of images inlined into one page at most.
    pub max_images_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            highlight_budget_ms: 1_000,
            max_image_bytes: 2 * 1024 * 1024,
            max_images_bytes: 6 * 1024 * 1024,
        }
    }
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
        let s: Settings = settings_or_default();
        // Never past three quarters of the time the host says is left (see
        // code-preview): fenced code after that is shown plain.
        let deadline = pd2_plugin_sdk::deadline(Duration::from_millis(s.highlight_budget_ms));
        let size = content.size();
        let shown = size.min(s.max_bytes);
        let bytes = content.read(0, shown as u32);
        let text = String::from_utf8_lossy(&bytes);
        let mut ctx = markdown::Context::new(&info.path, deadline);
        ctx.max_image_bytes = s.max_image_bytes;
        ctx.max_images_bytes = s.max_images_bytes;
        let rendered = markdown::render(&text, &ctx);
        let mut notices = String::new();
        if shown < size {
            notices.push_str(&format!(
                "<p class=\"notice\">Showing the first {shown} of {size} bytes (max_bytes).</p>"
            ));
        }
        if rendered.highlighting_cut {
            notices.push_str("<p class=\"notice\">Some code is shown without highlighting (out of time: highlight_budget_ms or the server's time limit).</p>");
        }
        Some(Preview::html(html::document(
            &info.path,
            &format!("{}{}", highlight::style(), markdown::STYLE),
            &format!("{notices}{}", rendered.html),
        )))
    }
}

pd2_plugin_sdk::export_plugin!(MarkdownPreview);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use markdown::safe_url;
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
        assert!(
            html.contains("<a href=\"docs/readme.md\" data-pd2-path=\"docs/readme.md\">")
                && html.contains("href=\"#top\"")
        );
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
        assert!(html.contains("<span class=\"kw\">fn</span>"), "{html}");
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

    #[test]
    fn fenced_java_colours_methods_annotations_and_void() {
        let html = render("```java\n@Override\npublic void run() { go(); }\n```\n");
        for expected in [
            "<span class=\"me\">@Override</span>",
            "<span class=\"ty\">void</span>",
            "<span class=\"fn\">run</span>",
            "<span class=\"fn\">go</span>",
        ] {
            assert!(html.contains(expected), "{expected} in {html}");
        }
    }

    #[test]
    fn relative_images_are_inlined_from_the_ticket() {
        testing::clear_files();
        testing::add_file("docs/shot.png", "image/png", b"\x89PNG fake".to_vec());
        testing::add_file("docs/big.png", "image/png", vec![0u8; 3 * 1024 * 1024]);
        testing::add_file("docs/notes.txt", "text/plain", b"hi".to_vec());
        let (info, file) = testing::file(
            "docs/README.md",
            "text/markdown",
            "![out](shot.png) ![big](./big.png) ![gone](missing.png) ![txt](notes.txt) ![up](../../x.png) ![web](https://example.com/a.png)",
        );
        let html = String::from_utf8(MarkdownPreview::render(&info, &file).unwrap().body).unwrap();
        testing::clear_files();
        assert!(
            html.contains("<img src=\"data:image/png;base64,iVBORyBmYWtl\" alt=\"out\" />"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"img-missing\">Image “big” not shown: 3.0 MiB — too large to show inline (more than 2.0 MiB)</span>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<span class=\"img-missing\">Image “gone” not shown: not in this ticket</span>"
            ),
            "{html}"
        );
        assert!(
            html.contains("Image “txt” not shown: not an image (text/plain)"),
            "{html}"
        );
        assert!(
            html.contains("src=\"https://example.com/a.png\""),
            "absolute URLs stay: {html}"
        );
        assert!(
            html.contains("Image “up” not shown: outside this ticket"),
            "{html}"
        );
    }

    #[test]
    fn relative_links_carry_the_ticket_path() {
        let (info, file) = testing::file(
            "docs/README.md",
            "text/markdown",
            "[main](../src/Main.java#L3 \"Main\") [setup](#setup) [web](https://example.com) [up](../../etc/passwd)",
        );
        let html = String::from_utf8(MarkdownPreview::render(&info, &file).unwrap().body).unwrap();
        assert!(
            html.contains("<a href=\"../src/Main.java#L3\" data-pd2-path=\"src/Main.java\" title=\"Main\">main</a>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"#setup\">setup</a>"), "{html}");
        assert!(
            html.contains("<a href=\"https://example.com\">web</a>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"../../etc/passwd\">up</a>"),
            "a path out of the ticket is no ticket link: {html}"
        );
    }

    #[test]
    fn out_of_time_code_is_plain_with_a_notice() {
        testing::set_time_left(Duration::ZERO);
        let html = render("```java\nclass A {}\n```\n");
        testing::set_time_left(Duration::from_secs(3600));
        assert!(
            html.contains("Some code is shown without highlighting"),
            "{html}"
        );
        assert!(
            html.contains("<pre><code>class A {}</code></pre>"),
            "{html}"
        );
    }

    #[test]
    fn dark_theme_follows_the_reader() {
        let html = render("# x\n");
        assert!(
            html.contains("@media (prefers-color-scheme:dark)"),
            "{html}"
        );
    }
}
