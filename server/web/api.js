// The one place the app talks to the API: the session's token (kept in
// localStorage under "access_token" and "token_type", where the original
// front end keeps it, so one origin has one session), the Authorization
// header (only ever in a header, never in a URL), and what a failure
// means. Pages call api(), apiJson() or upload(); nothing else sets the
// header.

const TOKEN_KEY = "access_token";
const TOKEN_TYPE_KEY = "token_type";
// Where earlier versions of this app kept it: read once and moved.
const OLD_TOKEN_KEY = "token";

export const session = {
  token: storedToken(),
  claims: null,
  /** `GET /meta`: the Discord sign-in URL and the upload limits. */
  meta: null,
  refreshTimer: null,
};

const listeners = { change: [], signedOut: [] };
/** `change`: the token changed; `signedOut(message)`: it was dropped. */
export function on(event, listener) {
  listeners[event].push(listener);
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

const UNREACHABLE = "The server cannot be reached. Check your connection and try again.";

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

/** Where the service worker (sw.js) finds the token for raw addresses. */
async function shareWithWorker(token) {
  if (!("caches" in window)) return;
  try {
    const cache = await caches.open("pd2-session");
    if (token) await cache.put("/app/session-token", new Response(token));
    else await cache.delete("/app/session-token");
  } catch {
    // No Cache Storage (a private window may refuse it): Raw falls back.
  }
}

export function setToken(token) {
  session.token = token;
  shareWithWorker(token);
  session.claims = token ? decodeClaims(token) : null;
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(TOKEN_TYPE_KEY, "Bearer");
  } else {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(TOKEN_TYPE_KEY);
  }
  for (const listener of listeners.change) listener();
  scheduleRefresh();
}

export function signOut(message) {
  setToken(null);
  for (const listener of listeners.signedOut) listener(message);
}

function authorization(token = session.token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Refreshes a day before expiry (the server keeps tokens with more left). */
function scheduleRefresh() {
  clearTimeout(session.refreshTimer);
  const exp = session.claims?.exp;
  if (!exp) return;
  const due = exp * 1000 - 24 * 3600 * 1000 - Date.now();
  session.refreshTimer = setTimeout(refresh, Math.max(due, 0) + 1000);
}

export async function refresh() {
  if (!session.token) return;
  const response = await fetch("/oauth", { method: "PUT", headers: authorization() }).catch(() => null);
  if (response?.ok) {
    const body = await response.json();
    if (body.access_token && body.access_token !== session.token) setToken(body.access_token);
  } else if (response && (response.status === 403 || response.status === 401)) {
    signOut("Your sign-in expired. Please sign in again.");
  }
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = { detail: response.statusText };
  }
  return new ApiError(response.status, body);
}

/** Calls the API with the token; 403 from a bad token signs out. */
export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  for (const [name, value] of Object.entries(authorization())) headers.set(name, value);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch {
    throw new ApiError(0, { detail: UNREACHABLE });
  }
  if (response.ok) return response;
  const error = await failure(response);
  if (error.status === 403 && error.body?.detail === "Invalid authentication credentials") {
    signOut("Your sign-in expired or is no longer valid. Please sign in again.");
  }
  throw error;
}

export async function apiJson(path, options) {
  return (await api(path, options)).json();
}

/** Whether the server takes `token` (a pasted one, before it is kept). */
export async function tokenAccepted(token) {
  const response = await fetch("/ticket?offset=0&length=1", { headers: authorization(token) }).catch(() => null);
  if (!response) throw new ApiError(0, { detail: UNREACHABLE });
  return response.ok;
}

/** Trades a Discord authorization code for a token and keeps it. */
export async function signInWithCode(code) {
  const response = await fetch("/oauth", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ code }),
  }).catch(() => null);
  if (!response) throw new ApiError(0, { detail: UNREACHABLE });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.access_token) throw new ApiError(response.status, body);
  setToken(body.access_token);
}

/**
 * Sends an upload form with progress (fetch has none for request bodies):
 * `onProgress(loaded, total)`; resolves with the created ticket, rejects
 * with an ApiError (status 0: the connection broke).
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = { detail: xhr.statusText }; }
      if (xhr.status === 200 || xhr.status === 201) return resolve(body);
      if (xhr.status === 403 && body?.detail === "Invalid authentication credentials") {
        signOut("Your sign-in expired. Please sign in again.");
      }
      reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { detail: "The upload was interrupted: the server cannot be reached." }));
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authorization())) xhr.setRequestHeader(name, value);
    xhr.send(form);
  });
}

/** What to tell a person about a failed request. */
export function explain(error) {
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
