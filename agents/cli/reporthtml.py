"""The period report rendered for people (text table, one HTML file) and machines (CSV).

Every renderer reads the JSON body of ``GET /api/reports/{period}`` (``{"period",
"services": [...]}``), so the CLI renders the same whether it read the changelog or
asked the workers.

The HTML is one self-contained document: inline CSS and SVG, no script, no external
asset, so it can be mailed and opened anywhere (mail clients drop scripts and block
remote images). Per service: the verdict, a day-by-day availability chart against the
target, the outages with the components blamed, the downtime by component and the
KPI-gap verdict.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
from html import escape
from typing import Any

CSV_FIELDS = ("service", "kind", "customers", "period", "target", "availability", "met",
              "up_seconds", "down_seconds", "planned_seconds", "outages",
              "longest_outage_seconds", "restore_breaches", "supported_availability", "kpi_gap",
              "downtime_by_component", "revision", "revised_at")


def pct(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{x * 100:.{digits}f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if h:
        parts.append(f"{h}h")
    if m and not d:
        parts.append(f"{m}m")
    if s and not d and not h:
        parts.append(f"{s}s")
    return " ".join(parts) or "0s"


def when(ts: float | None, zone: Any = UTC) -> str:
    if ts is None:
        return "ongoing"
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return UTC if name == "UTC" else ZoneInfo(name)


# -- text and CSV ------------------------------------------------------------------------


def table_text(body: dict[str, Any]) -> str:
    head = ("SERVICE", "KIND", "TARGET", "AVAILABILITY", "MET", "DOWN", "PLANNED", "OUTAGES",
            "LONGEST", "BREACHES", "SUPPORTED", "KPI")
    rows = [head]
    for s in body["services"]:
        rows.append((s["service"], s["kind"], pct(s["target"]), pct(s["availability"], 4),
                     "yes" if s["met"] else "NO", duration(s["down_seconds"]),
                     duration(s["planned_seconds"]), str(s["outages"]),
                     duration(s["longest_outage_seconds"]), str(s["restore_breaches"]),
                     pct(s["supported_availability"]), "GAP" if s["kpi_gap"] else "ok"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"SLA report {body['period']}" + ("" if body.get("complete", True) else
                                               "  (INCOMPLETE: see below)")]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for s in body["services"]:
        if s.get("revision"):
            lines.append(f"{s['service']}: changed after the month closed "
                         f"({s['revision']} revision(s), last {when(s['revised_at'])} UTC)")
    if body.get("missing"):
        lines.append("no answer for: " + ", ".join(body["missing"]))
    u = body.get("unmapped")
    if u and u.get("top"):
        lines.append(f"unrecognized components: {u['distinct']} distinct, most events: " + ", ".join(
            f"{r['component']} ({r['events']})" for r in u["top"][:10]))
    return "\n".join(lines) + "\n"


def csv_text(body: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for s in body["services"]:
        row = []
        for f in CSV_FIELDS:
            v = s.get(f)
            if f == "customers":
                v = ",".join(v)
            elif f == "downtime_by_component":
                v = ";".join(f"{c}={x!r}" for c, x in sorted(v.items()) if x)
            elif isinstance(v, bool):
                v = "true" if v else "false"
            elif v is None:
                v = ""
            row.append(v)
        w.writerow(row)
    return out.getvalue()


# -- HTML --------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;
margin:0;background:#f6f8fa}
main{max-width:62rem;margin:0 auto;padding:1.5rem;background:#fff}
h1{font-size:1.6rem;margin:0 0 .2rem} h2{font-size:1.25rem;margin:2rem 0 .3rem;
border-bottom:1px solid #d0d7de;padding-bottom:.2rem} h3{font-size:1rem;margin:1rem 0 .3rem}
.sub{color:#59636e;margin:0 0 1rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{padding:.3rem .5rem;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600} .bad{color:#cf222e;font-weight:700}
.pill{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85rem;font-weight:600}
.pill.ok{background:#dafbe1} .pill.bad{background:#ffebe9}
.verdict{margin:.3rem 0} .muted{color:#59636e} .note{background:#fff8c5;padding:.4rem .6rem;
border-radius:.3rem}
svg{display:block;max-width:100%;height:auto} .legend span{margin-right:1.2rem}
.sw{display:inline-block;width:.8rem;height:.8rem;vertical-align:-.1rem;margin-right:.3rem}
"""

GREEN, RED, GREY, TARGET = "#2da44e", "#cf222e", "#afb8c1", "#0969da"


