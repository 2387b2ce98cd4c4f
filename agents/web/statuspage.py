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
</style>
</head>
<body>
<header>
  <h1>Service status</h1>
  <div><span id="summary">loading…</span> <span id="error"></span></div>
</header>
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
  t.append(el("div", "meta", "target " + pct(s.sla.target) + " / " + s.sla.period +
    " · SLA " + pct(s.sla.availability) + " · budget left " +
    (s.sla.error_budget_remaining * 100).toFixed(1) + "%" +
    (s.service_time ? " · service time " + s.service_time.name + " (" +
      s.service_time.hours_per_week + " h/week)" : "") +
    (s.customers.length ? " · " + s.customers.join(", ") : "")));
  return t;
}
async function refresh() {
  try {
    const r = await fetch("/api/services", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const body = await r.json();
    const services = (Array.isArray(body) ? body : body.services).slice();
    services.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "external" ? -1 : 1) ||
                            a.service.localeCompare(b.service));
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
