//! `table-preview`: CSV and TSV files as a table. The first row is the
//! header; the first `max_rows` rows are shown with row numbers, and a
//! notice says how many were left out. Fields follow RFC 4180 (quotes,
//! doubled quotes, line breaks inside quotes); the delimiter of a `.csv`
//! is whichever of `,` `;` tab `|` its first line uses most (spreadsheets
//! in many locales write `;`). Numbers are right-aligned.

use pd2_plugin_sdk::{
    Content, FileInfo, Hook, Manifest, Plugin, Preview, html, settings_or_default,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Rows shown at most (not counting the header).
    pub max_rows: usize,
    /// Columns shown at most.
    pub max_columns: usize,
    /// Characters of one cell shown at most (then `…`).
    pub max_cell_chars: usize,
    /// Bytes read at most; rows beyond are not counted.
    pub max_bytes: u64,
    /// Whether the first row names the columns.
    pub header: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_rows: 1_000,
            max_columns: 100,
            max_cell_chars: 500,
            max_bytes: 8 * 1024 * 1024,
            header: true,
        }
    }
}

/// RFC 4180 records, one at a time.
pub struct Records<'a> {
    text: &'a str,
    pos: usize,
    delimiter: u8,
}

impl<'a> Records<'a> {
    pub fn new(text: &'a str, delimiter: u8) -> Self {
        // A byte-order mark is not part of the first field.
        let pos = if text.starts_with('\u{feff}') { 3 } else { 0 };
        Self {
            text,
            pos,
            delimiter,
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Vec<String>;

    fn next(&mut self) -> Option<Vec<String>> {
        let b = self.text.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut i = self.pos;
        loop {
            if i < b.len() && b[i] == b'"' && field.is_empty() {
                // Quoted: up to the closing quote; `""` is one quote; an
                // unclosed quote runs to the end.
                let mut from = i + 1;
                loop {
                    match b[from..].iter().position(|c| *c == b'"') {
                        None => {
                            field.push_str(&self.text[from..]);
                            i = b.len();
                            break;
                        }
                        Some(p) => {
                            let quote = from + p;
                            field.push_str(&self.text[from..quote]);
                            if b.get(quote + 1) == Some(&b'"') {
                                field.push('"');
                                from = quote + 2;
                            } else {
                                i = quote + 1;
                                break;
                            }
                        }
                    }
                }
            }
            // Unquoted (or what follows a closing quote): to the delimiter
            // or the line's end.
            let from = i;
            while i < b.len() && b[i] != self.delimiter && b[i] != b'\n' {
                i += 1;
            }
            field.push_str(self.text[from..i].trim_end_matches('\r'));
            fields.push(std::mem::take(&mut field));
            if i < b.len() && b[i] == self.delimiter {
                i += 1;
                continue;
            }
            self.pos = i + 1;
            return Some(fields);
        }
    }
}

/// The delimiter a `.csv` most likely uses, from its first line.
pub fn sniff_delimiter(text: &str) -> u8 {
    let first = text.lines().next().unwrap_or("");
    [b',', b';', b'\t', b'|']
        .into_iter()
        .map(|d| (first.bytes().filter(|c| *c == d).count(), d))
        .max_by_key(|(count, d)| (*count, *d == b','))
        .filter(|(count, _)| *count > 0)
        .map_or(b',', |(_, d)| d)
}

fn is_number(cell: &str) -> bool {
    let t = cell.trim();
    !t.is_empty() && t.parse::<f64>().is_ok()
}

fn cell(text: &str, max_chars: usize, header: bool) -> String {
    let tag = if header { "th" } else { "td" };
    let class = if !header && is_number(text) {
        " class=\"num\""
    } else {
        ""
    };
    let shown = match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    };
    format!("<{tag}{class}>{}</{tag}>", html::escape(&shown))
}

const STYLE: &str = ":root{color-scheme:light dark}body{margin:0;font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif}\
.wrap{overflow:auto;max-height:100vh}table{border-collapse:collapse;font-variant-numeric:tabular-nums}\
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top;white-space:pre-wrap;max-width:40em}\
thead th{position:sticky;top:0;background:#f6f8fa;font-weight:600}td.num{text-align:right}\
th.n,td.n{color:#8c959f;text-align:right;background:#f6f8fa;user-select:none}\
tbody tr:nth-child(even) td:not(.n){background:#f6f8fa80}\
.notice{font:14px sans-serif;background:#fff8e1;color:#7a5a00;padding:6px 10px;margin:0}\
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}th,td{border-color:#30363d}\
thead th,th.n,td.n{background:#161b22}tbody tr:nth-child(even) td:not(.n){background:#161b2280}\
.notice{background:#2d2400;color:#e3b341}}";

/// The table page for `text` (already cut at `max_bytes`).
pub fn render_table(text: &str, delimiter: u8, s: &Settings, truncated: bool) -> String {
    let mut records = Records::new(text, delimiter);
    let mut out = String::from("<div class=\"wrap\"><table>");
    let mut widest = 0;
    if s.header
        && let Some(header) = records.next()
    {
        widest = header.len();
        out.push_str("<thead><tr><th class=\"n\"></th>");
        for h in header.iter().take(s.max_columns) {
            out.push_str(&cell(h, s.max_cell_chars, true));
        }
        out.push_str("</tr></thead>");
    }
    out.push_str("<tbody>");
    let mut rows = 0usize;
    for record in records.by_ref() {
        if rows == s.max_rows {
            rows += 1;
            break;
        }
        rows += 1;
        widest = widest.max(record.len());
        out.push_str(&format!("<tr><td class=\"n\">{rows}</td>"));
        for field in record.iter().take(s.max_columns) {
            out.push_str(&cell(field, s.max_cell_chars, false));
        }
        out.push_str("</tr>");
    }
    // Rows beyond the limit are only counted.
    let total = rows + records.count();
    out.push_str("</tbody></table></div>");
    let mut notices = Vec::new();
    if total > s.max_rows {
        notices.push(format!(
            "Showing the first {} of {total}{} rows (max_rows).",
            s.max_rows,
            if truncated { "+" } else { "" }
        ));
    } else if truncated {
        notices.push(format!(
            "Showing the rows of the first {} bytes (max_bytes).",
            s.max_bytes
        ));
    }
    if widest > s.max_columns {
        notices.push(format!(
            "Showing the first {} of {widest} columns (max_columns).",
            s.max_columns
        ));
    }
    let notices: String = notices
        .iter()
        .map(|n| format!("<p class=\"notice\">{}</p>", html::escape(n)))
        .collect();
    format!("{notices}{out}")
}

pub struct TablePreview;

impl Plugin for TablePreview {
    fn manifest() -> Manifest {
        Manifest::new("table-preview", env!("CARGO_PKG_VERSION"))
            .description("CSV and TSV files as a table with a header row")
            .hook(Hook::Render)
            .paths(["*.csv", "*.tsv", "*.tab"])
            .mime_types(["text/csv", "text/tab-separated-values"])
            .priority(10)
    }

