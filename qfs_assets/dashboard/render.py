"""Render the storage assurance dashboard: ONE self-contained HTML page from the evidence store.

    render_dashboard(evidence_root, out_path) -> Path

Everything is read through the analyst views of :mod:`qfs_assets.analytics.query` (the same SQL an
analyst can run with ``qfs-assure query``). The page has inline CSS, inline SVG charts generated
here (:mod:`.svg`) and a few lines of inline JavaScript that only mark the page as rendered
(``<html data-rendered="true">``, and ``data-marks``/``data-width`` on every chart) so a headless
browser test can check the charts were laid out. No JavaScript library, no font, no image and no
URL is loaded: a Content-Security-Policy forbids any network access, so the page works offline
and from ``file://``.

Panels (``<section id=... data-testid=...>``): verdict timeline, storage health, AEGIS
verification, economic flow, dual-write consistency, replay status, node failure responses. An
activity without evidence yet shows a "no evidence yet" panel. Money is shown as exact integers
of minor units with thousands separators (1 ATR = 10^8 atr), with the exact decimal ATR beside
it; charts plot floats of ATR (only the picture).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import duckdb

from qfs_assets.analytics.query import Catalog, load_catalog, QueryError, register_catalog
from qfs_assets.dashboard import svg
from qfs_assets.dashboard.svg import BLUE, GREEN, GREY, ORANGE, PURPLE, RED, TEAL, Cell, Series
from qfs_assets.evidence.store import _atomic_write_bytes
from qfs_assets.readers.base import connect

ATR_UNIT = 10**8
NOD_UNIT = 10**8

#: (id, title) of every panel, in page order.
PANELS: tuple[tuple[str, str], ...] = (
    ("panel-verdicts", "Verdict timeline"),
    ("panel-storage-health", "Storage health"),
    ("panel-aegis", "AEGIS verification status"),
    ("panel-economics", "Economic flow"),
    ("panel-dual-write", "Dual-write consistency"),
    ("panel-replay", "Replay status"),
    ("panel-node-failures", "Node failure responses"),
)
CADENCE = {
    "node_health_assessment": "daily",
    "economics_sanity_check": "weekly",
    "dual_write_verification": "monthly",
    "storage_replay_drill": "quarterly",
    "node_failure_response": "per failure",
}
DW_CATEGORIES = ("missing_in_storage", "missing_in_sor", "version_mismatch", "content_mismatch")
DW_COLORS = (RED, ORANGE, PURPLE, BLUE)
MAX_NODE_BARS = 120
MAX_TABLE_ROWS = 50


# ---- formatting -------------------------------------------------------------------------------------

def esc(v: object) -> str:
    return escape("" if v is None else str(v), quote=True)


def fmt_int(v: Any) -> str:
    return "–" if v is None else f"{int(v):,}"


def exact_units(v: int, unit: int = ATR_UNIT) -> str:
    """An integer of minor units as an exact decimal of whole tokens: 27401926501 -> '274.01926501'."""
    v = int(v)
    q, r = divmod(abs(v), unit)
    digits = len(str(unit)) - 1
    frac = f"{r:0{digits}d}".rstrip("0")
    return f"{'-' if v < 0 else ''}{q:,}" + (f".{frac}" if frac else "")


class Raw(str):
    """A ready HTML table cell (``<td>...</td>``); any other cell value is text and gets escaped."""


def badge_cell(passed: bool | None, failed: Sequence[str] | None = None) -> Raw:
    return Raw(f"<td>{verdict_badge(passed, failed)}</td>")


def money_cell(v: Any, unit_name: str = "atr", token: str = "ATR") -> Raw:
    """A table cell: the integer minor units, exact, with the token amount beside it."""
    if v is None:
        return Raw('<td class="num">–</td>')
    cls = "num neg" if int(v) < 0 else "num"
    return Raw(f'<td class="{cls}" title="{esc(exact_units(v))} {esc(token)}">{int(v):,}'
               f'<span class="unit"> {esc(unit_name)}</span><div class="sub">{esc(exact_units(v))} {esc(token)}</div></td>')


def fmt_ratio(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{float(v) * 100:.{digits}f}%"


def fmt_float(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{float(v):.{digits}f}"


def fmt_bytes(v: Any) -> str:
    if v is None:
        return "–"
    v = int(v)
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(v) >= size:
            return f"{v / size:.2f} {unit}"
    return f"{v} B"


def fmt_ts(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat(sep=" ", timespec="minutes") + " UTC"
    return str(v)


def atr_float(v: Any) -> float | None:
    return None if v is None else int(v) / ATR_UNIT


def verdict_badge(passed: bool | None, failed: Sequence[str] | None = None) -> str:
    if passed is None:
        return '<span class="badge none">no evidence</span>'
    if passed:
        return '<span class="badge pass">PASSED</span>'
    detail = f': {", ".join(failed)}' if failed else ""
    return f'<span class="badge fail">FAILED{esc(detail)}</span>'


def kpis(items: Iterable[tuple[str, str, str]]) -> str:
    """KPI cards: (label, value html, css class)."""
    cards = "".join(f'<div class="kpi {cls}"><div class="kpi-label">{esc(label)}</div>'
                    f'<div class="kpi-value">{value}</div></div>' for label, value, cls in items)
    return f'<div class="kpis">{cards}</div>'


def table(tid: str, headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = (),
          caption: str = "", total: int | None = None) -> str:
    """An HTML table; ``rows`` hold :class:`Raw` HTML cells or values shown as text (escaped)."""
    head = "".join(f'<th class="{"num" if i in numeric else ""}">{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            if isinstance(c, Raw):
                cells.append(c)
            else:
                cells.append(f'<td class="{"num" if i in numeric else ""}">{esc(c)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if total is not None and total > len(rows):
        more = f'<p class="muted">{len(rows)} of {total:,} rows shown; query the view for all of them.</p>'
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table id="{esc(tid)}" data-testid="{esc(tid)}">{cap}<thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>{more}')


def figure(svg_html: str, note: str = "") -> str:
    return f'<figure class="chart-box">{svg_html}{f"<figcaption>{note}</figcaption>" if note else ""}</figure>'


def empty_chart(cid: str, title: str, x_label: str, y_label: str, message: str) -> str:
    """A chart frame with a message instead of marks (kept so every chart id is always present)."""
    w, h = svg.W, 120
    return "\n".join([
        f'<svg class="chart empty" id="{esc(cid)}" data-testid="{esc(cid)}" data-empty="true" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<rect class="bg" x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>',
        f'<text class="chart-title" x="{svg.M_LEFT}" y="20">{esc(title)}</text>',
        f'<text class="muted" x="{w / 2}" y="66" text-anchor="middle">{esc(message)}</text>',
        f'<text class="axis-label x-label" x="{w / 2}" y="{h - 8}" text-anchor="middle">{esc(x_label)}</text>',
        f'<text class="axis-label y-label" x="14" y="66" text-anchor="middle" transform="rotate(-90 14 66)">{esc(y_label)}</text>',
        "</svg>",
    ])


# ---- data access --------------------------------------------------------------------------------------

@dataclass
class Ctx:
    con: duckdb.DuckDBPyConnection
    views: dict[str, list[str]]
    cat: Catalog

    def has(self, view: str) -> bool:
        return view in self.views

    def cols(self, view: str) -> list[str]:
        return self.views.get(view, [])

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, list(params or []))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def select(self, view: str, wanted: Sequence[str], order: str = "partition", where: str = "",
               params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """``wanted`` columns of ``view`` (absent ones come back as None), ordered."""
        have = set(self.cols(view))
        exprs = [f'"{c}"' if c in have else f'NULL AS "{c}"' for c in wanted]
        return self.rows(f'SELECT {", ".join(exprs)} FROM "{view}" {where} ORDER BY {order}', params)

    def docs(self, activity: str) -> list[dict]:
        return [v.doc for v in self.cat.verdicts.get(activity, [])]

    def latest_doc(self, activity: str) -> dict | None:
        docs = self.docs(activity)
        return docs[-1] if docs else None


def criterion_threshold(doc: dict | None, name: str, key: str | None = None, default: float | None = None) -> float | None:
    """The threshold an activity recorded for a criterion (the evidence records the value used)."""
    for c in (doc or {}).get("criteria") or []:
        if c.get("name") == name:
            t = c.get("threshold")
            if isinstance(t, dict):
                t = t.get(key) if key else None
            if isinstance(t, (int, float)) and not isinstance(t, bool):
                return float(t)
    return default


def find_key(doc: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a JSON document (depth first), else None."""
    if isinstance(doc, dict):
        if key in doc and doc[key] is not None:
            return doc[key]
        for v in doc.values():
            found = find_key(v, key)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for v in doc:
            found = find_key(v, key)
            if found is not None:
                return found
    return None


