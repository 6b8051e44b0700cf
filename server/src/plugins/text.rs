//! Text a plugin hands the host (messages, log lines, panic messages,
//! manifest strings), made safe to show and store: bounded in length and
//! with control characters escaped, so a plugin can neither flood a
//! response or the log nor forge log lines with `\n`.

/// `text` with every control character written as its Rust escape (`\n`,
/// `\u{1b}`), cut after `max_chars` characters of output with `…`.
pub fn bounded(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)) + 3);
    let mut chars = 0usize;
    for c in text.chars() {
        let control = c.is_control();
        let len = if control {
            c.escape_default().count()
        } else {
            1
        };
        if chars + len > max_chars {
            out.push('…');
            return out;
        }
        if control {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        chars += len;
    }
    out
}

/// The length of `text` in characters (and bytes, when they differ), for
/// an error message.
pub fn describe_len(text: &str) -> String {
    let chars = text.chars().count();
    if chars == text.len() {
        format!("{chars} characters")
    } else {
        format!("{chars} characters ({} bytes)", text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(bounded("a\nb\r\u{1b}[31m", 100), "a\\nb\\r\\u{1b}[31m");
        assert_eq!(bounded("tab\there", 100), "tab\\there");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded("ééé", 2), "éé…");
        // An escape is never split.
        assert_eq!(bounded("ab\n", 3), "ab…");
    }
}
