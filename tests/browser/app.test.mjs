// The web app in a real browser: headless Chromium (Debian's package)
// driven by playwright-core, against a running pd2-ticket.
//
// Environment:
//   BASE_URL        the server, e.g. http://127.0.0.1:8080
//   LOGIN_CODE      a code the (fake) Discord accepts, to sign in through
//                   the callback (`/?code=…`); or TOKEN_A to sign in with a token
//   TOKEN_B         a second user's token
//   EXPIRED_TOKEN   an expired token of a user without a Discord grant
//   ARTIFACTS       where screenshots of a failed step go
//   SCREENSHOTS     if set: also photograph every page in light and dark and
//                   at phone width into this folder
//   CHROMIUM        the browser (default /usr/bin/chromium)
// Exits 0 when every step passed; prints each step.

import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import zlib from "node:zlib";
import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
const artifacts = process.env.ARTIFACTS || "target/browser-artifacts";
const shots = process.env.SCREENSHOTS;
mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
// Waits are for conditions; the bound only ends a hung step.
const TIMEOUT = 60_000;
const problems = [];
let failed = false;

async function newPage(viewport = { width: 1280, height: 860 }) {
  const context = await browser.newContext({ viewport });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A CSP violation or a script error would show here.
    // The README's remote image refused by the preview's own policy is
    // that policy at work (checked in its step), each time it is shown.
    const refusedTracker = m.text().includes("tracker.png") && m.text().includes('directive: "img-src data:"');
    if (m.type() === "error" && !/Failed to load resource/.test(m.text()) && !refusedTracker) problems.push(`console: ${m.text()}`);
  });
  return page;
}

let current = null;
async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok    ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed = true;
    console.log(`FAIL  ${name}: ${error.stack || error}`);
    if (current) {
      const file = join(artifacts, `${name.replace(/[^a-z0-9]+/gi, "-")}.png`);
      await current.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.log(`      screenshot: ${file}`);
    }
    throw error;
  }
}

function expectTrue(condition, message) {
  if (!condition) throw new Error(message);
}

async function signInWithToken(page, token) {
  await page.goto(base + "/");
  await page.locator("#token-input").fill(token);
  await page.locator("#token-signin").click();
  await page.locator("#me-name").waitFor({ state: "visible" });
}

// A folder as a student has it.
const folder = mkdtempSync(join(tmpdir(), "pd2-browser-"));
mkdirSync(join(folder, "lab", "src"), { recursive: true });
writeFileSync(join(folder, "lab", "src", "Main.java"),
  "public class Main {\n    @Override\n    public String toString() { return \"main\"; }\n\n    public static void main(String[] args) {\n        System.out.println(new Main());\n    }\n}\n");
// A 240×120 PNG (a gradient), written by hand: no image library needed.
function makePng(width, height) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(zlib.crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = y * (width * 3 + 1) + 1 + x * 3;
      rows[at] = x; rows[at + 1] = 90 + y; rows[at + 2] = 200;
    }
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header), chunk("IDAT", zlib.deflateSync(rows)), chunk("IEND", Buffer.alloc(0))]);
}
const png = makePng(240, 120);
writeFileSync(join(folder, "lab", "shot.png"), png);
writeFileSync(join(folder, "lab", "README.md"),
  "# Lab 3\n\nThe output:\n\n![output](shot.png)\n\nThe code is in [Main](src/Main.java).\n\n![me](https://cdn.discordapp.com/avatars/1/tracker.png)\n");

let ticketUrl;
let ticketId;
let privateId;
let userA;

