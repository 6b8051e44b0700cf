//! `file-policy`: the course's upload rules, from `[plugins.settings.file-policy]`.
//!
//! Per file: denied and allowed extensions, per-extension size limits, and
//! binaries (ELF, PE, Mach-O, Java classes, archives) renamed to a text or
//! source extension, found by their magic bytes in the first 512 bytes.
//! Per upload: a maximum number of files. Every message names the rule.

use std::collections::BTreeMap;

use pd2_plugin_sdk::{Content, FileInfo, Hook, Manifest, Plugin, Verdict, log, settings};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Empty: every extension not denied. Entries are extensions without
    /// the dot (`java`) or whole names of extension-less files (`Makefile`).
    pub allowed_extensions: Vec<String>,
    pub denied_extensions: Vec<String>,
    /// Files per upload; none: no limit beyond the server's.
    pub max_files: Option<usize>,
    /// Extension → most bytes a file of it may have.
    pub max_size_by_extension: BTreeMap<String, u64>,
    pub reject_disguised_binaries: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allowed_extensions: Vec::new(),
            denied_extensions: Vec::new(),
            max_files: None,
            max_size_by_extension: BTreeMap::new(),
            reject_disguised_binaries: true,
        }
    }
}

/// Extensions that promise text: a binary under one of these is disguised.
const TEXT_EXTENSIONS: &[&str] = &[
    "c",
    "h",
    "cc",
    "cpp",
    "cxx",
    "c++",
    "hh",
    "hpp",
    "hxx",
    "java",
    "kt",
    "kts",
    "scala",
    "py",
    "pyw",
    "rs",
    "go",
    "cs",
    "js",
    "mjs",
    "cjs",
    "jsx",
    "ts",
    "tsx",
    "rb",
    "php",
    "swift",
    "m",
    "mm",
    "lua",
    "pl",
    "r",
    "hs",
    "ml",
    "sh",
    "bash",
    "zsh",
    "ps1",
    "bat",
    "sql",
    "json",
    "yaml",
    "yml",
    "toml",
    "xml",
    "html",
    "htm",
    "css",
    "scss",
    "md",
    "markdown",
    "txt",
    "csv",
    "tsv",
    "in",
    "out",
    "log",
    "cfg",
    "ini",
    "conf",
    "properties",
    "gradle",
    "cmake",
    "mk",
    "asm",
    "s",
    "v",
    "sv",
    "vhd",
    "tex",
    "ipynb",
];

/// Bytes read to recognise a binary: enough for a tar header's `ustar`.
const SNIFF_BYTES: u32 = 512;

/// What a file's first bytes say it is, if it is a known binary format.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"\x7fELF") {
        return Some("an ELF executable");
    }
    if starts(b"MZ") {
        return Some("a Windows (PE) executable");
    }
    if starts(&[0xFE, 0xED, 0xFA, 0xCE])
        || starts(&[0xFE, 0xED, 0xFA, 0xCF])
        || starts(&[0xCE, 0xFA, 0xED, 0xFE])
        || starts(&[0xCF, 0xFA, 0xED, 0xFE])
    {
        return Some("a Mach-O executable");
    }
    if starts(&[0xCA, 0xFE, 0xBA, 0xBE]) {
        // Shared by Java classes and universal Mach-O binaries: a class file
        // has its major version (45 and up) where Mach-O counts a few
        // architectures.
        let n = head
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        return Some(match n {
            Some(n) if n < 45 => "a Mach-O universal binary",
            _ => "a compiled Java class",
        });
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Some("a ZIP archive (or JAR)");
    }
    if starts(&[0x1F, 0x8B]) {
        return Some("a gzip archive");
    }
    if starts(&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]) {
        return Some("a 7-Zip archive");
    }
    if starts(b"Rar!\x1a\x07") {
        return Some("a RAR archive");
    }
    if starts(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
        return Some("an xz archive");
    }
    if starts(b"BZh") && head.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        return Some("a bzip2 archive");
    }
    if head.get(257..262) == Some(b"ustar") {
        return Some("a tar archive");
    }
    None
}

/// The key rules are written against: the lower-cased extension, or the
/// whole name of a file without one.
fn kind(info: &FileInfo) -> String {
    info.extension().unwrap_or_else(|| info.name().to_owned())
}

fn listed(list: &[String], key: &str) -> bool {
    list.iter()
        .any(|entry| entry.trim_start_matches('.').eq_ignore_ascii_case(key))
}

fn shown(info: &FileInfo) -> String {
    match info.extension() {
        Some(ext) => format!("`.{ext}` files"),
        None => format!("`{}`", info.name()),
    }
}

pub struct FilePolicy;

impl FilePolicy {
    /// A policy that cannot be read must not turn into no policy: the call
    /// fails, and the server refuses uploads (503) until it is fixed.
    fn settings() -> Settings {
        settings().unwrap_or_else(|e| {
            log::error(&e);
            panic!("{e}");
        })
    }
}

