// Admins: the plugins that serve, their statistics, and files that could
// not be loaded.

import { el } from "../dom.js";
import { apiJson } from "../api.js";
import { errorBox, here, loading, show, stillOn } from "../ui.js";

export async function pluginsPage() {
  show(el("h1", {}, "Plugins"), loading());
  let list;
  const now = here();
  try {
    list = await apiJson("/plugins");
  } catch (error) {
    return stillOn(now) && show(el("h1", {}, "Plugins"), errorBox(error));
  }
  if (!stillOn(now)) return;
  const rows = list.plugins.map((p) =>
    el("tr", {},
      el("td", {}, el("strong", {}, p.name), " ", el("span", { class: "muted" }, p.version), el("div", { class: "muted" }, p.description)),
      el("td", {}, (p.hooks || []).join(", ")),
      el("td", { class: "mono" }, [...(p.matchers?.paths || []), ...(p.matchers?.mime_types || [])].join(" ") || "all files"),
      el("td", {}, String(p.priority)),
      el("td", {}, p.stats ? `${p.stats.calls} calls, ${p.stats.failures} failed` : "",
        p.stats?.last_failure ? el("div", { class: "plugin-errors" }, p.stats.last_failure) : null)));
  show(
    el("h1", {}, "Plugins"),
    list.plugins.length
      ? el("table", { class: "list", id: "plugins" },
          el("thead", {}, el("tr", {}, el("th", {}, "Plugin"), el("th", {}, "Hooks"), el("th", {}, "Files"), el("th", {}, "Priority"), el("th", {}, "Calls"))),
          el("tbody", {}, rows))
      : el("p", { class: "empty" }, "No plugins are loaded."),
    ...(list.errors?.length ? [el("h2", {}, "Files that could not be loaded"), el("ul", {}, list.errors.map((e) => el("li", { class: "plugin-errors" }, `${e.file}: ${e.error}`)))] : []),
    ...(list.conflicts?.length ? [el("h2", {}, "Name conflicts"), el("ul", {}, list.conflicts.map((c) => el("li", { class: "plugin-errors" }, c.error)))] : []),
  );
}