# ---- panels --------------------------------------------------------------------------------------------

@dataclass
class Panel:
    pid: str
    title: str
    body: str
    has_data: bool
    subtitle: str = ""
    wide: bool = False
    sources: Sequence[str] = ()

    def html(self) -> str:
        state = "data" if self.has_data else "no-evidence"
        src = ""
        if self.sources:
            src = ('<p class="sources">Views: ' + ", ".join(f"<code>{esc(s)}</code>" for s in self.sources)
                   + ' — <code>qfs-assure query "SELECT * FROM …"</code></p>')
        return (f'<section class="panel{" wide" if self.wide else ""}{"" if self.has_data else " empty"}" '
                f'id="{esc(self.pid)}" data-testid="{esc(self.pid)}" data-state="{state}">'
                f'<h2>{esc(self.title)}</h2>{f"<p class=subtitle>{self.subtitle}</p>" if self.subtitle else ""}'
                f"{self.body}{src}</section>")


def no_evidence(pid: str, title: str, activity: str, root: Path, metrics: Sequence[str], charts: Sequence[tuple[str, str]]) -> Panel:
    keys = ", ".join(f"<code>{esc(m)}</code>" for m in metrics)
    frames = "".join(figure(empty_chart(cid, t, "", "", "no evidence yet")) for cid, t in charts)
    body = (f'<div class="no-evidence" data-testid="{esc(pid)}-no-evidence"><strong>No evidence yet.</strong> '
            f'<code>{esc(activity)}</code> has written no verdict under <code>{esc(root / activity)}/</code>. '
            f"When it does, this panel shows its metrics ({keys}).</div>"
            f'<div class="charts">{frames}</div>')
    return Panel(pid, title, body, False, sources=(f"{activity}_verdicts",))


def panel_verdicts(ctx: Ctx) -> Panel:
    pid, title = PANELS[0]
    rows = ctx.select("evidence_verdicts", ["activity", "partition", "evidence_key", "window_start", "window_end",
                                            "passed", "failed_criteria", "evidence_file"],
                      order="activity, window_start, evidence_key")
    by_activity: dict[str, list[dict]] = {}
    for r in rows:
        by_activity.setdefault(r["activity"], []).append(r)
    activities = list(CADENCE) + sorted(a for a in by_activity if a not in CADENCE)
    grid_rows = []
    summary = []
    for a in activities:
        rs = by_activity.get(a, [])
        cells = []
        for r in rs:
            start, end = r["window_start"], r["window_end"]
            if start is None and r["partition"] is not None:
                p = r["partition"]
                start = dt.datetime(p.year, p.month, p.day, tzinfo=dt.timezone.utc)
            if start is None:
                continue
            end = end or start + dt.timedelta(days=1)
            failed = r["failed_criteria"] or []
            key = r["evidence_key"] if r["evidence_key"] != str(r["partition"]) else ""
            tip = (f"{a} {r['partition']}{' ' + key if key else ''}: {'PASSED' if r['passed'] else 'FAILED'}"
                   + (f" ({', '.join(failed)})" if failed else "") + f" — {r['evidence_file']}")
            cells.append(Cell(start, end, bool(r["passed"]), tip))
        label = f"{a} ({CADENCE.get(a, 'other')})"
        grid_rows.append((label, cells))
        latest = rs[-1] if rs else None
        npass = sum(1 for r in rs if r["passed"])
        summary.append([
            Raw(f'<td><code>{esc(a)}</code></td>'), CADENCE.get(a, "–"), fmt_int(len(rs)), fmt_int(npass), fmt_int(len(rs) - npass),
            str(latest["evidence_key"]) if latest else "–",
            badge_cell(latest["passed"] if latest else None, (latest or {}).get("failed_criteria")),
        ])
    chart = svg.timeline_grid("chart-verdict-timeline", "Verdicts by activity and partition window",
                              "partition window (UTC)", "activity", grid_rows)
    total = len(rows)
    failed = sum(1 for r in rows if not r["passed"])
    body = (kpis([("verdicts", fmt_int(total), ""), ("passed", fmt_int(total - failed), "good"),
                  ("failed", fmt_int(failed), "bad" if failed else "good"),
                  ("activities with evidence", f"{len(by_activity)} / {len(CADENCE)}", "")])
            + figure(chart, "Each cell is one partition's JSON verdict, drawn over its window; hover for the failed criteria.")
            + table("table-verdict-summary", ["activity", "cadence", "partitions", "passed", "failed", "latest partition",
                                              "latest verdict"], summary, numeric=(2, 3, 4)))
    return Panel(pid, title, body, bool(rows), wide=True, sources=("evidence_verdicts", "evidence_criteria"))


