use pd2_plugin_sdk::{Plugin, testing};
use serde_json::json;

use super::*;

fn render(notebook: &Value) -> Option<String> {
    let (info, file) = testing::file(
        "lab/analysis.ipynb",
        "application/x-ipynb+json",
        notebook.to_string(),
    );
    NotebookPreview::render(&info, &file).map(|p| String::from_utf8(p.body).unwrap())
}

fn sample() -> Value {
    json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
        "cells": [
            {"cell_type": "markdown", "source": ["# Results\n", "<script>alert(1)</script>\n", "\n", "![plot](attachment:p.png)"],
             "attachments": {"p.png": {"image/png": "iVBORw0K\nGgo="}}},
            {"cell_type": "code", "execution_count": 3, "source": "def f(x):\n    return x + 1\nprint(f(1))",
             "outputs": [
                {"output_type": "stream", "name": "stdout", "text": ["2\n"]},
                {"output_type": "stream", "name": "stderr", "text": "warning <x>\n"},
                {"output_type": "execute_result", "execution_count": 3,
                 "data": {"text/plain": ["42"], "text/html": ["<b onclick=x>42</b>"]}},
                {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}},
                {"output_type": "display_data", "data": {"application/javascript": "alert(1)"}},
                {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                 "traceback": ["\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division by zero"]}
             ]},
            {"cell_type": "code", "execution_count": null, "source": [], "outputs": []},
            {"cell_type": "raw", "source": "raw <text>"}
        ]
    })
}

#[test]
fn cells_outputs_and_counts() {
    let html = render(&sample()).expect("a preview");
    for expected in [
        "<h1 id=\"results\">Results</h1>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"plot\" />",
        "<div class=\"prompt\">In&nbsp;[3]:</div>",
        "<span class=\"kw\">def</span> <span class=\"fn\">f</span>(x):",
        "<pre class=\"stream\">2\n</pre>",
        "<pre class=\"stream stderr\">warning &lt;x&gt;\n</pre>",
        "<div class=\"prompt\">Out&nbsp;[3]:</div><div><pre>42</pre></div>",
        "<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"output\">",
        "Output of type application/javascript is not shown in previews.",
        "<pre class=\"error\">ZeroDivisionError: division by zero</pre>",
        "<div class=\"prompt\">In&nbsp;[&nbsp;]:</div>",
        "<pre>raw &lt;text&gt;</pre>",
    ] {
        assert!(html.contains(expected), "{expected} in {html}");
    }
    assert!(
        !html.contains("onclick"),
        "HTML outputs never reach the page"
    );
    assert!(!html.contains('\u{1b}'), "ANSI codes are stripped");
}

#[test]
fn image_data_cannot_break_out_of_the_attribute() {
    let nb = json!({"cells": [{"cell_type": "code", "source": "", "outputs": [
        {"output_type": "display_data", "data": {"image/png": "AAAA\" onerror=\"alert(1)", "text/plain": "fallback"}}
    ]}]});
    let html = render(&nb).unwrap();
    assert!(!html.contains("onerror"), "{html}");
    assert!(html.contains("<pre>fallback</pre>"), "{html}");
}

#[test]
fn the_kernel_language_is_used() {
    let nb = json!({"metadata": {"language_info": {"name": "rust"}}, "cells": [
        {"cell_type": "code", "source": "let x = 1;", "outputs": []}
    ]});
    assert!(
        render(&nb)
            .unwrap()
            .contains("<span class=\"kw\">let</span>")
    );
}

#[test]
fn broken_empty_and_huge_notebooks() {
    let (info, file) = testing::file("a.ipynb", "application/x-ipynb+json", "{not json");
    assert!(
        NotebookPreview::render(&info, &file).is_none(),
        "declined: plain text shows it"
    );
    assert!(
        render(&json!({"cells": []}))
            .unwrap()
            .contains("This notebook has no cells.")
    );
    testing::set_settings(json!({"max_page_bytes": 10}));
    let html = render(&sample()).unwrap();
    testing::set_settings(json!({}));
    assert!(
        html.contains("Showing the first 1 of 4 cells (the page reached max_page_bytes)."),
        "{html}"
    );
    testing::set_settings(json!({"max_bytes": 5}));
    let html = render(&sample()).unwrap();
    testing::set_settings(json!({}));
    assert!(
        html.contains("more than max_bytes (5): not rendered"),
        "{html}"
    );
}
