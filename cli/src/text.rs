//! What the terminal shows: tickets named by link or id, times, comment
//! bodies as plain text.

use crate::error::{CliError, Result};

/// A ticket as the commands name it: `ID` (yours), `USER/ID`, or the
/// app's link (`https://host/#/t/USER/ID/…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRef {
    pub user: String,
    pub id: String,
}

impl TicketRef {
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let rest = match text.find("#/t/") {
            Some(at) => &text[at + 4..],
            None => text,
        };
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        let (user, id) = match parts.as_slice() {
            [id] => ("@me", *id),
            [user, id, ..] => (*user, *id),
            [] => ("", ""),
        };
        // `@v2` of a version's link (`ID@v2`) is not part of the id.
        let id = id.split('@').next().unwrap_or_default();
        let is_id = id.len() == 20 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let is_user = !user.is_empty()
            && user.len() <= 64
            && (user == "@me" || user.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !is_id || !is_user {
            return Err(CliError::usage(format!(
                "`{text}` is not a ticket: give its id (20 hex characters, `pd2 list` shows yours), USER/ID or its link"
            )));
        }
        Ok(Self {
            user: user.to_owned(),
            id: id.to_owned(),
        })
    }

    /// `/ticket/USER/ID`.
    pub fn path(&self) -> String {
        format!("/ticket/{}/{}", self.user, self.id)
    }
}

/// The app's address of a ticket.
pub fn ticket_link(server: &str, author: &str, id: &str) -> String {
    format!("{server}/#/t/{author}/{id}")
}

/// This machine's offset from UTC, read once before any thread starts
/// (reading it later is refused by the `time` crate: the environment may
/// change under a running thread). UTC when it cannot be read.
static LOCAL: std::sync::OnceLock<time::UtcOffset> = std::sync::OnceLock::new();

pub fn init_local_offset() {
    let _ = LOCAL.set(time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC));
}

/// Unix milliseconds as local time: `2026-12-06 04:31 +08:00`.
pub fn time(millis: i64) -> String {
    let offset = LOCAL.get().copied().unwrap_or(time::UtcOffset::UTC);
    match time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000)) {
        Ok(t) => {
            let t = t.to_offset(offset);
            let zone = if offset.is_utc() {
                "UTC".to_owned()
            } else {
                let (h, m, _) = offset.as_hms();
                format!(
                    "{}{:02}:{:02}",
                    if offset.is_negative() { '-' } else { '+' },
                    h.abs(),
                    m.abs()
                )
            };
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} {zone}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => "?".into(),
    }
}

/// A size for people: `812 B`, `14.2 KiB`, `3.1 MiB`.
pub fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{:.1} MiB", b / KIB / KIB)
    }
}

/// The sanitised HTML of a comment as terminal text: paragraphs and line
/// breaks kept, links as `text <url>`, tags dropped, entities decoded,
/// control characters (a terminal's escape sequences) removed.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    let mut href: Option<(String, usize)> = None;
    let mut in_pre = false;
    while let Some(at) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..at]));
        let Some(end) = rest[at..].find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[at + 1..at + end];
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let closing = tag.starts_with('/');
        match (name.as_str(), closing) {
            ("a", false) => {
                href = tag
                    .split("href=\"")
                    .nth(1)
                    .and_then(|h| h.split('"').next())
                    .map(|h| (decode_entities(h), out.len()));
            }
            ("a", true) => {
                // The address after the text, unless the text is it.
                if let Some((h, start)) = href.take()
                    && out.get(start..) != Some(h.as_str())
                {
                    out.push_str(&format!(" <{h}>"));
                }
            }
            ("br", _) => out.push('\n'),
            // Inline code keeps its backticks, as it was written.
            ("code", _) if !in_pre => out.push('`'),
            ("pre", false) => in_pre = true,
            ("li", false) => out.push_str("\n• "),
            ("pre", true) => {
                in_pre = false;
                out.push('\n');
            }
            ("p" | "ul" | "ol" | "blockquote" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6", true) => {
                out.push('\n')
            }
            _ => {}
        }
        rest = &rest[at + end + 1..];
    }
    out.push_str(&decode_entities(rest));
    let cleaned: String = out
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect();
    // At most one blank line in a row.
    let mut lines: Vec<&str> = Vec::new();
    for line in cleaned.lines().map(str::trim_end) {
        if !(line.is_empty() && lines.last().is_some_and(|l| l.is_empty())) {
            lines.push(line);
        }
    }
    lines.join("\n").trim().to_owned()
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(end) = after.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let entity = &after[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// One of the server's `rejections` (`{file, plugin, message}`; `file`
/// null for a rule about the whole ticket) as a line: `file: message
/// (plugin)`.
pub fn rejection(r: &serde_json::Value) -> String {
    let message = printable(r["message"].as_str().unwrap_or("refused"));
    let plugin = printable(r["plugin"].as_str().unwrap_or("?"));
    match r["file"].as_str() {
        Some(file) => format!("{}: {message} ({plugin})", printable(file)),
        None => format!("{message} ({plugin})"),
    }
}

/// Text from the server shown on a terminal: no escape sequences.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_named_every_way_a_student_has_one() {
        let id = "0123456789abcdef0123";
        let want = |user: &str| TicketRef {
            user: user.into(),
            id: id.into(),
        };
        assert_eq!(TicketRef::parse(id).unwrap(), want("@me"));
        assert_eq!(TicketRef::parse(&format!("42/{id}")).unwrap(), want("42"));
        assert_eq!(
            TicketRef::parse(&format!("https://t.example/#/t/42/{id}/src/Main.java#L3")).unwrap(),
            want("42")
        );
        assert_eq!(
            TicketRef::parse(&format!("http://h/#/t/42/{id}@v2")).unwrap(),
            want("42")
        );
        assert!(TicketRef::parse("0123").is_err());
        assert!(TicketRef::parse(&format!("../{id}")).is_err());
    }

    #[test]
    fn comments_read_as_text() {
        assert_eq!(
            html_to_text(
                "<p>Use <code>&lt;vector&gt;</code> &amp; see <a href=\"https://x.example/?a=1&amp;b=2\" rel=\"x\">docs</a></p>\n<ul>\n<li>one</li>\n</ul>"
            ),
            "Use `<vector>` & see docs <https://x.example/?a=1&b=2>\n\n• one"
        );
        assert_eq!(html_to_text("a\u{1b}[31mred"), "a[31mred");
        assert_eq!(
            html_to_text("<a href=\"https://x.example/\">https://x.example/</a>"),
            "https://x.example/"
        );
    }
}
