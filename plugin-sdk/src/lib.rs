//! Write PD2 Ticket plugins in plain Rust.
//!
//! A plugin is one type implementing [`Plugin`] (only the hooks it needs;
//! the rest have defaults) and one [`export_plugin!`] call. Build it with
//! `cargo build --target wasm32-wasip2 --release` and drop the `.wasm` into
//! the server's plugin directory. The same code runs natively in unit tests
//! through [`testing`], without wasm.
//!
//! ```
//! use pd2_plugin_sdk::{Content, FileInfo, Hook, Manifest, Plugin, Preview, html};
//!
//! struct Shout;
//!
//! impl Plugin for Shout {
//!     fn manifest() -> Manifest {
//!         Manifest::new("shout", "1.0.0")
//!             .description("Upper-cases text files")
//!             .hook(Hook::Render)
//!             .paths(["*.txt"])
//!     }
//!
//!     fn render(_info: &FileInfo, content: &dyn Content) -> Option<Preview> {
//!         let text = String::from_utf8_lossy(&content.read_all()).to_uppercase();
//!         Some(Preview::html(format!("<pre>{}</pre>", html::escape(&text))))
//!     }
//! }
//!
//! pd2_plugin_sdk::export_plugin!(Shout);
//!
//! // Natively, in a unit test:
//! let (info, file) = pd2_plugin_sdk::testing::file("a.txt", "text/plain", b"hi <b>");
//! let preview = Shout::render(&info, &file).unwrap();
//! assert_eq!(preview.body, b"<pre>HI &lt;B&gt;</pre>");
//! ```

#![warn(missing_docs)]

use serde::de::DeserializeOwned;

/// The WIT interface this SDK implements, as `MAJOR.MINOR.PATCH`: read from
/// the package line of `wit/plugin.wit` when the SDK is built, so it is
/// written in one place only.
pub const INTERFACE_VERSION: &str = env!("PD2_INTERFACE_VERSION");

#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "pd2_plugin_sdk::bindings",
    });
}

#[doc(hidden)]
pub mod glue;
pub mod html;
pub mod log;
pub mod testing;

/// The extension points a plugin may implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// [`Plugin::validate_file`], for each uploaded file that matches.
    ValidateFile,
    /// [`Plugin::validate_ticket`], once per upload.
    ValidateTicket,
    /// [`Plugin::render`], for previews of files that match.
    Render,
}

/// What a plugin is and which files it wants. Built with [`Manifest::new`]
/// and its builder methods. The server holds it to bounds and refuses to
/// load a plugin outside them: `name` 1–64 characters of `a-z 0-9 - _`,
/// `version` ≤ 64 and `description` ≤ 1,000 characters, at most 128 path
/// and MIME patterns together of ≤ 200 characters each, `priority` within
/// −1000..=1000.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Unique among the loaded plugins; names `[plugins.settings.<name>]`.
    /// Two files claiming one name both stay unloaded until one is removed.
    pub name: String,
    /// Shown by `GET /plugins` and `pd2-ticket plugin check`.
    pub version: String,
    /// One line for admins and students (`GET /plugins`).
    pub description: String,
    /// The hooks the server calls; the others are never called.
    pub hooks: Vec<Hook>,
    /// Globs on the path (`*.java`, `src/**/*.py`); a glob without `/`
    /// matches the file name in any folder.
    pub paths: Vec<String>,
    /// MIME patterns (`text/markdown`, `image/*`).
    pub mime_types: Vec<String>,
    /// Higher runs first (−1000..=1000); for previews the first renderer
    /// that returns one wins.
    pub priority: i32,
}

impl Manifest {
    /// A manifest with no hooks and no matchers (matches every file).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            hooks: Vec::new(),
            paths: Vec::new(),
            mime_types: Vec::new(),
            priority: 0,
        }
    }
    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }
    /// Adds a hook (once; repeats are ignored).
    pub fn hook(mut self, hook: Hook) -> Self {
        if !self.hooks.contains(&hook) {
            self.hooks.push(hook);
        }
        self
    }
    /// Adds path globs (`*.java`, `src/**/*.py`).
    pub fn paths<S: Into<String>>(mut self, globs: impl IntoIterator<Item = S>) -> Self {
        self.paths.extend(globs.into_iter().map(Into::into));
        self
    }
    /// Adds MIME patterns (`text/markdown`, `image/*`).
    pub fn mime_types<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.mime_types.extend(patterns.into_iter().map(Into::into));
        self
    }
    /// Sets the priority (−1000..=1000, default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

