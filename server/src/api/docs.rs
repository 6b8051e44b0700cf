//! `/docs`: the OpenAPI document rendered as one static HTML page.
//!
//! Rendered on the server, once, from the same document as
//! `/openapi.json`, and readable without script. `/app/docs.js` (served by
//! the binary, nothing from a CDN, so the page works offline) adds a "Try
//! it" form to every operation, sending with the token the web app keeps.

use std::fmt::Write;

use crate::sdk_html::escape;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}\
code{background:#f3f3f3;padding:0 .25em;border-radius:3px}\
h2{border-bottom:1px solid #ddd;margin-top:2em}\
section.op{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:1em 0}\
.m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}\
.get{color:#0a6}.post{color:#06c}.put{color:#c70}.delete{color:#c22}\
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}\
.lock{font-size:.85em;color:#666}\
.try{margin:.5em 0;border-top:1px dashed #ddd;padding-top:.5em}.try label{display:block;margin:.3em 0 .1em;font-weight:600}\
.try input[type=text],.try textarea{width:100%;box-sizing:border-box;font:13px ui-monospace,Menlo,Consolas,monospace;padding:4px}\
.try pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:24em;white-space:pre-wrap}\
.token{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;background:#f6f8fa}\
.token input{width:100%;font:13px ui-monospace,Menlo,Consolas,monospace;padding:4px}\
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}code,.try pre,.token{background:#161b22}\
section.op,td,th,h2,.token{border-color:#30363d}.lock{color:#9198a1}a{color:#4493f8}\
input,textarea{background:#0d1117;color:#e6edf3;border:1px solid #30363d}}";

pub fn render(document: &utoipa::openapi::OpenApi) -> String {
    let doc = serde_json::to_value(document).unwrap_or_default();
    let mut out = String::new();
    let title = text(&doc["info"]["title"]);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} API</title><style>{STYLE}</style><script type=\"module\" src=\"/app/docs.js\"></script></head><body>",
        escape(title)
    );
    let _ = write!(
        out,
        "<h1>{} API <small>{}</small></h1>{}<p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI {}).</p>",
        escape(title),
        escape(text(&doc["info"]["version"])),
        paragraphs(text(&doc["info"]["description"])),
        escape(text(&doc["openapi"])),
    );
    for tag in doc["tags"].as_array().into_iter().flatten() {
        let name = text(&tag["name"]);
        let _ = write!(
            out,
            "<h2 id=\"tag-{0}\">{0}</h2>{1}",
            escape(name),
            paragraphs(text(&tag["description"]))
        );
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in METHODS {
                let op = &item[method];
                let tagged = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == name));
                if tagged {
                    operation(&mut out, method, path, op);
                }
            }
        }
    }
    out.push_str("<h2 id=\"schemas\">Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = write!(
            out,
            "<h3 id=\"schema-{0}\">{0}</h3>{1}",
            escape(name),
            paragraphs(text(&schema["description"]))
        );
        properties(&mut out, schema);
    }
    out.push_str("</body></html>");
    out
}

fn operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    let _ = write!(
        out,
        "<section class=\"op\" data-method=\"{method}\" data-path=\"{}\"><h3><span class=\"m {method}\">{method}</span> <code>{}</code>{}</h3>{}{}",
        escape(path),
        escape(path),
        if secured {
            " <span class=\"lock\">🔒 bearer token</span>"
        } else {
            ""
        },
        paragraphs(text(&op["summary"])),
        paragraphs(text(&op["description"])),
    );
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str(
            "<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>",
        );
        for p in params {
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(text(&p["name"])),
                if p["required"] == true {
                    " (required)"
                } else {
                    ""
                },
                escape(text(&p["in"])),
                type_of(&p["schema"]),
                inline(text(&p["description"])),
            );
        }
        out.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (media, body) in content {
            let _ = write!(
                out,
                "<p>Request body: <code>{}</code> {}</p>",
                escape(media),
                type_of(&body["schema"])
            );
        }
    }
    out.push_str("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
    for (status, response) in op["responses"].as_object().into_iter().flatten() {
        let bodies: Vec<String> = response["content"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(media, c)| format!("<code>{}</code> {}", escape(media), type_of(&c["schema"])))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(status),
            inline(text(&response["description"])),
            bodies.join("<br>")
        );
    }
    out.push_str("</table></section>");
}

fn properties(out: &mut String, schema: &Value) {
    let parts: Vec<&Value> = match schema["allOf"].as_array() {
        Some(all) => all.iter().collect(),
        None => vec![schema],
    };
    out.push_str("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
    for part in parts {
        if part.get("$ref").is_some() {
            let _ = write!(
                out,
                "<tr><td colspan=\"3\">all fields of {}</td></tr>",
                type_of(part)
            );
        }
        let required: Vec<&str> = part["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (name, prop) in part["properties"].as_object().into_iter().flatten() {
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                escape(name),
                if required.contains(&name.as_str()) {
                    ""
                } else {
                    " (optional)"
                },
                type_of(prop),
                inline(text(&prop["description"])),
            );
        }
    }
    out.push_str("</table>");
}

/// A schema in a few words, linking to named schemas.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    if let Some(variants) = schema["oneOf"].as_array() {
        let names: Vec<String> = variants.iter().map(type_of).collect();
        return names.join(" or ");
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let described: Vec<String> = kinds
        .iter()
        .map(|kind| match *kind {
            "array" => format!("array of {}", type_of(&schema["items"])),
            "string" if schema["contentMediaType"].is_string() || schema["format"] == "binary" => {
                "bytes".to_owned()
            }
            other => escape(other),
        })
        .collect();
    if described.is_empty() {
        "any".to_owned()
    } else {
        described.join(" or ")
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn paragraphs(source: &str) -> String {
    source
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>", inline(p)))
        .collect()
}

/// Escapes, then turns `backticks` into `<code>`.
fn inline(source: &str) -> String {
    escape(source)
        .split('`')
        .enumerate()
        .map(|(i, piece)| {
            if i % 2 == 1 {
                format!("<code>{piece}</code>")
            } else {
                piece.to_owned()
            }
        })
        .collect()
}
