// A preview document in its frame. The frame is sandboxed without
// `allow-scripts`: nothing in the preview runs, ever. It is same-origin
// (`allow-same-origin`), so the app can reach into the document a plugin
// wrote and give it what GitHub's file view has: line numbers that are
// addresses (click, shift-click for a range), the range marked and
// scrolled to with context above it, a wrap toggle, and the app's theme
// (the preview's own `prefers-color-scheme` rules are switched to the
// theme the user chose: a frame's media queries see the system's).
// Lines are the elements a renderer gave an id `L<n>` (code-preview and
// plain-text do).

const STYLE = `
.pd2-sel, .pd2-sel td { background: #fff8c5 !important; }
@media (prefers-color-scheme: dark) { .pd2-sel, .pd2-sel td { background: #3b2e00 !important; } }
body.pd2-nowrap td.c, body.pd2-nowrap pre { white-space: pre !important; overflow-wrap: normal !important; }
body.pd2-wrap pre, body.pd2-wrap td.c { white-space: pre-wrap !important; overflow-wrap: anywhere !important; }
td.n a { cursor: pointer; }
`;

/** Lines shown above a linked line, so it is read in its context. */
const CONTEXT_LINES = 3;

export class PreviewFrame {
  /**
   * `frame` is loaded; `onLine(n, extend)` is called when a line number is
   * clicked (`extend`: with shift, to make a range).
   */
  constructor(frame, onFinder, onLine) {
    this.frame = frame;
    this.doc = frame.contentDocument;
    /** How many numbered lines the preview has (0 when it has none). */
    this.lines = this.doc ? this.doc.querySelectorAll('[id^="L"]').length : 0;
    if (!this.doc) return;
    const style = this.doc.createElement("style");
    style.textContent = STYLE;
    this.doc.head?.append(style);
    // `t` opens "go to file" from inside the preview too; line numbers are
    // not tab stops (3,000 of them would stand between the tree and the
    // rest of the page).
    this.doc.addEventListener("keydown", (e) => {
      if (e.key === "t" && !e.ctrlKey && !e.metaKey && !e.altKey && !e.target.closest?.("input, textarea")) {
        e.preventDefault();
        onFinder();
      }
    });
    for (const link of this.doc.querySelectorAll('td.n a[href^="#L"]')) link.tabIndex = -1;
    this.doc.addEventListener("click", (e) => {
      const link = e.target.closest?.('a[href^="#L"]');
      if (!link) return;
      const n = Number(link.getAttribute("href").slice(2));
      if (!Number.isInteger(n) || n < 1) return;
      e.preventDefault();
      onLine(n, e.shiftKey);
    });
  }


  /**
   * Marks lines `[from, to]` (null: none); with `scroll`, shows them.
   * False when the range starts past the last line (nothing to mark).
   */
  select(range, scroll) {
    if (!this.doc) return true;
    for (const row of this.doc.querySelectorAll(".pd2-sel")) row.classList.remove("pd2-sel");
    if (!range) return true;
    const [from, wanted] = range;
    // Never past the last line, whatever the address says.
    const to = Math.min(wanted, this.lines);
    let first = null;
    for (let n = from; n <= to; n += 1) {
      const row = this.doc.getElementById(`L${n}`);
      if (!row) continue;
      row.classList.add("pd2-sel");
      first ??= row;
    }
    if (scroll && first) {
      const above = this.doc.getElementById(`L${Math.max(from - CONTEXT_LINES, 1)}`) || first;
      this.frame.contentWindow?.scrollTo({ top: Math.max(above.getBoundingClientRect().top + this.frame.contentWindow.scrollY, 0) });
    }
    return first !== null;
  }

  /** `light`, `dark` or `auto` (the system's). */
  setTheme(theme) {
    if (!this.doc) return;
    this.doc.documentElement.style.colorScheme = theme === "light" || theme === "dark" ? theme : "";
    for (const sheet of this.doc.styleSheets) {
      let rules;
      try { rules = sheet.cssRules; } catch { continue; }
      switchSchemes(rules, theme);
    }
  }

  setWrap(wrap) {
    this.doc?.body?.classList.toggle("pd2-nowrap", !wrap);
    this.doc?.body?.classList.toggle("pd2-wrap", wrap);
  }
}

/** Each `@media (prefers-color-scheme: …)` rule's own condition. */
const ORIGINAL = new WeakMap();

function switchSchemes(rules, theme) {
  for (const rule of rules) {
    // A media rule (in the frame's realm, so no `instanceof` here).
    if (!rule.media || !rule.cssRules) continue;
    if (!ORIGINAL.has(rule)) ORIGINAL.set(rule, rule.media.mediaText);
    const original = ORIGINAL.get(rule);
    const scheme = original.match(/prefers-color-scheme\s*:\s*(dark|light)/)?.[1];
    if (scheme && !/\band\b|,/.test(original)) {
      rule.media.mediaText = theme === "light" || theme === "dark" ? (scheme === theme ? "all" : "not all") : original;
    }
    switchSchemes(rule.cssRules, theme);
  }
}