/// What the server knows about a file before it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Relative, `/`-separated path inside the ticket.
    pub path: String,
    /// As served, e.g. `text/x-java; charset=utf-8`.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
}

impl FileInfo {
    /// The file name without folders.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    /// The lower-cased extension, if any.
    pub fn extension(&self) -> Option<String> {
        let name = self.name();
        name.rsplit_once('.')
            .filter(|(stem, _)| !stem.is_empty())
            .map(|(_, ext)| ext.to_ascii_lowercase())
    }
    /// The content type without parameters (`text/x-java`).
    pub fn mime(&self) -> &str {
        self.content_type.split(';').next().unwrap_or("").trim()
    }
}

/// A validator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the upload through (as far as this plugin is concerned).
    Accept,
    /// Refuses the whole upload; the message is shown to the student. The
    /// server reports the file's path beside it (the `file` field of the
    /// `422`), so the message need not repeat it. Control characters are
    /// escaped and it is cut at `plugins.max_message_chars` (500 by
    /// default).
    Reject(String),
}

/// A rendered preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// One of `text/html`, `text/plain`, `image/png`, `image/jpeg`,
    /// `image/gif`, `image/webp` (parameters such as `charset` allowed);
    /// anything else is refused and the next renderer gets its turn.
    pub content_type: String,
    /// At most `plugins.max_output` bytes (8 MiB by default).
    pub body: Vec<u8>,
}

impl Preview {
    /// An HTML document (`text/html; charset=utf-8`). The server serves it
    /// sandboxed: no scripts run, images only as `data:` URLs.
    pub fn html(body: impl Into<String>) -> Self {
        Self {
            content_type: "text/html; charset=utf-8".into(),
            body: body.into().into_bytes(),
        }
    }
    /// A preview of any allowed type, e.g. `Preview::new("image/png", png)`.
    pub fn new(content_type: impl Into<String>, body: Vec<u8>) -> Self {
        Self {
            content_type: content_type.into(),
            body,
        }
    }
}

/// A file's content, read on demand: a check of the first bytes does not
/// copy the whole file into the plugin.
pub trait Content {
    /// The file's size in bytes.
    fn size(&self) -> u64;
    /// Up to `len` bytes from `offset`; fewer at the end of the file.
    fn read(&self, offset: u64, len: u32) -> Vec<u8>;

    /// The whole file, read in pieces.
    fn read_all(&self) -> Vec<u8> {
        let size = self.size();
        let mut out = Vec::with_capacity(size.min(64 << 20) as usize);
        while (out.len() as u64) < size {
            let piece = self.read(out.len() as u64, 256 * 1024);
            if piece.is_empty() {
                break;
            }
            out.extend_from_slice(&piece);
        }
        out
    }
}

/// A PD2 Ticket plugin. Implement [`Plugin::manifest`] and the hooks it
/// lists; the others keep their defaults (accept, decline).
pub trait Plugin {
    /// Who the plugin is and what it wants. Called once when the server
    /// loads the file, before any settings exist: [`settings`] returns `{}`
    /// here, so the manifest cannot depend on them.
    fn manifest() -> Manifest;

    /// Checks one uploaded file that matches the manifest's patterns.
    /// Called before the ticket is created; a rejection aborts the upload.
    fn validate_file(_info: &FileInfo, _content: &dyn Content) -> Verdict {
        Verdict::Accept
    }

    /// Checks the upload as a whole (e.g. "at most 20 files"). Sees every
    /// file of the upload, whatever the manifest's patterns say.
    fn validate_ticket(_files: &[FileInfo]) -> Verdict {
        Verdict::Accept
    }

    /// Renders a preview, or `None` to let the next renderer try.
    fn render(_info: &FileInfo, _content: &dyn Content) -> Option<Preview> {
        None
    }
}

