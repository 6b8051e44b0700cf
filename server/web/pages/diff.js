// What changed: between two versions of a ticket (`#/diff/{user}/{id}/{from}/{to}`)
// or from one ticket to another (`#/compare/{user}/{id}/{otherUser}/{otherId}`).
// The changed files with their counts, each file's diff inline or side by
// side (remembered), and `n` / `p` to walk the changes, as a reviewer
// does. Every line is text built with el(): nothing in a file is markup.

import { el } from "../dom.js";
import { api, apiJson } from "../api.js";
import { encodePath, errorBox, flash, formatSize, formatTime, here, loading, show, stillOn, userSeg } from "../ui.js";
import { buildTree, treeOrder } from "../tree.js";
import { threadNode } from "../comments.js";

const VIEW_KEY = "pd2-diff-view";
/** Files whose diffs are fetched at once; the rest on request. */
const EAGER_FILES = 60;

export async function diffPage(user, id, from, to) {
  const base = `/ticket/${userSeg(user)}/${encodeURIComponent(id)}`;
  const query = `?from=${from}&to=${to}`;
  await draw({
    title: (c) => ["Changes in ticket ", el("a", { href: `#/t/${userSeg(user)}/${id}` }, el("span", { class: "mono" }, id)),
      ` · version ${c.from.version} → ${c.to.version}`],
    listUrl: `${base}/diff${query}`,
    fileUrl: (path) => `${base}/diff/${encodePath(path)}${query}`,
    fileLink: (path, c) => `#/t/${userSeg(user)}/${id}@v${c.to.version}/${encodePath(path)}`,
    previewUrl: (path, side) => `${base}/preview/${encodePath(path)}?version=${side === "old" ? from : to}`,
    // Threads at the newer version, under their lines.
    comments: { base, url: `${base}/comments?version=${to}` },
    pickers: async () => versionPickers(base, user, id, from, to),
  });
}

export async function comparePage(user, id, otherUser, otherId) {
  const seg = `${userSeg(user)}/${encodeURIComponent(id)}/${userSeg(otherUser)}/${encodeURIComponent(otherId)}`;
  await draw({
    title: () => ["Compare ", el("a", { href: `#/t/${userSeg(user)}/${id}` }, el("span", { class: "mono" }, id)),
      " → ", el("a", { href: `#/t/${userSeg(otherUser)}/${otherId}` }, el("span", { class: "mono" }, otherId))],
    listUrl: `/compare/${seg}`,
    fileUrl: (path) => `/compare/${seg}/${encodePath(path)}`,
    fileLink: (path) => `#/t/${userSeg(otherUser)}/${otherId}/${encodePath(path)}`,
    previewUrl: (path, side) => side === "old"
      ? `/ticket/${userSeg(user)}/${encodeURIComponent(id)}/preview/${encodePath(path)}`
      : `/ticket/${userSeg(otherUser)}/${encodeURIComponent(otherId)}/preview/${encodePath(path)}`,
    pickers: async () => null,
  });
}

async function versionPickers(base, user, id, from, to) {
  const versions = await apiJson(`${base}/versions`);
  const select = (name, value, floor) => {
    const s = el("select", { id: `diff-${name}`, "aria-label": name === "from" ? "From version" : "To version" },
      versions.filter((v) => v.version >= floor).map((v) =>
        el("option", { value: String(v.version), selected: v.version === value },
          `v${v.version} · ${formatTime(v.create_time)}${v.remark ? ` · ${v.remark.slice(0, 40)}` : ""}`)));
    return s;
  };
  const fromSelect = select("from", from, 1);
  const toSelect = select("to", to, 1);
  const go = () => { location.hash = `#/diff/${userSeg(user)}/${id}/${fromSelect.value}/${toSelect.value}`; };
  fromSelect.addEventListener("change", go);
  toSelect.addEventListener("change", go);
  return el("div", { class: "version-bar" }, "From ", fromSelect, " to ", toSelect);
}

const LABEL = { added: "added", removed: "removed", modified: "modified", renamed: "renamed" };

