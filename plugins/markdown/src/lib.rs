//! Markdown to sanitized HTML, the way GitHub renders a README inside a
//! repository: CommonMark with GFM tables, task lists, strikethrough and
//! footnotes; headings with anchors; fenced code highlighted; images
//! that are other files of the ticket inlined as `data:` URLs (the
//! preview's CSP allows no other images); links to other files of the
//! ticket marked with the path they point at.
//!
//! Sanitizing is done on the parser's event stream, before any HTML
//! exists: raw HTML in the Markdown is rendered as visible text (so no
//! `<script>`, no event-handler attributes can appear), and link and image
//! targets are kept only for `http`, `https`, `mailto` and relative URLs
//! (images also `data:image/…`). Everything else is escaped by the HTML
//! writer.

mod math;

use std::{cell::Cell, collections::HashMap, time::Instant};

use base64::Engine;
use pd2_plugin_sdk::{
    html::{escape, file_link},
    open_file, resolve,
};
use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

/// Page style for rendered Markdown (on top of [`highlight::style`]),
/// light and dark.
pub const STYLE: &str = "body{font:15px/1.6 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;\
max-width:900px;margin:0 auto;padding:16px 24px}\
code{font:13px ui-monospace,Menlo,Consolas,monospace;background:#eff1f3;padding:1px 4px;border-radius:4px}\
pre code{background:none;padding:0}pre{border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere}\
table.md{border-collapse:collapse;width:auto}table.md td,table.md th{border:1px solid #d0d7de;padding:4px 10px;white-space:normal}\
blockquote{margin:0;padding:0 12px;color:#59636e;border-left:4px solid #d0d7de}img{max-width:100%}\
a{color:#0969da}h1,h2{border-bottom:1px solid #d8dee4;padding-bottom:.3em}\
li:has(>input[type=checkbox]){list-style:none}li>input[type=checkbox]{margin:0 .4em 0 -1.3em}\
.footnote-definition{font-size:90%;margin-top:6px}.footnote-definition p{display:inline}\
.footnote-definition-label{margin-right:.4em}\
.img-missing{display:inline-block;border:1px dashed #d0d7de;border-radius:6px;padding:6px 10px;color:#59636e;font-size:90%}\
@media (prefers-color-scheme:dark){code{background:#2d333b}a{color:#4493f8}\
table.md td,table.md th{border-color:#3d444d}h1,h2{border-color:#3d444d}\
blockquote{color:#9198a1;border-color:#3d444d}.img-missing{border-color:#3d444d;color:#9198a1}}";

/// Limits and context of one rendering.
pub struct Context<'a> {
    /// The document's path inside the ticket: relative links and images
    /// are resolved against its folder.
    pub from: &'a str,
    /// Code is highlighted until then, shown plain after.
    pub deadline: Instant,
    /// Largest image inlined; larger ones get a placeholder.
    pub max_image_bytes: u64,
    /// Bytes of images inlined at most in one document.
    pub max_images_bytes: u64,
    /// Images already inlined (a notebook renders several documents).
    pub images_used: Cell<u64>,
}

impl<'a> Context<'a> {
    pub fn new(from: &'a str, deadline: Instant) -> Self {
        Self {
            from,
            deadline,
            max_image_bytes: 2 * 1024 * 1024,
            max_images_bytes: 6 * 1024 * 1024,
            images_used: Cell::new(0),
        }
    }
}

/// What [`render`] made.
pub struct Rendered {
    pub html: String,
    /// Some code was shown plain because time ran out.
    pub highlighting_cut: bool,
}

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

/// `https://…`, `data:…`, `//host/…`: not a path inside the ticket.
fn has_scheme(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("//")
        || url
            .find(':')
            .is_some_and(|colon| !url[..colon].contains(['/', '?', '#']))
}

