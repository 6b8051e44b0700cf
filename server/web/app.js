// PD2 Ticket web app: plain ES modules, no framework, no build step.
// Every user-supplied string reaches the page through textContent (the
// el() helper); previews are shown in sandboxed frames without scripts or
// same-origin rights; the token lives in localStorage under "access_token"
// and "token_type" (where the original front end keeps it, so one origin
// has one session) and only ever travels in an Authorization header, never
// in a URL.

import { el } from "./dom.js";

const TOKEN_KEY = "access_token";
const TOKEN_TYPE_KEY = "token_type";
// Where earlier versions of this app kept it: read once and moved.
const OLD_TOKEN_KEY = "token";
const THEME_KEY = "pd2-theme";
const PAGE = 20;

// ---------- small helpers ----------

const main = () => document.getElementById("main");
function show(...nodes) {
  main().replaceChildren(...nodes);
}

// Every navigation is numbered: a page whose data arrives after the user
// went elsewhere must not draw over the page they went to.
let navigation = 0;
function stillOn(number) {
  return number === navigation;
}
function loading(text = "Loading…") {
  return el("p", { class: "loading" }, text);
}

function flash(text, kind = "error") {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (box.hidden = true), kind === "error" ? 8000 : 3000);
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

function formatTime(ms) {
  return new Date(ms).toLocaleString();
}

/** A user id for a URL (`@me` stays `@me`). */
function userSeg(user) {
  return encodeURIComponent(user).replace(/^%40/, "@");
}

/** Encodes each segment of a ticket path for a URL, keeping the slashes. */
function encodePath(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}

// ---------- the session ----------

const session = {
  token: storedToken(),
  claims: null,
  meta: null,
  refreshTimer: null,
};

/** The JWT's claims (the server checks the signature; this is display). */
export function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

function storedToken() {
  const old = localStorage.getItem(OLD_TOKEN_KEY);
  if (old !== null) {
    if (!localStorage.getItem(TOKEN_KEY)) {
      localStorage.setItem(TOKEN_KEY, old);
      localStorage.setItem(TOKEN_TYPE_KEY, "Bearer");
    }
    localStorage.removeItem(OLD_TOKEN_KEY);
  }
  return localStorage.getItem(TOKEN_KEY);
}

function setToken(token) {
  session.token = token;
  session.claims = token ? decodeClaims(token) : null;
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(TOKEN_TYPE_KEY, "Bearer");
  } else {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(TOKEN_TYPE_KEY);
  }
  renderMe();
  scheduleRefresh();
}

/** Refreshes a day before expiry (the server keeps tokens with more left). */
function scheduleRefresh() {
  clearTimeout(session.refreshTimer);
  const exp = session.claims?.exp;
  if (!exp) return;
  const due = exp * 1000 - 24 * 3600 * 1000 - Date.now();
  session.refreshTimer = setTimeout(refresh, Math.max(due, 0) + 1000);
}

async function refresh() {
  if (!session.token) return;
  const response = await fetch("/oauth", {
    method: "PUT",
    headers: { Authorization: `Bearer ${session.token}` },
  }).catch(() => null);
  if (response?.ok) {
    const body = await response.json();
    if (body.access_token && body.access_token !== session.token) setToken(body.access_token);
  } else if (response && (response.status === 403 || response.status === 401)) {
    signOut("Your sign-in expired. Please sign in again.");
  }
}

