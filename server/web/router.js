// The app's addresses live in the URL fragment (`/#/t/…`), so they never
// collide with the API's routes. One table says which page each one is.

import { el } from "./dom.js";
import { session } from "./api.js";
import { navigated, show } from "./ui.js";
import { signInPage } from "./pages/signin.js";
import { ticketsPage } from "./pages/tickets.js";
import { uploadPage } from "./pages/upload.js";
import { ticketPage } from "./pages/ticket.js";
import { pluginsPage } from "./pages/plugins.js";

/** `#/t/{user}/{ticket}/{path…}#L12` and friends. */
function parseRoute(hash) {
  let rest = hash.replace(/^#\/?/, "");
  let line = null;
  const lineMatch = rest.match(/#L(\d+)$/);
  if (lineMatch) {
    line = Number(lineMatch[1]);
    rest = rest.slice(0, lineMatch.index);
  }
  const parts = rest.split("/").filter((p) => p !== "").map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { name: parts[0] || "", args: parts.slice(1), line };
}

const PAGES = {
  "": () => ticketsPage("@me", 0),
  tickets: (args) => ticketsPage("@me", Number(args[0] || 0)),
  u: (args) => ticketsPage(args[0], Number(args[1] || 0)),
  upload: () => uploadPage(),
  t: (args, line) => ticketPage(args[0], args[1], args.slice(2).join("/"), line),
  plugins: () => pluginsPage(),
  signin: () => { location.hash = "#/"; },
};

/** Draws the page the address names (the sign-in page while signed out). */
export async function route() {
  navigated();
  const { name, args, line } = parseRoute(location.hash);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#/${name}` || (name === "" && link.getAttribute("href") === "#/"));
  }
  if (!session.token) return signInPage();
  const page = Object.hasOwn(PAGES, name) ? PAGES[name] : null;
  if (page) return page(args, line);
  show(el("h1", {}, "Page not found"), el("p", {}, el("a", { href: "#/" }, "Back to your tickets")));
}