/// An image of the ticket as a `data:` URL, or why it is not shown.
fn inline_image(ctx: &Context, path: &str) -> Result<String, String> {
    let (info, content) = open_file(path).ok_or("not in this ticket")?;
    let mime = info.mime().to_owned();
    if !mime.starts_with("image/") {
        return Err(format!("not an image ({mime})"));
    }
    if info.size > ctx.max_image_bytes {
        return Err(format!(
            "{} — too large to show inline (more than {})",
            size(info.size),
            size(ctx.max_image_bytes)
        ));
    }
    let used = ctx.images_used.get();
    if used.saturating_add(info.size) > ctx.max_images_bytes {
        return Err(format!(
            "not shown: this page already inlines {} of images",
            size(used)
        ));
    }
    ctx.images_used.set(used + info.size);
    let bytes = content.read_all();
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Markdown to an HTML fragment.
pub fn render(text: &str, ctx: &Context) -> Rendered {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_MATH;
    let mut cut = false;
    let mut code: Option<(String, String)> = None; // (language, text)
    // An image shown as a placeholder: its alt text is collected here.
    let mut missing: Option<(String, String)> = None; // (reason, alt)
    let mut events: Vec<Event> = Vec::new();
    for event in Parser::new_ext(text, options) {
        if let Some((_, buffer)) = code.as_mut() {
            match event {
                Event::Text(t) => buffer.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    let (lang, buffer) = code.take().unwrap_or_default();
                    let (block, block_cut) = code_block(&lang, &buffer, ctx.deadline);
                    cut |= block_cut;
                    events.push(Event::Html(CowStr::from(block)));
                }
                _ => {}
            }
            continue;
        }
        if let Some((_, alt)) = missing.as_mut() {
            match event {
                Event::Text(t) | Event::Code(t) => alt.push_str(&t),
                Event::End(TagEnd::Image) => {
                    let (reason, alt) = missing.take().unwrap_or_default();
                    events.push(Event::Html(CowStr::from(format!(
                        "<span class=\"img-missing\">Image “{}” not shown: {}</span>",
                        escape(&alt),
                        escape(&reason)
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
            Event::InlineMath(latex) => Event::Html(CowStr::from(math::render(&latex, false))),
            Event::DisplayMath(latex) => Event::Html(CowStr::from(math::render(&latex, true))),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                if !safe_url(&dest_url, false) {
                    Event::Start(Tag::Link {
                        link_type,
                        dest_url: CowStr::from("#"),
                        title,
                        id,
                    })
                } else if let Some(path) = resolve(ctx.from, &dest_url) {
                    // A link to another file of the ticket: the path goes
                    // with it, so a client can open that file instead of
                    // following the link (the preview itself cannot).
                    let title = if title.is_empty() {
                        String::new()
                    } else {
                        format!(" title=\"{}\"", escape(&title))
                    };
                    let fragment = dest_url.split_once('#').map(|(_, f)| f);
                    Event::Html(CowStr::from(format!(
                        "<a {}{title}>",
                        file_link(ctx.from, &path, fragment)
                    )))
                } else {
                    Event::Start(Tag::Link {
                        link_type,
                        dest_url,
                        title,
                        id,
                    })
                }
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let url = if !safe_url(&dest_url, true) {
                    Ok(CowStr::from(""))
                } else if let Some(path) = resolve(ctx.from, &dest_url) {
                    inline_image(ctx, &path).map(CowStr::from)
                } else if has_scheme(&dest_url) {
                    Ok(dest_url)
                } else {
                    Err("outside this ticket".to_owned())
                };
                match url {
                    Ok(dest_url) => Event::Start(Tag::Image {
                        link_type,
                        dest_url,
                        title,
                        id,
                    }),
                    Err(reason) => {
                        missing = Some((reason, String::new()));
                        continue;
                    }
                }
            }
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
    Rendered {
        html: out.replace("<table>", "<table class=\"md\">"),
        highlighting_cut: cut,
    }
}

/// Gives every heading without an explicit id one made from its text the
/// way GitHub does (lower case, spaces to `-`, punctuation dropped, `-1`,
/// `-2` … for repeats), so `README.md#setup` links work.
fn anchor_headings(events: &mut [Event]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
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

/// A block of code: highlighted when its language is known (until
/// `deadline`), escaped otherwise. Also says whether time cut it.
pub fn code_block(lang: &str, text: &str, deadline: Instant) -> (String, bool) {
    let text = text.strip_suffix('\n').unwrap_or(text);
    if let Some(lang) = highlight::for_token(lang).filter(|_| !lang.is_empty()) {
        let (lines, highlighted) = highlight::lines_until(text, lang, Some(deadline));
        let cut = highlighted < lines.len();
        return (format!("<pre><code>{}</code></pre>", lines.join("\n")), cut);
    }
    (format!("<pre><code>{}</code></pre>", escape(text)), false)
}
