//! Rules about tickets that do not depend on HTTP or storage: ids, legal
//! file paths, and the content type a file is served with.

use std::{
    borrow::Cow,
    collections::HashSet,
    time::{SystemTime, UNIX_EPOCH},
};

use unicode_normalization::UnicodeNormalization;

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
    // Windows drops a trailing dot or space when it creates a file:
    // `tool.exe.` would be saved as `tool.exe`, past any policy that
    // judged the name as sent. Only new names are refused; a stored one
    // (from an earlier version) stays readable.
    let windows_renames = path.split('/').any(|s| s.ends_with(['.', ' ']));
    let disguised = path.chars().any(disguises);
    (is_legal_path(&path) && !windows_renames && !disguised).then_some(path)
}

/// Characters that make a name read as another: bidirectional overrides
/// and isolates (`homework\u{202E}fdp.scr` shows as `homeworkrcs.pdf`) and
/// invisible ones (a zero-width space makes `a.c` and `a\u{200B}.c` two
/// files that look the same). Joiners (U+200C, U+200D) stay: Persian and
/// Indic names need them.
fn disguises(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
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
                && compatible_segment(segment)
        })
}

/// Tools that apply compatibility normalization (NFKC) to names would turn
/// `．．` (fullwidth full stops) into `..` or `／` into a separator: such a
/// segment is refused, so no unzip can be led out of its folder. Other
/// compatibility characters (a fullwidth `：` in a CJK name) are fine.
fn compatible_segment(segment: &str) -> bool {
    if segment.is_ascii() {
        return true;
    }
    let normalized: String = segment.nfkc().collect();
    normalized != "." && normalized != ".." && !normalized.contains(['/', '\\'])
}

/// What makes two names of one ticket the same file on Windows and macOS,
/// whose file systems ignore case and Unicode normalization, or for the
/// unzip tools that apply compatibility normalization: `Main.java` and
/// `main.java`, `é` composed and decomposed, `ß` and `ss`, `ς` and `σ`,
/// `ﬁle` and `file`, `Ａ` and `a`. Such a pair is a duplicate: unzipped
/// there, one would overwrite the other. Unicode's compatibility caseless
/// match (full case folding between NFKD forms).
pub fn name_key(path: &str) -> String {
    let once = caseless::default_case_fold_str(&path.nfd().collect::<String>());
    let twice = caseless::default_case_fold_str(&once.nfkd().collect::<String>());
    twice.nfkc().collect()
}

/// How a name is echoed in an error: escaped, and cut short so a huge name
/// cannot make a huge error body.
pub fn quoted_name(raw: &str) -> String {
    const SHOWN: usize = 200;
    match raw.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}…", &raw[..end]),
        None => format!("{raw:?}"),
    }
}

/// Names Windows reserves for devices, whatever the extension.
const RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "com¹", "com²", "com³", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8",
    "lpt9", "lpt¹", "lpt²", "lpt³",
];

/// The name of a file inside the ticket's zip. Files keep their paths,
/// except segments Windows cannot create, which are rewritten only here
/// (the API serves the names as uploaded): a reserved device name gets a
/// `_` after its stem (`aux.c` → `aux_.c`, `NUL` → `NUL_`), and trailing
/// dots and spaces, which Windows drops, become `_`. `taken` holds the
/// entries written so far (as [`name_key`]s); a rewrite that collides
/// with one gets a number (`aux_ (2).c`).
pub fn zip_entry_name<'a>(path: &'a str, taken: &mut HashSet<String>) -> Cow<'a, str> {
    let needs_rewrite = path
        .split('/')
        .any(|segment| windows_safe(segment).is_some());
    let name: Cow<'a, str> = if needs_rewrite {
        Cow::Owned(
            path.split('/')
                .map(|segment| windows_safe(segment).unwrap_or_else(|| segment.to_owned()))
                .collect::<Vec<_>>()
                .join("/"),
        )
    } else {
        Cow::Borrowed(path)
    };
    if taken.insert(name_key(&name)) {
        return name;
    }
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !stem.ends_with('/') => (stem, Some(ext)),
        _ => (name.as_ref(), None),
    };
    let mut n = 2;
    loop {
        let candidate = match extension {
            Some(ext) => format!("{stem} ({n}).{ext}"),
            None => format!("{stem} ({n})"),
        };
        if taken.insert(name_key(&candidate)) {
            return Cow::Owned(candidate);
        }
        n += 1;
    }
}

