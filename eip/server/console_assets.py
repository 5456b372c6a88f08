"""The live console's stylesheet and script, served inline in the page (no build step, no CDN).

Kept apart from :mod:`eip.server.console` so the Python stays short and the assets read as
what they are. The script only ever puts API data into the page with ``textContent`` (never
``innerHTML``), so a route id, a description or an exception message cannot become markup.
"""

from __future__ import annotations

__all__ = ["SCRIPT", "STYLE"]

STYLE = """
:root { color-scheme: light; --ink: #202124; --muted: #5f6368; --line: #e0e3e7;
  --ok: #188038; --bad: #c5221f; --warn: #b06000; --accent: #1a4fb0; }
* { box-sizing: border-box; }
/* what is scrolled to stays clear of the sticky header (--head: its height, set by the script) */
html { scroll-padding-top: calc(var(--head, 53px) + 16px); }
body { margin: 0; background: #f4f6f8; color: var(--ink);
  font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; gap: 6px 16px;
  align-items: center; padding: 10px 20px; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { margin: 0; font-size: 16px; letter-spacing: .2px; }
header h1 span { color: var(--muted); font-weight: normal; }
header .spacer { flex: 1; }
header label { color: var(--muted); }
header input { margin-left: 6px; padding: 4px 8px; width: 190px; border: 1px solid #c4c7cc;
  border-radius: 6px; font: inherit; }
#updated { color: var(--muted); font-size: 12px; }
#problems, #notice { flex-basis: 100%; margin: 0; font-size: 12px; }
#problems { padding: 0 0 0 18px; color: var(--bad); }
#problems:empty, #notice:empty { display: none; }
#notice { color: var(--warn); }
.layout { display: flex; align-items: flex-start; }
nav { position: sticky; top: var(--head, 53px); flex: 0 0 250px;
  max-height: calc(100vh - var(--head, 53px));
  overflow-y: auto; padding: 12px 0 12px 12px; }
nav h2 { margin: 0 0 6px 8px; font-size: 12px; color: var(--muted); text-transform: uppercase;
  letter-spacing: .5px; }
nav ol { margin: 0; padding: 0; list-style: none; }
nav a { display: flex; align-items: center; gap: 7px; padding: 3px 8px; border-radius: 6px;
  color: var(--ink); text-decoration: none; font-size: 12px; }
nav a:hover { background: #e8eaed; }
nav .name { flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
nav .total { color: var(--muted); font-variant-numeric: tabular-nums; }
nav .fails { color: var(--bad); font-weight: 600; font-variant-numeric: tabular-nums; }
.dot { flex: none; width: 8px; height: 8px; border-radius: 50%; background: #bdc1c6; }
.dot.up { background: var(--ok); }
.dot.waiting { background: var(--warn); }
@media (max-width: 900px) { .layout { display: block; } nav { position: static;
  max-height: none; } }
main { flex: 1; min-width: 0; display: flex; flex-wrap: wrap; align-items: flex-start; gap: 14px;
  padding: 14px 20px 14px 8px; }
section.route { min-width: 300px; max-width: 100%; background: #fff; border: 1px solid var(--line);
  border-radius: 10px; box-shadow: 0 1px 2px rgba(60, 64, 67, .08); }
section.route[data-status="stopped"] { background: #fafafa; }
section.route[data-status="stopped"] .graph { opacity: .55; }
section.route[data-status="suspended"] .graph { opacity: .75; }
.head { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 10px;
  padding: 10px 12px 0 14px; }
.head h2 { margin: 0; font-size: 14px; overflow-wrap: anywhere; }
.desc { margin: 2px 14px 0; color: var(--muted); font-size: 12px; }
.pill { padding: 1px 8px; border-radius: 10px; font-size: 11px; font-weight: 600;
  background: #e6f4ea; color: var(--ok); }
.pill.unknown { background: #eceff1; color: var(--muted); }
.pill.bad { background: #fce8e6; color: var(--bad); }
.pill.paused { background: #fef7e0; color: var(--warn); }
.counters { display: flex; gap: 10px; margin-left: auto; color: var(--muted); font-size: 12px; }
.counters b { color: var(--ink); font-variant-numeric: tabular-nums; }
.counters .failed b.some { color: var(--bad); }
button.toggle, button.pause { padding: 2px 12px; border: 1px solid #c4c7cc; border-radius: 6px;
  background: #fff; color: var(--ink); font: inherit; cursor: pointer; }
button.toggle:hover, button.pause:hover { background: #f1f3f4; }
button.toggle[data-action="stop"] { color: var(--bad); border-color: #f1b8b4; }
button.pause[data-action="suspend"] { color: var(--warn); border-color: #f4d39a; }
button.toggle:disabled, button.pause:disabled { opacity: .5; cursor: default; }
.note { flex-basis: 100%; margin: 0; font-size: 12px; }
.note:empty { display: none; }
.problem { color: var(--warn); }
.message { color: var(--bad); }
.message.ok { color: var(--ok); }
.graph { overflow-x: auto; padding: 0 4px; }
.graph svg { display: block; max-width: none; }
.graph .route-title, .graph .route-description { display: none; }
.graph .route-frame { stroke: none; }
.graph text.counter { font-weight: 600; }
.graph g.node.failing > rect { stroke: var(--bad); stroke-width: 2px; }
.graph g.node.failing text.counter { fill: var(--bad); }
details.failures { margin: 0 12px 10px; border-top: 1px solid var(--line); padding-top: 6px; }
details.failures summary { cursor: pointer; color: var(--muted); font-size: 12px; }
details.failures[data-count="0"] summary { cursor: default; }
.failures table { width: 100%; margin-top: 6px; border-collapse: collapse; font-size: 12px; }
.failures th { text-align: left; color: var(--muted); font-weight: 600; }
.failures th, .failures td { padding: 3px 6px; border-bottom: 1px solid #f1f3f4;
  vertical-align: top; }
.failures td.exc { color: var(--bad); white-space: nowrap; }
.failures td.msg { max-width: 420px; overflow-wrap: anywhere; }
.failures td.at { max-width: 220px; overflow-wrap: anywhere; color: var(--muted); }
.failures td.time { white-space: nowrap; font-variant-numeric: tabular-nums; }
"""

