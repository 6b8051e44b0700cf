//! Rules about tickets that do not depend on HTTP or storage: ids, legal
//! file paths, and the content type a file is served with.

use std::time::{SystemTime, UNIX_EPOCH};

/// 6 random bytes then the unix time in seconds, all as lowercase hex:
/// 20 characters, unguessable, and roughly sortable by creation.
pub fn new_ticket_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{}{:08x}",
        hex::encode(rand::random::<[u8; 6]>()),
        secs as u32
    )
}

/// Anything else is rejected before it reaches storage.
pub fn is_ticket_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

const MAX_SEGMENT_BYTES: usize = 255;
const MAX_PATH_BYTES: usize = 1024;
const FORBIDDEN: &[char] = &[':', '*', '?', '"', '<', '>', '|', '~'];

/// Turns a file name as a client sends it into the stored relative path, or
/// `None` when it is not a legal path. Browsers send Windows folders with a
/// raw `\`; some HTTP clients escape it as the quoted-pair `\\`
/// (RFC 9110), which is undone first. Either way `\` becomes `/`.
pub fn normalize_upload_name(raw: &str) -> Option<String> {
    let path = raw
        .replace("\\\\", "\\")
        .replace("\\\"", "\"")
        .replace('\\', "/");
    is_legal_path(&path).then_some(path)
}

/// A relative, `/`-separated path without empty, `.` or `..` segments, any
/// of `: * ? " < > | ~`, or control characters; at most 255 bytes per
/// segment and 1024 in all.
pub fn is_legal_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH_BYTES
        && !path
            .chars()
            .any(|c| c.is_control() || FORBIDDEN.contains(&c))
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.len() <= MAX_SEGMENT_BYTES
        })
}

/// Source files are served as text so browsers show them; every text type
/// carries `charset=utf-8`.
pub fn content_type_for(path: &str) -> String {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let extension = file_name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    let mime = match extension.as_deref() {
        Some(ext) => source_type(ext).map(str::to_owned).or_else(|| {
            mime_guess::from_ext(ext)
                .first()
                .map(|m| m.essence_str().to_owned())
        }),
        None => plain_text_name(file_name).then(|| "text/plain".to_owned()),
    }
    .unwrap_or_else(|| "application/octet-stream".to_owned());
    if mime.starts_with("text/") {
        format!("{mime}; charset=utf-8")
    } else {
        mime
    }
}

/// Extensions a programming course uses, mapped to `text/*` types (the
/// generic MIME table calls several of them `application/*` or knows them not).
fn source_type(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "c" => "text/x-csrc",
        "h" => "text/x-chdr",
        "cpp" | "cc" | "cxx" | "c++" => "text/x-c++src",
        "hpp" | "hh" | "hxx" | "h++" => "text/x-c++hdr",
        "java" => "text/x-java",
        "kt" | "kts" => "text/x-kotlin",
        "py" | "pyw" => "text/x-python",
        "rs" => "text/x-rust",
        "go" => "text/x-go",
        "cs" => "text/x-csharp",
        "js" | "mjs" | "cjs" => "text/javascript",
        "ts" | "tsx" | "mts" | "cts" => "text/x-typescript",
        "jsx" => "text/javascript",
        "sh" | "bash" | "zsh" => "text/x-shellscript",
        "sql" => "text/x-sql",
        "rb" => "text/x-ruby",
        "php" => "text/x-php",
        "swift" => "text/x-swift",
        "scala" => "text/x-scala",
        "hs" => "text/x-haskell",
        "lua" => "text/x-lua",
        "pl" => "text/x-perl",
        "r" => "text/x-r",
        "m" => "text/x-objcsrc",
        "asm" | "s" => "text/x-asm",
        "md" | "markdown" => "text/markdown",
        "txt" | "log" | "in" | "out" | "gradle" | "properties" | "cfg" | "ini" | "conf" => {
            "text/plain"
        }
        "json" => "application/json",
        "yaml" | "yml" => "text/yaml",
        "toml" => "text/x-toml",
        "csv" => "text/csv",
        "xml" => "text/xml",
        _ => return None,
    })
}

/// Extension-less files that are text by convention.
fn plain_text_name(name: &str) -> bool {
    matches!(
        name,
        "Makefile"
            | "makefile"
            | "GNUmakefile"
            | "Dockerfile"
            | "README"
            | "LICENSE"
            | "CMakeLists"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_20_lower_hex() {
        for _ in 0..100 {
            let id = new_ticket_id();
            assert!(is_ticket_id(&id), "{id}");
        }
        assert!(!is_ticket_id("ABCDEF0123456789abcd"));
        assert!(!is_ticket_id("0123456789abcdef012"));
        assert!(!is_ticket_id("0123456789abcdef012g"));
    }

    #[test]
    fn legal_paths() {
        for ok in [
            "a.txt",
            "src/main/App.java",
            "作業1/主程式.cpp",
            ".gitignore",
            "a b/c d.py",
        ] {
            assert!(is_legal_path(ok), "{ok}");
        }
        let long_segment = "a".repeat(256);
        let long_path = ["a"; 600].join("/");
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/",
            "./a",
            "C:/x",
            "a*b",
            "a?b",
            "a\"b",
            "a<b",
            "a>b",
            "a|b",
            "~/x",
            "a\u{0}b",
            "a\nb",
            &long_segment,
            &long_path,
        ] {
            assert!(!is_legal_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn backslashes_become_folders() {
        assert_eq!(
            normalize_upload_name("src\\main\\App.java").as_deref(),
            Some("src/main/App.java")
        );
        assert_eq!(
            normalize_upload_name("src\\\\main\\\\App.java").as_deref(),
            Some("src/main/App.java")
        );
        assert_eq!(normalize_upload_name("..\\evil"), None);
        assert_eq!(normalize_upload_name("a\\\"b"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type_for("a/Main.java"),
            "text/x-java; charset=utf-8"
        );
        assert_eq!(content_type_for("x.CPP"), "text/x-c++src; charset=utf-8");
        assert_eq!(content_type_for("x.py"), "text/x-python; charset=utf-8");
        assert_eq!(content_type_for("x.rs"), "text/x-rust; charset=utf-8");
        assert_eq!(content_type_for("x.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type_for("x.png"), "image/png");
        assert_eq!(content_type_for("Makefile"), "text/plain; charset=utf-8");
        assert_eq!(content_type_for("blob"), "application/octet-stream");
        assert_eq!(content_type_for("x.html"), "text/html; charset=utf-8");
    }
}
