"""The dashboard page: one server-rendered HTML document with inline SVG charts (sales over
time, funnel, revenue by ticket type); no script, no external resource. Every number shown
carries ``data-figure`` so it can be compared with the JSON dashboard."""

from __future__ import annotations

from html import escape
from typing import Any


def _num(value: Any) -> str:
    return "—" if value is None else escape(str(value))


def _figure(name: str, value: Any) -> str:
    return f'<span data-figure="{escape(name)}">{_num(value)}</span>'


def _bars(points: list[tuple[str, int]], width: int = 720, height: int = 180,
          color: str = "#3b6fd6", label: str = "") -> str:
    if not points:
        return '<p class="empty">No data in this range.</p>'
    top = max([v for _, v in points] + [1])
    bar = max(2, (width - 40) // len(points))
    parts = [f'<svg role="img" aria-label="{escape(label)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="30" y1="{height - 20}" x2="{width}" y2="{height - 20}" '
             'stroke="#999"/>']
    for i, (name, v) in enumerate(points):
        h = 0 if top == 0 else int((height - 40) * max(v, 0) / top)
        x = 30 + i * bar
        parts.append(f'<rect x="{x}" y="{height - 20 - h}" width="{max(1, bar - 2)}" '
                     f'height="{h}" fill="{color}"><title>{escape(name)}: {v}</title></rect>')
    parts.append(f'<text x="0" y="14" font-size="11">{top}</text></svg>')
    return "".join(parts)


def _funnel(funnel: list[dict[str, Any]], width: int = 720) -> str:
    top = max([int(s["count"]) for s in funnel] + [1])
    row = 34
    parts = [f'<svg role="img" aria-label="funnel" width="{width}" height="{row * len(funnel)}" '
             'xmlns="http://www.w3.org/2000/svg">']
    for i, step in enumerate(funnel):
        w = int((width - 260) * int(step["count"]) / top)
        conv = step["conversion"]
        conv_text = "" if conv is None else f" ({conv * 100:.1f}%)"
        parts.append(
            f'<rect x="110" y="{i * row + 4}" width="{max(w, 1)}" height="{row - 10}" '
            f'fill="#2f9e74"/><text x="0" y="{i * row + 22}" font-size="13">'
            f'{escape(step["step"])}</text><text x="{120 + w}" y="{i * row + 22}" '
            f'font-size="13" data-funnel="{escape(step["step"])}">{step["count"]}'
            f'{escape(conv_text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _money(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['net']} {r['currency']}" for r in rows)


def render(d: dict[str, Any], title: str) -> str:
    t = d["totals"]
    revenue_rows = "".join(
        f'<tr data-currency="{escape(r["currency"])}"><td>{escape(r["currency"])}</td>'
        f'<td data-figure="revenue.{escape(r["currency"])}.gross">{r["gross"]}</td>'
        f'<td data-figure="revenue.{escape(r["currency"])}.refunded">{r["refunded"]}</td>'
        f'<td data-figure="revenue.{escape(r["currency"])}.net">{r["net"]}</td></tr>'
        for r in t["revenue"]) or '<tr><td colspan="4">No revenue</td></tr>'
    sales = [(p["ts"], int(p["confirmed"])) for p in d["series"]]
    views = [(p["ts"], int(p["page_views"])) for p in d["series"]]
    tt_points = []
    for tt in d["by_ticket_type"]:
        net = sum(int(r["net"]) for r in tt["revenue"])
        tt_points.append((str(tt.get("name") or tt["ticket_type_id"]), net))
    tt_rows = "".join(
        f'<tr><td>{escape(str(tt.get("name") or tt["ticket_type_id"]))}</td>'
        f'<td>{tt["reservations"]}</td><td>{tt["confirmed"]}</td><td>{tt["checked_in"]}</td>'
        f'<td>{escape(_money(tt["revenue"]))}</td></tr>' for tt in d["by_ticket_type"])
    cards = "".join(
        f'<div class="card"><div class="label">{escape(label)}</div>'
        f'<div class="value">{_figure(key, t[key])}</div></div>'
        for key, label in (("page_views", "Page views"), ("unique_visitors", "Unique visitors"),
                           ("reservations", "Seats reserved"), ("confirmed", "Seats confirmed"),
                           ("cancelled", "Cancelled"), ("expired", "Expired"),
                           ("checked_in", "Checked in"), ("waitlist", "Waiting list"),
                           ("seats_left", "Seats left")))
    rate = d["attendance_rate"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Analytics · {escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#1d2330;max-width:980px}}
.cards{{display:flex;flex-wrap:wrap;gap:12px}}
.card{{border:1px solid #dde;border-radius:8px;padding:10px 14px;min-width:120px}}
.label{{font-size:12px;color:#667}} .value{{font-size:22px;font-weight:600}}
table{{border-collapse:collapse;margin:8px 0}} td,th{{border:1px solid #dde;padding:4px 10px}}
h2{{margin-top:28px;font-size:17px}}
</style></head>
<body data-event-id="{escape(d["event_id"])}">
<h1>{escape(title)}</h1>
<p>From <time data-figure="from">{escape(d["from"])}</time> to
<time data-figure="to">{escape(d["to"])}</time>, by {escape(d["interval"])}.</p>
<div class="cards">{cards}
<div class="card"><div class="label">Attendance rate</div><div class="value">
<span data-figure="attendance_rate">{_num(rate)}</span></div></div></div>
<h2>Sales over time (seats confirmed)</h2>{_bars(sales, label="sales over time")}
<h2>Page views</h2>{_bars(views, color="#8a63d2", label="page views")}
<h2>Funnel</h2>{_funnel(d["funnel"])}
<h2>Revenue (minor units)</h2>
<table><tr><th>Currency</th><th>Gross</th><th>Refunded</th><th>Net</th></tr>{revenue_rows}
</table>
<h2>Revenue by ticket type (net)</h2>{_bars(tt_points, color="#d6873b",
                                            label="revenue by ticket type")}
<table><tr><th>Ticket type</th><th>Reserved</th><th>Confirmed</th><th>Checked in</th>
<th>Net revenue</th></tr>{tt_rows}</table>
</body></html>
"""
