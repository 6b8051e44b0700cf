// One ticket, as a TA reads it: a sorted tree, the chosen file's preview
// with addresses for every line, "go to file" (`t`), search across the
// ticket, and the author's actions (visibility, remark, delete).
//
// The page stays while the address changes within the ticket: another
// file or line is drawn in place, so Back and Forward walk files and lines
// without loading the ticket again (each file and each line click is a
// history entry).

import { el } from "../dom.js";
import { ApiError, api, apiJson, explain, session } from "../api.js";
import { encodePath, errorBox, flash, formatSize, formatTime, here, loading, show, stillOn, userSeg } from "../ui.js";
import { buildTree, treeOrder } from "../tree.js";
import { openFinder } from "../finder.js";
import { PreviewFrame } from "../frame.js";
import { FRAME_STYLE, newThreadForm, threadNode } from "../comments.js";

const WRAP_KEY = "pd2-wrap";
/** Long lines wrap as chosen; until then, on a phone only. */
const wraps = () => (localStorage.getItem(WRAP_KEY) ?? (window.matchMedia("(max-width: 760px)").matches ? "on" : "off")) === "on";
const THEME_KEY = "pd2-theme";

// Names Windows reserves for devices, whatever the extension.
const RESERVED = new Set(["con", "prn", "aux", "nul",
  ...[1, 2, 3, 4, 5, 6, 7, 8, 9, "¹", "²", "³"].flatMap((n) => [`com${n}`, `lpt${n}`])]);

// The name a file is saved under: the zip's rule for one segment
// (ticket.rs `windows_safe`), so Download and the zip agree. A device name
// gets `_` after its stem (`aux.c` → `aux_.c`); trailing dots and spaces,
// which Windows drops, become `_`.
function safeName(segment) {
  const kept = segment.replace(/[. ]+$/, "");
  let out = kept + "_".repeat(segment.length - kept.length);
  const stemEnd = out.indexOf(".") < 0 ? out.length : out.indexOf(".");
  if (RESERVED.has(out.slice(0, stemEnd).replace(/ +$/, "").toLowerCase())) {
    out = `${out.slice(0, stemEnd)}_${out.slice(stemEnd)}`;
  }
  return out;
}

async function download(path, filename) {
  try {
    const blob = await (await api(path)).blob();
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    flash(explain(error));
  }
}

/**
 * The file's own address on the server, in a new tab: the service worker
 * adds the token (sw.js), so the address works and can be shared with
 * anyone who may read the ticket. Without the worker, the bytes in a
 * `blob:` tab.
 */
async function openRaw(path) {
  if (navigator.serviceWorker?.controller) {
    window.open(path, "_blank", "noopener");
    return;
  }
  try {
    const blob = await (await api(path)).blob();
    // Shown as plain text unless it is an image: never as HTML from our origin.
    const type = blob.type.startsWith("image/") && blob.type !== "image/svg+xml" ? blob.type : "text/plain;charset=utf-8";
    window.open(URL.createObjectURL(new Blob([blob], { type })), "_blank", "noopener");
  } catch (error) {
    flash(explain(error));
  }
}

/** The file's text to the clipboard, decoded as the preview was (Big5…). */
async function copyText(path, encoding) {
  try {
    const bytes = await (await api(path)).arrayBuffer();
    let text;
    try {
      text = new TextDecoder(encoding || "utf-8").decode(bytes);
    } catch {
      text = new TextDecoder("utf-8").decode(bytes);
    }
    await navigator.clipboard.writeText(text);
    flash("File copied.", "info");
  } catch (error) {
    flash(error instanceof ApiError ? explain(error) : "Could not copy: the browser refused the clipboard.");
  }
}

/** Makes a preview document safe to show and its ticket links work. */
// The policy `/preview` answers carry. A blob document takes the app's own
// policy, which lets in images from Discord's CDN (avatars): a preview's
// remote image would be fetched by the TA's browser. So the preview carries
// this one too, first thing in its head; policies only ever add up.
const PREVIEW_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

/** The preview policy, first thing in the document's head. */
function withPolicy(doc) {
  const policy = doc.createElement("meta");
  policy.setAttribute("http-equiv", "Content-Security-Policy");
  policy.setAttribute("content", PREVIEW_CSP);
  doc.head.prepend(policy);
  return "<!DOCTYPE html>\n" + doc.documentElement.outerHTML;
}

function preparePreview(html, user, ticketId) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  // A plugin's own `http-equiv` (a refresh to elsewhere, a looser policy)
  // has no place in a preview.
  for (const meta of doc.querySelectorAll("meta[http-equiv]")) meta.remove();
  for (const link of doc.querySelectorAll("a[data-pd2-path]")) {
    const fragment = (link.getAttribute("href") || "").match(/#L\d+(-L\d+)?$/)?.[0] || "";
    link.setAttribute("href", `${location.origin}/#/t/${user}/${ticketId}/${encodePath(link.dataset.pd2Path)}${fragment}`);
    link.setAttribute("target", "_top");
  }
  for (const link of doc.querySelectorAll("a[href^='http']:not([data-pd2-path])")) link.setAttribute("target", "_blank");
  return withPolicy(doc);
}

