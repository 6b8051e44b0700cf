// The API console: adds a "Try it" form to every operation of /docs,
// from /openapi.json. Requests carry the token the web app keeps in
// localStorage ("access_token"), or one pasted here (kept for this tab only).
// Responses are shown as text, never interpreted as HTML.

import { el } from "./dom.js";

const MAX_SHOWN = 100_000;

let token = sessionStorage.getItem("pd2-docs-token") || localStorage.getItem("access_token") || "";

function tokenBox() {
  const input = el("input", { type: "text", id: "docs-token", placeholder: "Bearer token (eyJ…)", value: token });
  input.addEventListener("change", () => {
    token = input.value.trim();
    sessionStorage.setItem("pd2-docs-token", token);
  });
  return el("div", { class: "token" },
    el("p", {}, token ? "Requests are sent with your token from the PD2 Ticket app (change it here for this tab):" : "Sign in in the app at / (or paste a token) to try the routes that need one:"),
    input);
}

function resolveRef(doc, schema) {
  if (schema && schema.$ref) return doc.components.schemas[schema.$ref.split("/").pop()] || {};
  return schema || {};
}

function form(doc, method, path, op) {
  const params = op.parameters || [];
  const inputs = params.map((p) => ({
    p,
    input: el("input", { type: "text", "data-param": p.name, placeholder: p.in === "path" && p.name === "user_id" ? "@me" : (p.schema?.default ?? "") }),
  }));
  const content = op.requestBody?.content || {};
  const json = content["application/json"];
  const multipart = content["multipart/form-data"];
  let body = null;
  let files = null;
  let data = null;
  if (json) {
    const example = json.example ?? resolveRef(doc, json.schema).example;
    body = el("textarea", { rows: 4, "data-body": "json" });
    body.value = example ? JSON.stringify(example, null, 2) : "{}";
  }
  if (multipart) {
    files = el("input", { type: "file", multiple: true, "data-body": "files" });
    data = el("input", { type: "text", "data-body": "data", value: '{"is_public": false, "remark": ""}' });
  }
  const output = el("pre", { hidden: true, "aria-live": "polite" });
  const send = el("button", { type: "button" }, "Send");
  send.addEventListener("click", async () => {
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    for (const { p, input } of inputs) {
      const value = input.value || (p.in === "path" && p.name === "user_id" ? "@me" : "");
      // `@` is kept as is: `@me` is a user id, and `%40me` is not.
      const segment = (v) => encodeURIComponent(v).replaceAll("%40", "@");
      if (p.in === "path") url = url.replace(`{${p.name}}`, value.split("/").map(segment).join("/"));
      else if (p.in === "query" && value !== "") query.set(p.name, value);
      else if (p.in === "header" && value !== "") headers[p.name] = value;
    }
    if (query.toString()) url += `?${query}`;
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload;
    if (body) {
      headers["Content-Type"] = "application/json";
      payload = body.value;
    } else if (files) {
      payload = new FormData();
      for (const f of files.files) payload.append("files", f, f.webkitRelativePath || f.name);
      if (data.value.trim()) payload.append("data", data.value);
    }
    output.hidden = false;
    output.textContent = `${method.toUpperCase()} ${url} …`;
    const started = performance.now();
    try {
      const response = await fetch(url, { method: method.toUpperCase(), headers, body: payload });
      const type = response.headers.get("content-type") || "";
      const ms = (performance.now() - started).toFixed(0);
      let text;
      if (/json|text|xml|javascript/.test(type)) {
        text = await response.text();
        if (type.includes("json")) {
          try { text = JSON.stringify(JSON.parse(text), null, 2); } catch { /* as sent */ }
        }
        if (text.length > MAX_SHOWN) text = `${text.slice(0, MAX_SHOWN)}\n… (${text.length} characters in all)`;
      } else {
        const blob = await response.blob();
        text = `(${blob.size} bytes of ${type || "unknown type"})`;
      }
      output.textContent = `${response.status} ${response.statusText} · ${ms} ms · ${type}\n${method.toUpperCase()} ${url}\n\n${text}`;
    } catch (error) {
      output.textContent = `Request failed: ${error}`;
    }
  });
  return el("details", { class: "try" },
    el("summary", {}, "Try it"),
    inputs.map(({ p, input }) => [el("label", {}, `${p.name} (${p.in}${p.required ? ", required" : ""})`), input]),
    body ? [el("label", {}, "Body (JSON)"), body] : null,
    files ? [el("label", {}, "files (repeated parts)"), files, el("label", {}, "data (JSON string)"), data] : null,
    el("p", {}, send),
    output);
}

async function start() {
  const doc = await fetch("/openapi.json").then((r) => r.json());
  document.querySelector("h1")?.after(tokenBox());
  for (const section of document.querySelectorAll("section.op[data-method][data-path]")) {
    const op = doc.paths?.[section.dataset.path]?.[section.dataset.method];
    if (op) section.append(form(doc, section.dataset.method, section.dataset.path, op));
  }
}

start();
