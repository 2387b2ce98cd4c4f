"""The wall-screen status page served at ``/``.

One self-contained HTML document (no external assets: the page must work on an
air-gapped NOC screen) that polls ``/api/services`` and redraws. External services come
first; each tile shows the state, the SLA status, availability per window against the
target, and the current outage with the components blamed for it.
"""

from __future__ import annotations

REFRESH_SECONDS = 5

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>slawatch — service status</title>
<style>
  :root { --bg:#0f1419; --fg:#e6e6e6; --muted:#8a96a3; --up:#2ea043; --down:#e5534b;
          --maint:#6cb6ff; --warn:#d29922; --tile:#1a222c; --off:#57606a; }
  * { box-sizing: border-box; }
  body { margin:0; padding:1.2rem; background:var(--bg); color:var(--fg);
         font: 16px/1.35 system-ui, -apple-system, "Segoe UI", sans-serif; }
  header { display:flex; justify-content:space-between; align-items:baseline; margin-bottom:1rem; }
  h1 { font-size:1.6rem; margin:0; }
  #summary { color:var(--muted); }
  #error { color:var(--down); font-weight:600; }
  #grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(22rem, 1fr)); gap:1rem; }
  .tile { background:var(--tile); border-radius:.6rem; padding:1rem; border-left:.5rem solid var(--up); }
  .tile.down { border-left-color:var(--down); }
  .tile.maintenance { border-left-color:var(--maint); }
  .tile.scheduled_maintenance { border-left-color:var(--maint); border-left-style:dashed; }
  .tile.outside_service_time { border-left-color:var(--off); opacity:.75; }
  .name { font-size:1.45rem; font-weight:700; }
  .kind { color:var(--muted); font-size:.9rem; margin-left:.4rem; }
  .badges { margin:.4rem 0 .6rem; }
  .badge { display:inline-block; padding:.1rem .55rem; border-radius:1rem; font-size:.85rem;
           font-weight:700; margin-right:.3rem; background:#2d3742; }
  .badge.state-up { background:var(--up); } .badge.state-down { background:var(--down); }
  .badge.state-maintenance { background:var(--maint); color:#000; }
  .badge.state-scheduled_maintenance { background:var(--maint); color:#000; }
  .badge.state-outside_service_time { background:var(--off); }
  .badge.sla-trending_below { background:var(--warn); color:#000; }
  .badge.sla-breached { background:var(--down); }
  .bars { display:grid; grid-template-columns:2.6rem 1fr 4.6rem; gap:.15rem .5rem; font-size:.85rem;
          align-items:center; }
  .bar { height:.7rem; background:#2d3742; border-radius:.35rem; overflow:hidden; position:relative; }
  .fill { height:100%; background:var(--up); }
  .fill.below { background:var(--down); }
  .num { text-align:right; font-variant-numeric: tabular-nums; }
  .outage { margin-top:.6rem; color:var(--down); font-weight:600; }
  .meta { margin-top:.4rem; color:var(--muted); font-size:.85rem; }
  .badge.kpi-gap { background:var(--warn); color:#000; }
  .chart-title { margin-top:.7rem; font-size:.8rem; color:var(--muted); }
  svg.budget, svg.timeline { display:block; width:100%; }
  .recent { font-size:.8rem; color:var(--muted); margin-top:.2rem; }
  .recent b { color:var(--fg); font-weight:600; }
  #legend { display:flex; flex-wrap:wrap; gap:.3rem 1.4rem; font-size:.8rem; color:var(--muted);
            margin:-.4rem 0 1rem; }
  #legend i { display:inline-block; width:1.4rem; height:.6rem; border-radius:.3rem;
              vertical-align:middle; margin-right:.35rem; }
  #legend i.line { background:none; border-top:2px solid var(--up); height:0; border-radius:0; }
  #legend i.box { border-radius:0; }
</style>
</head>
<body>
<header>
  <h1>Service status</h1>
  <div><span id="summary">loading…</span> <span id="error"></span></div>
</header>
<div id="legend">
  <span><i style="background:var(--up)"></i>window bar: error budget left in that window
    (full: no downtime)</span>
  <span><i style="background:var(--down)"></i>window bar: availability below the SLA target</span>
  <span><i class="line"></i>budget line: error budget left over the SLA period (0 = spent)</span>
  <span><i class="box" style="background:var(--down)"></i>timeline: unplanned outage
    (blamed components listed)</span>
  <span><i class="box" style="background:var(--maint)"></i>timeline: planned maintenance</span>
  <span><i style="background:var(--warn)"></i>KPI gap: the components' KPIs cannot carry the SLA</span>
</div>
<main id="grid"></main>
<script>
const REFRESH = __REFRESH__ * 1000;
const WINDOWS = ["5m", "30m", "1h", "6h", "1d", "3d", "7d", "30d"];
function pct(x) { return (x * 100).toFixed(3) + "%"; }
function dur(s) {
  s = Math.round(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function tile(s) {
  // `shown` (CONTRACT §6): outside service time and scheduled maintenance are told
  // apart from up and down; `state` is the state whatever the service time.
  const shown = s.shown || s.state;
  const t = el("section", "tile " + shown);
  t.dataset.service = s.service;
  t.dataset.state = s.state;
  t.dataset.shown = shown;
  t.dataset.slaStatus = s.sla.status;
  const title = el("div");
  title.append(el("span", "name", s.service), el("span", "kind", s.kind));
  const badges = el("div", "badges");
  badges.append(el("span", "badge state-" + shown, shown.replaceAll("_", " ").toUpperCase()),
                el("span", "badge sla-" + s.sla.status, "SLA " + s.sla.status.replace("_", " ")));
  t.append(title, badges);
  const bars = el("div", "bars");
  // Bars show the error budget left in each window: full when no downtime, empty at the target.
  for (const w of WINDOWS) {
    const a = s.availability[w];
    const room = Math.max(0, Math.min(1, (a - s.sla.target) / (1 - s.sla.target)));
    const bar = el("div", "bar");
    const fill = el("div", "fill" + (a < s.sla.target ? " below" : ""));
    fill.style.width = (a < s.sla.target ? 100 : Math.max(2, room * 100)) + "%";
    bar.append(fill);
    bars.append(el("span", "", w), bar, el("span", "num", pct(a)));
  }
  t.append(bars);
  if (s.outage_seconds > 0) {
    const blamed = Object.entries(s.downtime_by_component || {}).filter(([, v]) => v > 0)
      .sort((x, y) => y[1] - x[1]).map(([c]) => c).slice(0, 4);
    t.append(el("div", "outage", "Outage for " + dur(s.outage_seconds) +
      (s.restore_time_exceeded ? " — past restore time" : "") +
      (blamed.length ? " · " + blamed.join(", ") : "")));
  }
  if (s.kpi_gap) {
    const gap = el("span", "badge kpi-gap", "KPI GAP");
    gap.title = "components meeting their KPIs support " + pct(s.supported_availability) +
      " < target " + pct(s.sla.target);
    badges.append(gap);
  }
  t.append(...history(s));
  t.append(el("div", "meta", "target " + pct(s.sla.target) + " / " + s.sla.period +
    " · SLA " + pct(s.sla.availability) + " · budget left " +
    (s.sla.error_budget_remaining * 100).toFixed(1) + "%" +
    (s.service_time ? " · service time " + s.service_time.name + " (" +
      s.service_time.hours_per_week + " h/week)" : "") +
    (s.customers.length ? " · " + s.customers.join(", ") : "")));
  return t;
}
// Outages of the SLA period per service (GET /api/services/{name}/outages), fetched
// again only when the service's downtime or state changed, or after OUTAGES_TTL.
const OUTAGES_TTL = 60000;
const outagesCache = {};
const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs, title) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (title) { const t = document.createElementNS(SVG, "title"); t.textContent = title; e.append(t); }
  return e;
}
function signature(s) { return [s.state, s.outages_total, Math.round(s.sla.down_seconds)].join("/"); }
async function loadOutages(services) {
  const now = Date.now();
  const wanted = services.filter(s => s.sla.down_seconds > 0 || s.state !== "up" ||
                                      s.sla.planned_seconds > 0);
  await Promise.all(wanted.map(async s => {
    const c = outagesCache[s.service];
    if (c && c.sig === signature(s) && now - c.at < OUTAGES_TTL) return;
    try {
      const r = await fetch("/api/services/" + encodeURIComponent(s.service) + "/outages",
                            {cache: "no-store"});
      if (r.ok) outagesCache[s.service] = {sig: signature(s), at: now, body: await r.json()};
    } catch (e) { /* shown without its history until the next refresh */ }
  }));
}
function fmtTime(t) {
  const d = new Date(t * 1000);
  return d.toISOString().slice(5, 16).replace("T", " ");
}
// The error budget left over the SLA period, and the outages on a timeline of the period.
function history(s) {
  const c = outagesCache[s.service];
  const now = Date.now() / 1000;
  const start = c ? c.body.sla_start : null;
  const out = [];
  const W = 320, H = 56, T = 18;
  const outages = c ? c.body.outages : [];
  const total = (1 - s.sla.target) * (s.sla.up_seconds + s.sla.down_seconds);
  out.push(el("div", "chart-title", "Error budget over the SLA period (" + s.sla.period + "): " +
    (s.sla.error_budget_remaining * 100).toFixed(1) + "% left"));
  const budget = svgEl("svg", {class: "budget", viewBox: "0 0 " + W + " " + H,
                               "data-budget-left": s.sla.error_budget_remaining.toFixed(4)});
  budget.append(svgEl("rect", {x: 0, y: 0, width: W, height: H, fill: "#2d3742", rx: 4}));
  // Down to -150% at most: an overspent budget runs off the bottom edge.
  const lo = Math.max(-1.5, Math.min(-0.25, s.sla.error_budget_remaining));
  const y = v => 4 + (H - 8) * (1 - (Math.max(v, lo) - lo) / (1 - lo));
  budget.append(svgEl("line", {x1: 0, x2: W, y1: y(0), y2: y(0), stroke: "#8a96a3",
                               "stroke-dasharray": "3 3"}, "budget spent"));
  const label = (at, text) => {
    const t = svgEl("text", {x: W - 3, y: at, "text-anchor": "end", "font-size": 9,
                             fill: "#8a96a3"});
    t.textContent = text;
    return t;
  };
  // 100% just under its line; 0 above its line, or under it when the two would touch.
  budget.append(label(y(1) + 10, "100%"),
                label(y(0) - y(1) < 22 ? y(0) + 10 : y(0) - 3, "0 · spent"));
  // Points: the remaining budget falls during each unplanned outage, flat between.
  const pts = [];
  if (start !== null && total > 0) {
    const x = t => W * Math.max(0, Math.min(1, (t - start) / Math.max(1, now - start)));
    let spent = 0;
    pts.push([0, y(1)]);
    for (const o of outages.filter(o => !o.planned)) {
      const a = Math.max(o.start, start), b = Math.min(o.end === null ? now : o.end, now);
      if (b <= a) continue;
      pts.push([x(a), y(1 - spent / total)]);
      spent += b - a;
      pts.push([x(b), y(1 - spent / total)]);
    }
    pts.push([W, y(1 - spent / total)]);
  } else {
    pts.push([0, y(s.sla.error_budget_remaining)], [W, y(s.sla.error_budget_remaining)]);
  }
  const color = s.sla.error_budget_remaining < 0 ? "var(--down)" :
    (s.sla.status === "meeting" ? "var(--up)" : "var(--warn)");
  budget.append(svgEl("polyline", {points: pts.map(p => p.join(",")).join(" "), fill: "none",
                                   stroke: color, "stroke-width": 2},
                      "error budget left: " + (s.sla.error_budget_remaining * 100).toFixed(1) + "%"));
  out.push(budget);
  out.push(el("div", "chart-title", "Outages in the SLA period"));
  const tl = svgEl("svg", {class: "timeline", viewBox: "0 0 " + W + " " + T});
  tl.append(svgEl("rect", {x: 0, y: 0, width: W, height: T, fill: "#2d3742", rx: 4}));
  if (start !== null) {
    const x = t => W * Math.max(0, Math.min(1, (t - start) / Math.max(1, now - start)));
    for (const o of outages) {
      const a = Math.max(o.start, start), b = o.end === null ? now : o.end;
      const title = (o.planned ? "planned maintenance " : "outage ") + fmtTime(o.start) + ", " +
        dur(o.seconds) + (o.components.length ? " — " + o.components.join(", ") : "");
      tl.append(svgEl("rect", {x: x(a), y: 2, width: Math.max(2, x(b) - x(a)), height: T - 4,
                               fill: o.planned ? "var(--maint)" : "var(--down)",
                               class: o.planned ? "planned" : "unplanned"}, title));
    }
  }
  out.push(tl);
  const recent = outages.filter(o => !o.planned).slice(-3).reverse();
  if (recent.length) {
    const list = el("div", "recent");
    for (const o of recent) {
      const line = el("div");
      line.append(fmtTime(o.start) + " · " + dur(o.seconds) + (o.end === null ? " (ongoing)" : "") +
                  " · ", el("b", "", o.components.join(", ") || "–"));
      list.append(line);
    }
    out.push(list);
  }
  return out;
}
async function refresh() {
  try {
    const r = await fetch("/api/services", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const body = await r.json();
    const services = (Array.isArray(body) ? body : body.services).slice();
    services.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "external" ? -1 : 1) ||
                            a.service.localeCompare(b.service));
    await loadOutages(services);
    const grid = document.getElementById("grid");
    grid.replaceChildren(...services.map(tile));
    const down = services.filter(s => s.state === "down").length;
    const trending = services.filter(s => s.sla.status !== "meeting").length;
    const outside = services.filter(s => s.shown === "outside_service_time").length;
    const planned = services.filter(s => s.shown === "scheduled_maintenance").length;
    document.getElementById("summary").textContent = services.length + " services · " + down +
      " down · " + trending + " off track · " + planned + " in scheduled maintenance · " +
      outside + " outside service time · updated " + new Date().toLocaleTimeString();
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach slawatch: " + e.message;
  }
}
refresh();
setInterval(refresh, REFRESH);
</script>
</body>
</html>
""".replace("__REFRESH__", str(REFRESH_SECONDS))


def _sha256(block: str) -> str:
    import base64
    import hashlib

    return "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"


def _inline(tag: str) -> str:
    start = PAGE.index(f"<{tag}>") + len(tag) + 2
    return PAGE[start:PAGE.index(f"</{tag}>", start)]


#: The page's own script and style are allowed by their hashes and nothing else is: a
#: service name that smuggled markup into the page could neither run nor load anything,
#: and the page cannot be framed (clickjacking).
CSP = (f"default-src 'none'; script-src {_sha256(_inline('script'))}; "
       f"style-src {_sha256(_inline('style'))}; connect-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