async function draw(page) {
  show(loading("Comparing…"));
  const now = here();
  let compared;
  let pickers = null;
  try {
    [compared, pickers] = await Promise.all([apiJson(page.listUrl), page.pickers().catch(() => null)]);
  } catch (error) {
    return stillOn(now) && show(el("h1", {}, "Changes"), errorBox(error));
  }
  if (!stillOn(now)) return;
  // In the tree's order (folders first, natural order), as the ticket shows them.
  const order = new Map(treeOrder(buildTree(compared.files.map((f) => f.path))).map((p, i) => [p, i]));
  const changed = compared.files.filter((f) => f.status !== "unchanged").sort((a, b) => order.get(a.path) - order.get(b.path));
  const split = localStorage.getItem(VIEW_KEY) === "split";
  const inline = el("button", { type: "button", id: "diff-inline", "aria-pressed": String(!split) }, "Inline");
  const side = el("button", { type: "button", id: "diff-split", "aria-pressed": String(split) }, "Side by side");
  const position = el("span", { class: "muted", id: "change-position", "aria-live": "polite" });
  // The review's threads (versions of one ticket only), shared by the files.
  const review = { threads: [], author: null };
  const sections = changed.map((file, i) => fileSection(file, i, page, compared, review));
  const root = el("div", { class: "diff-page" },
    el("h1", {}, page.title(compared)),
    pickers,
    el("p", { id: "diff-summary" }, summary(compared)),
    el("div", { class: "diff-tools" }, inline, side,
      el("span", { class: "muted" }, " Move between changes with ", el("kbd", {}, "n"), " and ", el("kbd", {}, "p"), ". "), position),
    el("ul", { class: "diff-index", id: "diff-index" }, changed.map((f) =>
      el("li", {}, el("a", { href: `#diff-file-${changed.indexOf(f)}`, onclick: (e) => { e.preventDefault(); document.getElementById(`diff-file-${changed.indexOf(f)}`)?.scrollIntoView({ block: "start" }); } },
        el("span", { class: `status ${f.status}` }, LABEL[f.status]), " ", el("span", { class: "mono" }, f.old_path ? `${f.old_path} → ${f.path}` : f.path), " ", counts(f))))),
    changed.length ? sections.map((s) => s.node) : el("p", { class: "empty" }, "No differences."),
  );
  show(root);
  const render = () => {
    const mode = localStorage.getItem(VIEW_KEY) === "split" ? "split" : "inline";
    inline.setAttribute("aria-pressed", String(mode === "inline"));
    side.setAttribute("aria-pressed", String(mode === "split"));
    for (const s of sections) s.render(mode);
    walker.reset();
  };
  inline.addEventListener("click", () => { localStorage.setItem(VIEW_KEY, "inline"); render(); });
  side.addEventListener("click", () => { localStorage.setItem(VIEW_KEY, "split"); render(); });
  const walker = changeWalker(root, position);
  if (page.comments) {
    const loadThreads = async () => {
      try {
        review.threads = await apiJson(page.comments.url);
        review.author = (await apiJson(page.comments.base)).author?.display_data?.id;
      } catch { review.threads = []; }
      review.reload = loadThreads;
      render();
    };
    review.base = page.comments.base;
    loadThreads();
  }
  // Each file's diff, a few at a time, in order.
  let next = 0;
  const worker = async () => {
    while (next < Math.min(sections.length, EAGER_FILES)) {
      const s = sections[next++];
      await s.load();
      if (!document.contains(root)) return;
      s.render(localStorage.getItem(VIEW_KEY) === "split" ? "split" : "inline");
      walker.reset();
    }
  };
  await Promise.all([worker(), worker(), worker()]);
}

function summary(c) {
  const parts = [];
  for (const k of ["modified", "added", "removed", "renamed"]) if (c[k]) parts.push(`${c[k]} ${k}`);
  const files = c.modified + c.added + c.removed + c.renamed;
  return [`${files} file${files === 1 ? "" : "s"} changed`, parts.length ? ` (${parts.join(", ")})` : "",
    `, ${c.unchanged} unchanged · `, el("span", { class: "plus" }, `+${c.additions}`), " ", el("span", { class: "minus" }, `−${c.deletions}`)];
}

function counts(f) {
  if (f.note) return el("span", { class: "muted" }, f.note === "binary" ? "binary" : f.note);
  if (f.additions === undefined && f.deletions === undefined) return null;
  return [el("span", { class: "plus" }, `+${f.additions ?? 0}`), " ", el("span", { class: "minus" }, `−${f.deletions ?? 0}`)];
}