def panel_storage_health(ctx: Ctx) -> Panel:
    pid, title = PANELS[1]
    view = "node_health_assessment_verdicts"
    rows = ctx.select(view, ["partition", "in_service_nodes", "verified_nodes", "verified_ratio", "proof_challenges",
                             "proof_success_rate", "utilization_cv", "utilization_max_over_mean", "objects_degraded",
                             "objects_unrecoverable", "passed", "failed_criteria"]) if ctx.has(view) else []
    charts = [("chart-in-service-nodes", "In-service and verified nodes per day"),
              ("chart-verified-ratio", "Verified ratio per day"),
              ("chart-proof-success", "Proof success rate per day"),
              ("chart-utilisation-latest", "Utilisation per node (latest day)"),
              ("chart-utilisation-cv", "Utilisation coefficient of variation per day")]
    if not rows:
        return no_evidence(pid, title, "node_health_assessment", ctx.cat.root,
                           ["in_service_nodes", "verified_ratio", "proof_success_rate", "utilization_cv"], charts)
    doc = ctx.latest_doc("node_health_assessment")
    t_ratio = criterion_threshold(doc, "nodes_verified", default=0.95)
    t_proof = criterion_threshold(doc, "proof_success", default=0.99)
    t_cv = criterion_threshold(doc, "shard_balance", "utilization_cv", 0.25)
    t_mom = criterion_threshold(doc, "shard_balance", "utilization_max_over_mean", 1.5)
    days = [str(r["partition"]) for r in rows]
    c1 = svg.line_chart(charts[0][0], charts[0][1], "day", "nodes", days,
                        [Series("in service", [r["in_service_nodes"] for r in rows], BLUE),
                         Series("verified", [r["verified_nodes"] for r in rows], GREEN)], y_min=0, integer=True)
    c2 = svg.line_chart(charts[1][0], charts[1][1], "day", "verified / in-service nodes", days,
                        [Series("verified ratio", [r["verified_ratio"] for r in rows], BLUE,
                                [f"{d}: {fmt_ratio(r['verified_ratio'])} ({fmt_int(r['verified_nodes'])} of "
                                 f"{fmt_int(r['in_service_nodes'])})" for d, r in zip(days, rows)])],
                        y_max=1.0, threshold=t_ratio, threshold_label="must be >", y_fmt=svg.fmt_pct,
                        bad=lambda v: t_ratio is not None and v <= t_ratio)
    c3 = svg.line_chart(charts[2][0], charts[2][1], "day", "passed / issued challenges", days,
                        [Series("proof success", [r["proof_success_rate"] for r in rows], TEAL,
                                [f"{d}: {fmt_ratio(r['proof_success_rate'])} of {fmt_int(r['proof_challenges'])} challenges"
                                 for d, r in zip(days, rows)])],
                        y_max=1.0, threshold=t_proof, threshold_label="must be >", y_fmt=svg.fmt_pct,
                        bad=lambda v: t_proof is not None and v <= t_proof)
    c5 = svg.line_chart(charts[4][0], charts[4][1], "day", "CV of utilisation", days,
                        [Series("CV", [r["utilization_cv"] for r in rows], PURPLE,
                                [f"{d}: CV {fmt_float(r['utilization_cv'])}, max/mean {fmt_float(r['utilization_max_over_mean'])}"
                                 for d, r in zip(days, rows)])],
                        y_min=0, threshold=t_cv, threshold_label="max", y_fmt=lambda v: f"{v:.3g}",
                        bad=lambda v: t_cv is not None and v > t_cv)
    c4, dist_note = utilisation_latest(ctx, charts[3], t_mom)
    last = rows[-1]
    body = (kpis([
        ("latest day", esc(last["partition"]), ""),
        ("in-service nodes", fmt_int(last["in_service_nodes"]), ""),
        ("verified ratio", fmt_ratio(last["verified_ratio"]), "bad" if last["verified_ratio"] is not None and t_ratio is not None and last["verified_ratio"] <= t_ratio else "good"),
        ("proof success", fmt_ratio(last["proof_success_rate"]), "bad" if last["proof_success_rate"] is not None and t_proof is not None and last["proof_success_rate"] <= t_proof else "good"),
        ("utilisation CV", fmt_float(last["utilization_cv"]), ""),
        ("degraded / unrecoverable objects", f'{fmt_int(last["objects_degraded"])} / {fmt_int(last["objects_unrecoverable"])}',
         "bad" if last["objects_unrecoverable"] else ""),
        ("verdict", verdict_badge(last["passed"], last["failed_criteria"]), ""),
    ]) + '<div class="charts">' + "".join(figure(c) for c in (c1, c2, c3)) + figure(c4, dist_note) + figure(c5) + "</div>")
    return Panel(pid, title, body, True, subtitle="node_health_assessment, daily",
                 sources=(view, "node_health_distribution"))


def utilisation_latest(ctx: Ctx, chart: tuple[str, str], t_mom: float | None) -> tuple[str, str]:
    cid, title = chart
    if not ctx.has("node_health_distribution"):
        return empty_chart(cid, title, "node", "utilisation", "no node_health_distribution table yet"), ""
    day = ctx.rows("SELECT max(partition_key) AS d FROM node_health_distribution")[0]["d"]
    rows = ctx.rows("SELECT node_id, utilization, shard_bytes, capacity_bytes, shard_count FROM node_health_distribution "
                    "WHERE partition_key = ? AND utilization IS NOT NULL ORDER BY node_id", [day])
    if not rows:
        return empty_chart(cid, title, "node", "utilisation", f"no utilisation on {day}"), ""
    utils = [float(r["utilization"]) for r in rows]
    mean = sum(utils) / len(utils)
    limit = mean * t_mom if t_mom is not None else None
    title = f"{title}: {day}"
    if len(rows) <= MAX_NODE_BARS:
        colors = [RED if limit is not None and u > limit else BLUE for u in utils]
        tips = [f"{r['node_id']}: {u * 100:.2f}% ({fmt_bytes(r['shard_bytes'])} of {fmt_bytes(r['capacity_bytes'])}, "
                f"{fmt_int(r['shard_count'])} shards)" for r, u in zip(rows, utils)]
        c = svg.bar_chart(cid, title, "node", "shard bytes / capacity", [r["node_id"] for r in rows],
                          [Series("", utils, BLUE, tips)], bar_colors=colors, y_fmt=svg.fmt_pct, mean_line=mean,
                          mean_label="mean", max_labels=12)
        note = (f"{len(rows)} in-service nodes; max/mean {max(utils) / mean:.3f}" if mean else "")
        if limit is not None:
            note += f" (limit {t_mom:g}; bars above {limit * 100:.1f}% would be red)."
        return c, esc(note)
    # too many nodes for one bar each: a histogram of utilisation
    bins = 20
    hi = max(utils) or 1.0
    width = hi / bins
    counts = [0] * bins
    for u in utils:
        counts[min(int(u / width), bins - 1)] += 1
    labels = [f"{i * width * 100:.0f}–{(i + 1) * width * 100:.0f}%" for i in range(bins)]
    colors = [RED if limit is not None and (i * width) > limit else BLUE for i in range(bins)]
    c = svg.bar_chart(cid, title, "utilisation (shard bytes / capacity)", "nodes", labels,
                      [Series("", [float(x) for x in counts], BLUE)], bar_colors=colors, max_labels=10, integer=True)
    return c, esc(f"{len(rows):,} in-service nodes (histogram: more than {MAX_NODE_BARS} nodes); mean {mean * 100:.2f}%, "
                  f"max/mean {max(utils) / mean:.3f}.")


