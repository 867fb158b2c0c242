"""The deterministic demo deployment: a qfs-export-v1 storage export plus a system of record.

See :mod:`qfs_assets.demo.generator` (``generate``) and :mod:`qfs_assets.demo.sor_writer`
(``write_sor`` / ``read_sor``). No Dagster here.
"""

from qfs_assets.demo.generator import (
    DEFAULT_INCIDENT_DATES,
    DIFF_CATEGORIES,
    INCIDENT_PLAN,
    DemoConfig,
    DemoDeployment,
    DriftSpec,
    Incident,
    build_sor_table,
    compare_sor,
    generate,
)
from qfs_assets.demo.sor_writer import normalize_url, read_sor, write_sor

__all__ = [
    "DEFAULT_INCIDENT_DATES",
    "DIFF_CATEGORIES",
    "INCIDENT_PLAN",
    "DemoConfig",
    "DemoDeployment",
    "DriftSpec",
    "Incident",
    "build_sor_table",
    "compare_sor",
    "generate",
    "normalize_url",
    "read_sor",
    "write_sor",
]