/** One file's section: its head, and its diff once loaded. */
function fileSection(file, index, page, compared, review) {
  const body = el("div", { class: "diff-body" }, file.status === "renamed" ? el("p", { class: "muted" }, "Renamed without changes.") : loading("Loading diff…"));
  const node = el("section", { class: "diff-file", id: `diff-file-${index}`, "data-path": file.path },
    el("div", { class: "diff-file-head" },
      el("span", { class: `status ${file.status}` }, LABEL[file.status]), " ",
      el("span", { class: "mono path" }, file.old_path ? `${file.old_path} → ${file.path}` : file.path), " ",
      counts(file), " ",
      file.status !== "removed" ? el("a", { href: page.fileLink(file.path, compared), class: "muted" }, "View file") : null,
      el("span", { class: "muted" }, ` ${formatSize(file.size)}`)),
    body);
  let parsed = null;
  let note = null;
  const colours = { old: null, new: null };
  return {
    node,
    async load() {
      if (file.status === "renamed") return;
      try {
        const response = await api(page.fileUrl(file.path));
        const kind = response.headers.get("x-diff");
        const text = await response.text();
        if (kind === "binary" || kind === "too large") note = kind === "binary" ? "Binary file: not shown." : "Too large to show line by line.";
        else {
          parsed = parseUnified(text);
          // Syntax colours from each side's preview, where the renderer
          // numbers its lines (code); plain text otherwise.
          if (file.size <= HIGHLIGHT_MAX && file.status !== "removed") colours.new = await highlighted(page.previewUrl(file.path, "new"));
          const before = file.status === "added" ? null : file.old_path || file.path;
          if (before && file.size <= HIGHLIGHT_MAX) colours.old = await highlighted(page.previewUrl(before, "old"));
        }
      } catch (error) {
        body.replaceChildren(errorBox(error));
      }
    },
    render(mode) {
      if (note) return body.replaceChildren(el("p", { class: "muted" }, note));
      if (!parsed) return;
      body.replaceChildren(mode === "split" ? splitTable(parsed, colours) : inlineTable(parsed, colours));
      // Threads on this file's lines, under the line they end on.
      const ctx = { base: review.base, ticketAuthor: review.author, reload: () => review.reload?.() };
      // Threads whose lines this diff does not show (outside its hunks,
      // or outdated) follow the file's diff.
      const elsewhere = [];
      for (const t of review.threads.filter((t) => t.path === file.path)) {
        const row = t.position && body.querySelector(`tr[data-new="${t.position.line_end}"]`);
        if (row) row.after(el("tr", { class: "diff-thread" }, el("td", { colspan: mode === "split" ? 4 : 3 }, threadNode(t, ctx))));
        else elsewhere.push(threadNode(t, ctx));
      }
      if (elsewhere.length) body.append(el("div", { class: "diff-file-threads" }, el("p", { class: "muted" }, "Comments on lines not shown here:"), elsewhere));
    },
  };
}

/** Unified diff text → hunks of lines `{kind: " "|"-"|"+", text, old, new}`. */
export function parseUnified(text) {
  const hunks = [];
  let hunk = null;
  let oldNo = 0;
  let newNo = 0;
  for (const line of text.split("\n")) {
    const head = line.match(/^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$/);
    if (head) {
      oldNo = Number(head[1]);
      newNo = Number(head[2]);
      hunk = { head: line, lines: [] };
      hunks.push(hunk);
      continue;
    }
    if (!hunk || line === "") continue;
    const kind = line[0];
    const body = line.slice(1).replace(/\r$/, "");
    if (kind === " ") hunk.lines.push({ kind, text: body, old: oldNo++, new: newNo++ });
    else if (kind === "-") hunk.lines.push({ kind, text: body, old: oldNo++ });
    else if (kind === "+") hunk.lines.push({ kind, text: body, new: newNo++ });
    // "\ No newline at end of file" and anything else: not a line.
  }
  return hunks;
}

function inlineTable(hunks, colours) {
  const rows = [];
  for (const hunk of hunks) {
    rows.push(el("tr", { class: "hunk" }, el("td", { colspan: 3 }, hunk.head)));
    let prev = " ";
    for (const l of hunk.lines) {
      const start = l.kind !== " " && prev === " ";
      prev = l.kind;
      rows.push(el("tr", { class: `${l.kind === "+" ? "add" : l.kind === "-" ? "del" : "ctx"}${start ? " change-start" : ""}`, "data-new": l.new },
        el("td", { class: "n" }, l.old ?? ""), el("td", { class: "n" }, l.new ?? ""),
        el("td", { class: "c" }, `${l.kind === " " ? " " : l.kind} `, code(l, l.kind === "-" ? colours.old : colours.new, l.kind === "-" ? l.old : l.new))));
    }
  }
  return el("table", { class: "diff inline" }, el("tbody", {}, rows));
}

