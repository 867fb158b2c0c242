"""The activity's schedule: its registry cron, the newest closed partition."""

from qfs_assets.defs import partitions
from qfs_assets.defs.common import cadence_schedule
from qfs_assets.defs.node_health import assets

node_health_assessment_schedule = cadence_schedule(assets.ACTIVITY, assets.node_health_assessment_job, partitions.daily)
