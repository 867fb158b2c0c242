"""The dual-write schedules: their registry crons, the newest closed partition."""

from qfs_assets.defs import partitions
from qfs_assets.defs.common import cadence_schedule
from qfs_assets.defs.dual_write import assets

dual_write_diff_schedule = cadence_schedule("dual_write_diff", assets.dual_write_diff_job, partitions.daily)
dual_write_verification_schedule = cadence_schedule("dual_write_verification", assets.dual_write_verification_job,
                                                    partitions.monthly)
