//! HTML helpers for renderers.

/// Escapes text for use in HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A complete, self-contained HTML document around `body`, with inline
/// `style` (previews are served with a CSP that allows inline styles only).
///
/// ```
/// let page = pd2_plugin_sdk::html::document("notes.txt", "pre { tab-size: 4 }", "<pre>hi</pre>");
/// assert!(page.starts_with("<!DOCTYPE html>"));
/// ```
pub fn document(title: &str, style: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>{style}</style></head><body>{body}</body></html>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