    fn render(info: &FileInfo, content: &dyn Content) -> Option<Preview> {
        let s: Settings = settings_or_default();
        let shown = content.size().min(s.max_bytes);
        let bytes = content.read(0, shown as u32);
        if bytes.iter().take(8192).any(|b| *b == 0) {
            return None;
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        let truncated = shown < content.size();
        if truncated {
            // The last line is probably cut: leave it out.
            if let Some(end) = text.rfind('\n') {
                text.truncate(end + 1);
            }
        }
        let delimiter = match info.extension().as_deref() {
            Some("tsv" | "tab") => b'\t',
            _ if info.mime() == "text/tab-separated-values" => b'\t',
            _ => sniff_delimiter(&text),
        };
        Some(Preview::html(html::document(
            &info.path,
            STYLE,
            &render_table(&text, delimiter, &s, truncated),
        )))
    }
}

pd2_plugin_sdk::export_plugin!(TablePreview);

#[cfg(test)]
mod tests {
    use pd2_plugin_sdk::{Plugin, testing};
    use serde_json::json;

    use super::*;

    fn rows(text: &str, d: u8) -> Vec<Vec<String>> {
        Records::new(text, d).collect()
    }

    #[test]
    fn rfc4180_fields() {
        assert_eq!(
            rows(
                "a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\"two\nlines\",\n",
                b','
            ),
            vec![
                vec!["a", "b"],
                vec!["x, y", "say \"hi\""],
                vec!["two\nlines", ""]
            ]
        );
        assert_eq!(rows("\u{feff}id\n1", b','), vec![vec!["id"], vec!["1"]]);
        assert_eq!(rows("a\t b\n", b'\t'), vec![vec!["a", " b"]]);
        assert_eq!(
            rows("\"open", b','),
            vec![vec!["open"]],
            "an unclosed quote ends the file"
        );
        assert!(rows("", b',').is_empty());
    }

