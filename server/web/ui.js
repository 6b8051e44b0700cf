// What every page uses to draw: the main area, loading and error boxes,
// the flash line, formats, and the navigation counter.

import { el } from "./dom.js";
import { explain } from "./api.js";

const main = () => document.getElementById("main");
/** Draws the page: nodes, or lists of them; null and false draw nothing. */
export function show(...nodes) {
  main().replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
}

// Every navigation is numbered: a page whose data arrives after the user
// went elsewhere must not draw over the page they went to.
let navigation = 0;
export function navigated() {
  navigation += 1;
}
/** The current navigation, to check with stillOn() after an await. */
export function here() {
  return navigation;
}
export function stillOn(number) {
  return number === navigation;
}

export function loading(text = "Loading…") {
  return el("p", { class: "loading" }, text);
}

export function flash(text, kind = "error") {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (box.hidden = true), kind === "error" ? 8000 : 3000);
}

export function errorBox(error) {
  return el("div", { class: "error-box", role: "alert" }, explain(error));
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

export function formatTime(ms) {
  return new Date(ms).toLocaleString();
}

/** A user id for a URL (`@me` stays `@me`). */
export function userSeg(user) {
  return encodeURIComponent(user).replace(/^%40/, "@");
}

/** Encodes each segment of a ticket path for a URL, keeping the slashes. */
export function encodePath(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}
