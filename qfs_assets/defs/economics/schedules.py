"""The activity's schedule: its registry cron, the newest closed partition."""

from qfs_assets.defs import partitions
from qfs_assets.defs.common import cadence_schedule
from qfs_assets.defs.economics import assets

economics_sanity_check_schedule = cadence_schedule(assets.ACTIVITY, assets.economics_sanity_check_job, partitions.weekly)
