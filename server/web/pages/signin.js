// Signing in: with Discord (OAuth, with a per-tab `state`), or with a
// token an operator made.

import { el } from "../dom.js";
import { decodeClaims, explain, session, setToken, signInWithCode, tokenAccepted } from "../api.js";
import { flash, loading, show } from "../ui.js";
import { afterSignIn, route } from "../router.js";

export function signInPage() {
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
    let accepted;
    try {
      accepted = await tokenAccepted(token);
    } catch (error) {
      problem.textContent = explain(error);
      problem.hidden = false;
      return;
    }
    if (!accepted) {
      problem.textContent = "The server does not accept this token (expired, or signed with another secret).";
      problem.hidden = false;
      return;
    }
    setToken(token);
    const target = afterSignIn();
    if (location.hash === target) route();
    else location.hash = target;
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
export async function completeDiscordSignIn() {
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
    await signInWithCode(code);
    flash("Signed in.", "info");
    history.replaceState(null, "", location.pathname + afterSignIn());
  } catch (error) {
    flash(`Discord sign-in failed: ${explain(error)}`);
  }
}
