// The app's service worker, for one thing: a file's address on the server
// (`/ticket/{user}/{ticket}/files/{path}`, and `…/download`) opens in a tab
// of its own (Raw, a shared raw link) with the signed-in user's token in
// the Authorization header, as the API wants it; a token never goes in a
// URL. The token is where the app puts it for this worker (Cache Storage,
// `pd2-session`), and goes when the user signs out. Nothing else is
// touched: every other request goes to the network as it is.

const SESSION = "pd2-session";
const TOKEN = "/app/session-token";
const ADDRESS = /^\/ticket\/[^/]+\/[0-9a-f]{20}\/(files\/.+|download)$/;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || request.mode !== "navigate" || url.origin !== self.location.origin || !ADDRESS.test(url.pathname)) return;
  event.respondWith((async () => {
    const stored = await (await caches.open(SESSION)).match(TOKEN);
    const token = stored ? await stored.text() : "";
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    return fetch(url.href, { headers, credentials: "omit", cache: "no-store" });
  })());
});