impl Plugin for FilePolicy {
    fn manifest() -> Manifest {
        Manifest::new("file-policy", env!("CARGO_PKG_VERSION"))
            .description("Allowed/denied extensions, size and count limits, disguised binaries")
            .hook(Hook::ValidateFile)
            .hook(Hook::ValidateTicket)
            .priority(100)
    }

    fn validate_file(info: &FileInfo, content: &dyn Content) -> Verdict {
        let s = Self::settings();
        let key = kind(info);
        if listed(&s.denied_extensions, &key) {
            return Verdict::Reject(format!(
                "{} are not allowed (denied_extensions)",
                shown(info)
            ));
        }
        if !s.allowed_extensions.is_empty() && !listed(&s.allowed_extensions, &key) {
            return Verdict::Reject(format!(
                "{} are not allowed; allowed: {} (allowed_extensions)",
                shown(info),
                s.allowed_extensions.join(", ")
            ));
        }
        let limit = s
            .max_size_by_extension
            .iter()
            .find(|(ext, _)| ext.trim_start_matches('.').eq_ignore_ascii_case(&key))
            .map(|(_, limit)| *limit);
        if let Some(limit) = limit
            && info.size > limit
        {
            return Verdict::Reject(format!(
                "{} may be at most {limit} bytes; this one has {} (max_size_by_extension)",
                shown(info),
                info.size
            ));
        }
        // A source extension claims text, and so does none at all: a
        // compiled program is often left without one (`main`, `a`), and a
        // `README` that is an ELF is one too. The extension judged is the
        // one the file will have on disk (the server refuses names that
        // Windows would change, such as a trailing dot).
        let extension = info.extension();
        let claims_text = extension
            .as_ref()
            .is_none_or(|ext| TEXT_EXTENSIONS.contains(&ext.as_str()));
        if s.reject_disguised_binaries && claims_text {
            let head = content.read(0, SNIFF_BYTES);
            if let Some(what) = sniff(&head) {
                let claim = match extension {
                    Some(_) => format!("a `.{key}` file"),
                    None => format!("a text file like its name `{}` says", info.name()),
                };
                return Verdict::Reject(format!(
                    "is {what}, not {claim} (reject_disguised_binaries)"
                ));
            }
        }
        Verdict::Accept
    }

    fn validate_ticket(files: &[FileInfo]) -> Verdict {
        match Self::settings().max_files {
            Some(max) if files.len() > max => Verdict::Reject(format!(
                "at most {max} files per ticket; this upload has {} (max_files)",
                files.len()
            )),
            _ => Verdict::Accept,
        }
    }
}

pd2_plugin_sdk::export_plugin!(FilePolicy);

#[cfg(test)]
mod tests {
    use pd2_plugin_sdk::{Plugin, Verdict, testing};
    use serde_json::json;

    use super::FilePolicy;

    fn check(path: &str, data: &[u8]) -> Verdict {
        let (info, file) = testing::file(path, "application/octet-stream", data);
        FilePolicy::validate_file(&info, &file)
    }

    fn rejected(verdict: Verdict, rule: &str) -> String {
        match verdict {
            Verdict::Reject(message) => {
                assert!(message.contains(rule), "{message:?} should name {rule}");
                message
            }
            Verdict::Accept => panic!("expected a rejection by {rule}"),
        }
    }

    fn with(settings: serde_json::Value, test: impl FnOnce()) {
        testing::set_settings(settings);
        test();
        testing::set_settings(json!({}));
    }

    #[test]
    fn binaries_without_an_extension_are_sniffed() {
        let message = rejected(
            check("README", b"\x7fELF\x02\x01"),
            "reject_disguised_binaries",
        );
        assert!(message.contains("an ELF executable"), "{message}");
        assert!(message.contains("`README`"), "{message}");
        rejected(
            check("bin/main", b"MZ\x90\x00"),
            "reject_disguised_binaries",
        );
        // Text without an extension is fine.
        assert_eq!(check("Makefile", b"all:\n\tcc a.c"), Verdict::Accept);
        assert_eq!(check("LICENSE", b"MIT License"), Verdict::Accept);
        assert_eq!(check("Dockerfile", b""), Verdict::Accept);
    }

    #[test]
    fn defaults_accept_ordinary_sources_and_empty_files() {
        assert_eq!(check("src/Main.java", b"class Main {}"), Verdict::Accept);
        assert_eq!(check("empty.py", b""), Verdict::Accept);
        assert_eq!(check("Makefile", b"all:\n\tcc a.c"), Verdict::Accept);
        // Binaries under binary names are not disguised.
        assert_eq!(check("a.out.bin", b"\x7fELF...."), Verdict::Accept);
    }