SCRIPT = """
(() => {
  "use strict";
  const POLL_MS = 2000, TIMEOUT_MS = 5000, TOKEN_KEY = "eip.console.token";
  const $ = (sel, root = document) => root.querySelector(sel);
  const put = (el, value) => { if (el) el.textContent = value == null ? "" : String(value); };
  const cards = new Map(), entries = new Map();
  document.querySelectorAll("section.route").forEach((c) => cards.set(c.dataset.route, c));
  document.querySelectorAll("#index a").forEach((a) => entries.set(a.dataset.route, a));
  const failureKeys = new Map();  // route id -> the last failure the list shows
  const token = $("#token");
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, token.value));

  async function getJson(path) {
    const response = await fetch(path, {
      cache: "no-store", signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON: say the status only */ }
    return {status: response.status, ok: response.ok, body};
  }

  const ms = (v) => v == null ? "\\u2013" : (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
  const pad = (n) => String(n).padStart(2, "0");
  const clock = (t) => {  // local time, as operators read logs: 2026-11-23 06:00:01
    const d = new Date(t * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  };
  const shortType = (name) => String(name).split(".").pop();

  function showReadiness(result) {
    const badge = $("#ready"), list = $("#problems");
    list.replaceChildren();
    if (result == null) {
      badge.className = "pill unknown"; put(badge, "server unreachable"); return;
    }
    badge.className = result.ok ? "pill" : "pill bad";
    put(badge, result.ok ? "ready" : "not ready");
    const problems = (result.body && result.body.routes) || {};
    for (const [name, why] of Object.entries(problems)) {
      const item = document.createElement("li");
      put(item, name + ": " + why);
      list.append(item);
    }
    fitHeader();
  }

  function fitHeader() {  // the index sticks below the header, however many lines it has
    const height = $("header").offsetHeight;
    document.documentElement.style.setProperty("--head", height + "px");
  }

  function showStatus(card, status) {
    card.dataset.status = status;
    const pill = $(".status", card);
    pill.className = "pill status" +
      (status === "started" ? "" : status === "suspended" ? " paused" : " unknown");
    put(pill, status);
  }

  function showButtons(card, status) {  // Stop/Start, and Suspend/Resume while it runs
    const toggle = $("button.toggle", card), pause = $("button.pause", card);
    const running = status === "started" || status === "suspended";
    toggle.dataset.action = running ? "stop" : "start";
    put(toggle, running ? "Stop" : "Start");
    pause.hidden = !running;
    pause.dataset.action = status === "suspended" ? "resume" : "suspend";
    put(pause, status === "suspended" ? "Resume" : "Suspend");
  }

  function showRoute(route) {
    const card = cards.get(route.id);
    if (!card) return false;
    const c = route.counters || {}, p = c.processing || {};
    showStatus(card, route.status);
    put($(".problem", card), route.ready ? "" : (route.problem || "not ready"));
    put($('[data-counter="total"]', card), c.exchanges_total);
    put($('[data-counter="failed"]', card), c.exchanges_failed);
    $('[data-counter="failed"]', card).classList.toggle("some", c.exchanges_failed > 0);
    put($('[data-counter="inflight"]', card), c.inflight);
    put($('[data-counter="p99"]', card), ms(p.p99_ms));
    // The route's exchange counters go on its "from" node; the other nodes show their sends'
    // counters and the failures the history places on them (showNodes).
    put($('g.node[data-kind="from"] text.counter', card),
      c.exchanges_total + " ex \\u00b7 " + c.exchanges_failed + " failed \\u00b7 " +
      c.inflight + " in flight");
    const entry = entries.get(route.id);
    if (entry) {
      const up = route.status === "started", paused = route.status === "suspended";
      $(".dot", entry).className =
        "dot" + (up && route.ready ? " up" : up || paused ? " waiting" : "");
      $(".dot", entry).title = route.ready ? route.status : route.problem || "not ready";
      put($(".total", entry), c.exchanges_total);
    }
    if (!card.dataset.busy) showButtons(card, route.status);
    const last = route.last_failure;
    const key = last ? last.exchange_id + "@" + last.time : "";
    if (failureKeys.get(route.id) !== key) {
      failureKeys.set(route.id, key);
      loadFailures(route.id, card).catch(() => failureKeys.delete(route.id));
    }
    return true;
  }

  async function loadFailures(id, card) {
    const result = await getJson("/routes/" + encodeURIComponent(id) + "/failures");
    if (!result.ok || !result.body) throw new Error("failures of " + id + ": " + result.status);
    const failures = result.body.failures || [];
    const details = $("details.failures", card), rows = $("tbody", details);
    details.dataset.count = String(failures.length);
    put($(".count", details), failures.length);
    const entry = entries.get(id);
    if (entry) put($(".fails", entry), failures.length ? "\u2717 " + failures.length : "");
    rows.replaceChildren(...failures.map((f) => {
      const row = document.createElement("tr");
      for (const [cls, value, title] of [
        ["time", clock(f.time), null],
        ["exc", shortType(f.exception_type), f.exception_type],
        ["msg", f.message, null],
        ["at", f.failed_at || "\\u2013", null],
      ]) {
        const cell = document.createElement("td");
        cell.className = cls;
        put(cell, value);
        if (title) cell.title = title;
        row.append(cell);
      }
      return row;
    }));
  }

  const sent = (s) => s.sent + " sent" + (s.failed ? " \u00b7 " + s.failed + " failed" : "") +
    (s.mean_ms == null ? "" : " \u00b7 " + ms(s.mean_ms));

  function showNodes(failures, sends) {  // a send's counters; the recent failures at a node
    for (const [id, card] of cards) {
      const counts = failures[id] || {}, sending = sends[id] || {};
      card.querySelectorAll('g.node:not([data-kind="from"])').forEach((node) => {
        const n = counts[node.dataset.node] || 0, s = sending[node.dataset.node];
        node.classList.toggle("failing", n > 0);
        const recent = n > 0 ? "\u2717 " + n : "";
        put($("text.counter", node), s ? sent(s) + (recent && " \u00b7 " + recent) :
          recent && recent + " recent");
      });
    }
  }

  async function poll() {
    try {
      const [routes, ready, nodes] = await Promise.all([
        getJson("/routes"), getJson("/health/ready"), getJson("/console/node-failures"),
      ]);
      showReadiness(ready);
      const unknown = ((routes.body && routes.body.routes) || [])
        .filter((route) => !showRoute(route)).map((route) => route.id);
      put($("#notice"), unknown.length ?
        "routes changed (" + unknown.join(", ") + "): reload the page to draw them" : "");
      fitHeader();
      if (nodes.ok && nodes.body) showNodes(nodes.body.routes || {}, nodes.body.sends || {});
      put($("#updated"), "updated " + new Date().toLocaleTimeString(undefined, {hour12: false}));
    } catch (error) {
      showReadiness(null);
      put($("#updated"), "cannot reach the server: " + error.message);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  const DONE = {stop: "stopped", start: "started", suspend: "suspended", resume: "resumed"};

  async function act(card, button) {  // POST /routes/{id}/{stop,start,suspend,resume}
    const id = card.dataset.route, action = button.dataset.action;
    const message = $(".message", card), buttons = card.querySelectorAll("button");
    message.classList.remove("ok");
    put(message, "");
    card.dataset.busy = "1";
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch("/routes/" + encodeURIComponent(id) + "/" + action, {
        method: "POST", cache: "no-store", signal: AbortSignal.timeout(30000),
        headers: {"Authorization": "Bearer " + token.value},
      });
      let body = {};
      try { body = await response.json(); } catch (_) { /* keep the status line */ }
      if (response.ok) {
        message.classList.add("ok");
        put(message, DONE[action] || action);
        if (body.status) showStatus(card, body.status);
      } else {
        put(message, response.status + ": " + (body.error || response.statusText));
      }
    } catch (error) {
      put(message, action + " failed: " + error.message);
    } finally {
      delete card.dataset.busy;
      buttons.forEach((b) => { b.disabled = false; });
      showButtons(card, card.dataset.status);
    }
  }

  for (const card of cards.values()) {
    for (const button of card.querySelectorAll("button.toggle, button.pause")) {
      button.addEventListener("click", () => act(card, button));
    }
  }
  poll();
})();
"""
