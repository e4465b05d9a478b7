/// The admin listener's `/`: one self-contained page (no CDN, no network beyond this listener)
/// that draws the last hour from `/api/history` and `/status` and refreshes itself every 10 s.
enum Dashboard {
    static let page = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ClickGate</title>
<style>
  :root { --bg:#0f1419; --card:#182029; --ink:#e6edf3; --dim:#8b98a5; --line:#2a3541; --ok:#3fb950; --bad:#f85149; --warn:#d29922; }
  * { box-sizing: border-box; }
  body { margin:0; background:var(--bg); color:var(--ink); font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
  header { display:flex; align-items:center; gap:16px; padding:16px 24px; border-bottom:1px solid var(--line); flex-wrap:wrap; }
  header h1 { font-size:18px; margin:0; letter-spacing:.5px; }
  .pill { padding:3px 10px; border-radius:999px; font-weight:600; font-size:12px; }
  .pill.ok { background:rgba(63,185,80,.15); color:var(--ok); } .pill.bad { background:rgba(248,81,73,.15); color:var(--bad); }
  .meta { color:var(--dim); font-size:12px; }
  main { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:16px; padding:16px 24px 32px; }
  section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px; min-height:120px; }
  section h2 { font-size:13px; margin:0 0 8px; color:var(--dim); font-weight:600; text-transform:uppercase; letter-spacing:.6px; }
  .big { display:flex; gap:24px; flex-wrap:wrap; margin-bottom:6px; }
  .big div { font-size:26px; font-weight:700; } .big small { display:block; font-size:11px; color:var(--dim); font-weight:500; }
  svg { width:100%; height:170px; display:block; }
  .legend { display:flex; gap:12px; flex-wrap:wrap; font-size:12px; color:var(--dim); margin-top:4px; }
  .legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:4px; vertical-align:-1px; }
  table { width:100%; border-collapse:collapse; font-size:12px; } td, th { text-align:left; padding:3px 6px; border-bottom:1px solid var(--line); }
  th { color:var(--dim); font-weight:600; } td.n { text-align:right; font-variant-numeric:tabular-nums; }
  .empty { color:var(--dim); font-size:12px; padding:30px 0; text-align:center; }
  code { background:#0b0f14; padding:1px 5px; border-radius:4px; }
</style>
</head>
<body data-loaded="0">
<header>
  <h1>ClickGate</h1>
  <span id="ready" class="pill">…</span>
  <span class="meta" id="meta"></span>
  <span class="meta" id="updated" style="margin-left:auto"></span>
</header>
<main>
  <section><h2>Click ids captured per minute, by site</h2><div class="big" id="capture-big"></div><svg id="capture"></svg><div class="legend" id="capture-legend"></div></section>
  <section><h2>Coverage of delivered events</h2><div class="big" id="coverage-big"></div><svg id="coverage"></svg><div class="legend" id="coverage-legend"></div></section>
  <section><h2>Delivery outcomes per minute</h2><svg id="outcomes"></svg><div class="legend" id="outcomes-legend"></div></section>
  <section><h2>TikTok answers, last hour</h2><div id="codes"></div></section>
  <section><h2>Event queue</h2><div class="big" id="queue-big"></div><svg id="queue" style="height:120px"></svg><div class="legend" id="queue-legend"></div><svg id="age" style="height:120px"></svg><div class="legend" id="age-legend"></div></section>
  <section><h2>Requests per minute, by status</h2><svg id="requests"></svg><div class="legend" id="requests-legend"></div></section>
</main>
<script>
"use strict";
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff7b72", "#e3b341"];
const CODE_WORDS = { "0": "accepted", "40001": "no permission", "40002": "invalid value", "40100": "rate limited", "40105": "bad token", "transport": "no answer" };

function parseKey(key) {
  const brace = key.indexOf("{");
  if (brace < 0) return { name: key, labels: {} };
  const labels = {};
  for (const pair of key.slice(brace + 1, -1).split(",")) { const eq = pair.indexOf("="); labels[pair.slice(0, eq)] = pair.slice(eq + 1); }
  return { name: key.slice(0, brace), labels };
}

// Sum of every key named `name`, grouped by what `group` returns for its labels (null skips).
function grouped(values, name, group) {
  const out = {};
  for (const [key, value] of Object.entries(values)) {
    const parsed = parseKey(key);
    if (parsed.name !== name) continue;
    const g = group(parsed.labels);
    if (g === null) continue;
    out[g] = (out[g] || 0) + value;
  }
  return out;
}

// Per-minute rates between consecutive samples, for each group. A live sample taken moments after
// the last recorded one would make a noisy rate: it is skipped.
let interval = 10;
function rates(samples, name, group) {
  const series = {};
  for (let i = 1; i < samples.length; i++) {
    const a = grouped(samples[i - 1].values, name, group), b = grouped(samples[i].values, name, group);
    const dt = (samples[i].t - samples[i - 1].t) / 60;
    if (dt * 60 < interval / 2) continue;
    for (const g of new Set([...Object.keys(a), ...Object.keys(b)])) {
      (series[g] = series[g] || []).push([samples[i].t, Math.max(0, ((b[g] || 0) - (a[g] || 0)) / dt)]);
    }
  }
  return series;
}

function levels(samples, name, group) {
  const series = {};
  for (const s of samples) for (const [g, v] of Object.entries(grouped(s.values, name, group))) (series[g] = series[g] || []).push([s.t, v]);
  return series;
}

function fmt(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (Number.isInteger(v) || v >= 100) return v.toFixed(0);
  return v >= 10 ? v.toFixed(1) : String(Number(v.toFixed(2)));
}
function age(s) { return s == null ? "–" : s < 90 ? s.toFixed(0) + " s" : s < 5400 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h"; }

function chart(id, series, opts = {}) {
  const svg = document.getElementById(id), legend = document.getElementById(id + "-legend");
  const names = Object.keys(series).sort();
  const w = svg.clientWidth || 600, h = svg.clientHeight || 170, pad = { l: 44, r: 8, t: 8, b: 20 };
  opts.since = opts.since || since;
  // The last hour, or since the first sample when the gateway has run for less.
  const now = Date.now() / 1000, t0 = Math.max(now - 3600, opts.since || 0), span = Math.max(60, now - t0);
  let max = opts.max || 0;
  for (const n of names) for (const [, v] of series[n]) max = Math.max(max, v);
  if (max === 0) max = 1;
  const x = t => pad.l + (w - pad.l - pad.r) * Math.max(0, (t - (now - span)) / span), y = v => h - pad.b - (h - pad.t - pad.b) * v / max;
  let out = "";
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4, yy = y(v);
    out += `<line x1="${pad.l}" x2="${w - pad.r}" y1="${yy}" y2="${yy}" stroke="#2a3541"/>`;
    out += `<text x="${pad.l - 6}" y="${yy + 4}" fill="#8b98a5" font-size="10" text-anchor="end">${opts.percent ? Math.round(v * 100) + "%" : opts.seconds ? age(v) : fmt(v)}</text>`;
  }
  for (let i = 4; i >= 0; i--) {
    const back = span * i / 4;
    const minutes = back / 60;
    const label = i === 0 ? "now" : back < 60 ? "-" + Math.round(back) + "s" : "-" + (minutes >= 10 ? Math.round(minutes) : Number(minutes.toFixed(1))) + "m";
    out += `<text x="${x(now - back)}" y="${h - 4}" fill="#8b98a5" font-size="10" text-anchor="${i === 4 ? "start" : i === 0 ? "end" : "middle"}">${label}</text>`;
  }
  names.forEach((n, i) => {
    const pts = series[n].filter(p => p[0] >= now - span);
    if (!pts.length) return;
    const color = (opts.colors && opts.colors[n]) || COLORS[i % COLORS.length];
    out += `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(p => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ")}"/>`;
    const last = pts[pts.length - 1];
    out += `<circle cx="${x(last[0])}" cy="${y(last[1])}" r="3" fill="${color}"/>`;
  });
  if (!names.length) out += `<text x="${w / 2}" y="${h / 2}" fill="#8b98a5" font-size="12" text-anchor="middle">no data yet</text>`;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.innerHTML = out;
  if (legend) legend.innerHTML = names.map((n, i) => `<span><i style="background:${(opts.colors && opts.colors[n]) || COLORS[i % COLORS.length]}"></i>${n}</span>`).join("");
}

function big(id, items) {
  document.getElementById(id).innerHTML = items.map(([label, value]) => `<div>${value}<small>${label}</small></div>`).join("");
}

let since = 0;
function render(history, status) {
  const samples = history.samples, last = samples[samples.length - 1].values, first = samples[0].values;
  since = samples[0].t;
  interval = history.interval_seconds || 10;
  const r = status.readiness;
  const pill = document.getElementById("ready");
  pill.textContent = r.ready ? "ready" : "not ready";
  pill.className = "pill " + (r.ready ? "ok" : "bad");
  pill.title = Object.entries(r.checks).map(([k, v]) => k + ": " + v).join("\n");
  const problems = Object.entries(r.checks).filter(([, v]) => v !== "ok").map(([k, v]) => k + ": " + v);
  document.getElementById("meta").textContent = [
    "up " + age(status.uptime_seconds), status.generation ? "config generation " + status.generation.number : "",
    status.sites.length + " site" + (status.sites.length === 1 ? "" : "s"), status.pixels.length + " pixel" + (status.pixels.length === 1 ? "" : "s"),
    ...problems].filter(Boolean).join(" · ");
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();

  const captured = grouped(last, "clickgate_click_ids_captured_total", l => l.site);
  big("capture-big", Object.keys(captured).length ? Object.entries(captured).map(([site, v]) => [site + " (total)", fmt(v)]) : [["captured", "0"]]);
  chart("capture", rates(samples, "clickgate_click_ids_captured_total", l => l.site));

  const delivered = s => grouped(s, "clickgate_events_delivered_total", () => "all").all || 0;
  const withId = (s, id) => grouped(s, "clickgate_events_delivered_with_total", l => l.identifier === id ? id : null)[id] || 0;
  const ids = ["ttclid", "ttp", "email_or_phone"];
  const total = delivered(last);
  big("coverage-big", ids.map(id => [id.replace("_or_", " / ") + " of " + fmt(total) + " delivered", total ? Math.round(100 * withId(last, id) / total) + "%" : "–"]));
  const coverage = {};
  for (const id of ids) coverage[id] = samples.filter(s => delivered(s.values) > 0).map(s => [s.t, withId(s.values, id) / delivered(s.values)]);
  chart("coverage", coverage, { max: 1, percent: true });

  const outcomeColors = { delivered: "#3fb950", retried: "#d29922", "dead-lettered": "#f85149" };
  const outcomes = {};
  for (const [name, label] of [["clickgate_events_delivered_total", "delivered"], ["clickgate_events_retried_total", "retried"], ["clickgate_events_dead_lettered_total", "dead-lettered"]]) {
    const s = rates(samples, name, () => label)[label];
    if (s) outcomes[label] = s;
  }
  chart("outcomes", outcomes, { colors: outcomeColors });

  const codesNow = grouped(last, "clickgate_events_api_responses_total", l => l.code), codesThen = grouped(first, "clickgate_events_api_responses_total", l => l.code);
  const rows = Object.keys(codesNow).sort().map(c => [c, (codesNow[c] || 0) - (samples.length > 2 ? codesThen[c] || 0 : 0)]).filter(([, n]) => n > 0);
  document.getElementById("codes").innerHTML = rows.length
    ? `<table><tr><th>code</th><th>meaning</th><th class="n">answers</th></tr>${rows.map(([c, n]) => `<tr><td><code>${c}</code></td><td>${CODE_WORDS[c] || (c.startsWith("http_") ? "HTTP " + c.slice(5) : "see the Events API docs")}</td><td class="n">${fmt(n)}</td></tr>`).join("")}</table>`
      + `<p class="meta">Dead letters: <b>${fmt(grouped(last, "clickgate_events_dead_letters", () => "n").n || 0)}</b> — list them with <code>clickgate events dead-letters</code>, requeue with <code>clickgate events replay</code>.</p>`
    : `<div class="empty">No calls to the Events API yet.</div>`;

  const q = status.queue || {};
  big("queue-big", [["queued", fmt(q.depth || 0)], ["oldest undelivered", age(q.oldest_undelivered_seconds)], ["dead letters", fmt(q.dead_letters || 0)]]);
  chart("queue", levels(samples, "clickgate_events_queue_depth", () => "queued events"));
  chart("age", levels(samples, "clickgate_events_oldest_undelivered_seconds", () => "oldest undelivered event, age"), { seconds: true, colors: { "oldest undelivered event, age": "#d29922" } });

  chart("requests", rates(samples, "clickgate_requests_total", l => l.code[0] + "xx"), { colors: { "2xx": "#3fb950", "3xx": "#58a6ff", "4xx": "#d29922", "5xx": "#f85149" } });
  document.body.dataset.loaded = "1";
}

async function refresh() {
  try {
    const [history, status] = await Promise.all([fetch("/api/history").then(r => r.json()), fetch("/status").then(r => r.json())]);
    if (history.samples.length) render(history, status);
  } catch (e) {
    document.getElementById("updated").textContent = "cannot reach the gateway: " + e;
  }
}
refresh();
setInterval(refresh, 10000);
</script>
</body>
</html>
"""#
}