def panel_aegis(ctx: Ctx) -> Panel:
    pid, title = PANELS[2]
    charts = [("chart-aegis-status", "Nodes by AEGIS status (latest day)"),
              ("chart-aegis-reasons", "Reasons nodes are not verified (latest day)")]
    if not ctx.has("node_health_aegis"):
        return no_evidence(pid, title, "node_health_assessment", ctx.cat.root, ["verified_nodes", "unverified_node_ids"], charts)
    day = ctx.rows("SELECT max(partition_key) AS d FROM node_health_aegis")[0]["d"]
    counts = ctx.rows("SELECT count(*) FILTER (WHERE in_service AND verified) AS verified, "
                      "count(*) FILTER (WHERE in_service AND NOT verified) AS unverified, "
                      "count(*) FILTER (WHERE NOT in_service) AS not_in_service FROM node_health_aegis WHERE partition_key = ?",
                      [day])[0]
    c1 = svg.hbar_chart(charts[0][0], f"{charts[0][1]}: {day}", "nodes", "status",
                        ["verified", "unverified (in service)", "not in service"],
                        [float(counts["verified"]), float(counts["unverified"]), float(counts["not_in_service"])],
                        colors=[GREEN, RED, GREY])
    reasons = ctx.rows("SELECT trim(r) AS reason, count(*) AS n FROM (SELECT unnest(string_split(reasons, ', ')) AS r "
                       "FROM node_health_aegis WHERE partition_key = ? AND NOT verified) WHERE trim(r) <> '' "
                       "GROUP BY 1 ORDER BY n DESC, reason", [day])
    if reasons:
        c2 = svg.hbar_chart(charts[1][0], f"{charts[1][1]}: {day}", "nodes", "reason",
                            [r["reason"] for r in reasons], [float(r["n"]) for r in reasons],
                            colors=[GREY if r["reason"].startswith("not in service") else RED for r in reasons])
    else:
        c2 = empty_chart(charts[1][0], charts[1][1], "nodes", "reason", f"every node verified on {day}")
    total = ctx.rows("SELECT count(*) AS n FROM node_health_aegis WHERE partition_key = ? AND NOT verified", [day])[0]["n"]
    nodes = ctx.rows("SELECT node_id, region, status, in_service, challenges, passed, stake_nod, last_heartbeat, reasons "
                     "FROM node_health_aegis WHERE partition_key = ? AND NOT verified "
                     "ORDER BY in_service DESC, node_id LIMIT ?", [day, MAX_TABLE_ROWS])
    trows = [[r["node_id"], r["region"], r["status"], fmt_int(r["challenges"]), fmt_int(r["passed"]),
              fmt_ratio(r["passed"] / r["challenges"]) if r["challenges"] else "–",
              money_cell(r["stake_nod"], "nod", "NOD"), fmt_ts(r["last_heartbeat"]), r["reasons"]] for r in nodes]
    tbl = (table("table-aegis-unverified", ["node", "region", "status", "challenges", "passed", "pass rate", "stake",
                                            "last heartbeat", "reasons"], trows, numeric=(3, 4, 5, 6),
                 caption=f"Nodes not verified on {day}", total=total)
           if trows else f'<p class="muted">Every node was verified on {esc(day)}.</p>')
    n_in = counts["verified"] + counts["unverified"]
    body = (kpis([("day", esc(day), ""), ("verified", fmt_int(counts["verified"]), "good"),
                  ("unverified (in service)", fmt_int(counts["unverified"]), "bad" if counts["unverified"] else "good"),
                  ("not in service", fmt_int(counts["not_in_service"]), ""),
                  ("verified ratio", fmt_ratio(counts["verified"] / n_in) if n_in else "–", "")])
            + '<div class="charts">' + figure(c1) + figure(c2) + "</div>" + tbl)
    return Panel(pid, title, body, True, subtitle="A node is verified when in service, heartbeat ≤ 1 h old, stake ≥ "
                 "1,000 NOD, used ≤ capacity and ≥ 95% of its challenges passed.", sources=("node_health_aegis",))


