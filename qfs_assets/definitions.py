"""The single entry point: every asset, check, job, schedule, sensor and resource of QFS Assure.

Everything is found in the ``defs/`` folder (one sub-folder per activity, plus alerting, the
dashboard and the resources): adding an activity's folder needs no edit here.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