def html(body: dict[str, Any]) -> str:
    period = escape(str(body["period"]))
    services = body["services"]
    parts = [
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>SLA report {period}</title><style>{CSS}</style></head><body><main>",
        f"<h1>SLA report {period}</h1>",
        f"<p class=\"sub\">{len(services)} service(s)"
        + (f", generated {escape(when(body['now']))} UTC" if body.get("now") else "")
        + ". Availability = up / (up + unplanned down) over the agreed service time; "
          "planned maintenance counts in neither.</p>",
    ]
    if body.get("missing"):
        parts.append("<p class=\"note\">Incomplete: no answer for "
                     + escape(", ".join(body["missing"])) + ".</p>")
    parts.append(_summary(services))
    for s in services:
        parts.append(_service(s))
    parts.append(_unmapped(body.get("unmapped")))
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _summary(services: list[dict[str, Any]]) -> str:
    rows = ["<table id=\"summary\"><thead><tr><th>Service</th><th>Kind</th><th>Customers</th>"
            "<th>Target</th><th>Availability</th><th>SLA</th><th>Downtime</th><th>Outages</th>"
            "<th>Longest</th><th>Restore breaches</th><th>KPI support</th></tr></thead><tbody>"]
    for s in services:
        name = escape(s["service"])
        met = "<span class=\"pill ok\">met</span>" if s["met"] else \
            "<span class=\"pill bad\">missed</span>"
        gap = (f"<span class=\"bad\">gap</span> ({pct(s['supported_availability'])})"
               if s["kpi_gap"] else f"<span class=\"ok\">ok</span> ({pct(s['supported_availability'])})")
        rows.append(
            f"<tr data-service=\"{name}\"><td><a href=\"#svc-{name}\">{name}</a></td>"
            f"<td>{escape(s['kind'])}</td><td>{escape(', '.join(s['customers']))}</td>"
            f"<td class=\"n\">{pct(s['target'])}</td><td class=\"n\">{pct(s['availability'], 4)}</td>"
            f"<td>{met}</td><td class=\"n\">{duration(s['down_seconds'])}</td>"
            f"<td class=\"n\">{s['outages']}</td><td class=\"n\">{duration(s['longest_outage_seconds'])}</td>"
            f"<td class=\"n\">{s['restore_breaches']}</td><td>{gap}</td></tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def _service(s: dict[str, Any]) -> str:
    name = escape(s["service"])
    zone = _zone(s.get("timezone", "UTC"))
    target = s["target"]
    budget = (1 - target) * (s["up_seconds"] + s["down_seconds"])
    out = [f"<section id=\"svc-{name}\" data-service=\"{name}\"><h2>{name} "
           f"<span class=\"muted\">({escape(s['kind'])}; {escape(', '.join(s['customers']))})</span></h2>"]
    verdict = (f"<span class=\"ok\">SLA met</span>: {pct(s['availability'], 4)} against a target of "
               f"{pct(target)}" if s["met"] else
               f"<span class=\"bad\">SLA missed</span>: {pct(s['availability'], 4)} against a target "
               f"of {pct(target)}")
    out.append(f"<p class=\"verdict\">{verdict}. Unplanned downtime {duration(s['down_seconds'])} "
               f"of an error budget of {duration(budget)}; planned {duration(s['planned_seconds'])}.</p>")
    if s["kpi_gap"]:
        out.append(f"<p class=\"verdict\"><span class=\"bad\">KPI gap</span>: if every component just "
                   f"meets its KPI the service can expect {pct(s['supported_availability'])}, below "
                   f"its target of {pct(target)}. The internal targets cannot carry this promise.</p>")
    else:
        out.append(f"<p class=\"verdict\"><span class=\"ok\">No KPI gap</span>: components meeting "
                   f"their KPIs support {pct(s['supported_availability'])} (target {pct(target)}).</p>")
    if s.get("revision"):
        out.append(f"<p class=\"note\">Changed after the month closed: {s['revision']} revision(s), "
                   f"the last at {escape(when(s['revised_at']))} UTC (late events).</p>")
    out.append("<h3>Availability day by day</h3>")
    out.append(chart(s["days"], target))
    out.append(_outages(s, zone))
    blamed = {c: v for c, v in s["downtime_by_component"].items() if v > 0}
    if blamed:
        out.append("<h3>Downtime by component</h3><table class=\"blame\"><thead><tr><th>Component</th>"
                   "<th>Unplanned downtime blamed on it</th><th>Share</th></tr></thead><tbody>")
        total = sum(blamed.values())
        for comp, v in sorted(blamed.items(), key=lambda kv: -kv[1]):
            out.append(f"<tr><td>{escape(comp)}</td><td class=\"n\">{duration(v)}</td>"
                       f"<td class=\"n\">{v / total * 100:.1f}%</td></tr>")
        out.append("</tbody></table>")
    out.append("</section>")
    return "".join(out)


def _unmapped(u: dict[str, Any] | None) -> str:
    """Components that sent events but that no service lists (ITIL's unrecognized services)."""
    if not u or not u.get("top"):
        return ""
    rows = [f"<h2 id=\"unmapped\">Unrecognized components</h2><p class=\"muted\">{u['distinct']} "
            f"component id(s) sent {u['events']} event(s) but no service lists them: no SLA "
            "counts them. The most frequent:</p><table class=\"unmapped\"><thead><tr>"
            "<th>Component</th><th>Events</th></tr></thead><tbody>"]
    for r in u["top"]:
        events = str(r["events"]) if not r["error"] else f"{r['events'] - r['error']}–{r['events']}"
        rows.append(f"<tr><td>{escape(r['component'])}</td><td class=\"n\">{events}</td></tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def _outages(s: dict[str, Any], zone: Any) -> str:
    outages = s.get("outage_list", [])
    tz = s.get("timezone", "UTC")
    if not outages:
        return "<h3>Outages</h3><p class=\"muted\">No unplanned outage.</p>"
    rt = s.get("restore_time_seconds")
    rows = [f"<h3>Outages ({len(outages)})</h3><table class=\"outages\"><thead><tr>"
            f"<th>Start ({escape(tz)})</th><th>End</th><th>Duration</th><th>In this month</th>"
            "<th>Blamed components</th></tr></thead><tbody>"]
    for o in outages:
        breach = rt is not None and o["seconds"] > rt
        dur = duration(o["seconds"]) + (" <span class=\"bad\">over restore time</span>" if breach else "")
        rows.append(f"<tr><td>{when(o['start'], zone)}</td><td>{when(o['end'], zone)}</td>"
                    f"<td class=\"n\">{dur}</td><td class=\"n\">{duration(o['seconds_in_period'])}</td>"
                    f"<td>{escape(', '.join(o['components'])) or '–'}</td></tr>")
    rows.append("</tbody></table>")
    if rt is not None:
        rows.append(f"<p class=\"muted\">Restore time: {duration(rt)}; "
                    f"{s['restore_breaches']} outage(s) lasted longer.</p>")
    return "".join(rows)


def chart(days: list[dict[str, Any]], target: float) -> str:
    """Inline SVG: a bar per day (green at or above the target, red below, grey with no
    service-time seconds), the target as a dashed line, and a legend."""
    w, h, left, bottom, top = 720, 180, 56, 26, 10
    n = max(1, len(days))
    values = [d["availability"] for d in days if d["up_seconds"] + d["down_seconds"] > 0]
    floor = min([*values, target]) if values else target
    # Show the target and the worst day with room below: the scale starts at a budget's
    # multiple under the target, never below 0.
    lo = min(floor, target - 4 * (1 - target))
    lo = max(0.0, lo - (1.0 - lo) * 0.15)  # the worst day keeps a visible bar
    lo = math.floor(lo * 1000) / 1000
    span = 1.0 - lo if lo < 1.0 else 1.0
    plot_w, plot_h = w - left - 8, h - top - bottom
    bw = plot_w / n

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / span)

    g = [f"<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" "
         f"width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"availability per day\">",
         f"<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"#f6f8fa\"/>"]
    for v in (lo, (lo + 1) / 2, 1.0):
        g.append(f"<line x1=\"{left}\" x2=\"{left + plot_w}\" y1=\"{y(v):.1f}\" y2=\"{y(v):.1f}\" "
                 "stroke=\"#d0d7de\"/>"
                 f"<text x=\"{left - 4}\" y=\"{y(v) + 4:.1f}\" font-size=\"11\" text-anchor=\"end\" "
                 f"fill=\"#59636e\">{v * 100:.{_digits(lo)}f}%</text>")
    for i, d in enumerate(days):
        x = left + i * bw + bw * 0.12
        measured = d["up_seconds"] + d["down_seconds"] > 0
        a = d["availability"] if measured else 1.0
        color = GREY if not measured else (GREEN if a >= target else RED)
        top_y = y(max(a, lo))
        height = max(1.0, top + plot_h - top_y)
        title = (f"{d['date']}: {a * 100:.4f}%, down {duration(d['down_seconds'])}"
                 if measured else f"{d['date']}: no service time")
        g.append(f"<rect class=\"day\" data-date=\"{d['date']}\" x=\"{x:.1f}\" "
                 f"y=\"{top + plot_h - height:.1f}\" "
                 f"width=\"{bw * 0.76:.1f}\" height=\"{height:.1f}\" fill=\"{color}\">"
                 f"<title>{escape(title)}</title></rect>")
        if n <= 31 and (i % 2 == 0 or n <= 16):
            g.append(f"<text x=\"{x + bw * 0.38:.1f}\" y=\"{h - 8}\" font-size=\"10\" "
                     f"text-anchor=\"middle\" fill=\"#59636e\">{int(d['date'][-2:])}</text>")
    ty = y(target)
    g.append(f"<line x1=\"{left}\" x2=\"{left + plot_w}\" y1=\"{ty:.1f}\" y2=\"{ty:.1f}\" "
             f"stroke=\"{TARGET}\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>")
    g.append("</svg>")
    legend = ("<p class=\"legend\">"
              f"<span><i class=\"sw\" style=\"background:{GREEN}\"></i>day at or above target</span>"
              f"<span><i class=\"sw\" style=\"background:{RED}\"></i>day below target</span>"
              f"<span><i class=\"sw\" style=\"background:{GREY}\"></i>no service time</span>"
              f"<span><i class=\"sw\" style=\"background:{TARGET};height:.2rem;vertical-align:.2rem\"></i>"
              f"target {pct(target)}</span></p>")
    return "".join(g) + legend


def _digits(lo: float) -> int:
    return 0 if lo <= 0.9 else (1 if lo <= 0.99 else (2 if lo <= 0.999 else 3))
