// A user's tickets, newest first, a page at a time.

import { el } from "../dom.js";
import { apiJson, session } from "../api.js";
import { errorBox, formatTime, here, loading, show, stillOn, userSeg } from "../ui.js";

const PAGE = 20;

export async function ticketsPage(user, offset) {
  const own = user === "@me";
  const now = here();
  show(el("h1", {}, own ? "My tickets" : `Public tickets of user ${user}`), loading());
  let tickets;
  let heading = own ? "My tickets" : `Tickets of user ${user}`;
  try {
    const path = own ? `/ticket?offset=${offset}&length=${PAGE}` : `/ticket/${userSeg(user)}?offset=${offset}&length=${PAGE}`;
    tickets = await apiJson(path);
    if (!own) {
      const who = await apiJson(`/user/${userSeg(user)}`).catch(() => null);
      if (who) heading = `Tickets of ${who.display_name || who.username}`;
    }
  } catch (error) {
    return stillOn(now) && show(el("h1", {}, heading), errorBox(error));
  }
  if (!stillOn(now)) return;
  const rows = tickets.map((t) =>
    el("tr", {},
      el("td", {}, el("a", { href: `#/t/${userSeg(own && session.claims?.id ? session.claims.id : user)}/${t.id}` }, t.remark || "(no remark)")),
      el("td", { class: "files" }, `${t.files.length} file${t.files.length === 1 ? "" : "s"}: ${t.files.slice(0, 3).join(", ")}${t.files.length > 3 ? ", …" : ""}`),
      el("td", {}, el("span", { class: `badge ${t.is_public ? "public" : ""}` }, t.is_public ? "public" : "private")),
      el("td", { class: "muted" }, formatTime(t.create_time)),
    ),
  );
  const pager = el("div", { class: "pager" },
    offset > 0 ? el("a", { class: "button", href: own ? `#/tickets/${Math.max(0, offset - PAGE)}` : `#/u/${userSeg(user)}/${Math.max(0, offset - PAGE)}` }, "← Newer") : null,
    el("span", { class: "muted" }, tickets.length ? `${offset + 1}–${offset + tickets.length}` : ""),
    tickets.length === PAGE ? el("a", { class: "button", href: own ? `#/tickets/${offset + PAGE}` : `#/u/${userSeg(user)}/${offset + PAGE}` }, "Older →") : null,
  );
  show(
    el("div", { class: "row" }, el("h1", {}, heading), el("div", { class: "spacer" }), own ? el("a", { class: "button primary", href: "#/upload" }, "Upload a ticket") : null),
    tickets.length
      ? el("table", { class: "list" },
          el("thead", {}, el("tr", {}, el("th", {}, "Remark"), el("th", { class: "files" }, "Files"), el("th", {}, "Visibility"), el("th", {}, "Created"))),
          el("tbody", {}, rows))
      : el("p", { class: "empty" }, offset > 0 ? "No more tickets." : own ? "No tickets yet. Upload a folder to share it with your TA." : "No public tickets."),
    pager,
  );
}
