//! Every relative link of the Markdown guides points at a file that exists
//! and, with a `#fragment`, at a heading of it (GitHub's anchors): the
//! guides were split out of one README, and a moved section must not leave
//! a dead link behind.

use std::path::{Path, PathBuf};

use pd2_ticket_tests::workspace_root;

/// The guides: the README, CONTRIBUTING, BENCHMARKS, `docs/`, the SDK's.
fn guides(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["README.md", "CONTRIBUTING.md", "BENCHMARKS.md"]
        .iter()
        .map(|f| root.join(f))
        .chain([root.join("plugin-sdk/README.md")])
        .collect();
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/");
    files.extend(
        docs.flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    files
}

/// Lines outside fenced code blocks, with inline code spans removed.
fn prose(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut kept = String::new();
        for (i, piece) in line.split('`').enumerate() {
            if i % 2 == 0 {
                kept.push_str(piece);
            }
        }
        out.push(kept);
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped,
/// spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// `(target)` of each `[text](target)` that is not a URL.
fn links(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        if !target.contains("://") && !target.starts_with("mailto:") {
            out.push(target.to_owned());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn every_relative_link_of_the_guides_resolves() {
    let root = workspace_root();
    let mut broken = Vec::new();
    let guides = guides(&root);
    assert!(guides.len() >= 9, "the guides: {guides:?}");
    for file in &guides {
        let text = std::fs::read_to_string(file).expect("a guide");
        let dir = file.parent().expect("a folder");
        for line in prose(&text) {
            for target in links(&line) {
                let (path, fragment) = match target.split_once('#') {
                    Some((path, fragment)) => (path, Some(fragment)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    dir.join(path)
                };
                let name = file.strip_prefix(&root).unwrap_or(file).display();
                if !resolved.exists() {
                    broken.push(format!("{name}: ({target}): no such file"));
                    continue;
                }
                if let Some(fragment) = fragment {
                    let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
                    if !anchors(&target_text).iter().any(|a| a == fragment) {
                        broken.push(format!("{name}: ({target}): no such heading"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_short_guide_with_a_table_of_contents() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; details go in docs/"
    );
    for section in [
        "Quick start",
        "Configuration",
        "API",
        "Plugins",
        "Operations",
    ] {
        assert!(
            readme.contains(&format!("- [{section}](#{})", slug(section))),
            "the table of contents lists {section}"
        );
    }
}
