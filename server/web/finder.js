// "Go to file" (`t`, as on GitHub): type part of a path, pick with the
// arrows, Enter opens it. Esc or a click outside closes it.

import { el } from "./dom.js";
import { fuzzyMatch } from "./tree.js";

const SHOWN = 50;

/** Opens the finder over `paths`; `open(path)` is called with the choice. */
export function openFinder(paths, open) {
  document.getElementById("finder")?.remove();
  const input = el("input", { type: "text", id: "finder-input", placeholder: "Go to file…", autocomplete: "off", spellcheck: "false", "aria-label": "Go to file" });
  const list = el("ul", { id: "finder-list", role: "listbox" });
  const close = () => { box.remove(); document.removeEventListener("keydown", onKey, true); };
  let matches = [];
  let chosen = 0;
  const draw = () => {
    matches = paths
      .map((path) => ({ path, match: fuzzyMatch(input.value, path) }))
      .filter((m) => m.match)
      .sort((a, b) => b.match.score - a.match.score)
      .slice(0, SHOWN);
    chosen = Math.min(chosen, Math.max(matches.length - 1, 0));
    list.replaceChildren(...matches.map(({ path, match }, i) => {
      const marked = new Set(match.positions);
      const label = [...path].map((c, at) => (marked.has(at) ? el("mark", {}, c) : c));
      return el("li", { role: "option", "aria-selected": String(i === chosen), class: i === chosen ? "chosen" : "",
        onmousedown: (e) => { e.preventDefault(); close(); open(path); } }, label);
    }));
    if (!matches.length) list.append(el("li", { class: "muted" }, "No file matches."));
    list.querySelector(".chosen")?.scrollIntoView({ block: "nearest" });
  };
  const onKey = (e) => {
    if (e.key === "Escape") { e.preventDefault(); close(); }
    else if (e.key === "ArrowDown") { e.preventDefault(); chosen = Math.min(chosen + 1, matches.length - 1); draw(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); chosen = Math.max(chosen - 1, 0); draw(); }
    else if (e.key === "Enter" && matches[chosen]) { e.preventDefault(); close(); open(matches[chosen].path); }
  };
  input.addEventListener("input", () => { chosen = 0; draw(); });
  document.addEventListener("keydown", onKey, true);
  const box = el("div", { id: "finder", class: "finder", role: "dialog", "aria-label": "Go to file",
    onmousedown: (e) => { if (e.target === box) close(); } },
    el("div", { class: "finder-box" }, input, list));
  document.body.append(box);
  draw();
  input.focus();
}
