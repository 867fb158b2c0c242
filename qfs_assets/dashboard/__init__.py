"""The storage assurance dashboard: one self-contained HTML page rendered from the evidence store."""

from qfs_assets.dashboard.render import PANELS, DashboardPage, build_dashboard, render_dashboard

__all__ = ["PANELS", "DashboardPage", "build_dashboard", "render_dashboard"]
