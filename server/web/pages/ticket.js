// One ticket: its files as a tree, the chosen file's preview, and the
// author's actions (visibility, remark, delete).

import { el } from "../dom.js";
import { ApiError, api, apiJson, explain, session } from "../api.js";
import { encodePath, errorBox, flash, formatTime, here, loading, show, stillOn, userSeg } from "../ui.js";

/** Nested folders from `a/b/c.txt` paths, in upload order. */
function buildTree(paths) {
  const root = { dirs: new Map(), files: [] };
  for (const path of paths) {
    const parts = path.split("/");
    let node = root;
    for (const dir of parts.slice(0, -1)) {
      if (!node.dirs.has(dir)) node.dirs.set(dir, { dirs: new Map(), files: [] });
      node = node.dirs.get(dir);
    }
    node.files.push(path);
  }
  return root;
}

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

async function openRaw(path) {
  try {
    const blob = await (await api(path)).blob();
    // Shown as plain text unless it is an image: never as HTML from our origin.
    const type = blob.type.startsWith("image/") && blob.type !== "image/svg+xml" ? blob.type : "text/plain;charset=utf-8";
    window.open(URL.createObjectURL(new Blob([blob], { type })), "_blank", "noopener");
  } catch (error) {
    flash(explain(error));
  }
}

/** Makes a preview document safe to show and its ticket links work. */
// The policy `/preview` answers carry. A blob document takes the app's own
// policy, which lets in images from Discord's CDN (avatars): a preview's
// remote image would be fetched by the TA's browser. So the preview carries
// this one too, first thing in its head; policies only ever add up.
const PREVIEW_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

function preparePreview(html, user, ticketId) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  // A plugin's own `http-equiv` (a refresh to elsewhere, a looser policy)
  // has no place in a preview.
  for (const meta of doc.querySelectorAll("meta[http-equiv]")) meta.remove();
  const policy = doc.createElement("meta");
  policy.setAttribute("http-equiv", "Content-Security-Policy");
  policy.setAttribute("content", PREVIEW_CSP);
  doc.head.prepend(policy);
  for (const link of doc.querySelectorAll("a[data-pd2-path]")) {
    const fragment = (link.getAttribute("href") || "").match(/#L\d+$/)?.[0] || "";
    link.setAttribute("href", `${location.origin}/#/t/${user}/${ticketId}/${encodePath(link.dataset.pd2Path)}${fragment}`);
    link.setAttribute("target", "_top");
  }
  for (const link of doc.querySelectorAll("a[href^='http']:not([data-pd2-path])")) link.setAttribute("target", "_blank");
  return "<!DOCTYPE html>\n" + doc.documentElement.outerHTML;
}

let currentFrameUrl = null;