function signOut(message) {
  setToken(null);
  location.hash = "#/signin";
  if (message) flash(message);
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** Calls the API with the token; 403 from a bad token signs out. */
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (session.token) headers.set("Authorization", `Bearer ${session.token}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch {
    throw new ApiError(0, { detail: "The server cannot be reached. Check your connection and try again." });
  }
  if (response.ok) return response;
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = { detail: response.statusText };
  }
  if (response.status === 403 && body?.detail === "Invalid authentication credentials") {
    signOut("Your sign-in expired or is no longer valid. Please sign in again.");
  }
  throw new ApiError(response.status, body);
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

/** What to tell a person about a failed request. */
function explain(error) {
  if (!(error instanceof ApiError)) return String(error);
  const retry = error.status === 503 ? " Try again in a moment." : "";
  switch (error.status) {
    case 0: return error.message;
    case 403: return `Not allowed: ${error.message}.`;
    case 404: return `Not found: ${error.message}. It may have been deleted, or it is private.`;
    case 503: return `The server is temporarily unavailable (${error.message}).${retry}`;
    default: return error.message;
  }
}

function errorBox(error) {
  return el("div", { class: "error-box", role: "alert" }, explain(error));
}

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

// ---------- theme ----------

function applyTheme() {
  const theme = localStorage.getItem(THEME_KEY) || "auto";
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const button = document.getElementById("theme");
  button.title = `Theme: ${theme === "auto" ? "follows the system" : theme} (click to change)`;
  button.textContent = { auto: "◐", light: "☀", dark: "☾" }[theme];
}

function cycleTheme() {
  const order = ["auto", "light", "dark"];
  const now = localStorage.getItem(THEME_KEY) || "auto";
  localStorage.setItem(THEME_KEY, order[(order.indexOf(now) + 1) % order.length]);
  applyTheme();
}

// ---------- routing ----------

/** `#/t/{user}/{ticket}/{path…}#L12` and friends. */
export function parseRoute(hash) {
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

async function route() {
  navigation += 1;
  const { name, args, line } = parseRoute(location.hash);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#/${name}` || (name === "" && link.getAttribute("href") === "#/"));
  }
  if (!session.token) {
    return signInPage();
  }
  switch (name) {
    case "":
    case "tickets":
      return ticketsPage("@me", Number(args[0] || 0));
    case "u":
      return ticketsPage(args[0], Number(args[1] || 0));
    case "upload":
      return uploadPage();
    case "t":
      return ticketPage(args[0], args[1], args.slice(2).join("/"), line);
    case "plugins":
      return pluginsPage();
    case "signin":
      location.hash = "#/";
      return;
    default:
      return show(el("h1", {}, "Page not found"), el("p", {}, el("a", { href: "#/" }, "Back to your tickets")));
  }
}

// ---------- sign-in ----------

function signInPage() {
  const discord = session.meta?.discord?.authorize_url;
  const tokenInput = el("textarea", { id: "token-input", placeholder: "eyJhbGciOi…", rows: 3 });
  const problem = el("p", { class: "error-box", hidden: true });
  const useToken = async () => {
    const token = tokenInput.value.trim();
    if (!decodeClaims(token)) {
      problem.textContent = "That is not a PD2 Ticket token (three dot-separated parts).";
      problem.hidden = false;
      return;
    }
    const response = await fetch("/ticket?offset=0&length=1", { headers: { Authorization: `Bearer ${token}` } }).catch(() => null);
    if (!response || !response.ok) {
      problem.textContent = response?.status === 403 ? "The server does not accept this token (expired, or signed with another secret)." : "The server cannot be reached.";
      problem.hidden = false;
      return;
    }
    setToken(token);
    location.hash = "#/";
    route();
  };
  show(
    el("div", { class: "card signin" },
      el("h1", {}, "Sign in"),
      el("p", {}, "Share your code with your teaching assistants: upload a folder as a ticket, and they read it with highlighted previews."),
      discord
        ? el("p", {}, el("a", { class: "button primary", id: "discord-signin", href: withState(discord) }, "Sign in with Discord"))
        : el("p", { class: "notice" }, "This server has no Discord application configured; sign in with a token below."),
      el("h2", {}, "Or use a token"),
      el("p", { class: "muted" }, "An operator makes one with ", el("code", {}, "pd2-ticket token --user-id <discord-id>"), "."),
      tokenInput,
      problem,
      el("p", {}, el("button", { id: "token-signin", type: "button", onclick: useToken }, "Sign in with this token")),
    ),
  );
}

// OAuth `state`: a random value this tab sends to Discord and expects back
// with the code. A code that arrives without it was not asked for here (a
// link somebody else made, carrying their own code, would sign the user
// into their account): it is refused.
const STATE_KEY = "oauth_state";

function withState(authorizeUrl) {
  let state = sessionStorage.getItem(STATE_KEY);
  if (!state) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    state = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem(STATE_KEY, state);
  }
  return `${authorizeUrl}&state=${state}`;
}

/** Discord sends the browser back with `?code=…&state=…`: trade the code for a token. */
async function completeDiscordSignIn() {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  if (!code) return;
  history.replaceState(null, "", location.pathname + location.hash);
  const expected = sessionStorage.getItem(STATE_KEY);
  sessionStorage.removeItem(STATE_KEY);
  if (!expected || params.get("state") !== expected) {
    flash(session.token
      ? "A sign-in link that was not started on this page was ignored: you are still signed in as before."
      : "A sign-in link that was not started on this page was ignored. Use “Sign in with Discord” below.");
    return;
  }
  const claims = session.token ? decodeClaims(session.token) : null;
  const who = claims?.global_name || claims?.username || claims?.id;
  if (session.token && !confirm(`You are signed in${who ? ` as ${who}` : ""}. Sign in with the Discord account you just chose instead?`)) return;
  show(loading("Signing you in…"));
  try {
    const response = await fetch("/oauth", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.access_token) throw new ApiError(response.status, body);
    setToken(body.access_token);
    flash("Signed in.", "info");
  } catch (error) {
    flash(`Discord sign-in failed: ${explain(error)}`);
  }
}

// ---------- ticket lists ----------

async function ticketsPage(user, offset) {
  const own = user === "@me";
  const here = navigation;
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
    return stillOn(here) && show(el("h1", {}, heading), errorBox(error));
  }
  if (!stillOn(here)) return;
  const rows = tickets.map((t) =>
    el("tr", {},
      el("td", {}, el("a", { href: `#/t/${own ? "@me" : userSeg(user)}/${t.id}` }, t.remark || "(no remark)")),
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

// ---------- upload ----------

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

function uploadPage() {
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

  send.addEventListener("click", () => {
    const form = new FormData();
    for (const [path, file] of chosen) form.append("files", file, path);
    form.append("data", JSON.stringify({ is_public: isPublic.checked, remark: remark.value }));
    const xhr = new XMLHttpRequest();
    const started = performance.now();
    send.disabled = true;
    progress.hidden = false;
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      const seconds = (performance.now() - started) / 1000;
      progress.value = (e.loaded / e.total) * 100;
      progressText.textContent = `${Math.round(progress.value)} % · ${formatSize(e.loaded)} of ${formatSize(e.total)} · ${formatSize(e.loaded / Math.max(seconds, 0.001))}/s`;
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = { detail: xhr.statusText }; }
      if (xhr.status === 200 || xhr.status === 201) {
        progress.value = 100;
        progressText.textContent = `100 % · uploaded ${formatSize([...chosen.values()].reduce((s, f) => s + f.size, 0))}`;
        flash("Ticket created.", "info");
        location.hash = `#/t/@me/${body.id}`;
        return;
      }
      send.disabled = false;
      progress.hidden = true;
      progressText.textContent = "";
      if (xhr.status === 403 && body?.detail === "Invalid authentication credentials") return signOut("Your sign-in expired. Please sign in again.");
      if (xhr.status === 422 && Array.isArray(body?.rejections)) {
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
      } else if (xhr.status === 413) {
        // The server names the file that crossed the per-file limit.
        const which = body?.file ? ` (${body.file})` : "";
        problems.replaceChildren(el("p", { class: "error-box", role: "alert" }, `Too large: ${body?.detail || "a limit was exceeded"}${which}. Limits: ${formatSize(limits.max_file_size || 0)} per file, ${formatSize(limits.max_ticket_size || 0)} per ticket, ${limits.max_files ?? "?"} files.`));
      } else {
        problems.replaceChildren(errorBox(new ApiError(xhr.status, body)));
      }
    };
    xhr.onerror = () => {
      send.disabled = false;
      progress.hidden = true;
      problems.replaceChildren(errorBox(new ApiError(0, { detail: "The upload was interrupted: the server cannot be reached." })));
    };
    xhr.open("POST", "/ticket");
    xhr.setRequestHeader("Authorization", `Bearer ${session.token}`);
    xhr.send(form);
  });

  show(
    el("h1", {}, "Upload a ticket"),
    el("p", { class: "limits", id: "limits" },
      `Limits: ${formatSize(limits.max_file_size || 0)} per file, ${formatSize(limits.max_ticket_size || 0)} per ticket, ${limits.max_files ?? "?"} files.`),
    drop,
    summary,
    el("table", { class: "files", id: "chosen" }, list),
    problems,
    el("label", { class: "inline" }, isPublic, "Public (anyone signed in with the link can read it)"),
    el("label", { for: "remark" }, "Remark"),
    remark,
    el("p", {}, send),
    progress,
    progressText,
  );
  redraw();
}

// ---------- one ticket ----------

/** Nested folders from `a/b/c.txt` paths, in upload order. */
export function buildTree(paths) {
  const root = { dirs: new Map(), files: [] };
  for (const path of paths) {
    const parts = path.split("/");
    let node = root;
    for (const dir of parts.slice(0, -1)) {
      if (!node.dirs.has(dir)) node.dirs.set(dir, { dirs: new Map(), files: [] });
      node = node.dirs.get(dir);
    }
    node.files.push(path);
  }
  return root;
}

// Names Windows reserves for devices, whatever the extension.
const RESERVED = new Set(["con", "prn", "aux", "nul",
  ...[1, 2, 3, 4, 5, 6, 7, 8, 9, "¹", "²", "³"].flatMap((n) => [`com${n}`, `lpt${n}`])]);

// The name a file is saved under: the zip's rule for one segment
// (ticket.rs `windows_safe`), so Download and the zip agree. A device name
// gets `_` after its stem (`aux.c` → `aux_.c`); trailing dots and spaces,
// which Windows drops, become `_`.
function safeName(segment) {
  const kept = segment.replace(/[. ]+$/, "");
  let out = kept + "_".repeat(segment.length - kept.length);
  const stemEnd = out.indexOf(".") < 0 ? out.length : out.indexOf(".");
  if (RESERVED.has(out.slice(0, stemEnd).replace(/ +$/, "").toLowerCase())) {
    out = `${out.slice(0, stemEnd)}_${out.slice(stemEnd)}`;
  }
  return out;
}

async function download(path, filename) {
  try {
    const blob = await (await api(path)).blob();
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    flash(explain(error));
  }
}

async function openRaw(path) {
  try {
    const blob = await (await api(path)).blob();
    // Shown as plain text unless it is an image: never as HTML from our origin.
    const type = blob.type.startsWith("image/") && blob.type !== "image/svg+xml" ? blob.type : "text/plain;charset=utf-8";
    window.open(URL.createObjectURL(new Blob([blob], { type })), "_blank", "noopener");
  } catch (error) {
    flash(explain(error));
  }
}

/** Makes a preview document safe to show and its ticket links work. */
// The policy `/preview` answers carry. A blob document takes the app's own
// policy, which lets in images from Discord's CDN (avatars): a preview's
// remote image would be fetched by the TA's browser. So the preview carries
// this one too, first thing in its head; policies only ever add up.
const PREVIEW_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

function preparePreview(html, user, ticketId) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  // A plugin's own `http-equiv` (a refresh to elsewhere, a looser policy)
  // has no place in a preview.
  for (const meta of doc.querySelectorAll("meta[http-equiv]")) meta.remove();
  const policy = doc.createElement("meta");
  policy.setAttribute("http-equiv", "Content-Security-Policy");
  policy.setAttribute("content", PREVIEW_CSP);
  doc.head.prepend(policy);
  for (const link of doc.querySelectorAll("a[data-pd2-path]")) {
    const fragment = (link.getAttribute("href") || "").match(/#L\d+$/)?.[0] || "";
    link.setAttribute("href", `${location.origin}/#/t/${user}/${ticketId}/${encodePath(link.dataset.pd2Path)}${fragment}`);
    link.setAttribute("target", "_top");
  }
  for (const link of doc.querySelectorAll("a[href^='http']:not([data-pd2-path])")) link.setAttribute("target", "_blank");
  return "<!DOCTYPE html>\n" + doc.documentElement.outerHTML;
}

let currentFrameUrl = null;

async function showFile(pane, user, ticket, path, line) {
  const base = `/ticket/${user}/${ticket.id}`;
  const filesUrl = `${base}/files/${encodePath(path)}`;
  const body = el("div", { class: "pane-body" }, loading("Rendering preview…"));
  const lineInput = el("input", { type: "number", min: 1, placeholder: "line", style: "width:6em", title: "Link to a line", value: line ?? "" });
  lineInput.addEventListener("change", () => {
    const n = Number(lineInput.value);
    location.hash = `#/t/${user}/${ticket.id}/${encodePath(path)}${n > 0 ? `#L${n}` : ""}`;
  });
  pane.replaceChildren(
    el("div", { class: "pane-head" },
      el("span", { class: "path" }, path),
      lineInput,
      el("button", { type: "button", onclick: () => openRaw(filesUrl) }, "Raw"),
      el("button", { type: "button", onclick: () => download(filesUrl, safeName(path.split("/").pop())) }, "Download")),
    body,
  );
  if (currentFrameUrl) URL.revokeObjectURL(currentFrameUrl);
  currentFrameUrl = null;
  try {
    const response = await api(`${base}/preview/${encodePath(path)}`);
    const type = response.headers.get("content-type") || "";
    const plugin = response.headers.get("x-preview-plugin") || "";
    if (type.startsWith("image/")) {
      const url = URL.createObjectURL(await response.blob());
      currentFrameUrl = url;
      body.replaceChildren(el("img", { class: "preview", src: url, alt: path }));
    } else if (type.startsWith("text/html")) {
      const html = preparePreview(await response.text(), user, ticket.id);
      const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
      currentFrameUrl = url;
      // No allow-scripts, no allow-same-origin: the preview runs nothing
      // and cannot read the app; a click on a ticket link may navigate
      // the app (top) to that file.
      body.replaceChildren(el("iframe", {
        class: "preview", title: `Preview of ${path}`, "data-plugin": plugin,
        sandbox: "allow-top-navigation-by-user-activation allow-popups",
        src: line ? `${url}#L${line}` : url,
      }));
    } else {
      body.replaceChildren(el("pre", { class: "raw" }, await response.text()));
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 415) {
      // No renderer takes it: the file itself, as text or image.
      try {
        const raw = await api(filesUrl);
        const type = raw.headers.get("content-type") || "";
        if (type.startsWith("image/") && type !== "image/svg+xml") {
          const url = URL.createObjectURL(await raw.blob());
          currentFrameUrl = url;
          body.replaceChildren(el("img", { class: "preview", src: url, alt: path }));
        } else if (type.startsWith("text/") || type.includes("json") || type.includes("xml")) {
          body.replaceChildren(el("p", { class: "muted" }, "No preview for this file; here it is as plain text."), el("pre", { class: "raw" }, await raw.text()));
        } else {
          body.replaceChildren(el("p", { class: "empty" }, `No preview for this ${type || "binary"} file. Use Download to open it.`));
        }
      } catch (inner) {
        body.replaceChildren(errorBox(inner));
      }
    } else {
      body.replaceChildren(errorBox(error));
    }
  }
}

async function ticketPage(user, ticketId, path, line) {
  show(loading("Loading ticket…"));
  let ticket;
  const here = navigation;
  try {
    ticket = await apiJson(`/ticket/${userSeg(user)}/${encodeURIComponent(ticketId)}`);
  } catch (error) {
    return stillOn(here) && show(el("h1", {}, "Ticket"), errorBox(error));
  }
  if (!stillOn(here)) return;
  const author = ticket.author?.display_data || {};
  const mine = session.claims && author.id === session.claims.id;
  const selected = path && ticket.files.includes(path) ? path : ticket.files[0];
  const base = `/ticket/${userSeg(user)}/${ticket.id}`;

  const remarkText = el("p", { class: "remark", id: "remark-text" }, ticket.remark || "(no remark)");
  const visibility = el("span", { class: `badge ${ticket.is_public ? "public" : ""}`, id: "visibility" }, ticket.is_public ? "public" : "private");
  const update = async (change) => {
    try {
      ticket = await apiJson(base, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(change) });
      remarkText.textContent = ticket.remark || "(no remark)";
      visibility.textContent = ticket.is_public ? "public" : "private";
      visibility.className = `badge ${ticket.is_public ? "public" : ""}`;
      toggle.textContent = ticket.is_public ? "Make private" : "Make public";
      flash("Saved.", "info");
    } catch (error) {
      flash(explain(error));
    }
  };
  const toggle = el("button", { type: "button", id: "toggle-public", onclick: () => update({ is_public: !ticket.is_public }) }, ticket.is_public ? "Make private" : "Make public");
  const edit = el("button", { type: "button", id: "edit-remark", onclick: () => {
    const area = el("textarea", { id: "remark-edit" });
    area.value = ticket.remark;
    const save = el("button", { class: "primary", type: "button", id: "save-remark", onclick: async () => { await update({ remark: area.value }); editor.replaceWith(remarkText); } }, "Save");
    const cancel = el("button", { type: "button", onclick: () => editor.replaceWith(remarkText) }, "Cancel");
    const editor = el("div", {}, area, el("div", { class: "actions" }, save, cancel));
    remarkText.replaceWith(editor);
    area.focus();
  } }, "Edit remark");
  const remove = el("button", { class: "danger", type: "button", id: "delete", onclick: async () => {
    if (!confirm(`Delete this ticket and its ${ticket.files.length} file(s)? This cannot be undone.`)) return;
    try {
      await api(base, { method: "DELETE" });
      flash("Ticket deleted.", "info");
      location.hash = "#/";
    } catch (error) {
      flash(explain(error));
    }
  } }, "Delete");
  const share = `${location.origin}/#/t/${author.id || user}/${ticket.id}`;
  const copy = el("button", { type: "button", id: "copy-link", onclick: async () => {
    try {
      await navigator.clipboard.writeText(share);
      flash("Link copied.", "info");
    } catch {
      prompt("Copy this link:", share);
    }
  } }, "Copy link");

  const pane = el("section", { class: "pane", id: "pane" });
  const buttons = [];
  const choose = (file, focus = false) => {
    for (const b of buttons) b.classList.toggle("selected", b.dataset.path === file);
    const current = buttons.find((b) => b.dataset.path === file);
    if (focus) current?.focus();
    history.replaceState(null, "", `#/t/${user}/${ticket.id}/${encodePath(file)}`);
    showFile(pane, userSeg(user), ticket, file, null);
  };
  const renderTree = (node) =>
    el("ul", {},
      [...node.dirs.entries()].map(([name, child]) => el("li", {}, el("details", { open: true }, el("summary", {}, `${name}/`), renderTree(child)))),
      node.files.map((file) => {
        const button = el("button", { type: "button", class: "file", "data-path": file, title: file, onclick: () => choose(file) }, file.split("/").pop());
        buttons.push(button);
        return el("li", {}, button);
      }));
  const tree = el("nav", { class: "tree", id: "tree", "aria-label": "Files" }, renderTree(buildTree(ticket.files)));
  tree.addEventListener("keydown", (e) => {
    const index = buttons.indexOf(document.activeElement);
    if (index < 0) return;
    if (e.key === "ArrowDown" || e.key === "j") { e.preventDefault(); choose(buttons[Math.min(index + 1, buttons.length - 1)].dataset.path, true); }
    if (e.key === "ArrowUp" || e.key === "k") { e.preventDefault(); choose(buttons[Math.max(index - 1, 0)].dataset.path, true); }
  });

  show(
    el("div", { class: "ticket-head" },
      el("div", { class: "grow" },
        el("h1", {}, "Ticket ", el("span", { class: "mono muted" }, ticket.id)),
        remarkText,
        el("p", { class: "muted" }, "by ", el("a", { href: `#/u/${userSeg(author.id || user)}` }, author.display_name || author.username || author.id || user), " · ", formatTime(ticket.create_time), " · ", visibility)),
      el("div", { class: "actions" },
        copy,
        el("button", { type: "button", id: "zip", onclick: () => download(`${base}/download`, `${ticket.id}.zip`) }, "Download zip"),
        mine ? [toggle, edit, remove] : null)),
    el("div", { class: "viewer" }, tree, pane),
  );
  for (const b of buttons) b.classList.toggle("selected", b.dataset.path === selected);
  if (selected) showFile(pane, userSeg(user), ticket, selected, line);
  else pane.replaceChildren(el("p", { class: "empty" }, "This ticket has no files."));
}

// ---------- admin ----------

async function pluginsPage() {
  show(el("h1", {}, "Plugins"), loading());
  let list;
  const here = navigation;
  try {
    list = await apiJson("/plugins");
  } catch (error) {
    return stillOn(here) && show(el("h1", {}, "Plugins"), errorBox(error));
  }
  if (!stillOn(here)) return;
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

// ---------- start ----------

async function start() {
  applyTheme();
  document.getElementById("theme").addEventListener("click", cycleTheme);
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  session.meta = await fetch("/meta").then((r) => r.json()).catch(() => ({}));
  await completeDiscordSignIn();
  // A stored value that is not a token at all is dropped.
  setToken(session.token && decodeClaims(session.token) ? session.token : null);
  if (session.token && session.claims?.exp && session.claims.exp * 1000 - Date.now() < 24 * 3600 * 1000) await refresh();
  window.addEventListener("hashchange", route);
  await route();
}

start();
