// Signing in a terminal (`pd2 login`, SPEC §8): the terminal shows a code
// and this page's address; here, signed in with Discord, the student
// checks the code and the device's description and approves or denies
// it. Below: the terminals signed in as you, each with "Sign out".

import { el } from "../dom.js";
import { ApiError, api, apiJson, session } from "../api.js";
import { errorBox, flash, formatTime, here, loading, show, stillOn } from "../ui.js";

const CODE_SHAPE = /^[BCDFGHJKLMNPQRSTVWXZ]{4}-?[BCDFGHJKLMNPQRSTVWXZ]{4}$/i;

function codeForm(typed = "", problem = null) {
  const input = el("input", {
    id: "device-code", name: "code", value: typed, autocomplete: "off", spellcheck: "false",
    placeholder: "XXXX-XXXX", maxlength: 12, "aria-label": "Code shown by pd2 login", autofocus: true,
  });
  const submit = (event) => {
    event.preventDefault();
    const code = input.value.trim().toUpperCase().replace(/\s+/g, "");
    if (!CODE_SHAPE.test(code)) {
      flash("A code is eight letters, like WDJB-MJHT, as pd2 login shows it.");
      return;
    }
    const shown = code.includes("-") ? code : `${code.slice(0, 4)}-${code.slice(4)}`;
    location.hash = `#/device/${shown}`;
  };
  return el("form", { class: "device-form", onsubmit: submit },
    el("label", { for: "device-code" }, "Enter the code your terminal shows"),
    el("div", { class: "row" }, input, el("button", { class: "primary", type: "submit" }, "Continue")),
    problem ? el("div", { class: "error-box", role: "alert" }, problem) : null);
}

function explainCode(error) {
  if (error instanceof ApiError && error.status === 404) {
    return "This code is unknown, expired (codes last 10 minutes) or already used. Run pd2 login again for a new one.";
  }
  if (error instanceof ApiError && error.status === 429) {
    return "Too many codes tried: wait a minute and try again.";
  }
  return null;
}

/** The section of the terminals signed in as you; `count` of them. */
async function sessionsSection() {
  const box = el("section", { id: "device-sessions" }, el("h2", {}, "Terminals signed in as you"), loading());
  let list;
  try {
    list = await apiJson("/device/sessions");
  } catch (error) {
    box.replaceChildren(el("h2", {}, "Terminals signed in as you"), errorBox(error));
    box.dataset.count = "-1";
    return box;
  }
  const rows = list.map((s) => {
    const button = el("button", { type: "button", class: "danger", "data-session": s.id }, "Sign out");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`/device/sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
        button.closest("li").remove();
        flash("Signed out: that terminal's token no longer works.", "ok");
      } catch (error) {
        button.disabled = false;
        flash(error.message);
      }
    });
    return el("li", {}, el("span", { class: "device-name" }, s.client_name), " · ",
      el("span", { class: "muted" }, `since ${formatTime(s.create_time)}`), " ", button);
  });
  box.replaceChildren(el("h2", {}, "Terminals signed in as you"),
    rows.length ? el("ul", { class: "device-list" }, rows)
      : el("p", { class: "empty" }, "None. On a terminal, pd2 login signs it in."));
  box.dataset.count = String(rows.length);
  return box;
}

export async function devicePage(code) {
  const now = here();
  const intro = el("p", { class: "muted" },
    "pd2 is PD2 Ticket's command line, for uploading from a terminal (the course's workstation over SSH, say). ",
    "Run pd2 login --server ", el("span", { class: "mono" }, location.origin), " there and approve its code here.");
  if (!code) {
    show(el("h1", {}, "Sign in a terminal"), intro, codeForm(), await sessionsSection());
    return;
  }
  show(el("h1", {}, "Sign in a terminal"), loading("Looking up the code…"));
  let pending;
  try {
    pending = await apiJson(`/device/requests/${encodeURIComponent(code)}`);
  } catch (error) {
    if (!stillOn(now)) return;
    const problem = explainCode(error);
    show(el("h1", {}, "Sign in a terminal"), intro,
      problem ? codeForm(code, problem) : errorBox(error), await sessionsSection());
    return;
  }
  if (!stillOn(now)) return;
  const me = session.claims?.display_name || session.claims?.username || "you";
  const status = el("div", { id: "device-status", "aria-live": "polite" });
  const approve = el("button", { class: "primary", type: "button", id: "device-approve", disabled: true }, "Approve");
  const deny = el("button", { type: "button", id: "device-deny" }, "Deny");
  // A link with a code can be sent by anyone: approving takes saying, in
  // so many words, that the sign-in is one's own.
  const mine = el("input", { type: "checkbox", id: "device-mine" });
  mine.addEventListener("change", () => { approve.disabled = !mine.checked; });
  const decide = async (verb) => {
    approve.disabled = deny.disabled = mine.disabled = true;
    try {
      await api(`/device/requests/${encodeURIComponent(code)}/${verb}`, { method: "POST" });
    } catch (error) {
      status.replaceChildren(el("div", { class: "error-box", role: "alert" }, explainCode(error) || error.message));
      return;
    }
    buttons.remove();
    status.replaceChildren(verb === "approve"
      ? el("p", { class: "ok-box" }, "✓ Approved. Your terminal is signed in as ", me, " once it checks back (within a few seconds); you can close this page.")
      : el("p", { class: "ok-box" }, "Denied. The terminal was told; nothing was signed in."));
    if (verb !== "approve") return;
    // The terminal picks its token up at its next poll (every 5 s): the
    // list is read again until it shows up, for up to half a minute.
    const before = Number(document.getElementById("device-sessions")?.dataset.count || 0);
    for (let i = 0; i < 15 && stillOn(now); i++) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      if (!stillOn(now)) return;
      const list = await sessionsSection();
      if (!stillOn(now)) return;
      document.getElementById("device-sessions")?.replaceWith(list);
      if (Number(list.dataset.count) > before) return;
    }
  };
  approve.addEventListener("click", () => decide("approve"));
  deny.addEventListener("click", () => decide("deny"));
  const buttons = el("div", {},
    el("label", { class: "inline device-mine" }, mine,
      " I just ran pd2 login myself, and my terminal shows this code"),
    el("div", { class: "row device-buttons" }, approve, deny));
  const minutes = Math.max(1, Math.round(pending.expires_in / 60));
  show(el("h1", {}, "Sign in a terminal"),
    el("div", { class: "device-card", id: "device-request" },
      el("p", {}, "A terminal asks to sign in as ", el("strong", {}, me), ". It says it is:"),
      el("p", { class: "device-name", id: "device-client" }, pending.client_name),
      el("p", { class: "muted", id: "device-from" }, `from ${pending.client_ip} · asked ${formatTime(pending.create_time)} · expires in about ${minutes} min`),
      el("p", {}, "Code ", el("strong", { class: "mono device-code", id: "device-user-code" }, pending.user_code)),
      el("p", { class: "warning" },
        "Approve only a code you started yourself with pd2 login and that matches what your terminal shows. ",
        "Whoever has that terminal can then upload and read tickets as you, until it signs out."),
      buttons, status),
    await sessionsSection());
}
