"""The storage assurance dashboard: one self-contained HTML page rendered from the evidence store.

``catalog`` reads the store, ``panels/`` computes each panel's plain data (``model``), ``svg``
lays out its charts, ``page`` renders everything with the Jinja2 templates of ``templates/``.
"""

from qfs_assets.dashboard.page import PANELS, DashboardPage, build_dashboard, render_dashboard, write_page

__all__ = ["PANELS", "DashboardPage", "build_dashboard", "render_dashboard", "write_page"]
