//! `$…$` and `$$…$$` as MathML, which browsers draw without any script
//! (a preview runs none). The converter writes the LaTeX's own text into
//! its output unescaped (`\text{<b>}` would be markup), so its output is
//! passed through an allowlist: MathML elements and attributes it makes are
//! kept, anything else is shown as text.

use pd2_plugin_sdk::html::{escape, escape_into};

/// Longest formula converted; a longer one is shown as its source.
const MAX_LATEX: usize = 4000;

const ELEMENTS: &[&str] = &[
    "math",
    "mi",
    "mn",
    "mo",
    "ms",
    "mtext",
    "mspace",
    "mrow",
    "mfrac",
    "msqrt",
    "mroot",
    "mstyle",
    "merror",
    "mpadded",
    "mphantom",
    "menclose",
    "msub",
    "msup",
    "msubsup",
    "munder",
    "mover",
    "munderover",
    "mtable",
    "mtr",
    "mtd",
    "semantics",
    "annotation",
];
const ATTRIBUTES: &[&str] = &[
    "display",
    "displaystyle",
    "mathvariant",
    "stretchy",
    "fence",
    "separator",
    "form",
    "columnalign",
    "rowalign",
    "notation",
    "width",
    "height",
    "depth",
    "lspace",
    "rspace",
    "accent",
    "accentunder",
    "linethickness",
    "scriptlevel",
    "xmlns",
    "encoding",
];

/// The formula as MathML, or its source in a `<code>` when it cannot be
/// converted.
pub fn render(latex: &str, display: bool) -> String {
    let style = if display {
        latex2mathml::DisplayStyle::Block
    } else {
        latex2mathml::DisplayStyle::Inline
    };
    // The converter reports some errors inside its output.
    let converted = (latex.len() <= MAX_LATEX)
        .then(|| latex2mathml::latex_to_mathml(latex, style).ok())
        .flatten()
        .filter(|mathml| !mathml.contains("[PARSE ERROR"));
    match converted {
        Some(mathml) => sanitize(&mathml),
        None => {
            let fence = if display { "$$" } else { "$" };
            format!(
                "<code class=\"math-source\">{fence}{}{fence}</code>",
                escape(latex)
            )
        }
    }
}

/// Keeps the allowed elements and attributes; everything else becomes text.
fn sanitize(mathml: &str) -> String {
    let mut out = String::with_capacity(mathml.len() + 16);
    let mut rest = mathml;
    while let Some(at) = rest.find('<') {
        escape_into(&mut out, &rest[..at]);
        rest = &rest[at..];
        match tag(rest) {
            Some((len, kept)) => {
                out.push_str(&kept);
                rest = &rest[len..];
            }
            None => {
                out.push_str("&lt;");
                rest = &rest[1..];
            }
        }
    }
    escape_into(&mut out, rest);
    out
}

/// An allowed tag at the start of `text`: its length there and how it is
/// written out (attributes outside the allowlist dropped).
fn tag(text: &str) -> Option<(usize, String)> {
    let end = text.find('>')?;
    let inner = &text[1..end];
    let (closing, inner) = match inner.strip_prefix('/') {
        Some(inner) => (true, inner),
        None => (false, inner),
    };
    // `<mspace …/>`: HTML knows no self-closing MathML element, so it is
    // written open and closed (left open, it would swallow the rest).
    let (inner, empty) = match inner.strip_suffix('/') {
        Some(inner) => (inner, true),
        None => (inner, false),
    };
    let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
    let name = &inner[..name_end];
    if !ELEMENTS.contains(&name) {
        return None;
    }
    if closing {
        return (name_end == inner.len()).then(|| (end + 1, format!("</{name}>")));
    }
    let mut kept = format!("<{name}");
    let mut attributes = inner[name_end..].trim();
    while !attributes.is_empty() {
        let (key, after) = attributes.split_once("=\"")?;
        let (value, after) = after.split_once('"')?;
        let key = key.trim();
        let plain = value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " .%-:/#".contains(c));
        if ATTRIBUTES.contains(&key) && plain {
            kept.push_str(&format!(" {key}=\"{value}\""));
        }
        attributes = after.trim();
    }
    kept.push('>');
    if empty {
        kept.push_str(&format!("</{name}>"));
    }
    Some((end + 1, kept))
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn formulas_become_mathml() {
        let inline = render("i^{th}", false);
        assert!(
            inline.starts_with("<math") && inline.contains("<msup>"),
            "{inline}"
        );
        let block = render(r"\frac{a}{b} < c", true);
        assert!(
            block.contains("<mfrac>") && block.contains("<mo>&lt;</mo>"),
            "{block}"
        );
    }

    #[test]
    fn a_space_does_not_swallow_the_rest() {
        let html = render(r"\int_0^1 x^2\,dx = \frac{1}{3}", true);
        assert!(!html.contains("/>"), "{html}");
        let after_space = html.split("<mspace").nth(1).unwrap_or_default();
        assert!(
            after_space.contains("</mspace>") && after_space.contains("<mfrac>"),
            "{html}"
        );
        assert!(html.contains("<mi>d</mi><mi>x</mi>"), "{html}");
    }

    #[test]
    fn text_in_a_formula_is_never_markup() {
        let html = render(r#"\text{<img src=x onerror="alert(1)">} x"#, false);
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img"), "{html}");
        let html = render(r"\text{</math><script>alert(1)</script>}", false);
        assert!(
            !html.contains("<script") && !html.contains("</math><"),
            "{html}"
        );
    }

    #[test]
    fn what_cannot_be_converted_is_shown_as_source() {
        let html = render(&"x".repeat(5000), false);
        assert!(
            html.starts_with("<code class=\"math-source\">$xxx"),
            "{}",
            &html[..60]
        );
    }
}