async function showFile(pane, user, ticket, path, line) {
  const base = `/ticket/${user}/${ticket.id}`;
  const filesUrl = `${base}/files/${encodePath(path)}`;
  const body = el("div", { class: "pane-body" }, loading("Rendering preview…"));
  const lineInput = el("input", { type: "number", min: 1, placeholder: "line", style: "width:6em", title: "Link to a line", value: line ?? "" });
  lineInput.addEventListener("change", () => {
    const n = Number(lineInput.value);
    location.hash = `#/t/${user}/${ticket.id}/${encodePath(path)}${n > 0 ? `#L${n}` : ""}`;
  });
  pane.replaceChildren(
    el("div", { class: "pane-head" },
      el("span", { class: "path" }, path),
      lineInput,
      el("button", { type: "button", onclick: () => openRaw(filesUrl) }, "Raw"),
      el("button", { type: "button", onclick: () => download(filesUrl, safeName(path.split("/").pop())) }, "Download")),
    body,
  );
  if (currentFrameUrl) URL.revokeObjectURL(currentFrameUrl);
  currentFrameUrl = null;
  try {
    const response = await api(`${base}/preview/${encodePath(path)}`);
    const type = response.headers.get("content-type") || "";
    const plugin = response.headers.get("x-preview-plugin") || "";
    if (type.startsWith("image/")) {
      const url = URL.createObjectURL(await response.blob());
      currentFrameUrl = url;
      body.replaceChildren(el("img", { class: "preview", src: url, alt: path }));
    } else if (type.startsWith("text/html")) {
      const html = preparePreview(await response.text(), user, ticket.id);
      const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
      currentFrameUrl = url;
      // No allow-scripts, no allow-same-origin: the preview runs nothing
      // and cannot read the app; a click on a ticket link may navigate
      // the app (top) to that file.
      body.replaceChildren(el("iframe", {
        class: "preview", title: `Preview of ${path}`, "data-plugin": plugin,
        sandbox: "allow-top-navigation-by-user-activation allow-popups",
        src: line ? `${url}#L${line}` : url,
      }));
    } else {
      body.replaceChildren(el("pre", { class: "raw" }, await response.text()));
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 415) {
      // No renderer takes it: the file itself, as text or image.
      try {
        const raw = await api(filesUrl);
        const type = raw.headers.get("content-type") || "";
        if (type.startsWith("image/") && type !== "image/svg+xml") {
          const url = URL.createObjectURL(await raw.blob());
          currentFrameUrl = url;
          body.replaceChildren(el("img", { class: "preview", src: url, alt: path }));
        } else if (type.startsWith("text/") || type.includes("json") || type.includes("xml")) {
          body.replaceChildren(el("p", { class: "muted" }, "No preview for this file; here it is as plain text."), el("pre", { class: "raw" }, await raw.text()));
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

export async function ticketPage(user, ticketId, path, line) {
  show(loading("Loading ticket…"));
  let ticket;
  const now = here();
  try {
    ticket = await apiJson(`/ticket/${userSeg(user)}/${encodeURIComponent(ticketId)}`);
  } catch (error) {
    return stillOn(now) && show(el("h1", {}, "Ticket"), errorBox(error));
  }
  if (!stillOn(now)) return;
  const author = ticket.author?.display_data || {};
  const mine = session.claims && author.id === session.claims.id;
  const selected = path && ticket.files.includes(path) ? path : ticket.files[0];
  const base = `/ticket/${userSeg(user)}/${ticket.id}`;

  const remarkText = el("p", { class: "remark", id: "remark-text" }, ticket.remark || "(no remark)");
  const visibility = el("span", { class: `badge ${ticket.is_public ? "public" : ""}`, id: "visibility" }, ticket.is_public ? "public" : "private");
  const update = async (change) => {
    try {
      ticket = await apiJson(base, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(change) });
      remarkText.textContent = ticket.remark || "(no remark)";
      visibility.textContent = ticket.is_public ? "public" : "private";
      visibility.className = `badge ${ticket.is_public ? "public" : ""}`;
      toggle.textContent = ticket.is_public ? "Make private" : "Make public";
      flash("Saved.", "info");
    } catch (error) {
      flash(explain(error));
    }
  };
  const toggle = el("button", { type: "button", id: "toggle-public", onclick: () => update({ is_public: !ticket.is_public }) }, ticket.is_public ? "Make private" : "Make public");
  const edit = el("button", { type: "button", id: "edit-remark", onclick: () => {
    const area = el("textarea", { id: "remark-edit" });
    area.value = ticket.remark;
    const save = el("button", { class: "primary", type: "button", id: "save-remark", onclick: async () => { await update({ remark: area.value }); editor.replaceWith(remarkText); } }, "Save");
    const cancel = el("button", { type: "button", onclick: () => editor.replaceWith(remarkText) }, "Cancel");
    const editor = el("div", {}, area, el("div", { class: "actions" }, save, cancel));
    remarkText.replaceWith(editor);
    area.focus();
  } }, "Edit remark");
  const remove = el("button", { class: "danger", type: "button", id: "delete", onclick: async () => {
    if (!confirm(`Delete this ticket and its ${ticket.files.length} file(s)? This cannot be undone.`)) return;
    try {
      await api(base, { method: "DELETE" });
      flash("Ticket deleted.", "info");
      location.hash = "#/";
    } catch (error) {
      flash(explain(error));
    }
  } }, "Delete");
  const share = `${location.origin}/#/t/${author.id || user}/${ticket.id}`;
  const copy = el("button", { type: "button", id: "copy-link", onclick: async () => {
    try {
      await navigator.clipboard.writeText(share);
      flash("Link copied.", "info");
    } catch {
      prompt("Copy this link:", share);
    }
  } }, "Copy link");

  const pane = el("section", { class: "pane", id: "pane" });
  const buttons = [];
  const choose = (file, focus = false) => {
    for (const b of buttons) b.classList.toggle("selected", b.dataset.path === file);
    const current = buttons.find((b) => b.dataset.path === file);
    if (focus) current?.focus();
    history.replaceState(null, "", `#/t/${user}/${ticket.id}/${encodePath(file)}`);
    showFile(pane, userSeg(user), ticket, file, null);
  };
  const renderTree = (node) =>
    el("ul", {},
      [...node.dirs.entries()].map(([name, child]) => el("li", {}, el("details", { open: true }, el("summary", {}, `${name}/`), renderTree(child)))),
      node.files.map((file) => {
        const button = el("button", { type: "button", class: "file", "data-path": file, title: file, onclick: () => choose(file) }, file.split("/").pop());
        buttons.push(button);
        return el("li", {}, button);
      }));
  const tree = el("nav", { class: "tree", id: "tree", "aria-label": "Files" }, renderTree(buildTree(ticket.files)));
  tree.addEventListener("keydown", (e) => {
    const index = buttons.indexOf(document.activeElement);
    if (index < 0) return;
    if (e.key === "ArrowDown" || e.key === "j") { e.preventDefault(); choose(buttons[Math.min(index + 1, buttons.length - 1)].dataset.path, true); }
    if (e.key === "ArrowUp" || e.key === "k") { e.preventDefault(); choose(buttons[Math.max(index - 1, 0)].dataset.path, true); }
  });

  show(
    el("div", { class: "ticket-head" },
      el("div", { class: "grow" },
        el("h1", {}, "Ticket ", el("span", { class: "mono muted" }, ticket.id)),
        remarkText,
        el("p", { class: "muted" }, "by ", el("a", { href: `#/u/${userSeg(author.id || user)}` }, author.display_name || author.username || author.id || user), " · ", formatTime(ticket.create_time), " · ", visibility)),
      el("div", { class: "actions" },
        copy,
        el("button", { type: "button", id: "zip", onclick: () => download(`${base}/download`, `${ticket.id}.zip`) }, "Download zip"),
        mine ? [toggle, edit, remove] : null)),
    el("div", { class: "viewer" }, tree, pane),
  );
  for (const b of buttons) b.classList.toggle("selected", b.dataset.path === selected);
  if (selected) showFile(pane, userSeg(user), ticket, selected, line);
  else pane.replaceChildren(el("p", { class: "empty" }, "This ticket has no files."));
}