def panel_economics(ctx: Ctx) -> Panel:
    pid, title = PANELS[3]
    view = "economics_sanity_check_verdicts"
    charts = [("chart-econ-weekly", "Fees vs rewards per week"),
              ("chart-econ-margin", "Conservation margin per week"),
              ("chart-econ-daily", "Daily flow of the latest week")]
    rows = ctx.select(view, ["partition", "fees_atr", "rewards_nod", "rewards_in_atr", "buffer_atr", "margin_atr",
                             "rewards_to_failed_nodes", "ledger_vs_log_atr", "passed", "failed_criteria"]) if ctx.has(view) else []
    if not rows:
        return no_evidence(pid, title, "economics_sanity_check", ctx.cat.root,
                           ["fees_atr", "rewards_in_atr", "buffer_atr", "margin_atr"], charts)
    weeks = [str(r["partition"]) for r in rows]
    c1 = svg.bar_chart(charts[0][0], charts[0][1], "week (Monday)", "ATR", weeks, [
        Series("fees (ATR)", [atr_float(r["fees_atr"]) for r in rows], BLUE,
               [f"week {w}: fees {exact_units(r['fees_atr'])} ATR" if r["fees_atr"] is not None else w for w, r in zip(weeks, rows)]),
        Series("rewards in ATR", [atr_float(r["rewards_in_atr"]) for r in rows], ORANGE,
               [f"week {w}: rewards {exact_units(r['rewards_in_atr'])} ATR ({fmt_int(r['rewards_nod'])} nod)"
                if r["rewards_in_atr"] is not None else w for w, r in zip(weeks, rows)]),
    ])
    margins = [atr_float(r["margin_atr"]) for r in rows]
    c2 = svg.bar_chart(charts[1][0], charts[1][1], "week (Monday)", "margin = fees − rewards − buffer (ATR)", weeks,
                       [Series("", margins, GREEN,
                               [f"week {w}: margin {exact_units(r['margin_atr'])} ATR (buffer {exact_units(r['buffer_atr'])})"
                                if r["margin_atr"] is not None else w for w, r in zip(weeks, rows)])],
                       bar_colors=[RED if m is not None and m < 0 else GREEN for m in margins])
    c3 = daily_flow(ctx, charts[2])
    trows = [[str(r["partition"]), money_cell(r["fees_atr"]), money_cell(r["rewards_nod"], "nod", "NOD"),
              money_cell(r["rewards_in_atr"]), money_cell(r["buffer_atr"]), money_cell(r["margin_atr"]),
              badge_cell(r["passed"], r["failed_criteria"])] for r in reversed(rows)]
    tbl = table("table-econ-weekly", ["week", "fees", "rewards", "rewards in ATR", "buffer", "margin", "verdict"],
                trows, numeric=(1, 2, 3, 4, 5), caption="Weekly ledgers (exact integer minor units; 1 ATR = 10^8 atr)")
    findings = ""
    if ctx.has("economics_findings"):
        total = ctx.rows("SELECT count(*) AS n FROM economics_findings")[0]["n"]
        frows = ctx.rows("SELECT partition_key, kind, ledger, id, ts, party_id, amount, unit, detail FROM economics_findings "
                         "ORDER BY partition_key DESC, ts DESC LIMIT ?", [MAX_TABLE_ROWS])
        if frows:
            findings = table("table-econ-findings", ["week", "finding", "ledger", "id", "ts", "party", "amount", "detail"],
                             [[str(f["partition_key"]), f["kind"], f["ledger"], f["id"], fmt_ts(f["ts"]), f["party_id"],
                               money_cell(f["amount"], f["unit"] or "", (f["unit"] or "").upper()), f["detail"]]
                              for f in frows], numeric=(6,), caption="Ledger findings", total=total)
    last = rows[-1]
    body = (kpis([("latest week", esc(last["partition"]), ""),
                  ("fees", f'{exact_units(last["fees_atr"])} ATR' if last["fees_atr"] is not None else "–", ""),
                  ("rewards in ATR", f'{exact_units(last["rewards_in_atr"])} ATR' if last["rewards_in_atr"] is not None else "–", ""),
                  ("margin", f'{exact_units(last["margin_atr"])} ATR' if last["margin_atr"] is not None else "–",
                   "bad" if (last["margin_atr"] or 0) < 0 else "good"),
                  ("weeks failing conservation", fmt_int(sum(1 for r in rows if "conservation" in (r["failed_criteria"] or []))), ""),
                  ("verdict", verdict_badge(last["passed"], last["failed_criteria"]), "")])
            + '<div class="charts">' + figure(c1) + figure(c2, "Red bars: the week failed conservation "
                                                             "(fees < rewards in ATR + buffer).") + figure(c3) + "</div>"
            + tbl + findings)
    return Panel(pid, title, body, True, subtitle="economics_sanity_check, weekly (Monday to Monday)",
                 sources=(view, "economics_daily_flow", "economics_findings"))


def daily_flow(ctx: Ctx, chart: tuple[str, str]) -> str:
    cid, title = chart
    if not ctx.has("economics_daily_flow"):
        return empty_chart(cid, title, "day", "ATR", "no economics_daily_flow table yet")
    week = ctx.rows("SELECT max(partition_key) AS w FROM economics_daily_flow")[0]["w"]
    rows = ctx.rows("SELECT day, fees_atr, rewards_in_atr, margin_atr FROM economics_daily_flow WHERE partition_key = ? "
                    "ORDER BY day", [week])
    if not rows:
        return empty_chart(cid, title, "day", "ATR", f"no daily rows for the week of {week}")
    days = [str(r["day"]) for r in rows]
    return svg.bar_chart(cid, f"{title} ({week})", "day", "ATR", days, [
        Series("fees", [atr_float(r["fees_atr"]) for r in rows], BLUE,
               [f"{d}: fees {exact_units(r['fees_atr'])} ATR" for d, r in zip(days, rows)]),
        Series("rewards in ATR", [atr_float(r["rewards_in_atr"]) for r in rows], ORANGE,
               [f"{d}: rewards {exact_units(r['rewards_in_atr'])} ATR" for d, r in zip(days, rows)]),
        Series("margin", [atr_float(r["margin_atr"]) for r in rows], TEAL,
               [f"{d}: margin {exact_units(r['margin_atr'])} ATR" for d, r in zip(days, rows)]),
    ])


def panel_dual_write(ctx: Ctx) -> Panel:
    pid, title = PANELS[4]
    view = "dual_write_verification_verdicts"
    charts = [("chart-dual-write-categories", "Inconsistencies per month by category"),
              ("chart-dual-write-open", "Open (unresolved) diffs by category")]
    rows = ctx.select(view, ["partition", "sor_objects", "storage_objects", "in_flight", *DW_CATEGORIES, "inconsistencies",
                             "sampled_objects", "sample_failures", "unresolved_over_24h", "passed", "failed_criteria"]) \
        if ctx.has(view) else []
    if not rows:
        return no_evidence(pid, title, "dual_write_verification", ctx.cat.root,
                           ["inconsistencies", *DW_CATEGORIES, "unresolved_over_24h"], charts)
    months = [str(r["partition"])[:7] for r in rows]
    c1 = svg.bar_chart(charts[0][0], charts[0][1], "month", "inconsistent objects", months,
                       [Series(cat.replace("_", " "), [float(r[cat] or 0) for r in rows], color,
                               [f"{m} {cat}: {fmt_int(r[cat])}" for m, r in zip(months, rows)])
                        for cat, color in zip(DW_CATEGORIES, DW_COLORS)], stacked=True, integer=True)
    c2, open_table = open_diffs(ctx, charts[1])
    last = rows[-1]
    trows = [[m, fmt_int(r["sor_objects"]), fmt_int(r["storage_objects"]), fmt_int(r["in_flight"])]
             + [fmt_int(r[c]) for c in DW_CATEGORIES]
             + [fmt_int(r["sample_failures"]), fmt_int(r["unresolved_over_24h"]),
                badge_cell(r["passed"], r["failed_criteria"])] for m, r in zip(months, rows)][::-1]
    tbl = table("table-dual-write-monthly", ["month", "SoR objects", "storage objects", "in flight", *DW_CATEGORIES,
                                             "sample failures", "unresolved > 24 h", "verdict"],
                trows, numeric=tuple(range(1, 10)))
    body = (kpis([("latest month", esc(months[-1]), ""),
                  ("inconsistencies", fmt_int(last["inconsistencies"]), "bad" if last["inconsistencies"] else "good"),
                  ("sample failures", f'{fmt_int(last["sample_failures"])} of {fmt_int(last["sampled_objects"])}',
                   "bad" if last["sample_failures"] else "good"),
                  ("unresolved > 24 h", fmt_int(last["unresolved_over_24h"]), "bad" if last["unresolved_over_24h"] else "good"),
                  ("verdict", verdict_badge(last["passed"], last["failed_criteria"]), "")])
            + '<div class="charts">' + figure(c1) + figure(c2) + "</div>" + tbl + open_table)
    sources = [view] + [t for t in ctx.cat.tables if t.startswith("dual_write_")]
    return Panel(pid, title, body, True, subtitle="dual_write_verification, monthly: system of record vs storage manifest",
                 sources=tuple(sources))