const SOURCE_STYLE = `:root{color-scheme:light dark}body{margin:0;font:13px/1.5 ui-monospace,Menlo,Consolas,monospace;background:#fff;color:#1f2328}
table{border-collapse:collapse;width:100%}td{padding:0 10px;vertical-align:top;tab-size:4}td.c{white-space:pre}
td.n{color:#8c959f;text-align:right;user-select:none;border-right:1px solid #d0d7de;width:1%;white-space:nowrap}td.n a{color:inherit;text-decoration:none}
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}td.n{color:#6e7681;border-color:#30363d}}`;

/**
 * A file's text as numbered lines (each `L<n>`), for the Source view;
 * built with el(), so the text is text, as everywhere in the app.
 */
function sourceDocument(path, text) {
  const doc = document.implementation.createHTMLDocument(path);
  doc.head.append(el("meta", { charset: "utf-8" }), el("style", {}, SOURCE_STYLE));
  const lines = text.replace(/\r\n?/g, "\n").replace(/\n$/, "").split("\n");
  doc.body.append(el("table", {}, lines.map((line, i) =>
    el("tr", { id: `L${i + 1}` },
      el("td", { class: "n" }, el("a", { href: `#L${i + 1}` }, String(i + 1))),
      el("td", { class: "c" }, line)))));
  return withPolicy(doc);
}

/** `#L12` or `#L12-L20` for a range (null: none). */
export function lineFragment(range) {
  if (!range) return "";
  const [from, to] = range;
  return to > from ? `#L${from}-L${to}` : `#L${from}`;
}

/** The page as it is drawn: kept while the address stays in the ticket. */
let view = null;

/** `abc…@v2`: an older version of the ticket (the address's ticket
 * segment); plain: the newest. */
export function splitVersion(segment) {
  const m = (segment || "").match(/^(.*)@v(\d+)$/);
  return m ? [m[1], Number(m[2])] : [segment, null];
}

