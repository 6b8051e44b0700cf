use std::time::{Duration, Instant};

use super::*;

fn lang(path: &str) -> &'static Lang {
    for_file(path, "").unwrap_or_else(|| panic!("no language for {path}"))
}

fn one(path: &str, code: &str) -> String {
    lines(code, lang(path)).join("\n")
}

#[test]
fn picks_languages_by_name_extension_first_line_and_token() {
    let name = |path: &str, first: &str| for_file(path, first).map(|l| l.name);
    assert_eq!(name("src/Main.java", ""), Some("Java"));
    assert_eq!(name("a.py", ""), Some("Python"));
    assert_eq!(name("lib.rs", ""), Some("Rust"));
    assert_eq!(name("app.ts", ""), Some("TypeScript"));
    assert_eq!(name("Main.kt", ""), Some("Kotlin"));
    assert_eq!(name("Cargo.toml", ""), Some("TOML"));
    assert_eq!(name("Makefile", ""), Some("Makefile"));
    assert_eq!(name("build/CMakeLists.txt", ""), Some("CMake"));
    assert_eq!(name("Dockerfile.dev", ""), Some("Dockerfile"));
    assert_eq!(name("MAIN.C", ""), Some("C"));
    assert_eq!(name("run", "#!/bin/bash"), Some("Shell"));
    assert_eq!(name("run", "#!/usr/bin/env python3"), Some("Python"));
    assert_eq!(
        name("run", "#!/usr/bin/env -S python3.12 -u"),
        Some("Python")
    );
    assert_eq!(name("tool", "#!/usr/bin/node"), Some("JavaScript"));
    assert_eq!(name("data", "<?xml version=\"1.0\"?>"), Some("XML"));
    assert_eq!(name("notes", "hello"), None);
    assert_eq!(for_token("c++").map(|l| l.name), Some("C++"));
    assert_eq!(for_token("Python").map(|l| l.name), Some("Python"));
    assert_eq!(for_token("nosuchlang").map(|l| l.name), None);
}

#[test]
fn java_keywords_types_methods_annotations_strings_comments() {
    let html = one(
        "A.java",
        "@Override\npublic void run(String[] args) { // go\n  System.out.println(\"hi\" + 42); }",
    );
    for expected in [
        "<span class=\"me\">@Override</span>",
        "<span class=\"kw\">public</span>",
        "<span class=\"ty\">void</span>",
        "<span class=\"fn\">run</span>(<span class=\"ty\">String</span>[]",
        "<span class=\"co\">// go</span>",
        "<span class=\"fn\">println</span>(<span class=\"st\">&quot;hi&quot;</span>",
        "<span class=\"nu\">42</span>",
    ] {
        assert!(html.contains(expected), "{expected} in {html}");
    }
}

#[test]
fn one_line_per_line_without_endings_and_cr_stripped() {
    let out = lines("class A {\r\n  void f() {}\r\n}\n", lang("A.java"));
    assert_eq!(out.len(), 3);
    for line in &out {
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    }
    assert_eq!(out[2], "}");
    assert_eq!(lines("", lang("A.java")), Vec::<String>::new());
    assert_eq!(lines("a\n\nb", lang("a.py")).len(), 3, "blank lines kept");
}

#[test]
fn multi_line_comments_and_strings_are_reopened_on_each_line() {
    let out = lines(
        "/* one\ntwo */ int x;\nString s = \"\"\"\na\n\"\"\";",
        lang("A.java"),
    );
    assert_eq!(out[0], "<span class=\"co\">/* one</span>");
    assert_eq!(
        out[1],
        "<span class=\"co\">two */</span> <span class=\"ty\">int</span> x;"
    );
    assert_eq!(out[3], "<span class=\"st\">a</span>");
}

#[test]
fn markup_is_escaped_everywhere() {
    let html = one("a.c", "char *s = \"</script><b>\"; // <i>&\n");
    assert!(!html.contains("<b>") && !html.contains("<i>") && !html.contains("</script>"));
    assert!(html.contains("&lt;/script&gt;&lt;b&gt;") && html.contains("&lt;i&gt;&amp;"));
    let html = one(
        "x.html",
        "<p class=\"x\" onclick=\"a<b\">hi &amp; <!-- c --></p><script>let x = '<';</script>",
    );
    assert!(html.contains("<span class=\"tg\">p</span>"), "{html}");
    assert!(html.contains("<span class=\"at\">class</span>"), "{html}");
    assert!(
        html.contains("<span class=\"st\">&quot;a&lt;b&quot;</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"bu\">&amp;amp;</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"kw\">let</span>"),
        "script is JavaScript: {html}"
    );
}