def open_diffs(ctx: Ctx, chart: tuple[str, str]) -> tuple[str, str]:
    """Open diffs by category: from the diff ledger when present, else the latest inconsistencies table."""
    cid, title = chart
    ledger = next((t for t in ctx.cat.tables if t.startswith("dual_write_diff") and
                   {"category", "resolved_at", "first_seen"} <= set(ctx.cols(t))), None)
    if ledger is not None:
        src, where, params = ledger, "WHERE resolved_at IS NULL", []
        note = f"from the diff ledger ({ledger}), episodes with no resolution yet"
    elif ctx.has("dual_write_inconsistencies") and "category" in ctx.cols("dual_write_inconsistencies"):
        key = ctx.rows("SELECT max(partition_key) AS k FROM dual_write_inconsistencies")[0]["k"]
        src, where, params = "dual_write_inconsistencies", "WHERE partition_key = ?", [key]
        note = f"inconsistencies of the latest verification ({key})"
    else:
        return empty_chart(cid, title, "diffs", "category", "no diff ledger or inconsistencies table yet"), ""
    counts = ctx.rows(f'SELECT category, count(*) AS n FROM "{src}" {where} GROUP BY 1 ORDER BY n DESC, category', params)
    if not counts:
        return empty_chart(cid, title, "diffs", "category", "no open diff"), f'<p class="muted">No open diff ({esc(note)}).</p>'
    color = dict(zip(DW_CATEGORIES, DW_COLORS))
    c = svg.hbar_chart(cid, title, "open diffs", "category", [r["category"] for r in counts], [float(r["n"]) for r in counts],
                       colors=[color.get(r["category"], GREY) for r in counts])
    cols = ctx.cols(src)
    wanted = [c for c in ("object_id", "category", "differing_fields", "first_seen", "last_seen") if c in cols]
    total = sum(r["n"] for r in counts)
    order = "first_seen, object_id" if "first_seen" in cols else "object_id"
    detail = ctx.rows(f'SELECT {", ".join(wanted)} FROM "{src}" {where} ORDER BY {order} LIMIT ?', params + [MAX_TABLE_ROWS])
    tbl = table("table-dual-write-open", wanted, [[fmt_ts(r[c]) if isinstance(r[c], dt.datetime) else r[c] for c in wanted]
                                                  for r in detail], caption=f"Open diffs, oldest first ({note})", total=total)
    return c, tbl


def replay_rate(doc: dict, events: Any) -> float | None:
    """events/s of a drill: a recorded ``events_per_second``, else events over a recorded duration."""
    v = find_key(doc.get("metrics") or {}, "events_per_second") or find_key(doc, "events_per_second")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    for key in ("replay_seconds", "elapsed_seconds", "duration_seconds", "seconds"):
        s = find_key(doc, key)
        if isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 and events:
            return float(events) / float(s)
    return None


def panel_replay(ctx: Ctx) -> Panel:
    pid, title = PANELS[5]
    view = "storage_replay_drill_verdicts"
    charts = [("chart-replay-events", "Events replayed per drill"),
              ("chart-replay-rate", "Replay throughput per drill"),
              ("chart-replay-checkpoints", "Checkpoints matched / compared per drill")]
    rows = ctx.select(view, ["partition", "evidence_key", "events_replayed", "chain_intact", "first_broken_seq",
                             "invalid_events", "checkpoints_compared", "checkpoints_matched", "first_mismatch_seq",
                             "mismatched_components", "final_state_root", "passed", "failed_criteria", "window_end",
                             "evidence_file"]) if ctx.has(view) else []
    if not rows:
        return no_evidence(pid, title, "storage_replay_drill", ctx.cat.root,
                           ["events_replayed", "checkpoints_compared", "checkpoints_matched", "chain_intact"], charts)
    docs = {d.get("partition"): d for d in ctx.docs("storage_replay_drill")}
    quarters = [quarter_label(r["partition"]) for r in rows]
    rates = [replay_rate(docs.get(str(r["partition"]), {}), r["events_replayed"]) for r in rows]
    c1 = svg.bar_chart(charts[0][0], charts[0][1], "drill (quarter)", "events replayed", quarters,
                       [Series("", [float(r["events_replayed"] or 0) for r in rows], BLUE,
                               [f"{q}: {fmt_int(r['events_replayed'])} events" for q, r in zip(quarters, rows)])],
                       bar_colors=[BLUE if r["passed"] else RED for r in rows], integer=True)
    if any(v is not None for v in rates):
        c2 = svg.bar_chart(charts[1][0], charts[1][1], "drill (quarter)", "events / s", quarters,
                           [Series("", rates, TEAL, [f"{q}: {v:,.0f} events/s" if v is not None else f"{q}: not recorded"
                                                     for q, v in zip(quarters, rates)])])
    else:
        c2 = empty_chart(charts[1][0], charts[1][1], "drill (quarter)", "events / s", "events/s not recorded in the evidence")
    c3 = svg.bar_chart(charts[2][0], charts[2][1], "drill (quarter)", "checkpoints", quarters, [
        Series("compared", [float(r["checkpoints_compared"] or 0) for r in rows], GREY),
        Series("matched", [float(r["checkpoints_matched"] or 0) for r in rows], GREEN),
    ], integer=True)
    ok = [r for r in rows if r["passed"]]
    if ok:
        last_ok = ok[-1]
        root = str(last_ok["final_state_root"] or "–")
        success = (f'<div class="callout good" data-testid="replay-last-success"><strong>Last successful drill:</strong> '
                   f'{esc(quarter_label(last_ok["partition"]))} ({esc(last_ok["partition"])}), '
                   f'{fmt_int(last_ok["events_replayed"])} events replayed, checkpoints '
                   f'{fmt_int(last_ok["checkpoints_matched"])}/{fmt_int(last_ok["checkpoints_compared"])} matched, final state root '
                   f'<code title="{esc(root)}">{esc(root[:16])}…</code> — <code>{esc(last_ok["evidence_file"])}</code></div>')
    else:
        success = ('<div class="callout bad" data-testid="replay-last-success"><strong>No successful drill yet.</strong></div>')
    trows = [[q, fmt_int(r["events_replayed"]), f"{v:,.0f}" if v is not None else "–",
              f'{fmt_int(r["checkpoints_matched"])} / {fmt_int(r["checkpoints_compared"])}',
              "yes" if r["chain_intact"] else ("no" if r["chain_intact"] is not None else "–"),
              fmt_int(r["invalid_events"]),
              ", ".join(r["mismatched_components"] or []) or "–",
              badge_cell(r["passed"], r["failed_criteria"])] for q, r, v in zip(quarters, rows, rates)][::-1]
    tbl = table("table-replay-drills", ["drill", "events", "events/s", "checkpoints matched", "chain intact",
                                        "invalid events", "mismatched components", "verdict"], trows, numeric=(1, 2, 5))
    last = rows[-1]
    body = (kpis([("latest drill", esc(quarters[-1]), ""), ("events replayed", fmt_int(last["events_replayed"]), ""),
                  ("checkpoints", f'{fmt_int(last["checkpoints_matched"])} / {fmt_int(last["checkpoints_compared"])}',
                   "good" if last["checkpoints_compared"] and last["checkpoints_matched"] == last["checkpoints_compared"] else "bad"),
                  ("verdict", verdict_badge(last["passed"], last["failed_criteria"]), "")])
            + success + '<div class="charts">' + figure(c1) + figure(c2) + figure(c3) + "</div>" + tbl)
    sources = [view] + [t for t in ctx.cat.tables if t.startswith("replay_")]
    return Panel(pid, title, body, True, subtitle="storage_replay_drill, quarterly: replay from genesis vs checkpoints",
                 sources=tuple(sources))


