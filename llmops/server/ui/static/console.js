/* The console's core: the API key (kept in sessionStorage, sent as a bearer header), JSON and
   Server-Sent-Event calls to the app's own routes, and the hash router between pages. */
"use strict";

const KEY_STORE = "llmops-console-key";

const Api = (() => {
  function key() { return sessionStorage.getItem(KEY_STORE); }

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    const k = key();
    if (k) h.Authorization = `Bearer ${k}`;
    return h;
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function failure(response) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      detail = body.detail || (body.error && body.error.message) || detail;
      if (typeof detail !== "string") detail = JSON.stringify(detail);
    } catch (_) { /* not JSON */ }
    if (response.status === 401) Console.askForKey(detail);
    return new ApiError(response.status, detail);
  }

  async function get(path, params) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== null && v !== undefined && v !== "") query.set(k, v);
    }
    const url = query.toString() ? `${path}?${query}` : path;
    const response = await fetch(url, { headers: headers() });
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  /* POST with a streamed reply: calls onEvent(event, data) for each SSE event. */
  async function stream(path, body, onEvent) {
    const response = await fetch(path, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await failure(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        onEvent(event, data ? JSON.parse(data) : null);
      }
    }
    return response;
  }

  return { get, post, stream, key, ApiError };
})();

const Console = (() => {
  const pages = {};
  let served = [];  // the pages this app has data for (GET /ui/pages), the first the default
  let check = null;  // a route of the app that needs a key: tells whether the key typed works

  function $(id) { return document.getElementById(id); }

  function node(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") n.className = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return n;
  }

  function fmtTime(seconds) {
    return new Date(seconds * 1000).toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
  }

  function fmtNum(v, digits = 3) {
    return v === null || v === undefined ? "–" : String(+Number(v).toPrecision(digits));
  }

  function askForKey(detail) {
    $("key-panel").hidden = false;
    $("key-error").textContent = Api.key() ? `The key was refused: ${detail}` : "";
    $("key-input").focus();
  }

  function initKey() {
    $("key-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY_STORE, $("key-input").value.trim());
      $("key-input").value = "";
      $("key-forget").hidden = false;
      if (await loadAppName()) {
        $("key-panel").hidden = true;
        show();
      }
    });
    $("key-forget").hidden = !Api.key();
    $("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      $("key-forget").hidden = true;
      askForKey("");
    });
  }

  /* The app's name in the header; false when the key was refused (the key panel says why),
     true otherwise (a key without the check route's scope still serves the pages it may see). */
  async function loadAppName() {
    try {
      const reply = await Api.get(check);
      $("app-name").textContent = reply.app ?? reply.model;
    } catch (error) {
      if (error.status === 401) return false;
    }
    return true;
  }

  function register(name, page) { pages[name] = page; }

  /* Which pages this app has: the others' links are hidden. */
  async function loadPages() {
    const reply = await (await fetch("/ui/pages", { headers: { Accept: "application/json" } })).json();
    served = reply.pages.filter((name) => pages[name]);
    check = reply.check;
    for (const link of document.querySelectorAll("nav a")) link.hidden = !served.includes(link.dataset.page);
  }

  function show() {
    if (!served.length) return;
    const name = location.hash.slice(1);
    const current = served.includes(name) ? name : served[0];
    for (const section of document.querySelectorAll(".page")) {
      section.hidden = section.id !== `page-${current}`;
    }
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.page === current);
    }
    pages[current].show();
  }

  async function start() {
    initKey();
    for (const page of Object.values(pages)) if (page.init) page.init();
    await loadPages();
    window.addEventListener("hashchange", show);
    loadAppName();
    show();
  }

  document.addEventListener("DOMContentLoaded", start);

  return { $, node, fmtTime, fmtNum, askForKey, register };
})();
