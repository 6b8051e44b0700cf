// PD2 Ticket web app: plain ES modules, no framework, no build step.
// Every user-supplied string reaches the page through textContent (the
// el() helper in dom.js); previews are shown in sandboxed frames without
// scripts or same-origin rights (pages/ticket.js).
//
// Modules: api.js (the token and every request), ui.js (drawing helpers),
// router.js (which page an address is), pages/*.js (one per page); this
// file starts the app and keeps the header (who is signed in, the theme).

import { decodeClaims, on, refresh, session, setToken, signOut } from "./api.js";
import { route } from "./router.js";
import { completeDiscordSignIn } from "./pages/signin.js";
import { flash } from "./ui.js";
import { restyleFrames } from "./pages/ticket.js";
import { keepBadgeFresh } from "./badge.js";

const THEME_KEY = "pd2-theme";

function renderMe() {
  const signedIn = Boolean(session.token && session.claims);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("me").hidden = !signedIn;
  document.getElementById("nav-plugins").hidden = !(signedIn && session.claims.is_admin);
  if (signedIn) {
    document.getElementById("me-name").textContent = session.claims.display_name || session.claims.username || session.claims.id;
    const avatar = document.getElementById("me-avatar");
    // The avatar CDN may be unreachable (no internet): fall back to ours.
    avatar.onerror = () => { avatar.onerror = null; avatar.src = "/app/icon.svg"; };
    avatar.src = session.claims.display_avatar || "/app/icon.svg";
  }
}

function applyTheme() {
  const theme = localStorage.getItem(THEME_KEY) || "auto";
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const button = document.getElementById("theme");
  button.title = `Theme: ${theme === "auto" ? "follows the system" : theme} (click to change)`;
  button.textContent = { auto: "◐", light: "☀", dark: "☾" }[theme];
  restyleFrames(theme);
}

function cycleTheme() {
  const order = ["auto", "light", "dark"];
  const now = localStorage.getItem(THEME_KEY) || "auto";
  localStorage.setItem(THEME_KEY, order[(order.indexOf(now) + 1) % order.length]);
  applyTheme();
}

async function start() {
  applyTheme();
  // Opens raw file addresses with the token (see sw.js).
  navigator.serviceWorker?.register("/app/sw.js", { scope: "/" }).catch(() => {});
  on("change", renderMe);
  on("signedOut", (message) => {
    location.hash = "#/signin";
    if (message) flash(message);
  });
  document.getElementById("theme").addEventListener("click", cycleTheme);
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  session.meta = await fetch("/meta").then((r) => r.json()).catch(() => ({}));
  await completeDiscordSignIn();
  // A stored value that is not a token at all is dropped.
  setToken(session.token && decodeClaims(session.token) ? session.token : null);
  if (session.token && session.claims?.exp && session.claims.exp * 1000 - Date.now() < 24 * 3600 * 1000) await refresh();
  window.addEventListener("hashchange", route);
  keepBadgeFresh();
  await route();
}

start();
