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
import { comparePage, diffPage } from "./pages/diff.js";
import { notificationsPage } from "./pages/notifications.js";
import { devicePage } from "./pages/device.js";
import { refreshBadge } from "./badge.js";

/** `#/t/{user}/{ticket}/{path…}#L12-L20` and friends; `range` is `[12, 20]`. */
function parseRoute(hash) {
  let rest = hash.replace(/^#\/?/, "");
  let range = null;
  const lineMatch = rest.match(/#L(\d+)(?:-L(\d+))?$/);
  if (lineMatch) {
    const from = Number(lineMatch[1]);
    const to = lineMatch[2] ? Number(lineMatch[2]) : from;
    range = from > 0 ? [Math.min(from, to), Math.max(from, to)] : null;
    rest = rest.slice(0, lineMatch.index);
  }
  const parts = rest.split("/").filter((p) => p !== "").map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { name: parts[0] || "", args: parts.slice(1), range };
}

const AFTER_SIGN_IN = "pd2-after-sign-in";

/** Where to go once signed in: the address a signed-out visit asked for. */
export function afterSignIn() {
  const hash = sessionStorage.getItem(AFTER_SIGN_IN);
  sessionStorage.removeItem(AFTER_SIGN_IN);
  return hash && hash.startsWith("#/") ? hash : "#/";
}

const PAGES = {
  "": () => ticketsPage("@me", 0),
  tickets: (args) => ticketsPage("@me", Number(args[0] || 0)),
  u: (args) => ticketsPage(args[0], Number(args[1] || 0)),
  upload: (args) => uploadPage(args.length >= 2 ? { user: args[0], id: args[1] } : null),
  diff: (args) => diffPage(args[0], args[1], Number(args[2]), Number(args[3])),
  compare: (args) => comparePage(args[0], args[1], args[2], args[3]),
  t: (args, range) => ticketPage(args[0], args[1], args.slice(2).join("/"), range),
  plugins: () => pluginsPage(),
  notifications: () => notificationsPage(),
  device: (args) => devicePage(args[0] || ""),
  signin: () => { location.hash = "#/"; },
};

/** Draws the page the address names (the sign-in page while signed out). */
export async function route() {
  navigated();
  const { name, args, range } = parseRoute(location.hash);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#/${name}` || (name === "" && link.getAttribute("href") === "#/"));
  }
  if (!session.token) {
    // The address asked for is kept through sign-in (Discord's round trip
    // comes back without it).
    if (name && name !== "signin") sessionStorage.setItem(AFTER_SIGN_IN, location.hash);
    return signInPage();
  }
  if (name !== "notifications") refreshBadge();
  const page = Object.hasOwn(PAGES, name) ? PAGES[name] : null;
  if (page) return page(args, range);
  show(el("h1", {}, "Page not found"), el("p", {}, el("a", { href: "#/" }, "Back to your tickets")));
}
