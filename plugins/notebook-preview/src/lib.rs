//! `notebook-preview`: a Jupyter notebook (`.ipynb`, nbformat 4) as a
//! page to read: Markdown cells rendered like `markdown-preview`
//! (sanitized, images of the ticket and cell attachments inlined), code
//! cells highlighted in the kernel's language with their execution counts,
//! and their outputs: text streams, results, errors with their traceback,
//! and images. HTML and JavaScript outputs never run: their plain-text
//! form is shown instead. A notebook that does not parse is declined, so
//! the plain-text renderer shows its JSON.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use pd2_plugin_sdk::{
    Content, FileInfo, Hook, Manifest, Plugin, Preview, html, log, settings_or_default,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Larger notebooks are not rendered (a notice says so).
    pub max_bytes: u64,
    /// The page stops growing at this size: later cells are left out with
    /// a notice (the server refuses previews over `plugins.max_output`).
    pub max_page_bytes: usize,
    /// Milliseconds spent highlighting at most; later code is plain.
    pub highlight_budget_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024 * 1024,
            max_page_bytes: 7 * 1024 * 1024,
            highlight_budget_ms: 1_000,
        }
    }
}

/// Source text: a string or a list of lines.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Text {
    #[default]
    None,
    One(String),
    Lines(Vec<String>),
}

