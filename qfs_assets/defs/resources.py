"""Resources: where the export, the system of record and the evidence live.

Module-level instances read their settings from the environment (``dg.EnvVar``) when it is
set, and fall back to the embedded demo defaults otherwise, so ``dagster dev`` works on a fresh
checkout after ``qfs-assure demo``. The CLI passes its flags as resource config of the same
resources: one code path for the UI, schedules, sensors and the CLI.
"""

from __future__ import annotations

import os

import dagster as dg

from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.readers.base import ExportReader

DEFAULT_EXPORT_ROOT = "demo_deployment/export"
DEFAULT_SOR_URL = "sqlite:///demo_deployment/sor.sqlite"
DEFAULT_EVIDENCE_ROOT = "evidence_store"


class ExportResource(dg.ConfigurableResource):
    """The storage export (qfs-export-v1): a folder of Hive-partitioned Parquet tables."""

    export_root: str = DEFAULT_EXPORT_ROOT

    def reader(self) -> ExportReader:
        return ExportReader(self.export_root)


class SystemOfRecordResource(dg.ConfigurableResource):
    """The Atlas gateway's system of record: any SQLAlchemy URL (plain postgresql:// accepted)."""

    url: str = DEFAULT_SOR_URL


class EvidenceResource(dg.ConfigurableResource):
    """The evidence store root (JSON verdicts and Hive-partitioned Parquet)."""

    evidence_root: str = DEFAULT_EVIDENCE_ROOT

    def store(self) -> EvidenceStore:
        return EvidenceStore(self.evidence_root)


def _env_or_default(var: str):
    return dg.EnvVar(var) if os.environ.get(var) else None


def _build(cls, field: str, var: str):
    value = _env_or_default(var)
    return cls(**{field: value}) if value is not None else cls()


export = _build(ExportResource, "export_root", "QFS_EXPORT_ROOT")
system_of_record = _build(SystemOfRecordResource, "url", "QFS_SOR_URL")
evidence = _build(EvidenceResource, "evidence_root", "QFS_EVIDENCE_ROOT")

RESOURCES = {"export": export, "system_of_record": system_of_record, "evidence": evidence}