export async function ticketPage(user, segment, path, range) {
  if (view && view.user === user && view.segment === segment && document.contains(view.root)) {
    return view.go(path, range);
  }
  view = null;
  const [ticketId, version] = splitVersion(segment);
  show(loading("Loading ticket…"));
  let ticket;
  const now = here();
  try {
    ticket = await apiJson(`/ticket/${userSeg(user)}/${encodeURIComponent(ticketId)}${version ? `?version=${version}` : ""}`);
  } catch (error) {
    return stillOn(now) && show(el("h1", {}, "Ticket"), errorBox(error));
  }
  if (!stillOn(now)) return;
  // `@me` means something else to everyone who gets the link: the address
  // says whose ticket it is.
  const authorId = ticket.author?.display_data?.id;
  if (user === "@me" && authorId) {
    user = authorId;
    history.replaceState(null, "", location.pathname + location.hash.replace(/^#\/t\/@me\//, `#/t/${userSeg(authorId)}/`));
  }
  view = new TicketView(user, segment, ticket, version);
  show(view.root);
  view.go(path, range);
}

class TicketView {
  constructor(user, segment, ticket, version) {
    this.user = user;
    this.segment = segment;
    this.ticket = ticket;
    // An older version is read with `?version=N`; the newest plainly.
    this.version = version && version !== ticket.versions ? version : null;
    this.q = this.version ? `?version=${this.version}` : "";
    this.idSeg = `${ticket.id}${this.version ? `@v${this.version}` : ""}`;
    this.userSeg = userSeg(user);
    this.base = `/ticket/${this.userSeg}/${ticket.id}`;
    this.path = null;
    this.range = null;
    this.frame = null;
    this.loads = 0;
    this.frameUrl = null;
    this.files = treeOrder(buildTree(ticket.files));
    this.pane = el("section", { class: "pane", id: "pane" });
    this.root = el("div", { class: "ticket" }, this.head(), this.toolbar(), el("div", { class: "viewer" }, this.tree(), this.pane));
    // `t` opens "go to file", as on GitHub; not while typing.
    this.onKey = (e) => {
      if (!document.contains(this.root)) return document.removeEventListener("keydown", this.onKey);
      if (e.key !== "t" || e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.("input, textarea, [contenteditable]")) return;
      e.preventDefault();
      this.finder();
    };
    document.addEventListener("keydown", this.onKey);
    // `u`: the next unresolved thread of the file shown.
    this.onThreadKey = (e) => {
      if (!document.contains(this.root)) return document.removeEventListener("keydown", this.onThreadKey);
      if (e.key !== "u" || e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.("input, textarea, select, [contenteditable]")) return;
      e.preventDefault();
      this.nextThread();
    };
    document.addEventListener("keydown", this.onThreadKey);
    this.threads = [];
    this.loadThreads();
  }

  /** The threads at the version shown, then drawn where they belong. */
  async loadThreads() {
    try {
      this.threads = await apiJson(`${this.base}/comments?version=${this.ticket.version}`);
    } catch {
      this.threads = [];
    }
    this.drawThreads();
  }

  /** Unresolved threads per file in the tree; threads on lines under
   * their lines in the preview; the rest (the file's, outdated ones, the
   * ticket's) in the panel under it. */
  drawThreads() {
    const open = new Map();
    for (const t of this.threads) if (t.path && !t.resolved) open.set(t.path, (open.get(t.path) || 0) + 1);
    for (const b of this.buttons || []) {
      b.querySelector(".thread-count")?.remove();
      const n = open.get(b.dataset.path);
      if (n) b.append(el("span", { class: "thread-count", title: `${n} open thread${n === 1 ? "" : "s"}` }, String(n)));
    }
    const ctx = { base: this.base, ticketAuthor: this.ticket.author?.display_data?.id, reload: () => this.loadThreads() };
    const doc = this.frame?.doc;
    for (const row of doc?.querySelectorAll("tr.pd2-thread-row:not(.pd2-new)") || []) row.remove();
    const panel = [];
    for (const t of this.threads) {
      if (t.path && t.path !== this.path) continue;
      const line = t.position?.line_end;
      const anchor = line && doc ? doc.getElementById(`L${line}`) : null;
      if (anchor && anchor.tagName === "TR") {
        const row = doc.createElement("tr");
        row.className = "pd2-thread-row";
        row.append(doc.createElement("td"), Object.assign(doc.createElement("td"), { colSpan: 1 }));
        row.lastChild.append(threadNode(t, ctx));
        let after = anchor;
        while (after.nextElementSibling?.classList.contains("pd2-thread-row")) after = after.nextElementSibling;
        after.after(row);
      } else panel.push(threadNode(t, ctx));
    }
    if (this.commentPanel) {
      const file = this.path;
      this.commentPanel.replaceChildren(
        el("h3", {}, "Comments"),
        panel.length ? panel : el("p", { class: "muted" }, "No comments here outside the lines."),
        el("div", { class: "actions" },
          file ? el("button", { type: "button", id: "comment-file", onclick: () => this.commentPanel.append(newThreadForm(this.base, { path: file, version: this.ticket.version }, () => this.loadThreads(), () => this.drawThreads())) }, "Comment on this file") : null,
          el("button", { type: "button", id: "comment-ticket", onclick: () => this.commentPanel.append(newThreadForm(this.base, { version: this.ticket.version }, () => this.loadThreads(), () => this.drawThreads())) }, "Comment on the ticket")));
    }
  }

  /** Scrolls to the next unresolved thread of the file shown. */
  nextThread() {
    const doc = this.frame?.doc;
    const all = [...(doc?.querySelectorAll(".thread:not(.resolved):not(.new)") || []), ...(this.commentPanel?.querySelectorAll(".thread:not(.resolved):not(.new)") || [])];
    if (!all.length) return flash("No open threads on this file.", "info");
    this.threadAt = ((this.threadAt ?? -1) + 1) % all.length;
    const node = all[this.threadAt];
    node.scrollIntoView({ block: "center" });
    node.focus?.({ preventScroll: true });
    flash(`Thread ${this.threadAt + 1} of ${all.length}`, "info");
  }

  /** The "+" beside a hovered line number: a new thread on that line, or
   * on the marked range when the line is in it. */
  addPlus() {
    const doc = this.frame?.doc;
    if (!doc || !this.frame.lines) return;
    const style = doc.createElement("style");
    style.textContent = FRAME_STYLE;
    doc.head?.append(style);
    const plus = doc.createElement("button");
    plus.className = "pd2-plus";
    plus.type = "button";
    plus.textContent = "+";
    plus.title = "Comment on this line (shift-click line numbers for a range)";
    doc.body.append(plus);
    let line = 0;
    doc.addEventListener("mouseover", (e) => {
      const row = e.target.closest?.('tr[id^="L"]');
      if (!row) return;
      line = Number(row.id.slice(1));
      // Astride the border between the number and the code, as on GitHub:
      // never over the number, whose click marks the line.
      const cell = row.querySelector("td.n") || row;
      const box = cell.getBoundingClientRect();
      plus.style.display = "block";
      plus.style.top = `${box.top + doc.defaultView.scrollY}px`;
      plus.style.left = `${box.right + doc.defaultView.scrollX - 6}px`;
    });
    plus.addEventListener("click", () => {
      if (!line) return;
      const [start, end] = this.range && line >= this.range[0] && line <= this.range[1] ? this.range : [line, line];
      doc.querySelector("tr.pd2-new")?.remove();
      const row = doc.createElement("tr");
      row.className = "pd2-thread-row pd2-new";
      row.append(doc.createElement("td"), doc.createElement("td"));
      row.lastChild.append(newThreadForm(this.base, { path: this.path, version: this.ticket.version, line_start: start, line_end: end },
        () => { row.remove(); this.loadThreads(); }, () => row.remove()));
      let after = doc.getElementById(`L${Math.min(end, this.frame.lines)}`);
      if (!after) return;
      while (after.nextElementSibling?.classList.contains("pd2-thread-row")) after = after.nextElementSibling;
      after.after(row);
    });
  }

  /** The address of a file (and lines) of this ticket. */
  hash(path, range = null) {
    return `#/t/${this.userSeg}/${this.idSeg}/${encodePath(path)}${lineFragment(range)}`;
  }

  finder() {
    openFinder(this.files, (path) => { location.hash = this.hash(path); });
  }

  /** Draws `path` (the first file when it is not one) and marks `range`. */
  go(path, range) {
    const files = this.ticket.files;
    if (path && !files.includes(path)) {
      this.path = null;
      this.markTree(null);
      this.pane.replaceChildren(el("div", { class: "error-box", role: "alert" }, `This ticket has no file “${path}”.`),
        el("p", {}, el("a", { href: this.hash(this.readme()) }, "Open the ticket's first file")));
      return;
    }
    const chosen = path || this.readme();
    if (!chosen) {
      this.pane.replaceChildren(el("p", { class: "empty" }, "This ticket has no files."));
      return;
    }
    if (chosen !== this.path) {
      this.path = chosen;
      this.range = range;
      this.markTree(chosen);
      this.showFile(chosen, range);
      // On a phone the tree is above the preview: bring the preview up.
      if (window.matchMedia("(max-width: 760px)").matches && path) this.pane.scrollIntoView({ block: "start" });
    } else {
      this.range = range;
      this.lineInput.value = range ? (range[1] > range[0] ? `${range[0]}-${range[1]}` : String(range[0])) : "";
      this.mark(range);
    }
    // The address as the app writes it (`#L20-L12` becomes `#L12-L20`).
    const canonical = this.hash(chosen, range);
    if (path && location.hash !== canonical) history.replaceState(null, "", location.pathname + canonical);
  }

  /** Marks `range` in the preview, or says it is past the end. */
  mark(range) {
    if (!this.frame) return;
    if (!this.frame.select(range, true) && this.frame.lines > 0) {
      flash(`Line ${range[0].toLocaleString()} is past the end: the file has ${this.frame.lines.toLocaleString()} lines.`);
    }
  }

  /** What a ticket opens with: its shallowest README (as GitHub does),
   * else the first file of the tree. */
  readme() {
    const readmes = this.ticket.files.filter((p) => /^readme(\.[a-z]+)?$/i.test(p.split("/").pop()));
    readmes.sort((a, b) => a.split("/").length - b.split("/").length);
    return readmes[0] || this.files[0];
  }

  markTree(path) {
    for (const b of this.buttons) {
      const on = b.dataset.path === path;
      b.classList.toggle("selected", on);
      if (on) {
        b.setAttribute("aria-current", "true");
        for (let d = b.parentElement; d && d !== this.treeNav; d = d.parentElement) if (d.tagName === "DETAILS") d.open = true;
        // Only the tree scrolls, and only up and down: the page stays, and
        // a deep file does not shift the whole tree aside.
        const row = b.getBoundingClientRect();
        const box = this.treeNav.getBoundingClientRect();
        if (row.top < box.top) this.treeNav.scrollTop -= box.top - row.top;
        else if (row.bottom > box.bottom) this.treeNav.scrollTop += row.bottom - box.bottom;
        this.treeNav.scrollLeft = 0;
      } else b.removeAttribute("aria-current");
    }
  }

  head() {
    const ticket = this.ticket;
    const author = ticket.author?.display_data || {};
    const mine = session.claims && author.id === session.claims.id;
    const remarkText = el("p", { class: "remark", id: "remark-text" }, ticket.remark || "(no remark)");
    const visibility = el("span", { class: `badge ${ticket.is_public ? "public" : ""}`, id: "visibility" }, ticket.is_public ? "public" : "private");
    const toggle = el("button", { type: "button", id: "toggle-public", onclick: () => update({ is_public: !this.ticket.is_public }) }, ticket.is_public ? "Make private" : "Make public");
    const update = async (change) => {
      try {
        this.ticket = await apiJson(this.base, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(change) });
        remarkText.textContent = this.ticket.remark || "(no remark)";
        visibility.textContent = this.ticket.is_public ? "public" : "private";
        visibility.className = `badge ${this.ticket.is_public ? "public" : ""}`;
        toggle.textContent = this.ticket.is_public ? "Make private" : "Make public";
        flash("Saved.", "info");
      } catch (error) {
        flash(explain(error));
      }
    };
    const edit = el("button", { type: "button", id: "edit-remark", onclick: () => {
      const area = el("textarea", { id: "remark-edit" });
      area.value = this.ticket.remark;
      const save = el("button", { class: "primary", type: "button", id: "save-remark", onclick: async () => { await update({ remark: area.value }); editor.replaceWith(remarkText); } }, "Save");
      const cancel = el("button", { type: "button", onclick: () => editor.replaceWith(remarkText) }, "Cancel");
      const editor = el("div", {}, area, el("div", { class: "actions" }, save, cancel));
      remarkText.replaceWith(editor);
      area.focus();
    } }, "Edit remark");
    const remove = el("button", { class: "danger", type: "button", id: "delete", onclick: async () => {
      if (!confirm(`Delete this ticket and its ${this.ticket.files.length} file(s)? This cannot be undone.`)) return;
      try {
        await api(this.base, { method: "DELETE" });
        flash("Ticket deleted.", "info");
        location.hash = "#/";
      } catch (error) {
        flash(explain(error));
      }
    } }, "Delete");
    const share = `${location.origin}/#/t/${author.id || this.user}/${ticket.id}`;
    const copy = el("button", { type: "button", id: "copy-link", onclick: async () => {
      try {
        await navigator.clipboard.writeText(share);
        flash("Link copied.", "info");
      } catch {
        prompt("Copy this link:", share);
      }
    } }, "Copy link");
    return el("div", { class: "ticket-head" },
      el("div", { class: "grow" },
        el("h1", {}, "Ticket ", el("span", { class: "mono muted" }, ticket.id)),
        remarkText,
        el("p", { class: "muted" }, "by ", el("a", { href: `#/u/${userSeg(author.id || this.user)}` }, author.display_name || author.username || author.id || this.user), " · ", formatTime(ticket.create_time), " · ", visibility),
        this.versionBar(mine)),
      el("div", { class: "actions" },
        copy,
        el("button", { type: "button", id: "zip", onclick: () => download(`${this.base}/download${this.q}`, `${ticket.id}${this.version ? `-v${this.version}` : ""}.zip`) }, "Download zip"),
        mine ? [toggle, edit, remove] : null));
  }

  /** Which version is shown, the others to pick, what changed, compare
   * with another ticket, and (the author's) a new version. */
  versionBar(mine) {
    const shown = this.ticket.version;
    const newest = this.ticket.versions;
    const picker = el("select", { id: "version-picker", "aria-label": "Version" },
      el("option", { value: String(shown) }, `Version ${shown} of ${newest}`));
    // The list (dates, remarks) once the page is up.
    apiJson(`${this.base}/versions`).then((versions) => {
      picker.replaceChildren(...versions.slice().reverse().map((v) =>
        el("option", { value: String(v.version), selected: v.version === shown },
          `v${v.version} · ${formatTime(v.create_time)}${v.remark ? ` · ${v.remark.slice(0, 60)}` : ""}${v.version === newest ? " (newest)" : ""}`)));
    }).catch(() => {});
    picker.addEventListener("change", () => {
      const v = Number(picker.value);
      const seg = v === newest ? this.ticket.id : `${this.ticket.id}@v${v}`;
      location.hash = `#/t/${this.userSeg}/${seg}/${this.path ? encodePath(this.path) : ""}`;
    });
    const changes = shown > 1
      ? el("a", { class: "button", id: "changes", href: `#/diff/${this.userSeg}/${this.ticket.id}/${shown - 1}/${shown}` }, `Changes in v${shown}`)
      : null;
    const compare = el("button", { type: "button", id: "compare", onclick: () => compareDialog(this.userSeg, this.ticket.id) }, "Compare with…");
    const upload = mine
      ? el("a", { class: "button", id: "new-version", href: `#/upload/${this.userSeg}/${this.ticket.id}` }, "Upload new version")
      : null;
    const older = this.version
      ? el("p", { class: "notice", id: "older-version" }, `You are reading version ${shown}; the newest is ${newest}. `,
        el("a", { href: `#/t/${this.userSeg}/${this.ticket.id}/${this.path ? encodePath(this.path) : ""}` }, "Read the newest"))
      : null;
    return el("div", { class: "version-bar" }, newest > 1 ? picker : el("span", { class: "muted" }, "Version 1"), changes, compare, upload, older);
  }

  /** "Go to file" and search across the ticket's text files. */
  toolbar() {
    const query = el("input", { type: "search", id: "search-input", placeholder: "Search this ticket's files", "aria-label": "Search this ticket's files" });
    const results = el("div", { id: "search-results", class: "search-results", hidden: true });
    const search = async () => {
      const q = query.value.trim();
      if (!q) { results.hidden = true; return; }
      results.hidden = false;
      results.replaceChildren(loading("Searching…"));
      try {
        const found = await apiJson(`${this.base}/search?q=${encodeURIComponent(q)}${this.version ? `&version=${this.version}` : ""}`);
        const items = found.matches.map((m) =>
          el("li", {}, el("a", { href: this.hash(m.path, [m.line, m.line]), onclick: () => { results.hidden = true; } },
            el("span", { class: "mono" }, `${m.path}:${m.line}`), " ", el("code", {}, m.excerpt))));
        const notes = [];
        if (found.truncated) notes.push(`Only the first ${found.matches.length} matches are shown.`);
        if (found.skipped?.length) notes.push(`Not searched (${found.skipped.length}): ${found.skipped.slice(0, 5).map((s) => `${s.path} (${s.reason})`).join(", ")}${found.skipped.length > 5 ? ", …" : ""}.`);
        results.replaceChildren(...[
          el("p", { class: "muted" }, `${found.matches.length} match${found.matches.length === 1 ? "" : "es"} for “${q}” in ${found.searched} file${found.searched === 1 ? "" : "s"}.`, ...notes.map((n) => [" ", n])),
          items.length ? el("ul", { class: "search-list" }, items) : null,
          el("button", { type: "button", class: "ghost", onclick: () => { results.hidden = true; } }, "Close"),
        ].filter(Boolean));
      } catch (error) {
        results.replaceChildren(errorBox(error));
      }
    };
    query.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); search(); } });
    return el("div", { class: "ticket-tools" },
      el("button", { type: "button", id: "go-to-file", title: "Go to file (t)", onclick: () => this.finder() }, "Go to file ", el("kbd", {}, "t")),
      query,
      el("button", { type: "button", id: "search", onclick: search }, "Search"),
      results);
  }

  tree() {
    this.buttons = [];
    const render = (node) =>
      el("ul", {},
        node.dirs.map((dir) => el("li", {}, el("details", { open: true }, el("summary", { title: dir.name }, `${dir.name}/`), render(dir)))),
        node.files.map((file) => {
          const button = el("button", { type: "button", class: "file", "data-path": file, title: file,
            onclick: () => { location.hash = this.hash(file); } }, file.split("/").pop());
          this.buttons.push(button);
          return el("li", {}, button);
        }));
    this.treeNav = el("nav", { class: "tree", id: "tree", "aria-label": "Files" }, render(buildTree(this.ticket.files)));
    this.treeNav.addEventListener("keydown", (e) => {
      const index = this.buttons.indexOf(document.activeElement);
      if (index < 0) return;
      const next = e.key === "ArrowDown" || e.key === "j" ? index + 1 : e.key === "ArrowUp" || e.key === "k" ? index - 1 : null;
      if (next === null) return;
      e.preventDefault();
      const button = this.buttons[Math.min(Math.max(next, 0), this.buttons.length - 1)];
      button.focus();
      location.hash = this.hash(button.dataset.path);
    });
    return this.treeNav;
  }

  async showFile(path, range) {
    const load = ++this.loads;
    const filesUrl = `${this.base}/files/${encodePath(path)}${this.q}`;
    const body = el("div", { class: "pane-body" }, loading("Rendering preview…"));
    this.lineInput = el("input", { type: "text", inputmode: "numeric", id: "line-input", placeholder: "line", title: "Go to a line (12, or 12-20)", "aria-label": "Go to line", value: range ? (range[1] > range[0] ? `${range[0]}-${range[1]}` : String(range[0])) : "" });
    this.lineInput.addEventListener("change", () => {
      const m = this.lineInput.value.trim().match(/^(\d+)(?:\s*-\s*(\d+))?$/);
      const from = m ? Number(m[1]) : 0;
      const to = m && m[2] ? Number(m[2]) : from;
      location.hash = this.hash(path, from > 0 ? [Math.min(from, to), Math.max(from, to)] : null);
    });
    const wrap = wraps();
    const wrapButton = el("button", { type: "button", id: "wrap", "aria-pressed": String(wrap), title: "Wrap long lines" }, "Wrap");
    wrapButton.addEventListener("click", () => {
      const on = wrapButton.getAttribute("aria-pressed") !== "true";
      localStorage.setItem(WRAP_KEY, on ? "on" : "off");
      wrapButton.setAttribute("aria-pressed", String(on));
      this.frame?.setWrap(on);
      body.querySelector("pre.raw")?.classList.toggle("nowrap", !on);
    });
    const facts = el("span", { class: "facts muted", id: "file-facts" });
    let shownAs = null;
    const copyButton = el("button", { type: "button", id: "copy-file", onclick: () => copyText(filesUrl, shownAs) }, "Copy");
    const sourceButton = el("button", { type: "button", id: "source", "aria-pressed": "false", hidden: true, title: "The file's text with line numbers" }, "Source");
    const textTools = [this.lineInput, wrapButton, copyButton, sourceButton];
    const encoding = el("span", { class: "badge", id: "encoding", hidden: true });
    const slash = path.lastIndexOf("/");
    this.pane.replaceChildren(
      el("div", { class: "pane-head" },
        el("span", { class: "path", title: path }, el("span", { class: "dir" }, path.slice(0, slash + 1)), el("span", { class: "name" }, path.slice(slash + 1))),
        facts, encoding),
      el("div", { class: "pane-tools" },
        this.lineInput,
        sourceButton,
        wrapButton,
        copyButton,
        el("button", { type: "button", id: "raw", onclick: () => openRaw(filesUrl) }, "Raw"),
        el("button", { type: "button", id: "download", onclick: () => download(filesUrl, safeName(path.split("/").pop())) }, "Download")),
      body,
      this.commentPanel = el("section", { class: "comment-panel", id: "comment-panel", "aria-label": "Comments" }),
    );
    this.drawThreads();
    if (this.frameUrl) URL.revokeObjectURL(this.frameUrl);
    this.frameUrl = null;
    this.frame = null;
    const current = () => load === this.loads && document.contains(body);
    // The size, from the first byte's answer: `Content-Range: bytes 0-0/SIZE`
    // (a range is never compressed, so its sizes are the file's).
    api(filesUrl, { headers: { Range: "bytes=0-0" } }).then((r) => {
      if (!current()) return;
      const total = r.headers.get("content-range")?.match(/\/(\d+)$/)?.[1] ?? r.headers.get("content-length");
      const size = Number(total);
      if (total !== null && Number.isFinite(size)) facts.dataset.size = formatSize(size);
      facts.textContent = [facts.dataset.size, facts.dataset.lines].filter(Boolean).join(" · ");
    }).catch((error) => {
      // An empty file has no first byte.
      if (!current() || error.status !== 416) return;
      facts.dataset.size = formatSize(0);
      facts.textContent = [facts.dataset.size, facts.dataset.lines].filter(Boolean).join(" · ");
    });
    const setLines = (n) => {
      if (!n) return;
      facts.dataset.lines = `${n.toLocaleString()} line${n === 1 ? "" : "s"}`;
      facts.textContent = [facts.dataset.size, facts.dataset.lines].filter(Boolean).join(" · ");
    };
    const raw = (text) => {
      const pre = el("pre", { class: `raw${wrap ? "" : " nowrap"}` }, text);
      setLines(text.split("\n").length - (text.endsWith("\n") ? 1 : 0));
      return pre;
    };
    try {
      const response = await api(`${this.base}/preview/${encodePath(path)}${this.q}`);
      if (!current()) return;
      const type = response.headers.get("content-type") || "";
      const plugin = response.headers.get("x-preview-plugin") || "";
      shownAs = response.headers.get("x-preview-encoding");
      if (shownAs) {
        encoding.textContent = `shown as ${shownAs}`;
        encoding.title = `The file is not UTF-8: the server decoded it as ${shownAs}. Raw and Download give the bytes as uploaded.`;
        encoding.hidden = false;
      }
      if (type.startsWith("image/")) {
        for (const tool of textTools) tool.hidden = true;
        const url = URL.createObjectURL(await response.blob());
        this.frameUrl = url;
        body.replaceChildren(el("img", { class: "preview", src: url, alt: path }));
      } else if (type.startsWith("text/html")) {
        const html = preparePreview(await response.text(), this.userSeg, this.idSeg);
        if (!current()) return;
        // A rendered view without numbered lines (Markdown, a notebook, a
        // table) has a Source view that has them, as GitHub's "Code".
        let source = null;
        const mount = (document, kind) => {
          if (this.frameUrl) URL.revokeObjectURL(this.frameUrl);
          const url = URL.createObjectURL(new Blob([document], { type: "text/html" }));
          this.frameUrl = url;
          // No allow-scripts: nothing in the preview runs. Same origin, so
          // the app can mark lines in it (frame.js); a click on a ticket
          // link may navigate the app (top) to that file.
          const frame = el("iframe", {
            class: "preview", title: `${kind === "source" ? "Source" : "Preview"} of ${path}`, "data-plugin": kind === "source" ? "" : plugin,
            sandbox: "allow-same-origin allow-top-navigation-by-user-activation allow-popups",
          });
          frame.addEventListener("load", () => {
            if (!current()) return;
            this.frame = new PreviewFrame(frame, () => this.finder(), (n, extend) => {
              const anchor = extend && this.range ? this.range[0] : n;
              const next = extend && this.range ? [Math.min(anchor, n), Math.max(anchor, n)] : [n, n];
              location.hash = this.hash(path, next);
            });
            this.frame.setWrap(wraps());
            this.frame.setTheme(localStorage.getItem(THEME_KEY) || "auto");
            const lines = this.frame.lines;
            setLines(lines);
            if (kind === "preview" && lines === 0) {
              sourceButton.hidden = false;
              // An address with lines needs the lines.
              if (this.range) return showSource();
            }
            this.mark(this.range);
            if (kind === "preview") {
              this.addPlus();
              this.drawThreads();
            }
          }, { once: true });
          frame.src = url;
          body.replaceChildren(frame);
        };
        const showSource = async () => {
          if (source === null) {
            try {
              const bytes = await (await api(filesUrl)).arrayBuffer();
              let text;
              try { text = new TextDecoder(shownAs || "utf-8").decode(bytes); } catch { text = new TextDecoder().decode(bytes); }
              source = sourceDocument(path, text);
            } catch (error) {
              flash(explain(error));
              return;
            }
          }
          if (!current()) return;
          sourceButton.setAttribute("aria-pressed", "true");
          mount(source, "source");
        };
        sourceButton.addEventListener("click", () => {
          if (sourceButton.getAttribute("aria-pressed") === "true") {
            sourceButton.setAttribute("aria-pressed", "false");
            if (this.range) history.replaceState(null, "", location.pathname + this.hash(path));
            this.range = null;
            this.lineInput.value = "";
            mount(html, "preview");
          } else showSource();
        });
        mount(html, "preview");
      } else {
        body.replaceChildren(raw(await response.text()));
      }
    } catch (error) {
      if (!current()) return;
      if (error instanceof ApiError && error.status === 415) {
        // No renderer takes it: the file itself, as text or image.
        try {
          const rawFile = await api(filesUrl);
          const type = rawFile.headers.get("content-type") || "";
          if (type.startsWith("image/") && type !== "image/svg+xml") {
            for (const tool of textTools) tool.hidden = true;
            const url = URL.createObjectURL(await rawFile.blob());
            this.frameUrl = url;
            body.replaceChildren(el("img", { class: "preview", src: url, alt: path }));
          } else if (type.startsWith("text/") || type.includes("json") || type.includes("xml")) {
            body.replaceChildren(el("p", { class: "muted" }, "No preview for this file; here it is as plain text."), raw(await rawFile.text()));
          } else {
            body.replaceChildren(el("p", { class: "empty" }, `No preview for this ${type || "binary"} file. Use Download to open it.`));
          }
        } catch (inner) {
          body.replaceChildren(errorBox(inner));
        }
      } else {
        body.replaceChildren(errorBox(error));
      }
    }
  }
}