def quarter_label(p: Any) -> str:
    if isinstance(p, dt.date):
        return f"{p.year}-Q{(p.month - 1) // 3 + 1}"
    return str(p)


def panel_node_failures(ctx: Ctx) -> Panel:
    pid, title = PANELS[6]
    view = "node_failure_response_verdicts"
    wanted = ["evidence_key", "node_id", "failed_at", "failure_source", "shards_to_move", "shards_placed",
              "shards_unplaceable", "bytes_to_move", "receiving_nodes", "receivers_verified", "clawback_nod",
              "utilization_cv_before", "utilization_cv_after", "passed", "failed_criteria", "evidence_file"]
    rows = ctx.select(view, wanted, order="partition DESC, evidence_key DESC") if ctx.has(view) else []
    if not rows:
        body = ('<div class="no-evidence" data-testid="panel-node-failures-no-evidence"><strong>No node failure response '
                f'yet.</strong> A response is written under <code>{esc(ctx.cat.root / "node_failure_response")}/</code> '
                "each time the node failure sensor sees a node newly <code>failed</code>.</div>")
        return Panel(pid, title, body, False, sources=(view,))
    trows = [[r["evidence_key"], r["node_id"] or "–", fmt_ts(r["failed_at"]), r["failure_source"] or "–",
              fmt_int(r["shards_to_move"]), fmt_int(r["shards_placed"]), fmt_int(r["shards_unplaceable"]),
              Raw(f'<td class="num" title="{fmt_int(r["bytes_to_move"])} bytes">{esc(fmt_bytes(r["bytes_to_move"]))}</td>'),
              f'{fmt_int(r["receivers_verified"])} / {fmt_int(r["receiving_nodes"])}',
              money_cell(r["clawback_nod"], "nod", "NOD"),
              f'{fmt_float(r["utilization_cv_before"])} → {fmt_float(r["utilization_cv_after"])}',
              badge_cell(r["passed"], r["failed_criteria"])] for r in rows[:MAX_TABLE_ROWS]]
    tbl = table("table-node-failures", ["failure id", "node", "failed at", "source", "shards to move", "placed",
                                        "unplaceable", "bytes to move", "receivers verified", "claw-back proposed",
                                        "utilisation CV before → after", "verdict"], trows, numeric=(4, 5, 6, 7, 9),
                total=len(rows))
    failed = sum(1 for r in rows if not r["passed"])
    body = (kpis([("failures responded to", fmt_int(len(rows)), ""),
                  ("responses failing a criterion", fmt_int(failed), "bad" if failed else "good"),
                  ("shards to move (all failures)", fmt_int(sum(r["shards_to_move"] or 0 for r in rows)), ""),
                  ("unplaceable shards", fmt_int(sum(r["shards_unplaceable"] or 0 for r in rows)),
                   "bad" if any(r["shards_unplaceable"] for r in rows) else "good")]) + tbl)
    return Panel(pid, title, body, True, subtitle="node_failure_response, one per failure (newest first)",
                 sources=(view, "node_failure_plan", "node_failure_receivers", "node_failure_reward_adjustments"))


# ---- page -------------------------------------------------------------------------------------------------

CSS = """
:root{--fg:#1d2430;--muted:#5f6b7a;--bg:#eef1f5;--card:#fff;--line:#d9dee6;--good:#2e7d32;--bad:#c62828;}
*{box-sizing:border-box}
html{background:var(--bg)}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;color:var(--fg)}
header{background:#18263b;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px;font-weight:600}
header .meta{color:#c4cedb;font-size:13px}
header .meta code{color:#fff}
nav{display:flex;flex-wrap:wrap;gap:8px;margin-top:10px}
nav a{color:#fff;text-decoration:none;font-size:13px;border:1px solid #41536d;border-radius:14px;padding:3px 10px}
nav a.fail{border-color:#ef9a9a;background:#5a1f24}
nav a.none{color:#9fb0c5}
main{display:flex;flex-direction:column;gap:18px;padding:18px 28px 40px;max-width:1720px;margin:0 auto}
.panel{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;min-width:0}
.panel.wide{grid-column:1/-1}
.panel.empty{background:#fafbfc}
.panel h2{margin:0 0 2px;font-size:18px}
.subtitle{margin:0 0 10px;color:var(--muted);font-size:13px}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0 12px}
.kpi{border:1px solid var(--line);border-radius:8px;padding:6px 12px;min-width:120px;background:#fbfcfd}
.kpi.good{border-left:4px solid var(--good)}
.kpi.bad{border-left:4px solid var(--bad);background:#fff6f6}
.kpi-label{font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.kpi-value{font-size:17px;font-weight:600;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px}
figure.chart-box{margin:0;border:1px solid var(--line);border-radius:8px;padding:6px;background:#fff;min-width:0}
figure.chart-box figcaption{color:var(--muted);font-size:12px;padding:2px 6px 4px}
svg.chart{width:100%;height:auto;display:block}
svg.chart text{font-family:inherit;fill:#2b3440}
svg.chart .chart-title{font-size:15px;font-weight:600}
svg.chart .axis-label{font-size:13px;fill:#4a5563}
svg.chart .tick,svg.chart .legend,svg.chart .value{font-size:12px;fill:#4a5563}
svg.chart .row-label{font-size:12px}
svg.chart .muted{fill:#8a94a3;font-size:13px}
svg.chart .grid{stroke:#e6e9ee;stroke-width:1}
svg.chart .axis,svg.chart .tick-mark{stroke:#7d8794;stroke-width:1}
svg.chart .axis.zero{stroke:#333}
svg.chart rect.bar:hover,svg.chart rect.cell:hover{opacity:.75}
.table-wrap{overflow-x:auto;margin-top:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
caption{text-align:left;font-weight:600;padding:4px 0 6px}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f9;font-weight:600;white-space:nowrap}
td:first-child{white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.neg{color:var(--bad)}
td .sub{font-size:11px;color:var(--muted)}
td .unit{font-size:11px;color:var(--muted)}
.badge{display:inline-block;border-radius:4px;padding:1px 7px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.badge.pass{background:var(--good)}
.badge.fail{background:var(--bad);white-space:normal}
.badge.none{background:#9aa4b1}
.no-evidence{border:1px dashed #b7c0cc;border-radius:8px;padding:12px 14px;color:#4a5563;background:#fff;margin:10px 0}
.callout{border-radius:8px;padding:8px 12px;margin:8px 0 12px}
.callout.good{background:#edf7ee;border:1px solid #b9dcbc}
.callout.bad{background:#fdeeee;border:1px solid #f0bcbc}
.muted{color:var(--muted)}
.sources{color:var(--muted);font-size:12px;margin:10px 0 0}
.problems{background:#fff8e1;border:1px solid #ffe08a;border-radius:8px;padding:8px 12px;margin:0 28px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
footer{color:var(--muted);font-size:12px;padding:0 28px 24px}
"""