#[test]
fn every_course_language_is_highlighted() {
    let samples = [
        ("a.c", "#include <stdio.h>\nint main(void) { return 0; }"),
        (
            "a.cpp",
            "#include <vector>\nint main() { std::vector<int> v; }",
        ),
        ("A.java", "class A { void f() {} }"),
        ("a.py", "def f():\n    return 'x'"),
        ("a.rs", "fn main() { let x = 1; println!(\"{x}\"); }"),
        ("a.js", "const x = () => 1;"),
        ("a.ts", "let x: number = 1;"),
        ("a.go", "package main\nfunc main() {}"),
        ("A.cs", "class A { static void Main() {} }"),
        ("A.kt", "fun main() { val x = 1 }"),
        ("A.scala", "object A { def f = 1 }"),
        ("b.gradle", "plugins { id 'java' }"),
        ("run.sh", "for i in 1 2; do echo \"$i\"; done"),
        ("q.sql", "SELECT * FROM t WHERE id = 1;"),
        ("d.json", "{\"a\": [1, true]}"),
        ("c.yaml", "a: 1\nb: [x]"),
        ("Cargo.toml", "[package]\nname = \"x\""),
        ("p.xml", "<a b=\"1\">t</a>"),
        ("i.html", "<p class=\"x\">hi</p>"),
        ("s.css", "a { color: red; }"),
        ("s.scss", "$c: red; a { color: $c; }"),
        ("Makefile", "all: main\n\tcc -o main main.c"),
        ("CMakeLists.txt", "project(x)\nset(A ON)"),
        ("Dockerfile", "FROM debian\nRUN echo hi"),
        ("a.rb", "def f; puts 'x'; end"),
        ("a.php", "<?php function f($x) { return $x; }"),
        ("a.swift", "func f() -> Int { return 1 }"),
        ("a.lua", "local function f() return nil end"),
        ("a.pl", "my $x = 1;"),
        ("a.r", "f <- function(x) TRUE"),
        ("a.hs", "main :: IO ()\nmain = putStrLn \"x\""),
        ("a.ml", "let x = 1 (* c *)"),
        ("a.m", "@interface A : NSObject\n@end"),
        ("a.asm", "_start:\n  mov eax, 1 ; exit"),
        ("a.s", ".text\nmain: ret"),
    ];
    for (path, code) in samples {
        let html = one(path, code);
        assert!(
            html.contains("<span class=\""),
            "{path} is not highlighted: {html}"
        );
    }
}

#[test]
fn language_specifics() {
    let rust = one(
        "a.rs",
        "#[derive(Debug)]\nfn f<'a>(x: &'a str) -> char { let r = r#\"raw \"q\"\"#; 'c' }",
    );
    assert!(
        rust.contains("<span class=\"me\">#[derive(Debug)]</span>"),
        "{rust}"
    );
    assert!(rust.contains("<span class=\"va\">&#39;a</span>"), "{rust}");
    assert!(
        rust.contains("<span class=\"st\">r#&quot;raw &quot;q&quot;&quot;#</span>"),
        "{rust}"
    );
    assert!(
        rust.contains("<span class=\"st\">&#39;c&#39;</span>"),
        "{rust}"
    );
    let py = one("a.py", "@dataclass\nclass P:\n    s = f\"{x}\"  # note");
    assert!(py.contains("<span class=\"me\">@dataclass</span>"), "{py}");
    assert!(py.contains("<span class=\"ty\">P</span>"), "{py}");
    assert!(
        py.contains("<span class=\"st\">f&quot;{x}&quot;</span>"),
        "{py}"
    );
    assert!(py.contains("<span class=\"co\"># note</span>"), "{py}");
    let sh = one("a.sh", "echo \"$HOME\" $# ${#a[@]} # c");
    assert!(sh.contains("<span class=\"va\">$#</span>"), "{sh}");
    assert!(sh.contains("<span class=\"va\">${#a[@]}</span>"), "{sh}");
    assert!(sh.contains("<span class=\"co\"># c</span>"), "{sh}");
    let json = one("a.json", "{\"key\": \"value\", \"n\": -1.5e3}");
    assert!(
        json.contains("<span class=\"ke\">&quot;key&quot;</span>"),
        "{json}"
    );
    assert!(
        json.contains("<span class=\"st\">&quot;value&quot;</span>"),
        "{json}"
    );
    let css = one(
        "a.css",
        "a:hover, .btn { color: #fff; margin: 0 4px !important }",
    );
    assert!(css.contains("<span class=\"me\">:hover</span>"), "{css}");
    assert!(css.contains("<span class=\"ke\">color</span>"), "{css}");
    assert!(css.contains("<span class=\"nu\">#fff</span>"), "{css}");
    assert!(css.contains("<span class=\"nu\">4px</span>"), "{css}");
    let sql = one("a.sql", "select Name from T where x = 'a''b' -- c");
    assert!(sql.contains("<span class=\"kw\">select</span>"), "{sql}");
    assert!(sql.contains("<span class=\"co\">-- c</span>"), "{sql}");
    let c = one("a.c", "#define X \\\n  1\nint y;");
    assert!(
        c.contains("<span class=\"me\">#define X \\</span>\n<span class=\"me\">  1</span>"),
        "{c}"
    );
}

#[test]
fn ten_thousand_lines_highlight_completely_and_fast() {
    let code = java_sample(10_000);
    let started = Instant::now();
    let (out, highlighted) = lines_until(
        &code,
        lang("Big.java"),
        Some(Instant::now() + Duration::from_secs(60)),
    );
    assert_eq!(out.len(), 10_000);
    assert_eq!(highlighted, 10_000);
    // Not a benchmark (that is `pd2-ticket plugin bench`): a guard against
    // an accidentally quadratic scan, with a hundredfold margin.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_passed_deadline_leaves_the_rest_plain() {
    let code = java_sample(20_000);
    let (out, highlighted) = lines_until(&code, lang("Big.java"), Some(Instant::now()));
    assert_eq!(out.len(), 20_000);
    assert!(highlighted < 20_000, "stopped early");
    assert!(
        !out[19_999].contains("<span"),
        "the tail is plain: {}",
        out[19_999]
    );
    assert_eq!(out[19_999], plain_lines(&code)[19_999]);
}

pub fn java_sample(lines: usize) -> String {
    let block = "    /** Adds {@code a} to <b>b</b>. */\n    @Override\n    public int add(int a, int b) {\n        String s = \"sum: \" + (a + b); // comment\n        return Math.max(a, b) * 0x1F + 3.5e2;\n    }\n";
    let head = ["package demo;", "", "public class Big {"];
    let mut code: Vec<&str> = head
        .into_iter()
        .chain(block.lines().cycle())
        .take(lines - 1)
        .collect();
    code.push("}");
    code.join("\n")
}
