// Review comments in the app: threads drawn under their lines (in a
// preview frame or a diff), a form to write one, replies, resolve, edit
// and delete as the server allows. A comment's HTML comes rendered and
// sanitised by the server; here it is read once more through an allowlist
// of elements and attributes and rebuilt with el(), so nothing but those
// can reach the page even if the server erred.

import { el } from "./dom.js";
import { apiJson, api, explain, session } from "./api.js";
import { flash, formatTime } from "./ui.js";

const ALLOWED = new Set(["p", "em", "strong", "del", "code", "pre", "a", "ul", "ol", "li", "blockquote",
  "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "hr", "br", "input"]);

/** The server's comment HTML as app elements, through the allowlist. */
export function commentBody(html) {
  const doc = new DOMParser().parseFromString(`<div>${html}</div>`, "text/html");
  const copy = (node) => {
    if (node.nodeType === 3) return node.textContent;
    if (node.nodeType !== 1) return null;
    const tag = node.tagName.toLowerCase();
    const children = [...node.childNodes].map(copy);
    if (!ALLOWED.has(tag)) return children;
    if (tag === "a") {
      const href = node.getAttribute("href") || "";
      if (!/^(https?:|mailto:|#)/i.test(href)) return children;
      return el("a", { href, rel: "noopener noreferrer nofollow", target: "_blank" }, children);
    }
    if (tag === "input") return node.getAttribute("type") === "checkbox" ? el("input", { type: "checkbox", disabled: true, checked: node.hasAttribute("checked") }) : null;
    return el(tag, {}, children);
  };
  return el("div", { class: "comment-body" }, [...doc.body.firstChild.childNodes].map(copy));
}

/** Who may change what, as the server decides it (shown only). */
function mine(view) {
  return session.claims && view.author?.id === session.claims.id;
}

/**
 * A thread as an element. `ctx`: `{ base, ticketAuthor, reload }`.
 * Resolved threads are folded.
 */
export function threadNode(thread, ctx) {
  const me = session.claims?.id;
  const canResolve = me && (thread.author?.id === me || ctx.ticketAuthor === me);
  const where = thread.path
    ? `${thread.path}${thread.lines ? `:${thread.lines.line_start}${thread.lines.line_end > thread.lines.line_start ? `-${thread.lines.line_end}` : ""}` : ""}`
    : "the ticket";
  const head = [el("strong", {}, thread.author?.display_name || thread.author?.username || "?"), " ",
    el("span", { class: "muted" }, `on ${where} (v${thread.version}) · ${formatTime(thread.create_time)}`),
    thread.outdated ? el("span", { class: "badge outdated" }, "outdated") : null,
    thread.resolved ? el("span", { class: "badge" }, "resolved") : null];
  const reply = el("textarea", { class: "reply-input", rows: 2, placeholder: "Reply…", "aria-label": "Reply" });
  const send = el("button", { type: "button", class: "primary", onclick: async () => {
    if (!reply.value.trim()) return;
    try {
      await post(ctx.base, { reply_to: thread.id, body: reply.value });
      reply.value = "";
      ctx.reload();
    } catch (error) { flash(explain(error)); }
  } }, "Reply");
  const action = async (path, method, body) => {
    try {
      await api(`${ctx.base}/comments/${path}`, { method, ...(body ? { headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) } : {}) });
      ctx.reload();
    } catch (error) { flash(explain(error)); }
  };
  const resolve = canResolve
    ? el("button", { type: "button", class: "resolve", onclick: () => action(`${thread.id}/${thread.resolved ? "unresolve" : "resolve"}`, "POST") }, thread.resolved ? "Reopen" : "Resolve")
    : null;
  const body = el("div", { class: "thread-body" },
    commentNode(thread, ctx, action),
    thread.replies.map((r) => commentNode(r, ctx, action)),
    el("div", { class: "reply-box" }, reply, el("div", { class: "actions" }, send, resolve)));
  const node = thread.resolved
    ? el("details", { class: "thread resolved", "data-thread": thread.id }, el("summary", {}, head), body)
    : el("div", { class: `thread${thread.outdated ? " outdated" : ""}`, "data-thread": thread.id, tabindex: -1 }, el("div", { class: "thread-head" }, head), body);
  return node;
}

function commentNode(view, ctx, action) {
  const mineToo = mine(view);
  const canDelete = mineToo || ctx.ticketAuthor === session.claims?.id;
  const box = el("div", { class: "comment", "data-comment": view.id },
    view.author && view.replies === undefined ? el("div", { class: "muted small" }, el("strong", {}, view.author.display_name || view.author.username), ` · ${formatTime(view.create_time)}${view.edit_time ? " · edited" : ""}`) : null,
    commentBody(view.body_html));
  const tools = el("div", { class: "comment-tools" },
    mineToo ? el("button", { type: "button", class: "ghost", onclick: () => {
      const area = el("textarea", { rows: 3 });
      area.value = view.body;
      const save = el("button", { type: "button", class: "primary", onclick: () => action(view.id, "PUT", { body: area.value }) }, "Save");
      box.replaceChildren(area, el("div", { class: "actions" }, save, el("button", { type: "button", onclick: ctx.reload }, "Cancel")));
      area.focus();
    } }, "Edit") : null,
    canDelete ? el("button", { type: "button", class: "ghost danger", onclick: () => { if (confirm("Delete this comment?")) action(view.id, "DELETE"); } }, "Delete") : null);
  box.append(tools);
  return box;
}

export function post(base, comment) {
  return apiJson(`${base}/comments`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(comment) });
}

/** A form to start a thread on `anchor` (`{path, version, line_start?, line_end?}`). */
export function newThreadForm(base, anchor, onDone, onCancel) {
  const area = el("textarea", { class: "new-comment", rows: 3, placeholder: "Leave a comment (Markdown)", "aria-label": "Comment" });
  const label = anchor.line_start
    ? `Comment on line${anchor.line_end > anchor.line_start ? `s ${anchor.line_start}–${anchor.line_end}` : ` ${anchor.line_start}`}`
    : anchor.path ? `Comment on ${anchor.path}` : "Comment on the ticket";
  const submit = el("button", { type: "button", class: "primary new-comment-send", onclick: async () => {
    if (!area.value.trim()) return;
    submit.disabled = true;
    try {
      await post(base, { ...anchor, body: area.value });
      onDone();
    } catch (error) {
      submit.disabled = false;
      flash(explain(error));
    }
  } }, "Comment");
  const form = el("div", { class: "thread new" }, el("div", { class: "thread-head" }, label), area,
    el("div", { class: "actions" }, submit, el("button", { type: "button", onclick: onCancel }, "Cancel")));
  setTimeout(() => area.focus(), 0);
  return form;
}

/** The style threads get inside a preview frame (the app's own rules are
 * not in the frame's document). */
export const FRAME_STYLE = `
tr.pd2-thread-row > td { padding: 6px 10px 10px; background: transparent; white-space: normal; font: 14px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
.thread { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 10px; margin: 4px 0; background: #fff; color: #1f2328; max-width: 60em; }
.thread.outdated { border-style: dashed; }
.thread summary { cursor: pointer; }
.thread textarea { width: 100%; font: inherit; box-sizing: border-box; }
.thread .actions { display: flex; gap: 6px; margin-top: 4px; }
.thread button { font: inherit; font-size: 13px; padding: 2px 10px; border-radius: 6px; border: 1px solid #d0d7de; background: #f6f8fa; color: inherit; cursor: pointer; }
.thread button.primary { background: #2f6fde; color: #fff; border-color: #2f6fde; }
.thread .muted { color: #59636e; } .thread .small { font-size: 12px; }
.thread .badge { font-size: 11px; border: 1px solid #d0d7de; border-radius: 10px; padding: 0 6px; margin-left: 6px; }
.comment { border-top: 1px solid #eaeef2; padding-top: 4px; margin-top: 4px; }
.comment:first-child { border-top: 0; }
.comment-tools button { border: 0; background: none; color: #59636e; padding: 0 4px; }
.comment-body p { margin: 4px 0; } .comment-body pre { background: #f6f8fa; padding: 6px; overflow: auto; }
.pd2-plus { position: absolute; display: none; width: 20px; height: 20px; line-height: 18px; text-align: center; border-radius: 6px; border: 0; background: #2f6fde; color: #fff; font: bold 15px sans-serif; cursor: pointer; z-index: 2; padding: 0; }
@media (prefers-color-scheme: dark) {
  .thread { background: #0d1117; color: #e6edf3; border-color: #30363d; }
  .thread button { background: #161b22; border-color: #30363d; }
  .thread .muted { color: #9198a1; }
  .comment { border-color: #21262d; } .comment-body pre { background: #161b22; }
}
`;
