"""Assemble the dashboard: read the store, build every panel's data, render the page with Jinja2.

    build_dashboard(evidence_root) -> DashboardPage     (in memory)
    render_dashboard(evidence_root, out_path) -> Path   (one self-contained HTML file)

The page is rendered from ``templates/`` (package data) with autoescaping on: every value taken
from the evidence is text in the page, never markup. It has inline CSS, inline SVG and a few
lines of inline script that only mark the page as rendered (``<html data-rendered="true">``, and
``data-marks``/``data-width`` on every chart) so a headless browser test can check the charts
were laid out. No library, font, image or URL is loaded: a Content-Security-Policy forbids any
network access, so the page works offline and from ``file://``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2
from markupsafe import Markup

from qfs_assets.dashboard import fmt
from qfs_assets.dashboard.catalog import open_store
from qfs_assets.dashboard.panels import PANELS, build_panels, verdicts
from qfs_assets.evidence.atomic import write_bytes_atomic

__all__ = ["PANELS", "DashboardPage", "build_dashboard", "render_dashboard", "write_page", "environment"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


@dataclass
class DashboardPage:
    html: str
    panels: list[str]  # panel ids, page order
    panels_with_data: list[str]
    charts: list[str]  # chart ids, page order
    partitions: dict[str, int]  # activity -> verdicts covered
    first_partition: str | None
    last_partition: str | None
    problems: list[str] = field(default_factory=list)


def _kind_of(v: object) -> str:
    return getattr(v, "kind", "text")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates of ``qfs_assets/dashboard/templates`` with autoescaping on."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("qfs_assets.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fmt_int=fmt.fmt_int, exact_units=fmt.exact_units)
    env.globals.update(kind_of=_kind_of)
    return env


def _static(name: str) -> Markup:
    """A file of the templates folder inlined as is (our own CSS and script, not evidence)."""
    env = environment()
    source, _, _ = env.loader.get_source(env, name)
    return Markup(source)


def build_dashboard(evidence_root: str | os.PathLike, *, generated_at: dt.datetime | None = None) -> DashboardPage:
    """Build the page in memory (no file written). A missing evidence root gives an all "no evidence yet" page."""
    root = Path(evidence_root)
    with open_store(root) as store:
        panels = build_panels(store)
        nav = verdicts.latest(store)
        cat = store.cat
    partitions = {a: len(vs) for a, vs in cat.verdicts.items()}
    keys = sorted(str(v.doc.get("partition")) for vs in cat.verdicts.values() for v in vs)
    html = environment().get_template("page.html.j2").render(
        csp=CSP, css=_static("dashboard.css"), script=_static("mark.js"),
        root=root.resolve(), verdicts=sum(partitions.values()), first=keys[0] if keys else None,
        last=keys[-1] if keys else None, generated=fmt.fmt_ts(generated_at or dt.datetime.now(dt.timezone.utc)),
        nav=nav, problems=cat.problems, panels=panels,
    )
    return DashboardPage(
        html=html,
        panels=[p.pid for p in panels],
        panels_with_data=[p.pid for p in panels if p.has_data],
        charts=[f.chart.cid for p in panels for f in p.figures],
        partitions=partitions,
        first_partition=keys[0] if keys else None,
        last_partition=keys[-1] if keys else None,
        problems=list(cat.problems),
    )


def write_page(page: DashboardPage, out_path: str | os.PathLike) -> Path:
    out = Path(out_path)
    write_bytes_atomic(out, page.html.encode("utf-8"))
    return out


def render_dashboard(evidence_root: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Render the dashboard of ``evidence_root`` to ``out_path`` (one self-contained HTML file); return the path."""
    return write_page(build_dashboard(evidence_root), out_path)
