//! The last renderer: any text file no other plugin previews (`.txt`,
//! `.log`, test inputs and outputs, extension-less files, anything typed
//! `text/*`) as escaped HTML with line numbers, so every text file gets a
//! preview and a failing renderer falls through to something. Binaries
//! (a NUL byte, or not UTF-8 when the type is not `text/*`) are declined.
//! It also shows the whole SDK: a manifest, one hook, settings, logging,
//! and native unit tests.

use pd2_plugin_sdk::{
    Content, FileInfo, Hook, Manifest, Plugin, Preview, html, settings_or_default,
};
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

/// Bytes looked at to tell text from binary.
const SNIFF: u32 = 8192;

/// Text: no NUL byte, and valid UTF-8 unless the type already says `text/*`
/// (a character cut at the end of the sample does not count).
fn looks_like_text(info: &FileInfo, head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    if info.mime().starts_with("text/") {
        return true;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() as u32 == SNIFF,
    }
}

pub struct PlainText;

impl Plugin for PlainText {
    fn manifest() -> Manifest {
        Manifest::new("plain-text", env!("CARGO_PKG_VERSION"))
            .description("Plain-text previews with line numbers, for any text file")
            .hook(Hook::Render)
            // No matchers (every file) at the lowest priority: it answers
            // only when nothing else did.
            .priority(-1000)
    }

    fn render(info: &FileInfo, content: &dyn Content) -> Option<Preview> {
        if !looks_like_text(info, &content.read(0, SNIFF)) {
            return None;
        }
        let settings: Settings = settings_or_default();
        let shown = content.size().min(settings.max_bytes);
        let bytes = content.read(0, shown as u32);
        let text = String::from_utf8_lossy(&bytes).replace('\t', &" ".repeat(settings.tab_width));
        let mut rows = String::new();
        for (n, line) in text.lines().enumerate() {
            rows.push_str(&format!(
                "<tr id=\"L{n}\"><td class=\"n\"><a href=\"#L{n}\">{n}</a></td><td>{}</td></tr>",
                html::escape(line),
                n = n + 1,
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
        let style = "body{margin:0;font:14px/1.5 ui-monospace,Menlo,Consolas,monospace}\
                     td{white-space:pre-wrap;overflow-wrap:anywhere;padding:0 8px;vertical-align:top}\
                     .n{color:#999;text-align:right;user-select:none;white-space:nowrap;width:1%}\
                     .n a{color:inherit;text-decoration:none}tr:target{background:#fff3b0}\
                     .notice{color:#a60;padding:4px 8px}";
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
        assert!(html.contains(
            "<tr id=\"L1\"><td class=\"n\"><a href=\"#L1\">1</a></td><td>a&lt;b&gt;</td>"
        ));
        assert!(html.contains("<a href=\"#L2\">2</a></td><td>    c</td>"));
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
    fn any_text_is_previewed_and_binaries_are_declined() {
        let preview = |path: &str, mime: &str, data: &[u8]| {
            let (info, file) = testing::file(path, mime, data);
            PlainText::render(&info, &file)
        };
        assert!(
            preview(
                "Makefile.local",
                "application/octet-stream",
                b"all:\n\tcc a.c"
            )
            .is_some()
        );
        assert!(preview("run", "application/octet-stream", b"#!/bin/sh\necho hi").is_some());
        assert!(preview("data.bin", "application/octet-stream", b"\x00\x01").is_none());
        assert!(preview("a.exe", "application/octet-stream", b"MZ\x90\xff\xfe").is_none());
        assert!(preview("latin1.txt", "text/plain", b"caf\xe9").is_some());
    }

    #[test]
    fn invalid_utf8_is_shown_safely() {
        let html = render(&[0xff, 0xfe, b'o', b'k']);
        assert!(html.contains("ok"));
    }
}
