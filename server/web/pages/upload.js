// Uploading a folder as a ticket: drop or pick, see the limits before
// sending, progress while sending, and each refused file marked with its
// reason.

import { el } from "../dom.js";
import { apiJson, session, upload } from "../api.js";
import { errorBox, flash, formatSize, show, userSeg } from "../ui.js";

/** Files dropped or picked, with their paths inside the ticket. */
async function entriesToFiles(items) {
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ path: prefix + entry.name, file });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const item of items) {
    const entry = item.webkitGetAsEntry?.();
    if (entry) await walk(entry, "");
    else if (item.getAsFile?.()) out.push({ path: item.getAsFile().name, file: item.getAsFile() });
  }
  return out;
}

/** The upload page: a new ticket, or (`target`: `{user, id}`) a new
 * version of one of your tickets, which keeps its link. */
export function uploadPage(target = null) {
  const limits = session.meta?.limits || {};
  const chosen = new Map(); // path → File
  const list = el("tbody");
  const summary = el("p", { class: "muted" });
  const problems = el("div");
  const progress = el("progress", { max: 100, value: 0, hidden: true });
  const progressText = el("p", { class: "progress-text", "aria-live": "polite" });
  const isPublic = el("input", { type: "checkbox", id: "is-public" });
  const remark = el("textarea", { id: "remark", rows: 3, placeholder: "What should your TA look at? (optional)" });
  const send = el("button", { class: "primary", type: "button", id: "send", disabled: true }, "Upload");

  // Before a byte is sent, the server says which names it would refuse
  // (its rules and the policy's by-name rules): marked at once, Upload
  // held back until they are removed. Advisory: the upload is checked
  // again in full.
  let checkTimer = null;
  let checks = 0;
  const check = async (issues) => {
    const mine = ++checks;
    const files = [...chosen.entries()].map(([path, file]) => ({ path, size: file.size }));
    let found;
    try {
      found = await apiJson("/ticket/check", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ files }) });
    } catch {
      return; // A very large folder, or the server away: the upload will say.
    }
    if (mine !== checks || !found.rejections.length) return;
    const general = [];
    for (const r of found.rejections) {
      const row = r.file && list.querySelector(`tr[data-path="${CSS.escape(r.file)}"]`);
      if (row) {
        row.classList.add("rejected");
        row.querySelector(".reason").textContent = `${r.plugin === "pd2-ticket" ? "" : `${r.plugin}: `}${r.message}`;
      } else general.push(r.message);
    }
    problems.replaceChildren(
      ...issues.map((text) => el("p", { class: "error-box" }, text)),
      el("p", { class: "error-box", role: "alert", id: "precheck" }, "These files would be refused: remove them (✕) before uploading."),
      ...general.map((text) => el("p", { class: "error-box" }, text)));
    send.disabled = true;
  };
  const redraw = () => {
    list.replaceChildren(...[...chosen.entries()].map(([path, file]) =>
      el("tr", { "data-path": path },
        el("td", { class: "mono" }, path, el("span", { class: "reason" })),
        el("td", { class: "size" }, formatSize(file.size)),
        el("td", {}, el("button", { class: "ghost", type: "button", title: `Remove ${path}`, onclick: () => { chosen.delete(path); redraw(); } }, "✕")),
      )));
    const total = [...chosen.values()].reduce((sum, f) => sum + f.size, 0);
    const issues = [];
    if (limits.max_files && chosen.size > limits.max_files) issues.push(`${chosen.size} files: at most ${limits.max_files} per ticket.`);
    if (limits.max_ticket_size && total > limits.max_ticket_size) issues.push(`${formatSize(total)} in all: at most ${formatSize(limits.max_ticket_size)} per ticket.`);
    for (const [path, file] of chosen) {
      if (limits.max_file_size && file.size > limits.max_file_size) issues.push(`${path} is ${formatSize(file.size)}: at most ${formatSize(limits.max_file_size)} per file.`);
    }
    summary.textContent = chosen.size ? `${chosen.size} file${chosen.size === 1 ? "" : "s"}, ${formatSize(total)}` : "No files chosen yet.";
    problems.replaceChildren(...issues.map((text) => el("p", { class: "error-box" }, text)));
    send.disabled = chosen.size === 0 || issues.length > 0;
    clearTimeout(checkTimer);
    if (chosen.size) checkTimer = setTimeout(() => check(issues), 250);
  };
  const add = (files) => {
    for (const { path, file } of files) chosen.set(path.replace(/\\/g, "/").replace(/^\/+/, ""), file);
    redraw();
  };

  const folderInput = el("input", { type: "file", webkitdirectory: true, multiple: true, hidden: true, id: "folder-input",
    onchange: () => add([...folderInput.files].map((f) => ({ path: f.webkitRelativePath || f.name, file: f }))) });
  const fileInput = el("input", { type: "file", multiple: true, hidden: true, id: "file-input",
    onchange: () => add([...fileInput.files].map((f) => ({ path: f.name, file: f }))) });
  const drop = el("div", { class: "drop", id: "drop" },
    el("p", {}, "Drop a folder or files here, or"),
    el("div", { class: "row", style: "justify-content:center" },
      el("button", { type: "button", onclick: () => folderInput.click() }, "Choose a folder"),
      el("button", { type: "button", onclick: () => fileInput.click() }, "Choose files")),
    folderInput, fileInput);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    add(await entriesToFiles([...e.dataTransfer.items]));
  });

  send.addEventListener("click", async () => {
    const form = new FormData();
    for (const [path, file] of chosen) form.append("files", file, path);
    form.append("data", JSON.stringify(target ? { remark: remark.value } : { is_public: isPublic.checked, remark: remark.value }));
    const started = performance.now();
    send.disabled = true;
    progress.hidden = false;
    let ticket;
    try {
      ticket = await upload(target ? `/ticket/${userSeg(target.user)}/${encodeURIComponent(target.id)}/versions` : "/ticket", form, (loaded, total) => {
        const seconds = (performance.now() - started) / 1000;
        progress.value = (loaded / total) * 100;
        progressText.textContent = `${Math.round(progress.value)} % · ${formatSize(loaded)} of ${formatSize(total)} · ${formatSize(loaded / Math.max(seconds, 0.001))}/s`;
      });
    } catch (error) {
      send.disabled = false;
      progress.hidden = true;
      progressText.textContent = "";
      const body = error.body;
      if (error.status === 422 && Array.isArray(body?.rejections)) {
        const general = [];
        for (const r of body.rejections) {
          const row = r.file && list.querySelector(`tr[data-path="${CSS.escape(r.file)}"]`);
          if (row) {
            row.classList.add("rejected");
            row.querySelector(".reason").textContent = `${r.plugin}: ${r.message}`;
          } else general.push(`${r.file ? r.file + ": " : ""}${r.message} (${r.plugin})`);
        }
        const more = body.omitted ? [`…and ${body.omitted} more rejections.`] : [];
        problems.replaceChildren(el("p", { class: "error-box", role: "alert" }, "The upload was refused by the course's file policy: nothing was stored. Fix or remove the files marked above and upload again."),
          ...[...general, ...more].map((t) => el("p", { class: "error-box" }, t)));
      } else if (error.status === 413) {
        // The server names the file that crossed the per-file limit.
        const which = body?.file ? ` (${body.file})` : "";
        problems.replaceChildren(el("p", { class: "error-box", role: "alert" }, `Too large: ${body?.detail || "a limit was exceeded"}${which}. Limits: ${formatSize(limits.max_file_size || 0)} per file, ${formatSize(limits.max_ticket_size || 0)} per ticket, ${limits.max_files ?? "?"} files.`));
      } else {
        problems.replaceChildren(errorBox(error));
      }
      return;
    }
    progress.value = 100;
    progressText.textContent = `100 % · uploaded ${formatSize([...chosen.values()].reduce((s, f) => s + f.size, 0))}`;
    const me = session.claims?.id ? userSeg(session.claims.id) : "@me";
    if (target) {
      flash(`Version ${ticket.version} uploaded.`, "info");
      // What the new version changed, at once.
      location.hash = `#/diff/${me}/${ticket.id}/${ticket.version - 1}/${ticket.version}`;
      return;
    }
    flash("Ticket created.", "info");
    location.hash = `#/t/${me}/${ticket.id}`;
  });

  if (target) remark.placeholder = "What changed since the last version? (optional)";
  show(
    target
      ? [el("h1", {}, "Upload a new version"),
        el("p", { class: "muted" }, "of ticket ", el("a", { href: `#/t/${userSeg(target.user)}/${target.id}` }, el("span", { class: "mono" }, target.id)),
          ". The link stays the same; earlier versions stay readable, and files that did not change are not stored again.")]
      : el("h1", {}, "Upload a ticket"),
    el("p", { class: "limits", id: "limits" },
      `Limits: ${formatSize(limits.max_file_size || 0)} per file, ${formatSize(limits.max_ticket_size || 0)} per ticket, ${limits.max_files ?? "?"} files.`),
    drop,
    summary,
    el("table", { class: "files", id: "chosen" }, list),
    problems,
    target ? null : el("label", { class: "inline" }, isPublic, "Public (anyone signed in with the link can read it)"),
    el("label", { for: "remark" }, "Remark"),
    remark,
    el("p", {}, send),
    progress,
    progressText,
    el("p", { class: "muted", id: "cli-hint" }, "On a terminal without a browser (the course's workstation over SSH)? ",
      el("span", { class: "mono" }, "pd2 upload"), " sends a folder from there: ", el("a", { href: "#/device" }, "sign a terminal in"), "."),
  );
  redraw();
}
