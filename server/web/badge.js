// The header's count of unread notifications: asked on every page change
// and once a minute (counting does not mark them read).

import { apiJson, session } from "./api.js";

let last = 0;

export async function refreshBadge() {
  const badge = document.getElementById("notify-count");
  if (!badge) return;
  if (!session.token) {
    badge.hidden = true;
    return;
  }
  try {
    const { unread } = await apiJson("/notifications/unread");
    badge.textContent = String(unread);
    badge.hidden = unread === 0;
    badge.title = `${unread} unread`;
  } catch {
    // The badge is a hint; the page says the rest.
  }
  last = Date.now();
}

/** Every minute while the page is open. */
export function keepBadgeFresh() {
  setInterval(() => { if (Date.now() - last > 55_000) refreshBadge(); }, 60_000);
}
