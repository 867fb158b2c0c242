"""The single entry point: every asset, check, job, schedule, sensor and resource of QFS Assure."""

import dagster as dg

from qfs_assets.alerting.dagster_hooks import defs as alerting_defs
from qfs_assets.defs.dashboard.assets import defs as dashboard_defs
from qfs_assets.defs.dual_write.assets import defs as dual_write_defs
from qfs_assets.defs.economics.assets import defs as economics_defs
from qfs_assets.defs.node_failure.assets import defs as node_failure_defs
from qfs_assets.defs.node_health.assets import defs as node_health_defs
from qfs_assets.defs.replay_drill.assets import defs as replay_drill_defs
from qfs_assets.defs.resources import RESOURCES
from qfs_assets.defs.schedules import schedules_for

_domains = dg.Definitions.merge(
    node_health_defs,
    economics_defs,
    dual_write_defs,
    node_failure_defs,
    replay_drill_defs,
)

defs = dg.Definitions.merge(
    _domains,
    alerting_defs,
    dashboard_defs,
    dg.Definitions(resources=RESOURCES, schedules=schedules_for(_domains.jobs or [])),
)