impl Text {
    fn joined(&self) -> String {
        match self {
            Text::None => String::new(),
            Text::One(s) => s.clone(),
            Text::Lines(lines) => lines.concat(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Notebook {
    cells: Vec<Cell>,
    #[serde(default)]
    metadata: Value,
}

#[derive(Debug, Deserialize)]
struct Cell {
    cell_type: String,
    #[serde(default)]
    source: Text,
    #[serde(default)]
    execution_count: Option<i64>,
    #[serde(default)]
    outputs: Vec<Output>,
    /// `{"image.png": {"image/png": "<base64>"}}`
    #[serde(default)]
    attachments: HashMap<String, HashMap<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct Output {
    output_type: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Text,
    #[serde(default)]
    data: serde_json::Map<String, Value>,
    #[serde(default)]
    execution_count: Option<i64>,
    #[serde(default)]
    ename: Option<String>,
    #[serde(default)]
    evalue: Option<String>,
    #[serde(default)]
    traceback: Vec<String>,
}

const STYLE: &str = ".nb{max-width:1000px;margin:0 auto;padding:12px 16px;font:15px/1.6 -apple-system,Segoe UI,Helvetica,Arial,sans-serif}\
.cell{display:grid;grid-template-columns:80px minmax(0,1fr);gap:8px;margin:10px 0}\
.prompt{font:12px/1.6 ui-monospace,Menlo,Consolas,monospace;color:#8c959f;text-align:right;padding-top:8px;white-space:nowrap}\
.in .prompt{color:#0550ae}.out .prompt{color:#cf222e}\
.cell pre{margin:0;font:13px/1.5 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;overflow-wrap:anywhere}\
.in pre{border:1px solid #d0d7de;border-radius:6px}.out pre{background:none;padding:4px 10px}\
pre.stderr{background:#fff0f0!important}pre.error{background:#ffebe9!important;color:#82071e}\
.md-cell{padding:0 10px}.md-cell>:first-child{margin-top:0}.out img{max-width:100%;background:#fff}\
.note{color:#8c959f;font-style:italic;font-size:13px}\
@media (prefers-color-scheme:dark){.in pre{border-color:#30363d}pre.stderr{background:#2d1517!important}\
pre.error{background:#3c1618!important;color:#ffa198}.in .prompt{color:#79c0ff}.out .prompt{color:#ff7b72}}\
@media (max-width:600px){.nb{padding:8px}.cell{grid-template-columns:minmax(0,1fr);gap:2px}.prompt{text-align:left;padding-top:0}}\
math[display=block]{margin:.5em 0;overflow-x:auto}code.math-source{color:#8c959f}";

/// ANSI escape sequences (colours in tracebacks) are dropped.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Base64 image data as it may be put into a `data:` URL: only the
/// alphabet (a notebook could smuggle quotes into the attribute).
fn clean_base64(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    clean
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=')
        .then_some(clean)
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The kernel's language, for highlighting code cells.
fn language(metadata: &Value) -> &'static highlight::Lang {
    let names = [
        metadata.pointer("/language_info/name"),
        metadata.pointer("/kernelspec/language"),
        metadata.pointer("/kernelspec/name"),
    ];
    names
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(highlight::for_token)
        .or_else(|| highlight::for_token("python"))
        .unwrap_or(&highlight::lang::PLAIN)
}

fn prompt(label: &str, count: Option<i64>) -> String {
    match count {
        Some(n) => format!("<div class=\"prompt\">{label}&nbsp;[{n}]:</div>"),
        None => format!("<div class=\"prompt\">{label}&nbsp;[&nbsp;]:</div>"),
    }
}

/// One output of a code cell.
fn output(out: &Output, ctx: &markdown::Context) -> String {
    let body = match out.output_type.as_str() {
        "stream" => {
            let class = if out.name.as_deref() == Some("stderr") {
                "stream stderr"
            } else {
                "stream"
            };
            format!(
                "<pre class=\"{class}\">{}</pre>",
                html::escape(&strip_ansi(&out.text.joined()))
            )
        }
        "error" => {
            let mut text = format!(
                "{}: {}",
                out.ename.as_deref().unwrap_or("Error"),
                out.evalue.as_deref().unwrap_or("")
            );
            if !out.traceback.is_empty() {
                text = out.traceback.join("\n");
            }
            format!(
                "<pre class=\"error\">{}</pre>",
                html::escape(&strip_ansi(&text))
            )
        }
        _ => rich(&out.data, ctx),
    };
    let label = if out.output_type == "execute_result" {
        prompt("Out", out.execution_count)
    } else {
        "<div class=\"prompt\"></div>".to_owned()
    };
    format!("<div class=\"cell out\">{label}<div>{body}</div></div>")
}

/// A result or display: the richest form that is safe to show.
fn rich(data: &serde_json::Map<String, Value>, ctx: &markdown::Context) -> String {
    for mime in IMAGE_TYPES {
        if let Some(b64) = data.get(mime).and_then(clean_base64) {
            return format!("<img src=\"data:{mime};base64,{b64}\" alt=\"output\">");
        }
    }
    if let Some(md) = data.get("text/markdown") {
        return markdown::render(&text_of(md), ctx).html;
    }
    if let Some(text) = data.get("text/plain") {
        return format!("<pre>{}</pre>", html::escape(&strip_ansi(&text_of(text))));
    }
    let kinds: Vec<&str> = data.keys().map(String::as_str).collect();
    format!(
        "<p class=\"note\">Output of type {} is not shown in previews.</p>",
        html::escape(&kinds.join(", "))
    )
}

/// `attachment:name.png` in a Markdown cell, as the data it names.
fn inline_attachments(source: &str, cell: &Cell) -> String {
    let mut source = source.to_owned();
    for (name, forms) in &cell.attachments {
        let Some((mime, b64)) = IMAGE_TYPES
            .iter()
            .find_map(|m| forms.get(*m).and_then(clean_base64).map(|b| (*m, b)))
        else {
            continue;
        };
        source = source.replace(
            &format!("attachment:{name}"),
            &format!("data:{mime};base64,{b64}"),
        );
    }
    source
}

/// The notebook as HTML, and notices.
pub fn render_notebook(text: &str, path: &str, s: &Settings, deadline: Instant) -> Option<String> {
    let notebook: Notebook = match serde_json::from_str(text) {
        Ok(nb) => nb,
        Err(e) => {
            log::debug(&format!("not a notebook: {e}"));
            return None;
        }
    };
    let lang = language(&notebook.metadata);
    let ctx = markdown::Context::new(path, deadline);
    let mut page = String::new();
    let mut notices = Vec::new();
    let mut cut = false;
    let total = notebook.cells.len();
    for (shown, cell) in notebook.cells.iter().enumerate() {
        if page.len() > s.max_page_bytes {
            notices.push(format!(
                "Showing the first {shown} of {total} cells (the page reached max_page_bytes)."
            ));
            break;
        }
        let source = cell.source.joined();
        match cell.cell_type.as_str() {
            "markdown" => {
                let rendered = markdown::render(&inline_attachments(&source, cell), &ctx);
                cut |= rendered.highlighting_cut;
                page.push_str(&format!(
                    "<div class=\"cell\"><div></div><div class=\"md-cell\">{}</div></div>",
                    rendered.html
                ));
            }
            "code" => {
                let (lines, highlighted) = highlight::lines_until(&source, lang, Some(deadline));
                cut |= highlighted < lines.len();
                page.push_str(&format!(
                    "<div class=\"cell in\">{}<pre><code>{}</code></pre></div>",
                    prompt("In", cell.execution_count),
                    lines.join("\n")
                ));
                for out in &cell.outputs {
                    page.push_str(&output(out, &ctx));
                }
            }
            _ => page.push_str(&format!(
                "<div class=\"cell\"><div></div><pre>{}</pre></div>",
                html::escape(&source)
            )),
        }
    }
    if cut {
        notices.push("Some code is shown without highlighting (out of time: highlight_budget_ms or the server's time limit).".to_owned());
    }
    if total == 0 {
        notices.push("This notebook has no cells.".to_owned());
    }
    let notices: String = notices
        .iter()
        .map(|n| format!("<p class=\"notice\">{}</p>", html::escape(n)))
        .collect();
    Some(format!("{notices}<div class=\"nb\">{page}</div>"))
}

pub struct NotebookPreview;

impl Plugin for NotebookPreview {
    fn manifest() -> Manifest {
        Manifest::new("notebook-preview", env!("CARGO_PKG_VERSION"))
            .description("Jupyter notebooks: Markdown, highlighted code with execution counts, outputs and images")
            .hook(Hook::Render)
            .paths(["*.ipynb"])
            .mime_types(["application/x-ipynb+json"])
            .priority(10)
    }

    fn render(info: &FileInfo, content: &dyn Content) -> Option<Preview> {
        let s: Settings = settings_or_default();
        let style = format!("{}{}{STYLE}", highlight::style(), markdown::STYLE);
        if content.size() > s.max_bytes {
            let notice = format!(
                "<p class=\"notice\">This notebook is {} bytes, more than max_bytes ({}): not rendered. Download it to open it in Jupyter.</p>",
                content.size(),
                s.max_bytes
            );
            return Some(Preview::html(html::document(&info.path, &style, &notice)));
        }
        let deadline = pd2_plugin_sdk::deadline(Duration::from_millis(s.highlight_budget_ms));
        let text = String::from_utf8_lossy(&content.read_all()).into_owned();
        let body = render_notebook(&text, &info.path, &s, deadline)?;
        Some(Preview::html(html::document(&info.path, &style, &body)))
    }
}

pd2_plugin_sdk::export_plugin!(NotebookPreview);

#[cfg(test)]
mod tests;
