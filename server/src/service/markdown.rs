//! Comment bodies: Markdown rendered to HTML on the server, sanitised by
//! construction rather than by filtering afterwards. Every event of the
//! parser is turned into HTML here: raw HTML in the source (blocks and
//! inline) becomes escaped text; an image becomes a link to it (no remote
//! image is ever loaded by a reader's browser, which would tell a third
//! party who read the comment, and when); a link keeps only `http`,
//! `https`, `mailto` and in-page (`#L12`) addresses, and opens with
//! `rel="noopener noreferrer nofollow"`. What `pulldown-cmark` writes for
//! the rest is escaped text inside the tags it chose.

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, html};

use crate::sdk_html::escape;

/// `body` as sanitised HTML.
pub fn render(body: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_TASKLISTS);
    // An image's alt text is collected until its end, then written as the
    // link's text.
    let mut image: Option<(String, String)> = None;
    let mut links: Vec<bool> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    for event in Parser::new_ext(body, options) {
        if let Some((_, alt)) = image.as_mut() {
            match event {
                Event::End(TagEnd::Image) => {
                    let (url, alt) = image.take().unwrap_or_default();
                    let text = if alt.is_empty() { url.clone() } else { alt };
                    events.push(Event::Html(CowStr::from(link_open(&url))));
                    events.push(Event::Text(CowStr::from(format!("image: {text}"))));
                    events.push(Event::Html(CowStr::from(link_close(&url))));
                }
                Event::Text(t) | Event::Code(t) => alt.push_str(&t),
                _ => {}
            }
            continue;
        }
        match event {
            // Raw HTML is text.
            Event::Html(raw) | Event::InlineHtml(raw) => events.push(Event::Text(raw)),
            Event::Start(Tag::Image { dest_url, .. }) => {
                image = Some((dest_url.to_string(), String::new()));
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                ..
            }) => {
                let url = if link_type == LinkType::Email {
                    format!("mailto:{dest_url}")
                } else {
                    dest_url.to_string()
                };
                let safe = is_safe(&url);
                links.push(safe);
                if safe {
                    events.push(Event::Html(CowStr::from(link_open(&url))));
                }
            }
            Event::End(TagEnd::Link) => {
                if links.pop().unwrap_or(false) {
                    events.push(Event::Html(CowStr::from("</a>")));
                }
            }
            other => events.push(other),
        }
    }
    let mut out = String::with_capacity(body.len() * 2);
    html::push_html(&mut out, events.into_iter());
    out
}

fn link_open(url: &str) -> String {
    if !is_safe(url) {
        return String::new();
    }
    format!(
        "<a href=\"{}\" rel=\"noopener noreferrer nofollow\" target=\"_blank\">",
        escape(url)
    )
}

fn link_close(url: &str) -> &'static str {
    if is_safe(url) { "</a>" } else { "" }
}

/// An address a comment may link to.
fn is_safe(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("https://")
        || lower.starts_with("http://")
        || lower.starts_with("mailto:")
        || lower.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn raw_html_is_text_and_scripts_never_run() {
        let html = render("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)> **b**");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("<strong>b</strong>"), "{html}");
    }

    #[test]
    fn images_become_links_and_bad_schemes_lose_their_link() {
        let html = render(
            "![tracker](https://evil.example/t.png) [x](javascript:alert(1)) [ok](https://a.example/a&b)",
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("image: tracker"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(
            html.contains(r#"href="https://a.example/a&amp;b" rel="noopener noreferrer nofollow""#),
            "{html}"
        );
    }

    #[test]
    fn code_and_lists_render() {
        let html = render("Use `x < y`:\n\n```java\nif (a<b) {}\n```\n\n- one\n- two\n");
        assert!(html.contains("<code>x &lt; y</code>"), "{html}");
        assert!(html.contains("if (a&lt;b) {}"), "{html}");
        assert!(html.contains("<li>two</li>"), "{html}");
    }
}
