"""The activity's schedule: its registry cron, the newest closed partition."""

from qfs_assets.defs import partitions
from qfs_assets.defs.common import cadence_schedule
from qfs_assets.defs.replay_drill import assets

storage_replay_drill_schedule = cadence_schedule(assets.ACTIVITY, assets.storage_replay_drill_job, partitions.quarterly)