/** "Compare with…": another ticket by its link or address, or one of
 * your own. */
async function compareDialog(user, ticketId) {
  const input = el("input", { type: "text", id: "compare-input", placeholder: "Paste the other ticket's link", "aria-label": "The other ticket's link" });
  const own = el("ul", { class: "compare-own" });
  const go = (otherUser, otherId) => {
    dialog.close();
    dialog.remove();
    location.hash = `#/compare/${user}/${ticketId}/${userSeg(otherUser)}/${otherId}`;
  };
  const submit = () => {
    const m = input.value.trim().match(/#\/t\/([^/]+)\/([0-9a-f]{20})/) || input.value.trim().match(/^([^/\s]+)\/([0-9a-f]{20})$/);
    if (!m) return flash("That is not a ticket's link (…/#/t/USER/TICKET).");
    go(decodeURIComponent(m[1]), m[2]);
  };
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
  const dialog = el("dialog", { id: "compare-dialog", class: "dialog" },
    el("h2", {}, "Compare with another ticket"),
    el("p", { class: "muted" }, "Changes are shown from this ticket to the other (for a student's work: open the starter code and compare with the student's ticket)."),
    input, el("div", { class: "actions" }, el("button", { class: "primary", type: "button", onclick: submit }, "Compare"),
      el("button", { type: "button", onclick: () => { dialog.close(); dialog.remove(); } }, "Cancel")),
    el("h3", {}, "Or one of yours"), own);
  document.body.append(dialog);
  dialog.showModal();
  input.focus();
  try {
    const mine = await apiJson("/ticket?length=20");
    own.replaceChildren(...mine.filter((t) => t.id !== ticketId).map((t) =>
      el("li", {}, el("button", { type: "button", class: "ghost", onclick: () => go(session.claims?.id || "@me", t.id) },
        el("span", { class: "mono" }, t.id.slice(0, 8)), " ", t.remark || "(no remark)", " · ", formatTime(t.create_time)))));
  } catch { /* the link still works */ }
}

/** The theme changed: the preview follows. */
export function restyleFrames(theme) {
  view?.frame?.setTheme(theme);
}