SCRIPT = """
(function () {
  function mark() {
    var charts = document.querySelectorAll('svg.chart'), visible = 0, marks = 0;
    for (var i = 0; i < charts.length; i++) {
      var s = charts[i], b = s.getBoundingClientRect();
      var n = s.querySelectorAll('rect.bar, rect.cell, circle, path.series').length;
      s.setAttribute('data-marks', String(n));
      s.setAttribute('data-width', String(Math.round(b.width)));
      s.setAttribute('data-height', String(Math.round(b.height)));
      if (b.width > 0 && b.height > 0) visible++;
      marks += n;
    }
    var root = document.documentElement;
    root.setAttribute('data-charts', String(charts.length));
    root.setAttribute('data-charts-visible', String(visible));
    root.setAttribute('data-marks', String(marks));
    root.setAttribute('data-rendered', charts.length > 0 && visible === charts.length ? 'true' : 'false');
  }
  mark();
  window.addEventListener('load', mark);
})();
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


@dataclass
class DashboardPage:
    html: str
    panels: list[str]  # panel ids, page order
    panels_with_data: list[str]
    charts: list[str]  # chart ids
    partitions: dict[str, int]  # activity -> verdicts covered
    first_partition: str | None
    last_partition: str | None
    problems: list[str] = field(default_factory=list)


def _nav(ctx: Ctx) -> str:
    links = []
    for a, cadence in CADENCE.items():
        docs = ctx.docs(a)
        if not docs:
            links.append(f'<a class="none" href="#panel-verdicts">{esc(a)}: no evidence yet</a>')
            continue
        last = docs[-1]
        key = Path(ctx.cat.verdicts[a][-1].path).stem if a == "node_failure_response" else last.get("partition")
        state = "pass" if last.get("passed") else "fail"
        links.append(f'<a class="{state}" href="#panel-verdicts" title="latest {esc(a)} verdict">{esc(a)} '
                     f'{esc(key)}: {"passed" if last.get("passed") else "FAILED"}</a>')
    return "<nav>" + "".join(links) + "</nav>"


def build_dashboard(evidence_root: str | os.PathLike, *, generated_at: dt.datetime | None = None) -> DashboardPage:
    """Build the page in memory (no file written). A missing evidence root gives an all "no evidence yet" page."""
    root = Path(evidence_root)
    try:
        cat = load_catalog(root)
    except QueryError:
        cat = Catalog(root=root)
    con = connect()
    try:
        views = register_catalog(con, cat)
        ctx = Ctx(con, views, cat)
        builders: list[Callable[[Ctx], Panel]] = [panel_verdicts, panel_storage_health, panel_aegis, panel_economics,
                                                  panel_dual_write, panel_replay, panel_node_failures]
        panels = [b(ctx) for b in builders]
        nav = _nav(ctx)
    finally:
        con.close()
    generated_at = generated_at or dt.datetime.now(dt.timezone.utc)
    partitions = {a: len(vs) for a, vs in cat.verdicts.items()}
    keys = sorted(str(v.doc.get("partition")) for vs in cat.verdicts.values() for v in vs)
    problems = "".join(f"<li>{esc(p)}</li>" for p in cat.problems)
    body = "\n".join(p.html() for p in panels)
    html = f"""<!DOCTYPE html>
<html lang="en" data-rendered="false">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>QFS Assure — storage assurance dashboard</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>QFS Assure — storage assurance dashboard</h1>
<div class="meta">Evidence <code>{esc(root.resolve())}</code> · {sum(partitions.values())} verdicts
{f"from {esc(keys[0])} to {esc(keys[-1])}" if keys else ""} · generated {esc(fmt_ts(generated_at))}</div>
{nav}
</header>
{f'<div class="problems"><strong>Unreadable evidence (skipped):</strong><ul>{problems}</ul></div>' if problems else ""}
<main>
{body}
</main>
<footer>Rendered offline from the evidence JSON verdicts and Parquet detail tables (evidence-v1). Every number here can
be re-queried with <code>qfs-assure query</code>; see docs/analysts.md. Money: exact integers of minor units
(1 ATR = 100,000,000 atr; 1 NOD = 100,000,000 nod).</footer>
<script>{SCRIPT}</script>
</body>
</html>
"""
    charts = re.findall(r'<svg class="chart[^"]*" id="([^"]+)"', html)
    return DashboardPage(
        html=html,
        panels=[p.pid for p in panels],
        panels_with_data=[p.pid for p in panels if p.has_data],
        charts=charts,
        partitions=partitions,
        first_partition=keys[0] if keys else None,
        last_partition=keys[-1] if keys else None,
        problems=list(cat.problems),
    )


def write_page(page: DashboardPage, out_path: str | os.PathLike) -> Path:
    out = Path(out_path)
    _atomic_write_bytes(out, page.html.encode("utf-8"))
    return out


def render_dashboard(evidence_root: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Render the dashboard of ``evidence_root`` to ``out_path`` (one self-contained HTML file); return the path."""
    return write_page(build_dashboard(evidence_root), out_path)