    #[test]
    fn every_binary_format_renamed_java_is_caught() {
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("ELF", b"\x7fELF\x02\x01\x01".to_vec()),
            ("PE", b"MZ\x90\x00\x03".to_vec()),
            ("Mach-O", vec![0xCF, 0xFA, 0xED, 0xFE, 7, 0, 0, 1]),
            ("Mach-O", vec![0xFE, 0xED, 0xFA, 0xCE, 0, 0, 0, 7]),
            ("Mach-O universal", vec![0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 2]),
            ("Java class", vec![0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 61]),
            ("ZIP", b"PK\x03\x04\x14\x00".to_vec()),
            ("gzip", vec![0x1F, 0x8B, 8, 0]),
            ("7-Zip", vec![0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C, 0, 4]),
            ("RAR", b"Rar!\x1a\x07\x01\x00".to_vec()),
            ("xz", vec![0xFD, b'7', b'z', b'X', b'Z', 0]),
            ("bzip2", b"BZh91AY&SY".to_vec()),
            ("tar", tar),
        ];
        for (what, data) in cases {
            let message = rejected(check("Main.java", &data), "reject_disguised_binaries");
            assert!(message.contains(what), "{what}: {message}");
            assert!(message.contains("`.java`"), "{message}");
        }
    }

    #[test]
    fn sniffing_reads_only_the_header() {
        let mut huge = b"\x7fELF".to_vec();
        huge.resize(50 << 20, 0);
        let (info, file) = testing::file("huge.c", "text/x-csrc", huge);
        rejected(
            FilePolicy::validate_file(&info, &file),
            "reject_disguised_binaries",
        );
        assert!(file.bytes_read() <= 512, "read {} bytes", file.bytes_read());
        let (info, file) = testing::file("big.txt", "text/plain", vec![b'a'; 10 << 20]);
        assert_eq!(FilePolicy::validate_file(&info, &file), Verdict::Accept);
        assert!(file.bytes_read() <= 512);
    }

    #[test]
    fn invalid_utf8_text_is_not_a_binary() {
        assert_eq!(
            check("notes.txt", &[0xFF, 0xFE, 0x00, 0xC3, 0x28]),
            Verdict::Accept
        );
    }

    #[test]
    fn sniffing_can_be_turned_off() {
        with(json!({"reject_disguised_binaries": false}), || {
            assert_eq!(check("Main.java", b"\x7fELF"), Verdict::Accept);
        });
    }

    #[test]
    fn denied_and_allowed_extensions() {
        with(json!({"denied_extensions": ["exe", ".class"]}), || {
            rejected(check("a.EXE", b"x"), "denied_extensions");
            let m = rejected(check("out/Main.class", b"x"), "denied_extensions");
            assert!(m.contains("`.class`"), "{m}");
            assert_eq!(check("Main.java", b"x"), Verdict::Accept);
        });
        with(
            json!({"allowed_extensions": ["java", "md", "Makefile"]}),
            || {
                assert_eq!(check("A.JAVA", b"x"), Verdict::Accept);
                assert_eq!(check("Makefile", b"x"), Verdict::Accept);
                let m = rejected(check("a.py", b"x"), "allowed_extensions");
                assert!(m.contains("java, md, Makefile"), "{m}");
                rejected(check("LICENSE", b"x"), "allowed_extensions");
            },
        );
    }

    #[test]
    fn per_extension_sizes() {
        with(
            json!({"max_size_by_extension": {"png": 10, "csv": 3}}),
            || {
                assert_eq!(check("a.png", &[0u8; 10]), Verdict::Accept);
                let m = rejected(check("b.PNG", &[0u8; 11]), "max_size_by_extension");
                assert!(m.contains("at most 10 bytes") && m.contains("11"), "{m}");
                assert_eq!(check("c.java", &[b'a'; 100]), Verdict::Accept);
            },
        );
    }

    #[test]
    fn file_count() {
        let files: Vec<_> = (0..4)
            .map(|i| testing::info(&format!("f{i}.c"), 1))
            .collect();
        assert_eq!(FilePolicy::validate_ticket(&files), Verdict::Accept);
        with(json!({"max_files": 3}), || {
            let m = rejected(FilePolicy::validate_ticket(&files), "max_files");
            assert!(m.contains("at most 3") && m.contains("has 4"), "{m}");
            assert_eq!(FilePolicy::validate_ticket(&files[..3]), Verdict::Accept);
        });
    }

    #[test]
    fn bad_settings_fail_the_call_instead_of_allowing_everything() {
        for bad in [
            json!({"max_files": "many"}),
            json!({"alowed_extensions": ["java"]}),
        ] {
            testing::set_settings(bad);
            let outcome = std::panic::catch_unwind(|| check("Main.java", b"x"));
            assert!(outcome.is_err());
        }
        testing::set_settings(json!({}));
    }
}
