//! Example plugin: renders plain-text files (`.txt`, `.log`, test inputs
//! and outputs) as escaped HTML with line numbers. It shows the whole SDK:
//! a manifest, one hook, settings, logging, and native unit tests.

use pd2_plugin_sdk::{Content, FileInfo, Hook, Manifest, Plugin, Preview, html, log, settings};
use serde::Deserialize;

/// `[plugins.settings.plain-text]`
#[derive(Deserialize)]
#[serde(default)]
struct Settings {
    /// Spaces a tab stands for.
    tab_width: usize,
    /// Files larger than this are shown truncated.
    max_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tab_width: 4,
            max_bytes: 512 * 1024,
        }
    }
}

pub struct PlainText;

impl Plugin for PlainText {
    fn manifest() -> Manifest {
        Manifest::new("plain-text", env!("CARGO_PKG_VERSION"))
            .description("Plain-text previews with line numbers")
            .hook(Hook::Render)
            .paths(["*.txt", "*.log", "*.in", "*.out"])
            .priority(-10)
    }

    fn render(info: &FileInfo, content: &dyn Content) -> Option<Preview> {
        let settings: Settings = settings().unwrap_or_else(|e| {
            log::warn(&e);
            Settings::default()
        });
        let shown = content.size().min(settings.max_bytes);
        let bytes = content.read(0, shown as u32);
        let text = String::from_utf8_lossy(&bytes).replace('\t', &" ".repeat(settings.tab_width));
        let mut rows = String::new();
        for (n, line) in text.lines().enumerate() {
            rows.push_str(&format!(
                "<tr><td class=\"n\">{}</td><td>{}</td></tr>",
                n + 1,
                html::escape(line)
            ));
        }
        let notice = if shown < content.size() {
            format!(
                "<p class=\"notice\">Showing the first {shown} of {} bytes.</p>",
                content.size()
            )
        } else {
            String::new()
        };
        let style = "body{margin:0;font:13px/1.5 monospace}td{white-space:pre;padding:0 8px}\
                     .n{color:#999;text-align:right;user-select:none}.notice{color:#a60;padding:4px 8px}";
        Some(Preview::html(html::document(
            &info.path,
            style,
            &format!("{notice}<table>{rows}</table>"),
        )))
    }
}

pd2_plugin_sdk::export_plugin!(PlainText);

#[cfg(test)]
mod tests {
    use pd2_plugin_sdk::{Plugin, testing};

    use super::PlainText;

    fn render(data: &[u8]) -> String {
        let (info, file) = testing::file("notes.txt", "text/plain; charset=utf-8", data);
        let preview = PlainText::render(&info, &file).expect("a preview");
        assert_eq!(preview.content_type, "text/html; charset=utf-8");
        String::from_utf8(preview.body).unwrap()
    }

    #[test]
    fn numbers_lines_and_escapes() {
        let html = render(b"a<b>\n\tc");
        assert!(html.contains("<td class=\"n\">1</td><td>a&lt;b&gt;</td>"));
        assert!(html.contains("<td class=\"n\">2</td><td>    c</td>"));
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn settings_change_tabs_and_truncate() {
        testing::set_settings(serde_json::json!({"tab_width": 2, "max_bytes": 3}));
        let html = render(b"\tabcdef");
        assert!(html.contains("<td>  ab</td>"), "{html}");
        assert!(html.contains("Showing the first 3 of 7 bytes"));
        testing::set_settings(serde_json::json!({}));
    }

    #[test]
    fn invalid_utf8_is_shown_safely() {
        let html = render(&[0xff, 0xfe, b'o', b'k']);
        assert!(html.contains("ok"));
    }
}