/// The rewritten segment, or `None` when Windows can create it as it is.
fn windows_safe(segment: &str) -> Option<String> {
    let kept = segment.trim_end_matches(['.', ' ']);
    let mut out = if kept.len() < segment.len() {
        format!("{kept}{}", "_".repeat(segment.len() - kept.len()))
    } else {
        segment.to_owned()
    };
    let stem_end = out.find('.').unwrap_or(out.len());
    let stem = out[..stem_end].trim_end_matches(' ').to_lowercase();
    if RESERVED.contains(&stem.as_str()) {
        out.insert(stem_end, '_');
    }
    (out != segment).then_some(out)
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
        "tsv" | "tab" => "text/tab-separated-values",
        "ipynb" => "application/x-ipynb+json",
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
    fn names_that_break_other_systems() {
        // Compatibility forms of `..` and `/` are refused; other ones kept.
        assert!(!is_legal_path("．．/x.java"));
        assert!(!is_legal_path("a/．/b"));
        assert!(!is_legal_path("a／b.txt"));
        assert!(is_legal_path("作業：1.cpp"));
        // Same file on a case-insensitive, normalizing file system.
        assert_eq!(name_key("Main.java"), name_key("main.JAVA"));
        assert_eq!(name_key("caf\u{e9}.txt"), name_key("cafe\u{301}.txt"));
        // Full case folding and compatibility forms (issue 21).
        assert_eq!(name_key("stra\u{df}e.c"), name_key("STRASSE.C"));
        assert_eq!(name_key("\u{3c3}.txt"), name_key("\u{3c2}.txt"));
        assert_eq!(name_key("\u{fb01}le.c"), name_key("file.c"));
        assert_eq!(name_key("\u{ff21}.c"), name_key("a.c"));
        assert_ne!(name_key("a.txt"), name_key("b.txt"));
        assert_ne!(name_key("作業1.cpp"), name_key("作業2.cpp"));
        // Long names are cut in messages.
        let long = "x".repeat(10_000);
        assert!(quoted_name(&long).len() < 220);
        assert_eq!(quoted_name("a\u{1}b"), "\"a\\u{1}b\"");
    }

    #[test]
    fn zip_names_windows_can_create() {
        let mut taken = HashSet::new();
        let mut zip = |p: &str| zip_entry_name(p, &mut taken).into_owned();
        assert_eq!(zip("src/Main.java"), "src/Main.java");
        assert_eq!(zip("aux.c"), "aux_.c");
        assert_eq!(zip("NUL"), "NUL_");
        assert_eq!(zip("con.tar.gz"), "con_.tar.gz");
        assert_eq!(zip("COM1.c"), "COM1_.c");
        assert_eq!(zip("notes."), "notes_");
        assert_eq!(zip("dir /x.txt"), "dir_/x.txt");
        assert_eq!(zip("console.c"), "console.c");
        // A rewrite that lands on a name already written gets a number.
        assert_eq!(zip("aux_.c"), "aux_ (2).c");
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

    /// Windows drops a trailing dot or space: such a name would be saved
    /// as another, so it is refused at upload, in any segment.
    #[test]
    fn names_windows_would_rename_are_refused() {
        for bad in [
            "tool.exe.",
            "setup.msi ",
            "a.java.",
            "dir./x.c",
            "dir /x.c",
            "x.c..",
            "notes.",
        ] {
            assert_eq!(normalize_upload_name(bad), None, "{bad:?}");
        }
        for ok in [
            "a.java",
            ".gitignore",
            "a. b.txt",
            "dir.d/x.c",
            "my file.txt",
        ] {
            assert!(normalize_upload_name(ok).is_some(), "{ok:?}");
        }
        // A stored name of an earlier version stays readable.
        assert!(is_legal_path("notes."));
    }

    #[test]
    fn names_that_read_as_others_are_refused() {
        for bad in [
            "homework\u{202E}fdp.scr",
            "a\u{200B}.c",
            "\u{FEFF}Main.java",
            "x\u{2066}y.c",
            "soft\u{AD}hyphen.c",
            "rtl\u{200F}.c",
        ] {
            assert_eq!(normalize_upload_name(bad), None, "{bad:?}");
        }
        // Joiners are part of Persian and Indic names.
        assert!(normalize_upload_name("می\u{200C}خواهم.txt").is_some());
        assert!(normalize_upload_name("क्\u{200D}ष.py").is_some());
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