/** Side by side: each run of removals beside the additions that replace it. */
function splitTable(hunks, colours) {
  const rows = [];
  for (const hunk of hunks) {
    rows.push(el("tr", { class: "hunk" }, el("td", { colspan: 4 }, hunk.head)));
    const lines = hunk.lines;
    for (let i = 0; i < lines.length;) {
      if (lines[i].kind === " ") {
        const l = lines[i++];
        rows.push(el("tr", { class: "ctx", "data-new": l.new }, el("td", { class: "n" }, l.old), el("td", { class: "c" }, code(l, colours.old, l.old)), el("td", { class: "n" }, l.new), el("td", { class: "c" }, code(l, colours.new, l.new))));
        continue;
      }
      const dels = [];
      const adds = [];
      while (i < lines.length && lines[i].kind === "-") dels.push(lines[i++]);
      while (i < lines.length && lines[i].kind === "+") adds.push(lines[i++]);
      for (let k = 0; k < Math.max(dels.length, adds.length); k++) {
        const d = dels[k];
        const a = adds[k];
        rows.push(el("tr", { class: `pair${k === 0 ? " change-start" : ""}`, "data-new": a?.new },
          el("td", { class: `n${d ? " del" : " none"}` }, d?.old ?? ""), el("td", { class: `c${d ? " del" : " none"}` }, d ? code(d, colours.old, d.old) : ""),
          el("td", { class: `n${a ? " add" : " none"}` }, a?.new ?? ""), el("td", { class: `c${a ? " add" : " none"}` }, a ? code(a, colours.new, a.new) : "")));
      }
    }
  }
  return el("table", { class: "diff split" }, el("tbody", {}, rows));
}

/** Files up to this size get syntax colours (two previews fetched). */
const HIGHLIGHT_MAX = 512 * 1024;
/** The highlighter's classes (plugins/highlight): only these become
 * colours, and only the app's own (`hl-*` in app.css); nothing of the
 * preview's markup or style reaches the page. */
const TOKENS = new Set(["kw", "ty", "va", "fn", "st", "nu", "bu", "at", "ke", "co", "me", "tg"]);

/** A preview's lines as `[text, class]` runs by line number, when its
 * renderer numbers lines (`<tr id="L3">…<td class="c">`); else null. The
 * HTML is parsed inert (DOMParser runs nothing) and read as text. */
async function highlighted(url) {
  try {
    const response = await api(url);
    if (!(response.headers.get("content-type") || "").startsWith("text/html")) return null;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const lines = new Map();
    for (const row of doc.querySelectorAll("tr[id^='L'] > td.c")) {
      const n = Number(row.parentElement.id.slice(1));
      const runs = [];
      for (const node of row.childNodes) {
        const cls = node.nodeType === 1 ? node.getAttribute("class") : null;
        runs.push([node.textContent, cls && TOKENS.has(cls) ? cls : null]);
      }
      lines.set(n, runs);
    }
    return lines.size ? lines : null;
  } catch {
    return null; // No preview (415) or not readable: plain text.
  }
}

/** A line's text, coloured when its side's preview has the same text. */
function code(line, colours, number) {
  const runs = colours?.get(number);
  if (!runs || runs.map((r) => r[0]).join("") !== line.text) return line.text;
  return runs.map(([text, cls]) => (cls ? el("span", { class: `hl-${cls}` }, text) : text));
}

/** `n` and `p`: the next and previous change on the page. */
function changeWalker(root, position) {
  let current = -1;
  const starts = () => [...root.querySelectorAll("tr.change-start")];
  const move = (step) => {
    const all = starts();
    if (!all.length) return flash("No changes to move between.", "info");
    current = Math.min(Math.max(current + step, 0), all.length - 1);
    for (const r of root.querySelectorAll("tr.current")) r.classList.remove("current");
    const row = all[current];
    row.classList.add("current");
    row.scrollIntoView({ block: "center" });
    position.textContent = `Change ${current + 1} of ${all.length}`;
  };
  const onKey = (e) => {
    if (!document.contains(root)) return document.removeEventListener("keydown", onKey);
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.("input, textarea, select, [contenteditable]")) return;
    if (e.key === "n") { e.preventDefault(); move(1); }
    else if (e.key === "p") { e.preventDefault(); move(-1); }
  };
  document.addEventListener("keydown", onKey);
  return {
    reset() {
      const all = starts();
      if (current >= all.length) current = all.length - 1;
      position.textContent = all.length ? (current >= 0 ? `Change ${current + 1} of ${all.length}` : `${all.length} change${all.length === 1 ? "" : "s"}`) : "";
    },
  };
}