try {
  const page = await newPage();
  current = page;

  await step("sign-in page", async () => {
    await page.goto(base + "/");
    await page.locator("h1", { hasText: "Sign in" }).waitFor();
    expectTrue(!(await page.locator("#nav").isVisible()) && !(await page.locator("#sign-out").isVisible()), "no navigation before signing in");
    const meta = await (await fetch(base + "/meta")).json();
    if (meta.discord.authorize_url) {
      const href = await page.locator("#discord-signin").getAttribute("href");
      expectTrue(/^.*&state=[0-9a-f]{32}$/.test(href) && href.startsWith(`${meta.discord.authorize_url}&state=`), `Discord link ${href}`);
    }
  });

  await step("log in", async () => {
    if (process.env.LOGIN_CODE) {
      // Discord (played here) sends the browser back with the code and the
      // state the link carried.
      await page.route(/^https:\/\/discord\.com\//, (route) => {
        const state = new URL(route.request().url()).searchParams.get("state");
        route.fulfill({ status: 302, headers: { location: `${base}/?code=${encodeURIComponent(process.env.LOGIN_CODE)}&state=${state}` } });
      });
      await page.locator("#discord-signin").click();
      await page.locator("#me-name").waitFor({ state: "visible" });
      expectTrue(!page.url().includes("code="), "the code is removed from the address");
    } else {
      await signInWithToken(page, process.env.TOKEN_A);
    }
    // Where the original front end keeps it, so one origin has one session.
    const [token, type] = await page.evaluate(() => [localStorage.getItem("access_token"), localStorage.getItem("token_type")]);
    expectTrue(token && token.split(".").length === 3, "token kept in localStorage.access_token");
    expectTrue(type === "Bearer", `token_type ${type}`);
    userA = await page.evaluate(() => JSON.parse(atob(localStorage.getItem("access_token").split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).id);
    await page.locator("h1", { hasText: "My tickets" }).waitFor();
  });

  await step("a terminal is signed in by approving its code", async () => {
    // `pd2 login` (started by the Rust side) shows this address and code.
    await page.goto(process.env.DEVICE_URL);
    await page.locator("#device-request").waitFor();
    expectTrue((await page.locator("#device-user-code").textContent()) === process.env.DEVICE_CODE, "the code matches the terminal's");
    expectTrue((await page.locator("#device-client").textContent()).startsWith("pd2 0.1.0 on "), "the device says what it is");
    expectTrue((await page.locator("#device-from").textContent()).startsWith("from 127.0.0.1 · asked "), "where it asked from");
    // Approving takes saying the sign-in is one's own.
    expectTrue(await page.locator("#device-approve").isDisabled(), "Approve waits for the box");
    await page.locator("#device-mine").check();
    if (shots) await page.screenshot({ path: join(shots, "device-approve.png"), fullPage: true });
    await page.locator("#device-approve").click();
    await page.locator(".ok-box", { hasText: "Approved" }).waitFor();
    // Listed among the terminals signed in, with a way to sign it out.
    await page.locator("#device-sessions li", { hasText: "pd2 0.1.0 on " }).waitFor();
    if (shots) await page.screenshot({ path: join(shots, "device-approved.png"), fullPage: true });
    // The same code again: used up, said plainly, with the way forward.
    await page.goto(process.env.DEVICE_URL.replace(/#\/device\/.*$/, "#/device"));
    await page.locator("#device-code").fill(process.env.DEVICE_CODE.toLowerCase());
    await page.locator(".device-form button[type=submit]").click();
    await page.locator(".device-form .error-box", { hasText: "already used" }).waitFor();
    await page.goto(base + "/#/");
    await page.locator("h1", { hasText: "My tickets" }).waitFor();
  });

  await step("a sign-in link made by somebody else does not swap the account", async () => {
    // Login CSRF (issue 21): the attacker's own code, sent to a signed-in
    // user as a link. Without the state this tab sent, it is ignored.
    const before = await page.evaluate(() => localStorage.getItem("access_token"));
    await page.goto(`${base}/?code=ok-6666#/`);
    await page.locator("#flash", { hasText: "not started on this page" }).waitFor();
    await page.locator("h1", { hasText: "My tickets" }).waitFor();
    const after = await page.evaluate(() => localStorage.getItem("access_token"));
    expectTrue(after === before, "still signed in as before");
    expectTrue(!page.url().includes("code="), "the code is removed from the address");
    if (shots) await page.screenshot({ path: join(shots, "signin-link-ignored.png") });
    // A forged state is no better.
    await page.goto(`${base}/?code=ok-6666&state=${"0".repeat(32)}#/`);
    await page.locator("#flash", { hasText: "not started on this page" }).waitFor();
    expectTrue((await page.evaluate(() => localStorage.getItem("access_token"))) === before, "still the same account");
  });

  if (shots) await page.screenshot({ path: join(shots, "list-empty.png") });

  await step("upload a folder with progress", async () => {
    await page.goto(base + "/#/upload");
    await page.locator("#limits").waitFor();
    await page.locator("#folder-input").setInputFiles(join(folder, "lab"));
    await page.locator("#chosen tr").nth(2).waitFor();
    expectTrue((await page.locator("#chosen tr").count()) === 3, "three files listed");
    await page.locator("#remark").fill("why does toString print main?");
    await page.evaluate(() => {
      window.__progress = 0;
      new MutationObserver(() => {
        const text = document.querySelector(".progress-text")?.textContent || "";
        const m = text.match(/^(\d+) %/);
        if (m) window.__progress = Math.max(window.__progress, Number(m[1]));
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    if (shots) await page.screenshot({ path: join(shots, "upload.png") });
    await page.locator("#send").click();
    await page.waitForURL(/#\/t\/\d+\/[0-9a-f]{20}/);
    await page.locator("#tree").waitFor();
    expectTrue((await page.evaluate(() => window.__progress)) === 100, "the progress bar reached 100 %");
    // The address names the author: it works for whoever it is sent to.
    expectTrue(page.url().includes(`#/t/${userA}/`), `address after upload: ${page.url()}`);
    ticketUrl = page.url();
    ticketId = ticketUrl.match(/[0-9a-f]{20}/)[0];
  });

  await step("a real project through the folder picker is stored exactly", async () => {
    // Six modules of a Java design-patterns project: 143 files, 2.4 MB,
    // PNG diagrams and a WAV among the sources (tests/fixtures/projects).
    const project = join(process.cwd(), "..", "fixtures", "projects", "java-design-patterns");
    const here = page.url();
    await page.goto(base + "/#/upload");
    await page.locator("#limits").waitFor();
    await page.locator("#folder-input").setInputFiles(project);
    await page.locator("#chosen tr").nth(142).waitFor();
    await page.locator("#send").click();
    await page.waitForURL(/#\/t\/\d+\/[0-9a-f]{20}/);
    await page.locator("#tree").waitFor();
    const id = page.url().match(/[0-9a-f]{20}/)[0];
    // Every byte back, as the server stored it.
    const check = await page.evaluate(async (id) => {
      const auth = { Authorization: `Bearer ${localStorage.getItem("access_token")}` };
      const ticket = await (await fetch(`/ticket/@me/${id}`, { headers: auth })).json();
      const sizes = {};
      for (const path of ticket.files) {
        const r = await fetch(`/ticket/@me/${id}/files/${path.split("/").map(encodeURIComponent).join("/")}`, { headers: auth });
        sizes[path] = r.ok ? (await r.arrayBuffer()).byteLength : -r.status;
      }
      return sizes;
    }, id);
    const { readdirSync, statSync } = await import("node:fs");
    const expected = {};
    const walk = (dir, name) => {
      for (const entry of readdirSync(dir)) {
        const path = join(dir, entry);
        if (statSync(path).isDirectory()) walk(path, `${name}/${entry}`);
        else expected[`${name}/${entry}`] = statSync(path).size;
      }
    };
    walk(project, "java-design-patterns");
    expectTrue(Object.keys(check).length === Object.keys(expected).length, `${Object.keys(check).length} files stored`);
    for (const [path, size] of Object.entries(expected)) {
      expectTrue(check[path] === size, `${path}: ${check[path]} of ${size} bytes`);
    }
    if (shots) await page.screenshot({ path: join(shots, "ticket-project.png") });
    await page.goto(here);
  });

  await step("java preview is highlighted in a sandboxed frame", async () => {
    await page.locator('#tree button[data-path="lab/src/Main.java"]').click();
    const frame = page.locator("iframe.preview");
    await frame.waitFor();
    // Nothing in a preview runs (no allow-scripts); same origin, so the app
    // can give its line numbers addresses.
    const sandbox = await frame.getAttribute("sandbox");
    expectTrue(sandbox === "allow-same-origin allow-top-navigation-by-user-activation allow-popups" && !sandbox.includes("allow-scripts"), `sandbox: ${sandbox}`);
    const inner = page.frameLocator("iframe.preview");
    await inner.locator("span.kw", { hasText: "public" }).first().waitFor();
    await inner.locator("span.me", { hasText: "@Override" }).waitFor();
    if (shots) await page.screenshot({ path: join(shots, "ticket-java.png") });
  });

  await step("markdown preview shows the ticket's image and links into the app", async () => {
    // A remote image in a README must not be fetched by the TA's browser
    // (the app's own policy allows Discord's CDN, for avatars).
    let fetched = 0;
    await page.route(/^https:\/\/cdn\.discordapp\.com\//, (route) => { fetched += 1; route.abort(); });
    await page.locator('#tree button[data-path="lab/README.md"]').click();
    const inner = page.frameLocator("iframe.preview");
    await inner.locator("h1", { hasText: "Lab 3" }).waitFor();
    const src = await inner.locator("img").first().getAttribute("src");
    expectTrue(src.startsWith("data:image/png;base64,"), `inlined image: ${src.slice(0, 40)}`);
    const policy = await inner.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute("content");
    expectTrue(policy === "default-src 'none'; img-src data:; style-src 'unsafe-inline'", `preview policy: ${policy}`);
    // Give a fetch the time it would take, then check none was made.
    await page.waitForTimeout(500);
    expectTrue(fetched === 0, `the remote image was fetched ${fetched} time(s)`);
    await page.unroute(/^https:\/\/cdn\.discordapp\.com\//);
    // The refusal is the policy at work, not a fault of the page.
    for (let i = problems.length - 1; i >= 0; i -= 1) {
      if (problems[i].includes("cdn.discordapp.com")) problems.splice(i, 1);
    }
    if (shots) await page.screenshot({ path: join(shots, "ticket-markdown.png") });
    await inner.locator("a[data-pd2-path]").click();
    await page.waitForURL(/lab\/src\/Main\.java/);
    await page.locator('#tree button.selected[data-path="lab/src/Main.java"]').waitFor();
  });

  await step("an image file is shown inline", async () => {
    await page.locator('#tree button[data-path="lab/shot.png"]').click();
    await page.locator("img.preview").waitFor();
  });

  await step("the tree is sorted, folders first", async () => {
    const order = await page.locator("#tree button.file").evaluateAll((bs) => bs.map((b) => b.dataset.path));
    expectTrue(JSON.stringify(order) === JSON.stringify(["lab/src/Main.java", "lab/README.md", "lab/shot.png"]), `order: ${order}`);
  });

  await step("a line link opens with the line marked, in context", async () => {
    await page.goto(`${base}/#/t/@me/${ticketId}/lab/src/Main.java#L3`);
    const inner = page.frameLocator("iframe.preview");
    await inner.locator("tr#L3.pd2-sel").waitFor();
    expectTrue((await inner.locator("tr.pd2-sel").count()) === 1, "one line marked");
    await page.locator("#file-facts", { hasText: "8 lines" }).waitFor();
    const facts = await page.locator("#file-facts").textContent();
    expectTrue(/^\d+ B · 8 lines$/.test(facts), `facts: ${facts}`);
  });

  await step("line numbers are addresses: click, shift-click, Back, the line box", async () => {
    // Marks the page: a ticket drawn again would lose it.
    await page.evaluate(() => { document.getElementById("tree").dataset.kept = "yes"; });
    const inner = page.frameLocator("iframe.preview");
    await inner.locator('tr#L5 td.n a').click();
    await page.waitForURL(/Main\.java#L5$/);
    await inner.locator("tr#L5.pd2-sel").waitFor();
    expectTrue((await inner.locator("tr.pd2-sel").count()) === 1, "only line 5");
    await inner.locator('tr#L7 td.n a').click({ modifiers: ["Shift"] });
    await page.waitForURL(/Main\.java#L5-L7$/);
    await inner.locator("tr#L7.pd2-sel").waitFor();
    expectTrue((await inner.locator("tr.pd2-sel").count()) === 3, "lines 5 to 7");
    await page.goBack();
    await page.waitForURL(/Main\.java#L5$/);
    await page.waitForFunction(() => document.querySelector("iframe.preview")?.contentDocument?.querySelectorAll(".pd2-sel").length === 1);
    await page.locator("#line-input").fill("2-4");
    await page.locator("#line-input").press("Enter");
    await page.waitForURL(/Main\.java#L2-L4$/);
    await inner.locator("tr#L4.pd2-sel").waitFor();
    expectTrue((await page.evaluate(() => document.getElementById("tree")?.dataset.kept)) === "yes", "the ticket was not loaded again");
    if (shots) await page.screenshot({ path: join(shots, "ticket-lines.png") });
  });

  await step("Back and Forward walk the files", async () => {
    await page.locator('#tree button[data-path="lab/README.md"]').click();
    await page.frameLocator("iframe.preview").locator("h1", { hasText: "Lab 3" }).waitFor();
    await page.locator('#tree button[data-path="lab/shot.png"]').click();
    await page.locator("img.preview").waitFor();
    await page.goBack();
    await page.waitForURL(/lab\/README\.md$/);
    await page.frameLocator("iframe.preview").locator("h1", { hasText: "Lab 3" }).waitFor();
    await page.locator('#tree button.selected[data-path="lab/README.md"]').waitFor();
    await page.goForward();
    await page.locator("img.preview").waitFor();
    expectTrue((await page.evaluate(() => document.getElementById("tree")?.dataset.kept)) === "yes", "the ticket was not loaded again");
  });

  await step("go to file with t", async () => {
    await page.locator("body").click({ position: { x: 5, y: 5 } });
    await page.keyboard.press("t");
    await page.locator("#finder-input").waitFor();
    await page.keyboard.type("mjava");
    const first = await page.locator("#finder-list li").first().textContent();
    expectTrue(first === "lab/src/Main.java", `first match: ${first}`);
    if (shots) await page.screenshot({ path: join(shots, "finder.png") });
    await page.keyboard.press("Enter");
    await page.waitForURL(/lab\/src\/Main\.java$/);
    expectTrue((await page.locator("#finder").count()) === 0, "the finder closed");
  });

  await step("search across the ticket finds the line", async () => {
    await page.locator("#search-input").fill("tostring");
    await page.locator("#search-input").press("Enter");
    const hit = page.locator("#search-results a", { hasText: "lab/src/Main.java:3" });
    await hit.waitFor();
    if (shots) await page.screenshot({ path: join(shots, "search.png") });
    await hit.click();
    await page.waitForURL(/Main\.java#L3$/);
    await page.frameLocator("iframe.preview").locator("tr#L3.pd2-sel").waitFor();
  });

  await step("a file the ticket lacks is said to be missing", async () => {
    await page.goto(`${base}/#/t/@me/${ticketId}/nope/missing.cpp#L3`);
    await page.locator(".error-box", { hasText: "This ticket has no file “nope/missing.cpp”" }).waitFor();
    expectTrue(page.url().includes(`#/t/${userA}/`), `@me is replaced by the author: ${page.url()}`);
    expectTrue((await page.locator("#tree button.file.selected").count()) === 0, "nothing selected");
    // A range written backwards is marked and written as the app writes it.
    await page.goto(`${base}/#/t/${userA}/${ticketId}/lab/src/Main.java#L6-L4`);
    await page.frameLocator("iframe.preview").locator("tr#L5.pd2-sel").waitFor();
    await page.waitForURL(/Main\.java#L4-L6$/);
    // A line past the end says so.
    await page.locator("#line-input").fill("99");
    await page.locator("#line-input").press("Enter");
    await page.locator("#flash", { hasText: "Line 99 is past the end: the file has 8 lines" }).waitFor();
    // A range far past the end marks what there is, at once.
    await page.goto(`${base}/#/t/${userA}/${ticketId}/lab/src/Main.java#L1-L999999999`);
    await page.frameLocator("iframe.preview").locator("tr#L8.pd2-sel").waitFor();
  });

  await step("a line of a README opens its source, numbered", async () => {
    await page.locator("#search-input").fill("the output");
    await page.locator("#search-input").press("Enter");
    const hit = page.locator("#search-results a", { hasText: "lab/README.md:3" });
    await hit.click();
    await page.waitForURL(/README\.md#L3$/);
    await page.locator('#source[aria-pressed="true"]').waitFor();
    await page.frameLocator("iframe.preview").locator("tr#L3.pd2-sel td.c", { hasText: "The output:" }).waitFor();
    expectTrue(await page.locator("#search-results").isHidden(), "the results closed");
    if (shots) await page.screenshot({ path: join(shots, "ticket-readme-source.png") });
    await page.locator("#source").click();
    await page.frameLocator("iframe.preview").locator("h1", { hasText: "Lab 3" }).waitFor();
    await page.waitForURL(/README\.md$/);
  });

  await step("copy, wrap", async () => {
    await page.locator('#tree button[data-path="lab/src/Main.java"]').click();
    await page.frameLocator("iframe.preview").locator("tr#L8").waitFor();
    await page.locator("#copy-file").click();
    await page.locator("#flash", { hasText: "File copied" }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    expectTrue(copied.startsWith("public class Main {\n") && copied.length === 176, `copied ${copied.length} chars`);
    const before = await page.locator("#wrap").getAttribute("aria-pressed");
    await page.locator("#wrap").click();
    const after = await page.locator("#wrap").getAttribute("aria-pressed");
    expectTrue(before !== after, "wrap toggled");
    const wraps = await page.evaluate(() => document.querySelector("iframe.preview").contentDocument.body.classList.contains("pd2-wrap"));
    expectTrue(wraps === (after === "true"), "the preview follows");
  });

  await step("Raw opens the file's own address", async () => {
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
    const [raw] = await Promise.all([page.waitForEvent("popup"), page.locator("#raw").click()]);
    await raw.waitForLoadState();
    const url = new URL(raw.url());
    expectTrue(url.origin === base && /^\/ticket\/[^/]+\/[0-9a-f]{20}\/files\/lab\/src\/Main\.java$/.test(url.pathname), `raw address ${raw.url()}`);
    const text = await raw.locator("body").textContent();
    expectTrue(text.startsWith("public class Main {"), `raw shows: ${text.slice(0, 60)}`);
    await raw.close();
  });

  await step("the theme reaches the preview, both ways", async () => {
    const background = () => page.evaluate(() => getComputedStyle(document.querySelector("iframe.preview").contentDocument.body).backgroundColor);
    const theme = async (want) => {
      for (let i = 0; i < 3 && (await page.evaluate(() => localStorage.getItem("pd2-theme") || "auto")) !== want; i += 1) {
        await page.locator("#theme").click();
      }
    };
    await theme("dark");
    await page.waitForFunction(() => getComputedStyle(document.querySelector("iframe.preview").contentDocument.body).backgroundColor === "rgb(13, 17, 23)");
    if (shots) await page.screenshot({ path: join(shots, "ticket-forced-dark.png") });
    await theme("light");
    await page.waitForFunction(() => getComputedStyle(document.querySelector("iframe.preview").contentDocument.body).backgroundColor === "rgb(255, 255, 255)");
    expectTrue((await background()) === "rgb(255, 255, 255)", "light again");
    await theme("auto");
  });

  await step("keyboard moves between files", async () => {
    const first = page.locator("#tree button.file").first();
    await first.focus();
    await page.keyboard.press("ArrowDown");
    const second = await page.locator("#tree button.file").nth(1).getAttribute("data-path");
    await page.locator(`#tree button.file.selected[data-path="${second}"]`).waitFor();
  });

  await step("share link", async () => {
    await page.locator("#copy-link").click();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    expectTrue(copied === `${base}/#/t/${userA}/${ticketId}`, `copied ${copied}`);
  });

  await step("make public and edit the remark", async () => {
    await page.locator("#toggle-public").click();
    await page.locator("#visibility", { hasText: "public" }).waitFor();
    await page.locator("#edit-remark").click();
    await page.locator("#remark-edit").fill("fixed: it was the override");
    await page.locator("#save-remark").click();
    await page.locator("#remark-text", { hasText: "fixed: it was the override" }).waitFor();
  });

  await step("a link survives sign-in", async () => {
    const other = await newPage();
    current = other;
    await other.goto(`${base}/#/t/${userA}/${ticketId}/lab/src/Main.java#L3`);
    await other.locator("h1", { hasText: "Sign in" }).waitFor();
    await other.locator("#token-input").fill(process.env.TOKEN_B);
    await other.locator("#token-signin").click();
    await other.waitForURL(/lab\/src\/Main\.java#L3$/);
    await other.frameLocator("iframe.preview").locator("tr#L3.pd2-sel").waitFor();
    await other.context().close();
    current = page;
  });

  await step("a link survives a sign-in through Discord", async () => {
    const other = await newPage();
    current = other;
    await other.route(/^https:\/\/discord\.com\//, (route) => {
      const state = new URL(route.request().url()).searchParams.get("state");
      route.fulfill({ status: 302, headers: { location: `${base}/?code=ok-7373&state=${state}` } });
    });
    await other.goto(`${base}/#/t/${userA}/${ticketId}/lab/src/Main.java#L5-L6`);
    await other.locator("#discord-signin").click();
    await other.waitForURL(/lab\/src\/Main\.java#L5-L6$/);
    await other.frameLocator("iframe.preview").locator("tr#L6.pd2-sel").waitFor();
    expectTrue(!other.url().includes("code="), "the code is removed from the address");
    await other.context().close();
    current = page;
  });

  await step("a course folder: a Big5 homework shown decoded, a 3,047-line source to its last line", async () => {
    // 52 files as a student's folder holds them: a real student's homework
    // (Student.cpp and Student.h saved as Big5 by Visual Studio on
    // Traditional-Chinese Windows), TinyXML-2 (a 3,047-line C++ source),
    // two Java modules with their diagrams.
    const { cpSync } = await import("node:fs");
    const projects = join(process.cwd(), "..", "fixtures", "projects");
    const course = join(mkdtempSync(join(tmpdir(), "pd2-course-")), "course-hw");
    for (const [from, to] of [["nptu-oop-student", "nptu-oop-student"], ["tinyxml2", "tinyxml2"],
      ["java-design-patterns/observer", "observer"], ["java-design-patterns/event-queue", "event-queue"]]) {
      cpSync(join(projects, from), join(course, to), { recursive: true });
    }
    // A notebook with math, as a student hands in an analysis.
    writeFileSync(join(course, "analysis.ipynb"), JSON.stringify({
      nbformat: 4, nbformat_minor: 5, metadata: { kernelspec: { language: "python", name: "python3" } },
      cells: [
        { cell_type: "markdown", metadata: {}, source: ["The $i^{th}$ term is $$a_i = \\frac{1}{i^2}$$"] },
        { cell_type: "code", execution_count: 1, metadata: {}, source: ["print(sum(1 / i**2 for i in range(1, 100)))"],
          outputs: [{ output_type: "stream", name: "stdout", text: ["1.6349839001848923\n"] }] },
      ],
    }));
    await page.goto(base + "/#/upload");
    await page.locator("#limits").waitFor();
    await page.locator("#folder-input").setInputFiles(course);
    await page.locator("#chosen tr").nth(52).waitFor();
    expectTrue((await page.locator("#chosen tr").count()) === 53, "53 files listed");
    await page.waitForFunction(() => !document.querySelector("#send").disabled);
    await page.locator("#send").click();
    await page.waitForURL(/#\/t\/\d+\/[0-9a-f]{20}/);
    const id = page.url().match(/[0-9a-f]{20}/)[0];
    await page.goto(`${base}/#/t/@me/${id}/course-hw/tinyxml2/tinyxml2.cpp#L3000`);
    const inner = page.frameLocator("iframe.preview");
    await inner.locator("tr#L3000.pd2-sel").waitFor();
    await page.locator("#file-facts", { hasText: "77.6 KiB · 3,047 lines" }).waitFor();
    // Highlighted to the last line, and scrolled there with context above.
    await inner.locator("tr#L3047 td.c").waitFor();
    // (CRLF line ends, as the file was written on Windows.)
    await inner.locator("tr#L3041 td.c span.ty", { hasText: "bool" }).waitFor();
    await inner.locator("tr#L3047 td.c span.co").waitFor();
    const place = await page.evaluate(() => {
      const doc = document.querySelector("iframe.preview").contentDocument;
      return [doc.defaultView.scrollY, doc.getElementById("L2997").getBoundingClientRect().top];
    });
    expectTrue(place[0] > 10000 && Math.abs(place[1]) < 30, `scrolled to ${place[0]}, line 2997 at ${place[1]}`);
    if (shots) await page.screenshot({ path: join(shots, "ticket-3000-lines.png") });
    // Math is drawn as MathML (no script runs in a preview).
    await page.goto(`${base}/#/t/@me/${id}/course-hw/analysis.ipynb`);
    await page.frameLocator("iframe.preview").locator("math msup").first().waitFor();
    await page.frameLocator("iframe.preview").locator("math[display=block] mfrac").waitFor();
    if (shots) await page.screenshot({ path: join(shots, "ticket-notebook-math.png") });
    await page.locator('#tree button[data-path="course-hw/nptu-oop-student/Student.cpp"]').click();
    await page.locator("#encoding", { hasText: "shown as Big5" }).waitFor();
    await page.frameLocator("iframe.preview").locator("td.c", { hasText: "//缺交次數" }).waitFor();
    // Its size as stored (1,181 bytes, compressed on the wire), its lines.
    await page.locator("#file-facts", { hasText: "1.2 KiB · 52 lines" }).waitFor();
    if (shots) await page.screenshot({ path: join(shots, "ticket-big5.png") });
    await page.locator('#tree button[data-path="course-hw/nptu-oop-student/Score.cpp"]').click();
    await page.locator(".pane-head .name", { hasText: "Score.cpp" }).waitFor();
    await page.frameLocator("iframe.preview").locator("td.c").first().waitFor();
    expectTrue(await page.locator("#encoding").isHidden(), "a UTF-8 file says nothing");
  });

  await step("on a phone the preview comes first after a tap, the path on one line", async () => {
    const phone = await newPage({ width: 390, height: 844 });
    current = phone;
    await phone.addInitScript((t) => { if (window === window.top) localStorage.setItem("access_token", t); }, await page.evaluate(() => localStorage.getItem("access_token")));
    const project = page.url().match(/[0-9a-f]{20}/)[0];
    await phone.goto(`${base}/#/t/@me/${project}`);
    await phone.locator("#tree").waitFor();
    await phone.locator('#tree button[data-path="course-hw/nptu-oop-student/Student.cpp"]').click();
    await phone.locator("#encoding", { hasText: "shown as Big5" }).waitFor();
    // Scrolled down to the preview (as far as the page goes).
    await phone.waitForFunction(() => window.scrollY > 200 && document.getElementById("pane").getBoundingClientRect().top < window.innerHeight / 3);
    const path = await phone.locator(".pane-head .path").boundingBox();
    expectTrue(path.height < 30, `the path takes ${path.height}px`);
    if (shots) await phone.screenshot({ path: join(shots, "ticket-phone-tap.png") });
    // A notebook's In [n]: gutter gives its width to the code.
    await phone.locator('#tree button[data-path="course-hw/analysis.ipynb"]').click();
    const code = phone.frameLocator("iframe.preview").locator(".cell.in pre").first();
    await code.waitFor();
    const [codeWidth, frameWidth] = await phone.evaluate(() => {
      const doc = document.querySelector("iframe.preview").contentDocument;
      return [doc.querySelector(".cell.in pre").getBoundingClientRect().width, doc.documentElement.clientWidth];
    });
    expectTrue(codeWidth > frameWidth * 0.8, `code ${codeWidth}px of ${frameWidth}px`);
    if (shots) await phone.screenshot({ path: join(shots, "ticket-phone-notebook.png") });
    await phone.context().close();
    current = page;
  });

  await step("a file the policy refuses by name is marked before anything is sent", async () => {
    await page.goto(base + "/#/upload");
    let sent = 0;
    page.on("request", (r) => { if (r.method() === "POST" && new URL(r.url()).pathname === "/ticket") sent += 1; });
    await page.locator("#file-input").setInputFiles([
      { name: "Main.class", mimeType: "application/java-vm", buffer: Buffer.from([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52]) },
      { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("fine\n") },
    ]);
    const reason = page.locator('tr.rejected[data-path="Main.class"] .reason');
    await reason.waitFor();
    const text = await reason.textContent();
    expectTrue(text.startsWith("file-policy: "), `reason: ${text}`);
    await page.locator("#precheck").waitFor();
    expectTrue(await page.locator("#send").isDisabled(), "Upload is held back");
    expectTrue(sent === 0, "nothing was sent");
    if (shots) await page.screenshot({ path: join(shots, "upload-precheck.png") });
    // Removing it lets the rest go.
    await page.locator('tr[data-path="Main.class"] button').click();
    await page.waitForFunction(() => !document.querySelector("#send").disabled);
  });

  await step("a rejected upload shows the plugin's message next to the file", async () => {
    // A program renamed to a source file passes the check by name; the
    // policy reads it during the upload and refuses it.
    await page.goto(base + "/#/upload");
    const elf = Buffer.alloc(64);
    elf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
    await page.locator("#file-input").setInputFiles([
      { name: "Main.java", mimeType: "text/x-java", buffer: elf },
      { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("fine\n") },
    ]);
    await page.waitForFunction(() => !document.querySelector("#send").disabled);
    await page.waitForTimeout(400);
    expectTrue(!(await page.locator("#send").isDisabled()), "the check by name finds nothing");
    await page.locator("#send").click();
    const reason = page.locator('tr.rejected[data-path="Main.java"] .reason');
    await reason.waitFor();
    const text = await reason.textContent();
    expectTrue(text.startsWith("file-policy: "), `reason: ${text}`);
    if (shots) await page.screenshot({ path: join(shots, "upload-rejected.png") });
  });

  await step("a private ticket", async () => {
    privateId = await page.evaluate(async () => {
      const form = new FormData();
      form.append("files", new Blob(["secret\n"]), "secret.txt");
      form.append("data", JSON.stringify({ is_public: false, remark: "private one" }));
      const r = await fetch("/ticket", { method: "POST", body: form, headers: { Authorization: `Bearer ${localStorage.getItem("access_token")}` } });
      return (await r.json()).id;
    });
    expectTrue(/^[0-9a-f]{20}$/.test(privateId), `created ${privateId}`);
    await page.goto(base + "/#/");
    await page.locator("td", { hasText: "private one" }).waitFor();
    if (shots) await page.screenshot({ path: join(shots, "list.png") });
  });

  await step("a shared browser never hands one user's private file to the next", async () => {
    // A lab machine: alice reads her private file, signs out; bob asks for
    // the same address in the same browser. Before, the answer came from
    // the browser's cache (max-age=600, no Vary): alice's bytes.
    const lab = await newPage();
    current = lab;
    await lab.goto(`${base}/docs`);
    const alice = await page.evaluate(() => localStorage.getItem("access_token"));
    const url = `/ticket/${userA}/${privateId}/files/secret.txt`;
    const seen = await lab.evaluate(async ([url, alice, bob]) => {
      const get = async (token) => {
        const r = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
        return [r.status, await r.text()];
      };
      return [await get(alice), await get(alice), await get(bob)];
    }, [url, alice, process.env.TOKEN_B]);
    expectTrue(seen[0][0] === 200 && seen[0][1] === "secret\n", `alice: ${seen[0]}`);
    expectTrue(seen[1][0] === 200 && seen[1][1] === "secret\n", `alice again: ${seen[1]}`);
    expectTrue(seen[2][0] === 404 && !seen[2][1].includes("secret\n"), `bob got ${seen[2]}`);
    await lab.context().close();
    current = page;
  });

  await step("Download saves a file under the name the zip gives it", async () => {
    // `aux.c` cannot be created on Windows: the zip names it `aux_.c`, and
    // so must the per-file Download (issue 21).
    const id = await page.evaluate(async () => {
      const form = new FormData();
      form.append("files", new Blob(["int aux;\n"]), "src/aux.c");
      form.append("files", new Blob(["int main;\n"]), "src/main.c");
      const r = await fetch("/ticket", { method: "POST", body: form, headers: { Authorization: `Bearer ${localStorage.getItem("access_token")}` } });
      return (await r.json()).id;
    });
    await page.goto(`${base}/#/t/@me/${id}`);
    for (const [path, saved] of [["src/aux.c", "aux_.c"], ["src/main.c", "main.c"]]) {
      await page.locator(`#tree button[data-path="${path}"]`).click();
      await page.locator(".pane-head .path", { hasText: path }).waitFor();
      const [file] = await Promise.all([
        page.waitForEvent("download"),
        page.locator("#download").click(),
      ]);
      expectTrue(file.suggestedFilename() === saved, `${path} saved as ${file.suggestedFilename()}, not ${saved}`);
    }
  });

  await step("a second user sees the public ticket and not the private one", async () => {
    const other = await newPage();
    current = other;
    await signInWithToken(other, process.env.TOKEN_B);
    await other.goto(`${base}/#/u/${userA}`);
    await other.locator("td a", { hasText: "fixed: it was the override" }).waitFor();
    expectTrue((await other.locator("td", { hasText: "private one" }).count()) === 0, "private ticket hidden");
    await other.goto(`${base}/#/t/${userA}/${privateId}`);
    await other.locator(".error-box", { hasText: "Not found" }).waitFor();
    await other.goto(`${base}/#/t/${userA}/${ticketId}`);
    await other.locator("#tree").waitFor();
    expectTrue((await other.locator("#delete").count()) === 0, "no delete button on someone else's ticket");
    await other.context().close();
    current = page;
  });

  await step("the student uploads a new version from the ticket page", async () => {
    // The same folder, fixed: two separate edits in Main.java and a note.
    const v2 = mkdtempSync(join(tmpdir(), "pd2-browser-v2-"));
    mkdirSync(join(v2, "lab", "src"), { recursive: true });
    writeFileSync(join(v2, "lab", "src", "Main.java"),
      "public class Main {\n    @Override\n    public String toString() { return \"Main, fixed\"; }\n\n    public static void main(String[] args) {\n        System.out.println(new Main());\n        System.out.println(\"done\");\n    }\n}\n");
    writeFileSync(join(v2, "lab", "shot.png"), png);
    writeFileSync(join(v2, "lab", "README.md"),
      "# Lab 3\n\nThe output:\n\n![output](shot.png)\n\nThe code is in [Main](src/Main.java).\n\n![me](https://cdn.discordapp.com/avatars/1/tracker.png)\n");
    writeFileSync(join(v2, "lab", "NOTES.md"), "toString was the culprit.\n");
    await page.goto(`${base}/#/t/@me/${ticketId}`);
    await page.locator("#new-version").click();
    await page.locator("h1", { hasText: "Upload a new version" }).waitFor();
    await page.locator("#folder-input").setInputFiles(join(v2, "lab"));
    await page.locator("#chosen tr").nth(3).waitFor();
    await page.locator("#remark").fill("fixed toString");
    await page.locator("#send").click();
    // It lands on what the new version changed.
    await page.waitForURL(new RegExp(`#/diff/${userA}/${ticketId}/1/2$`));
    await page.locator("#diff-summary", { hasText: "2 files changed" }).waitFor();
    await page.locator("table.diff").first().waitFor();
  });

  await step("the TA opens the changes from the ticket and walks them with n and p", async () => {
    const ta = await newPage();
    current = ta;
    await signInWithToken(ta, process.env.TOKEN_B);
    await ta.goto(`${base}/#/t/${userA}/${ticketId}`);
    await ta.locator("#version-picker option", { hasText: "fixed toString" }).waitFor({ state: "attached" });
    await ta.locator("#changes").click();
    await ta.locator("#diff-index", { hasText: "lab/src/Main.java" }).waitFor();
    await ta.locator("#diff-index", { hasText: "lab/NOTES.md" }).waitFor();
    // Every changed file's diff drawn: Main.java (2 changes) and NOTES.md (1).
    await ta.locator(".diff-file[data-path='lab/src/Main.java'] table.diff").waitFor();
    await ta.locator(".diff-file[data-path='lab/NOTES.md'] table.diff").waitFor();
    await ta.locator("#change-position", { hasText: "3 changes" }).waitFor();
    // Coloured as the preview colours Java: `public` is a keyword, on both sides.
    await ta.locator(".diff-file[data-path='lab/src/Main.java'] tr.del span.hl-kw", { hasText: "public" }).first().waitFor();
    await ta.locator(".diff-file[data-path='lab/src/Main.java'] tr.add span.hl-st", { hasText: "Main, fixed" }).first().waitFor();
    await ta.keyboard.press("n");
    await ta.locator("#change-position", { hasText: "Change 1 of 3" }).waitFor();
    await ta.keyboard.press("n");
    await ta.locator("#change-position", { hasText: "Change 2 of 3" }).waitFor();
    const marked = await ta.locator("tr.current").textContent();
    expectTrue(marked.includes("done"), `the second change is the added println: ${marked}`);
    await ta.keyboard.press("p");
    await ta.locator("#change-position", { hasText: "Change 1 of 3" }).waitFor();
    expectTrue((await ta.locator("tr.current").textContent()).includes("return \"main\""), "back at the first change");
    if (shots) await ta.screenshot({ path: join(shots, "diff-inline.png"), fullPage: true });
    await ta.locator("#diff-split").click();
    await ta.locator(".diff-file[data-path='lab/src/Main.java'] table.diff.split").waitFor();
    const pair = await ta.locator(".diff-file[data-path='lab/src/Main.java'] tr.pair").first().textContent();
    expectTrue(pair.includes("return \"main\"") && pair.includes("Main, fixed"), `old and new side by side: ${pair}`);
    if (shots) await ta.screenshot({ path: join(shots, "diff-split.png"), fullPage: true });
    // The older version, through the picker.
    await ta.goto(`${base}/#/t/${userA}/${ticketId}/lab/src/Main.java`);
    await ta.locator("#version-picker option", { hasText: "fixed toString" }).waitFor({ state: "attached" });
    await ta.locator("#version-picker").selectOption("1");
    await ta.waitForURL(new RegExp(`${ticketId}@v1/lab/src/Main.java`));
    await ta.locator("#older-version", { hasText: "version 1" }).waitFor();
    const frame = ta.frameLocator("iframe.preview");
    await frame.locator("body", { hasText: "return" }).waitFor();
    expectTrue(!(await frame.locator("body").textContent()).includes("Main, fixed"), "version 1's text");
    await ta.context().close();
    current = page;
  });

  await step("compare a ticket with another through the dialog", async () => {
    await page.goto(`${base}/#/t/@me/${ticketId}`);
    await page.locator("#compare").click();
    await page.locator("#compare-dialog .compare-own button").first().waitFor();
    await page.locator("#compare-dialog .compare-own button").first().click();
    await page.waitForURL(/#\/compare\//);
    await page.locator("#diff-summary", { hasText: "changed" }).waitFor();
    await page.locator("h1", { hasText: "Compare" }).waitFor();
    if (shots) await page.screenshot({ path: join(shots, "compare.png"), fullPage: true });
  });

  await step("the TA comments on a range through the +, the student is told and replies", async () => {
    const ta = await newPage();
    current = ta;
    await signInWithToken(ta, process.env.TOKEN_B);
    // Lines 5-6 marked by the address; the + on line 5 comments on both.
    await ta.goto(`${base}/#/t/${userA}/${ticketId}/lab/src/Main.java#L5-L6`);
    const frame = ta.frameLocator("iframe.preview");
    await frame.locator("#L5.pd2-sel").waitFor();
    await frame.locator("#L5 td.n").hover();
    await frame.locator(".pd2-plus").click();
    await frame.locator("textarea.new-comment").fill("Why print **twice**? <img src=x onerror=alert(1)>");
    await frame.locator("button.new-comment-send").click();
    await frame.locator(".thread", { hasText: "Why print" }).waitFor();
    const threadHtml = await frame.locator(".thread .comment-body").first().innerHTML();
    expectTrue(threadHtml.includes("<strong>twice</strong>") && !threadHtml.includes("<img"), `rendered safe: ${threadHtml}`);
    // Under line 6, the range's end.
    expectTrue(await frame.locator("#L6 + tr.pd2-thread-row").count() === 1, "the thread is under line 6");
    await ta.locator("#tree button[data-path='lab/src/Main.java'] .thread-count", { hasText: "1" }).waitFor();
    if (shots) await ta.screenshot({ path: join(shots, "comment-thread.png") });
    await ta.context().close();
    current = page;

    // The student's badge counts it; the page lists it and clears it.
    await page.goto(`${base}/#/`);
    await page.locator("#notify-count", { hasText: "1" }).waitFor();
    await page.locator("#nav-notifications").click();
    await page.locator("#notifications li", { hasText: "commented on" }).waitFor();
    await page.locator("#notify-count").waitFor({ state: "hidden" });
    // They reply in the thread, from the preview.
    await page.locator("#notifications li a").first().click();
    const own = page.frameLocator("iframe.preview");
    await own.locator(".thread textarea.reply-input").fill("It was a test of the fix.");
    await own.locator(".thread button", { hasText: "Reply" }).click();
    await own.locator(".thread .comment", { hasText: "It was a test of the fix." }).waitFor();
  });

  await step("a new version carries the thread to its moved lines; the TA resolves it", async () => {
    // Version 3: a line added at the top, so line 5-6 are now 6-7.
    const v3 = mkdtempSync(join(tmpdir(), "pd2-browser-v3-"));
    mkdirSync(join(v3, "lab", "src"), { recursive: true });
    writeFileSync(join(v3, "lab", "src", "Main.java"),
      "// v3\npublic class Main {\n    @Override\n    public String toString() { return \"Main, fixed\"; }\n\n    public static void main(String[] args) {\n        System.out.println(new Main());\n        System.out.println(\"done\");\n    }\n}\n");
    await page.goto(`${base}/#/upload/${userA}/${ticketId}`);
    await page.locator("#folder-input").setInputFiles(join(v3, "lab"));
    await page.locator("#chosen tr").first().waitFor();
    await page.locator("#send").click();
    await page.waitForURL(new RegExp(`#/diff/${userA}/${ticketId}/2/3$`));
    await page.locator("table.diff").first().waitFor();

    const ta = await newPage();
    current = ta;
    await signInWithToken(ta, process.env.TOKEN_B);
    // Told of the reply and of the version.
    await ta.locator("#notify-count", { hasText: "2" }).waitFor();
    await ta.goto(`${base}/#/t/${userA}/${ticketId}/lab/src/Main.java`);
    const frame = ta.frameLocator("iframe.preview");
    await frame.locator("#L7 + tr.pd2-thread-row .thread", { hasText: "Why print" }).waitFor();
    expectTrue(await frame.locator(".thread.outdated").count() === 0, "carried, not outdated");
    // In the changes view too: with the file (its lines are outside the
    // one hunk, which is the line added at the top).
    await ta.goto(`${base}/#/diff/${userA}/${ticketId}/2/3`);
    await ta.locator(".diff-file[data-path='lab/src/Main.java'] .diff-file-threads .thread", { hasText: "Why print" }).waitFor();
    // And under its line when the diff shows it (all of the file as context).
    await ta.goto(`${base}/#/diff/${userA}/${ticketId}/1/3`);
    await ta.locator("tr.diff-thread .thread", { hasText: "Why print" }).waitFor();
    await ta.goto(`${base}/#/t/${userA}/${ticketId}/lab/src/Main.java`);
    await frame.locator(".thread button.resolve", { hasText: "Resolve" }).click();
    await frame.locator("details.thread.resolved").waitFor();
    await ta.locator("#tree button[data-path='lab/src/Main.java'] .thread-count").waitFor({ state: "detached" });
    await ta.context().close();
    current = page;
  });

  await step("delete with a confirmation", async () => {
    await page.goto(`${base}/#/t/@me/${privateId}`);
    // The ticket shown whole (its file opened) before the click: a click on
    // a page still being drawn was once lost (the ticket stayed).
    await page.locator("h1", { hasText: privateId }).waitFor();
    await page.locator("#tree", { hasText: "secret.txt" }).waitFor();
    // The outcome is checked below; a dialog already gone is not an error
    // of its own (an unhandled rejection would end the whole run).
    page.once("dialog", (d) => d.accept().catch(() => {}));
    await page.locator("#delete").click();
    await page.waitForURL(/#\/$/);
    await page.locator("h1", { hasText: "My tickets" }).waitFor();
    await page.locator("td a", { hasText: "fixed: it was the override" }).waitFor();
    expectTrue((await page.locator("td", { hasText: "private one" }).count()) === 0, "deleted");
  });

  await step("the admin page lists the plugins", async () => {
    await page.goto(`${base}/#/plugins`);
    const table = page.locator("#plugins");
    await table.waitFor();
    await page.locator("#plugins td", { hasText: "code-preview" }).first().waitFor();
    if (shots) await page.screenshot({ path: join(shots, "plugins.png") });
  });

  await step("the API console tries a route of each kind with the token", async () => {
    await page.goto(`${base}/docs`);
    const op = (method, path) => page.locator(`section.op[data-method="${method}"][data-path="${path}"] details.try`);
    // Sends a form and waits for its answer (a status line), which must
    // start with `expect`.
    const send = async (form, expect) => {
      await form.locator("button", { hasText: "Send" }).click();
      const out = form.locator("pre", { hasText: /^(\d{3} |Request failed)/ });
      await out.waitFor();
      const text = await out.textContent();
      expectTrue(text.startsWith(expect), `expected ${expect}, got: ${text.slice(0, 300)}`);
      return text;
    };
    // Multipart: the upload form with a file and its data field.
    const upload = op("post", "/ticket");
    await upload.locator("summary").click();
    await upload.locator('input[data-body="files"]').setInputFiles([
      { name: "Docs.java", mimeType: "text/x-java", buffer: Buffer.from("class Docs {}\n") },
    ]);
    await upload.locator('input[data-body="data"]').fill('{"is_public": false, "remark": "from the console"}');
    const created = await send(upload, "201 Created");
    const id = JSON.parse(created.slice(created.indexOf("\n\n"))).id;
    expectTrue(id, `created: ${created}`);
    // Path parameters: labelled inputs, not "[object HTMLLabelElement]".
    const read = op("get", "/ticket/{user_id}/{ticket_id}");
    await read.locator("summary").click();
    const text = await read.textContent();
    expectTrue(!text.includes("[object"), `form shows: ${text}`);
    await read.locator('input[data-param="ticket_id"]').fill(id);
    expectTrue((await send(read, "200 OK")).includes("from the console"), "read back through the console");
    // A header parameter: a byte range of the file.
    const file = op("get", "/ticket/{user_id}/{ticket_id}/files/{file_path}");
    await file.locator("summary").click();
    await file.locator('input[data-param="ticket_id"]').fill(id);
    await file.locator('input[data-param="file_path"]').fill("Docs.java");
    await file.locator('input[data-param="Range"]').fill("bytes=0-4");
    expectTrue((await send(file, "206 Partial Content")).endsWith("class"), "the range was sent");
    // A query parameter.
    const list = op("get", "/ticket");
    await list.locator("summary").click();
    await list.locator('input[data-param="length"]').fill("1");
    const listed = await send(list, "200 OK");
    expectTrue((listed.match(/"id":/g) || []).length === 1, `length=1 lists one: ${listed}`);
    // A JSON body.
    const change = op("put", "/ticket/{user_id}/{ticket_id}");
    await change.locator("summary").click();
    await change.locator('input[data-param="ticket_id"]').fill(id);
    await change.locator('textarea[data-body="json"]').fill('{"remark": "changed in the console"}');
    expectTrue((await send(change, "201 Created")).includes("changed in the console"), "changed through the console");
    if (shots) await page.screenshot({ path: join(shots, "docs.png") });
  });

  await step("an expired token leads to sign-in", async () => {
    const stale = await newPage();
    current = stale;
    await stale.addInitScript((t) => { if (window === window.top) localStorage.setItem("access_token", t); }, process.env.EXPIRED_TOKEN);
    await stale.goto(base + "/");
    await stale.locator("h1", { hasText: "Sign in" }).waitFor();
    await stale.locator("#flash", { hasText: "expired" }).waitFor();
    await stale.context().close();
    current = page;
  });

  await step("a token kept under the old key is moved, and stays signed in", async () => {
    const old = await newPage();
    current = old;
    const token = await page.evaluate(() => localStorage.getItem("access_token"));
    await old.addInitScript((t) => { if (window === window.top && !sessionStorage.getItem("seeded")) { sessionStorage.setItem("seeded", "1"); localStorage.setItem("token", t); } }, token);
    await old.goto(base + "/");
    await old.locator("#me-name").waitFor({ state: "visible" });
    const keys = await old.evaluate(() => [localStorage.getItem("token"), localStorage.getItem("access_token"), localStorage.getItem("token_type")]);
    expectTrue(keys[0] === null && keys[1] === token && keys[2] === "Bearer", `keys after the move: ${JSON.stringify(keys)}`);
    await old.context().close();
    current = page;
  });

  if (shots) {
    await step("screenshots in both themes and at phone width", async () => {
      const pages = [["list", "#/"], ["upload", "#/upload"], ["ticket-java", `#/t/@me/${ticketId}/lab/src/Main.java`],
        ["ticket-markdown", `#/t/@me/${ticketId}/lab/README.md`], ["plugins", "#/plugins"]];
      for (const scheme of ["light", "dark"]) {
        for (const [width, suffix] of [[1280, ""], [390, "-phone"]]) {
          const p = await newPage({ width, height: width === 390 ? 844 : 860 });
          await p.emulateMedia({ colorScheme: scheme });
          await p.addInitScript((t) => { if (window === window.top) localStorage.setItem("token", t); }, await page.evaluate(() => localStorage.getItem("access_token")));
          for (const [name, hash] of pages) {
            await p.goto(`${base}/${hash}`);
            await p.waitForLoadState("networkidle");
            await p.waitForTimeout(300);
            await p.screenshot({ path: join(shots, `${name}-${scheme}${suffix}.png`) });
          }
          await p.goto(`${base}/docs`);
          await p.screenshot({ path: join(shots, `docs-${scheme}${suffix}.png`) });
          await p.context().close();
        }
      }
      const signin = await newPage({ width: 390, height: 860 });
      await signin.goto(base + "/");
      await signin.screenshot({ path: join(shots, "signin-phone.png") });
    });
  }

  await step("no script errors or CSP violations on any page", async () => {
    expectTrue(problems.length === 0, problems.join("\n"));
  });
} catch {
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
