"""The single entry point: every asset, check, job, schedule, sensor and resource of QFS Assure."""

from __future__ import annotations

import dagster as dg

from qfs_assets.defs.node_health.assets import defs as node_health_defs
from qfs_assets.defs.resources import RESOURCES

defs = dg.Definitions.merge(
    node_health_defs,
    dg.Definitions(resources=RESOURCES),
)
