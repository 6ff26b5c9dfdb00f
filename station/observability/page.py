"""The operator page: one self-contained HTML document (no external assets: the station is often offline).

It polls ``/api/state`` every 500 ms and redraws only when the state's version changed, so thumbnails are
not re-fetched on every poll. All text from the station (part ids, defect types, details) goes through
``textContent``, never ``innerHTML``: a part id is whatever the PLC sent.
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>indus-station</title>
<style>
  :root { --bg: #14171c; --panel: #1d2229; --line: #2c333d; --text: #e6e9ee; --dim: #8b95a3;
          --accept: #2e9b5b; --reject: #d2453a; --warn: #d79a22; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, sans-serif; }
  header { display: flex; flex-wrap: wrap; gap: 24px; align-items: baseline; padding: 12px 20px;
           background: var(--panel); border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0 16px 0 0; }
  .stat b { font-size: 20px; font-variant-numeric: tabular-nums; }
  .stat span { color: var(--dim); margin-left: 4px; }
  #link { margin-left: auto; color: var(--dim); }
  #link.stale { color: var(--reject); font-weight: 600; }
  main { display: grid; grid-template-columns: minmax(0, 2fr) minmax(320px, 1fr); gap: 16px;
         padding: 16px 20px; }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--dim);
       margin: 0 0 8px; }
  #parts { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
  .part { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
  .part.reject { border-color: var(--reject); }
  .part.latest { grid-column: 1 / -1; }
  .part.latest .frame img { width: 560px; max-width: 100%; max-height: none; }
  .frame { position: relative; display: inline-block; max-width: 100%; }
  .frame img { display: block; max-width: 100%; max-height: 220px; image-rendering: auto; }
  .box { position: absolute; border: 2px solid var(--reject); pointer-events: none; }
  .crops { display: flex; gap: 6px; flex-wrap: wrap; margin-top: 6px; }
  .crops figure { margin: 0; }
  .crops img { height: 72px; display: block; border: 1px solid var(--line); }
  .crops figcaption { color: var(--dim); font-size: 11px; }
  .row { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-top: 6px; }
  .pid { font-weight: 600; }
  .dim { color: var(--dim); }
  .badge { padding: 1px 8px; border-radius: 10px; font-weight: 700; font-size: 12px;
           text-transform: uppercase; }
  .badge.accept { background: var(--accept); }
  .badge.reject { background: var(--reject); }
  .badge.failsafe { background: var(--warn); color: #111; }
  table { width: 100%; border-collapse: collapse; font-size: 13px; }
  th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--dim); font-weight: 500; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.nowrap { white-space: nowrap; }
  .empty { color: var(--dim); padding: 24px 0; }
</style>
</head>
<body>
<header>
  <h1>indus-station</h1>
  <div class="stat"><b id="rate">-</b><span>parts/s</span></div>
  <div class="stat"><b id="n-accept">0</b><span>accepted</span></div>
  <div class="stat"><b id="n-reject">0</b><span>rejected</span></div>
  <div class="stat"><b id="n-failsafe">0</b><span>fail-safe</span></div>
  <div class="stat"><b id="p50">-</b><span>p50 inspect</span></div>
  <div class="stat"><b id="p99">-</b><span>p99 inspect</span></div>
  <div id="link">connecting</div>
</header>
<main>
  <section><h2>Recent parts</h2><div id="parts"><div class="empty">No parts yet.</div></div></section>
  <section><h2>Reject log</h2>
    <table><thead><tr><th>time</th><th>part</th><th>type / reason</th><th>conf.</th></tr></thead>
    <tbody id="rejects"></tbody></table>
  </section>
</main>
<script>
"use strict";
const POLL_MS = 500;
let shown = -1;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value; else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.appendChild(child);
  return node;
}
const ms = (s) => (s === null || s === undefined) ? "-" : (s * 1000).toFixed(s < 0.1 ? 1 : 0) + " ms";
const time = (ts) => new Date(ts * 1000).toLocaleTimeString([], {hour12: false});
const conf = (p) => p.confidence === null ? "-" : p.confidence.toFixed(3);

function badge(p) {
  if (p.fail_safe) return el("span", {class: "badge failsafe", text: "reject: " + p.reason});
  return el("span", {class: "badge " + p.decision, text: p.decision});
}

function card(p, latest) {
  const [frame, ...crops] = p.images;
  const node = el("div", {class: "part " + p.decision + (latest ? " latest" : ""), "data-part": p.part_id});
  if (frame) {
    const box = el("div", {class: "frame"}, el("img", {src: frame.url, alt: p.part_id}));
    if (p.bbox && p.decision === "reject") {
      const [x1, y1, x2, y2] = p.bbox;
      box.appendChild(el("div", {class: "box", style:
        `left:${x1 / 10}%;top:${y1 / 10}%;width:${(x2 - x1) / 10}%;height:${(y2 - y1) / 10}%`}));
    }
    node.appendChild(box);
  }
  node.appendChild(el("div", {class: "row"}, badge(p), el("span", {class: "pid", text: p.part_id}),
    el("span", {class: "dim", text: p.product || ""})));
  const facts = [p.type && "type " + p.type, "confidence " + conf(p), p.tool_calls + " tool calls",
                 ms(p.latency_s), time(p.ts)].filter(Boolean).join(" \\u00b7 ");
  node.appendChild(el("div", {class: "row dim", text: facts}));
  if (p.detail) node.appendChild(el("div", {class: "row dim", text: p.detail}));
  if (crops.length) {
    node.appendChild(el("div", {class: "crops"}, ...crops.map((c) =>
      el("figure", {}, el("img", {src: c.url, alt: c.name}), el("figcaption", {text: c.name})))));
  }
  return node;
}

function render(state) {
  document.getElementById("rate").textContent = state.parts_per_s.toFixed(2);
  document.getElementById("n-accept").textContent = state.counts.accept;
  document.getElementById("n-reject").textContent = state.counts.reject;
  document.getElementById("n-failsafe").textContent = state.counts.fail_safe;
  document.getElementById("p50").textContent = ms(state.latency_s.p50);
  document.getElementById("p99").textContent = ms(state.latency_s.p99);
  if (state.version === shown) return;
  shown = state.version;
  const parts = document.getElementById("parts");
  parts.replaceChildren(...state.parts.map((p, i) => card(p, i === 0)));
  if (!state.parts.length) parts.appendChild(el("div", {class: "empty", text: "No parts yet."}));
  document.getElementById("rejects").replaceChildren(...state.rejects.map((p) => el("tr", {},
    el("td", {class: "nowrap", text: time(p.ts)}), el("td", {class: "nowrap", text: p.part_id}),
    el("td", {text: p.fail_safe ? p.reason + (p.detail ? ": " + p.detail : "") : (p.type || "defect")}),
    el("td", {class: "num", text: conf(p)}))));
}

async function poll() {
  const link = document.getElementById("link");
  try {
    const response = await fetch("/api/state", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    link.textContent = "live";
    link.className = "";
  } catch (err) {
    link.textContent = "station unreachable (" + err.message + ")";
    link.className = "stale";
  }
  setTimeout(poll, POLL_MS);
}
poll();
</script>
</body>
</html>
"""
