// What happened on your tickets and threads: comments, replies, new
// versions; newest first. Opening the page marks them read (the badge in
// the header counts the unread ones).

import { el } from "../dom.js";
import { apiJson } from "../api.js";
import { encodePath, errorBox, formatTime, here, loading, show, stillOn, userSeg } from "../ui.js";
import { refreshBadge } from "../badge.js";

const WHAT = { comment: "commented on", reply: "replied in a thread on", version: "uploaded a new version of" };

export async function notificationsPage() {
  show(loading("Loading notifications…"));
  const now = here();
  let list;
  try {
    list = await apiJson("/notifications");
  } catch (error) {
    return stillOn(now) && show(el("h1", {}, "Notifications"), errorBox(error));
  }
  if (!stillOn(now)) return;
  refreshBadge();
  const items = list.items.map((n) => {
    const where = `#/t/${userSeg(n.user_id)}/${n.ticket_id}${n.path ? `/${encodePath(n.path)}` : ""}`;
    return el("li", { class: n.read ? "" : "unread" },
      el("span", {}, n.actor), ` ${WHAT[n.kind] || "acted on"} `,
      el("a", { href: where }, "ticket ", el("span", { class: "mono" }, n.ticket_id.slice(0, 8)), n.path ? ` · ${n.path}` : ""),
      n.version ? ` (v${n.version})` : "", " · ", el("span", { class: "muted" }, formatTime(n.create_time)));
  });
  show(el("h1", {}, "Notifications"),
    el("p", { class: "muted", id: "notifications-summary" }, list.unread ? `${list.unread} new.` : "Nothing new."),
    items.length ? el("ul", { class: "notifications", id: "notifications" }, items) : el("p", { class: "empty" }, "No notifications yet."));
}
