"""Resources: where the export, the system of record and the evidence live.

Each reads its setting from the environment (``dg.EnvVar``) when a run or a sensor uses it,
and there is no fallback: a deployment that forgot ``QFS_EXPORT_ROOT`` fails its first run with
Dagster's "environment variable ... is not set", rather than judging some other data. The CLI
sets the same variables from its flags for its in-process runs; ``qfs-assure demo`` writes a
``.env`` with the demo's paths, which ``dagster dev`` loads from the working directory.
"""

from __future__ import annotations

import dagster as dg

from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.readers.base import ExportReader

#: the settings, by resource field
ENV = {"export_root": "QFS_EXPORT_ROOT", "url": "QFS_SOR_URL", "evidence_root": "QFS_EVIDENCE_ROOT"}


class ExportResource(dg.ConfigurableResource):
    """The storage export (qfs-export-v1): a folder of Hive-partitioned Parquet tables."""

    export_root: str

    def reader(self) -> ExportReader:
        return ExportReader(self.export_root)


class SystemOfRecordResource(dg.ConfigurableResource):
    """The Atlas gateway's system of record: any SQLAlchemy URL (plain postgresql:// accepted)."""

    url: str


class EvidenceResource(dg.ConfigurableResource):
    """The evidence store root (JSON verdicts and Hive-partitioned Parquet)."""

    evidence_root: str

    def store(self) -> EvidenceStore:
        return EvidenceStore(self.evidence_root)


export = ExportResource(export_root=dg.EnvVar(ENV["export_root"]))
system_of_record = SystemOfRecordResource(url=dg.EnvVar(ENV["url"]))
evidence = EvidenceResource(evidence_root=dg.EnvVar(ENV["evidence_root"]))


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"export": export, "system_of_record": system_of_record, "evidence": evidence})
