//! HTML helpers for renderers.

/// Escapes text for use in HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    escape_into(&mut out, text);
    out
}

/// [`escape`], appending to `out` (no allocation per piece: for renderers
/// that build a page from many small pieces, such as highlighted tokens).
pub fn escape_into(out: &mut String, text: &str) {
    let mut from = 0;
    for (i, b) in text.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[from..i]);
        out.push_str(entity);
        from = i + 1;
    }
    out.push_str(&text[from..]);
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

/// The attributes of a link from the file being rendered (`from`) to
/// another file of the ticket (`path`, as [`crate::resolve`] gives it),
/// with an optional `#fragment` (`L12` for a line): a relative `href`, and
/// `data-pd2-path`, by which a client (our web app) opens that file in its
/// reading room. The preview itself cannot navigate (its CSP sandbox
/// forbids it), so without `data-pd2-path` such a link does nothing.
///
/// ```
/// use pd2_plugin_sdk::html::file_link;
/// assert_eq!(
///     file_link("docs/README.md", "src/Main.java", Some("L3")),
///     r#"href="../src/Main.java#L3" data-pd2-path="src/Main.java""#
/// );
/// assert_eq!(
///     file_link("README.md", "shots/run 1.png", None),
///     r#"href="shots/run%201.png" data-pd2-path="shots/run 1.png""#
/// );
/// ```
pub fn file_link(from: &str, path: &str, fragment: Option<&str>) -> String {
    let from_dirs: Vec<&str> = from.split('/').collect();
    let from_dirs = &from_dirs[..from_dirs.len().saturating_sub(1)];
    let to: Vec<&str> = path.split('/').collect();
    let common = from_dirs
        .iter()
        .zip(&to)
        .take_while(|(a, b)| a == b)
        .count()
        .min(to.len().saturating_sub(1));
    let mut parts: Vec<String> = vec!["..".to_owned(); from_dirs.len() - common];
    parts.extend(to[common..].iter().map(|s| encode_segment(s)));
    let mut href = parts.join("/");
    if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
        href.push('#');
        href.push_str(&encode_segment(fragment));
    }
    format!(
        "href=\"{}\" data-pd2-path=\"{}\"",
        escape(&href),
        escape(path)
    )
}

/// Percent-encodes what would change a relative URL's meaning or break
/// it; other characters (letters of any script) stay as they are.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for c in segment.chars() {
        if matches!(c, '%' | '#' | '?' | ' ' | '"' | '<' | '>' | '\\' | ':') || c.is_ascii_control()
        {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
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

    #[test]
    fn links_to_files_of_the_ticket_are_relative_and_carry_the_path() {
        use super::file_link;
        let attrs = |from, path, fragment| file_link(from, path, fragment);
        assert_eq!(
            attrs("README.md", "docs/readme.md", None),
            r#"href="docs/readme.md" data-pd2-path="docs/readme.md""#
        );
        assert_eq!(
            attrs("a/b/c.md", "a/x.md", None),
            r#"href="../x.md" data-pd2-path="a/x.md""#
        );
        assert_eq!(
            attrs("a/b.md", "a/b.md", Some("L2-L4")),
            r#"href="b.md#L2-L4" data-pd2-path="a/b.md""#
        );
        // A folder named like the file's name is no common prefix.
        assert_eq!(
            attrs("src/main.c", "src/main.c/x", None),
            r#"href="main.c/x" data-pd2-path="src/main.c/x""#
        );
        assert_eq!(
            attrs("x.md", "文件 #1?.md", None),
            r#"href="文件%20%231%3F.md" data-pd2-path="文件 #1?.md""#
        );
        assert_eq!(
            attrs("x.md", "a\"<b>.md", None),
            r#"href="a%22%3Cb%3E.md" data-pd2-path="a&quot;&lt;b&gt;.md""#
        );
    }
}