    #[test]
    fn delimiters_are_sniffed() {
        assert_eq!(sniff_delimiter("a;b;c\n1;2;3"), b';');
        assert_eq!(sniff_delimiter("a,b\n"), b',');
        assert_eq!(sniff_delimiter("a\tb\n"), b'\t');
        assert_eq!(sniff_delimiter("single\n"), b',');
    }

    fn render(path: &str, data: &str) -> String {
        let (info, file) = testing::file(path, "text/csv", data);
        String::from_utf8(TablePreview::render(&info, &file).unwrap().body).unwrap()
    }

    #[test]
    fn header_rows_numbers_and_escaping() {
        let html = render("grades.csv", "name,grade\n<b>Ann</b>,9.5\nBob,n/a\n");
        assert!(
            html.contains(
                "<thead><tr><th class=\"n\"></th><th>name</th><th>grade</th></tr></thead>"
            ),
            "{html}"
        );
        assert!(
            html.contains("<tr><td class=\"n\">1</td><td>&lt;b&gt;Ann&lt;/b&gt;</td><td class=\"num\">9.5</td></tr>"),
            "{html}"
        );
        assert!(html.contains("<td>n/a</td>"), "{html}");
        assert!(!html.contains("notice\">"), "nothing cut: {html}");
        let tsv = render("a.tsv", "x\ty\n1\t2\n");
        assert!(tsv.contains("<th>x</th><th>y</th>"), "{tsv}");
    }

    #[test]
    fn long_tables_are_cut_with_a_notice() {
        let mut csv = String::from("n\n");
        for i in 0..2_500 {
            csv.push_str(&format!("{i}\n"));
        }
        let html = render("big.csv", &csv);
        assert!(
            html.contains("Showing the first 1000 of 2500 rows (max_rows)."),
            "notice"
        );
        assert!(
            html.contains("<td class=\"n\">1000</td>")
                && !html.contains("<td class=\"n\">1001</td>")
        );

        testing::set_settings(json!({"max_columns": 2, "max_cell_chars": 3}));
        let html = render("wide.csv", "a,b,c,d\nlonger,2,3,4\n");
        testing::set_settings(json!({}));
        assert!(
            html.contains("Showing the first 2 of 4 columns (max_columns)."),
            "{html}"
        );
        assert!(
            html.contains("<td>lon…</td>") && !html.contains("<th>c</th>"),
            "{html}"
        );

        testing::set_settings(json!({"max_bytes": 8}));
        let html = render("cut.csv", "a,b\n1,2\n3,4\n5,6\n");
        testing::set_settings(json!({}));
        assert!(
            html.contains("Showing the rows of the first 8 bytes (max_bytes)."),
            "{html}"
        );
        assert!(
            html.contains("<td class=\"num\">2</td>") && !html.contains(">3<"),
            "{html}"
        );
    }

    #[test]
    fn binaries_are_declined() {
        let (info, file) = testing::file("x.csv", "text/csv", vec![b'a', 0, b'b']);
        assert!(TablePreview::render(&info, &file).is_none());
    }
}