/// The plugin's `[plugins.settings.<name>]` table, parsed into its own type.
/// Missing keys take the type's serde defaults. A validator should fail
/// closed on an error (panic with it: the call fails, the upload is refused
/// with `503`, and the message reaches the admin) rather than fall back to
/// defaults that drop the admin's policy.
pub fn settings<T: DeserializeOwned>() -> Result<T, String> {
    let raw = glue::settings_json();
    serde_json::from_str(&raw).map_err(|e| format!("invalid plugin settings: {e}"))
}

/// [`settings`] for a renderer: on an error (a setting of the wrong type)
/// it logs a warning saying so and uses the defaults, so a typo in the
/// config costs the admin a warning, not every preview. Validators use
/// [`settings`] and fail closed instead.
pub fn settings_or_default<T: DeserializeOwned + Default>() -> T {
    settings().unwrap_or_else(|error| {
        log::warn(&format!("{error}; using the defaults"));
        T::default()
    })
}

/// When work that may be cut short (highlighting, say) should stop: after
/// `wanted`, but never past three quarters of [`time_left`], so the call
/// still has time to return what it has before the server's time limit
/// ends it with nothing.
///
/// ```
/// use std::time::{Duration, Instant};
/// let stop = pd2_plugin_sdk::deadline(Duration::from_millis(500));
/// assert!(stop <= Instant::now() + Duration::from_millis(500));
/// ```
pub fn deadline(wanted: std::time::Duration) -> std::time::Instant {
    std::time::Instant::now() + wanted.min(time_left().mul_f32(0.75))
}

/// How long this call may still run before the server's time limit
/// (`plugins.timeout_ms`) ends it. A renderer doing long work (say,
/// highlighting a huge file) checks it and returns what it has, with the
/// rest as plain text, instead of being cut off with nothing. Natively (in
/// unit tests) it is what [`testing::set_time_left`] said, an hour by
/// default.
pub fn time_left() -> std::time::Duration {
    glue::time_left()
}

/// Another file of the same ticket, while rendering: its info and
/// content, or `None` when the ticket has no file at `path`. `path` is
/// inside the ticket, as in [`FileInfo::path`]; [`resolve`] turns a link
/// relative to the file being rendered into one. The server answers at
/// most 64 of these per render (then `None`), and a preview that read
/// other files is cached together with their content, so it changes when
/// they do. Natively it finds what [`testing::add_file`] put there.
pub fn open_file(path: &str) -> Option<(FileInfo, Box<dyn Content>)> {
    glue::open_file(path)
}

/// Resolves `link` (as written in a document: `../img/a.png`,
/// `./notes.md#setup`, `docs/My%20File.md`) against the folder of `from`
/// (a path inside the ticket) into a path inside the ticket, or `None`
/// when it is not a link to a file of the ticket: an absolute or scheme
/// URL (`https:`, `mailto:`, `//host`), a fragment only, or a path that
/// leaves the ticket. The query and fragment are dropped and `%XX`
/// escapes decoded.
///
/// ```
/// use pd2_plugin_sdk::resolve;
/// assert_eq!(resolve("docs/README.md", "../src/Main.java#L3").as_deref(), Some("src/Main.java"));
/// assert_eq!(resolve("README.md", "shot%201.png").as_deref(), Some("shot 1.png"));
/// assert_eq!(resolve("README.md", "https://example.com/a.png"), None);
/// assert_eq!(resolve("README.md", "../../etc/passwd"), None);
/// assert_eq!(resolve("README.md", "#usage"), None);
/// ```
pub fn resolve(from: &str, link: &str) -> Option<String> {
    let link = link.trim();
    let end = link.find(['?', '#']).unwrap_or(link.len());
    let target = &link[..end];
    if target.is_empty() || target.starts_with('/') || target.starts_with('\\') {
        return None;
    }
    // A scheme (`https:`, `data:`) before any `/`.
    if let Some(colon) = target.find(':')
        && !target[..colon].contains('/')
    {
        return None;
    }
    let decoded = percent_decode(target)?;
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Exports a [`Plugin`] implementation as the component's interface. Call
/// it once, at the crate root. It only names the type: the guest side of
/// the interface is implemented once, generically, inside the SDK.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __Pd2Guest = $crate::glue::Adapter<$plugin>;
    $crate::bindings::export!(__Pd2Guest with_types_in $crate::bindings);
        };
    };
}
