"""The dashboard's panels, one module per panel, in page order.

Each module has ``PID`` and ``TITLE`` and ``build(store) -> Panel``: it reads the evidence store
(:class:`qfs_assets.dashboard.catalog.Store`) and returns the panel's plain data
(:mod:`qfs_assets.dashboard.model`); the templates render it.
"""

from __future__ import annotations

from qfs_assets.dashboard.catalog import Store
from qfs_assets.dashboard.model import Panel
from qfs_assets.dashboard.panels import (
    aegis,
    dual_write,
    economics,
    node_failures,
    replay,
    storage_health,
    verdicts,
)

MODULES = (verdicts, storage_health, aegis, economics, dual_write, replay, node_failures)

#: (id, title) of every panel, in page order.
PANELS: tuple[tuple[str, str], ...] = tuple((m.PID, m.TITLE) for m in MODULES)


def build_panels(store: Store) -> list[Panel]:
    return [m.build(store) for m in MODULES]
