"""The single entry point: every asset, check, job, schedule, sensor and resource of QFS Assure.

Everything is found in the ``defs/`` folder (one sub-folder per activity, plus alerting, the
dashboard and the resources): adding an activity's folder needs no edit here.
"""

from pathlib import Path

import dagster as dg

from qfs_assets import settings

# The deployment's configuration file (QFS_CONFIG, default ./qfs-assure.toml) is validated first:
# an unknown key or an out-of-range value fails the code location's load with one line naming it.
settings.current()

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
