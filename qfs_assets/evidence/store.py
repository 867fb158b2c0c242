"""The evidence store: one JSON verdict per activity partition plus Hive-partitioned Parquet.

Layout (evidence-v1, described in docs/formats/evidence.md):

    <root>/<activity>/<activity>_YYYYMMDD.json
    <root>/<table>/partition_key=<partition>/part-0.parquet

Every detail table is one Hive-partitioned dataset, readable as it is with
``pyarrow.dataset.dataset(path, partitioning="hive")`` and DuckDB's
``read_parquet('<root>/<table>/*/*.parquet', hive_partitioning=true)``.

Publishing is all-or-nothing from the caller's side: the caller computes everything first,
and only then calls :meth:`EvidenceStore.publish`, so bad input never reaches this module.
A partition's files (its detail tables, sidecars such as the reconciliation ``.sql``, then the
JSON verdict) are published as one transaction (:mod:`qfs_assets.evidence.commit`): staged
under hidden names, a journal written (the commit point), then renamed into place with the JSON
last. After a crash anywhere, the next run's :meth:`EvidenceStore.prepare` finishes or undoes
it, so the partition is all old or all new. Re-running a partition replaces exactly that
partition's files, so rows are never duplicated.

The root may also be ``s3://bucket/prefix`` (:mod:`qfs_assets.storage_uri`), through the same
code path: object storage has no rename, but a PUT is atomic and a server-side copy stands in
for the rename (copy, then delete the staged object). Keys are fixed
(``partition_key=<p>/part-0.parquet``), so a re-run overwrites the same objects and never adds
rows. While a publication is being promoted a reader can briefly see new tables beside the
previous verdict (never a verdict without its tables); recovery completes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import errno
import json
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from qfs_assets.evidence import commit
from qfs_assets.evidence.atomic import write_bytes_atomic
from qfs_assets.evidence.model import ActivityResult, Criterion
from qfs_assets.safenames import check_name, inside, is_safe_name

PARTITION_COLUMN = "partition_key"
SCHEMA_VERSION = "evidence-v1"


class EvidenceUnwritable(Exception):
    """The evidence root cannot be written (read-only, full, not a folder, no permission).

    An operational error, not bad input and not a bug: one line naming the root, the file and
    the system's reason; CLI exit 5 and an ``evidence_unwritable`` alert. Earlier evidence is
    untouched (nothing is renamed over it)."""

    kind = "evidence_unwritable"

    def __init__(self, root: str | os.PathLike, problem: str, path: str | os.PathLike | None = None):
        self.root, self.problem, self.path = str(root), problem, (str(path) if path is not None else None)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f", file '{self.path}'" if self.path else ""
        return f"evidence root '{self.root}' cannot be written{where}: {self.problem}"

    @classmethod
    def from_os_error(cls, root, exc: OSError, path=None, *, name_file: bool = True) -> "EvidenceUnwritable":
        """From an ``OSError`` (Python's, or pyarrow's, whose errno is only in its text)."""
        code = exc.errno
        if code is None:
            found = re.search(r"\[errno (\d+)\]", str(exc))
            code = int(found.group(1)) if found else None
        reason = exc.strerror or (os.strerror(code) if code else type(exc).__name__)
        name = errno.errorcode.get(code or 0, "")
        path = path if path is not None else (exc.filename or None)
        return cls(root, reason + (f" ({name})" if name else ""), path if name_file else None)


def json_scalar(value: Any) -> Any:
    """Datetimes as ISO 8601 UTC, dates as YYYY-MM-DD, integral decimals as int, paths as text;
    anything else unchanged."""
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, decimal.Decimal, Path)):
        return json_scalar(value)
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """NaN/inf are not JSON: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def iso_utc(ts: dt.datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return ts.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _without_partition_column(data: pa.Table) -> pa.Table:
    return data.drop_columns([PARTITION_COLUMN]) if PARTITION_COLUMN in data.column_names else data


def _is_object(path) -> bool:
    return hasattr(path, "fs")  # a universal_pathlib UPath on object storage


def dumps(doc: Any) -> str:
    return json.dumps(_finite(doc), indent=2, sort_keys=False, default=_json_default, ensure_ascii=False) + "\n"


class EvidenceStore:
    def __init__(self, root: str | os.PathLike):
        from qfs_assets import storage_uri

        self.root = storage_uri.upath(root)  # pathlib.Path, or a UPath for s3://

    @staticmethod
    def stem(partition: str) -> str:
        return partition.replace("-", "")

    def json_path(self, activity: str, partition: str, key: str | None = None) -> Path:
        """``<root>/<activity>/<key or activity_YYYYMMDD>.json``; every name checked (:mod:`qfs_assets.safenames`)."""
        check_name(activity, "activity", activity if is_safe_name(activity) else "evidence")
        name = key if key is not None else f"{activity}_{self.stem(check_name(partition, 'partition', activity))}"
        check_name(name, "evidence key" if key is not None else "partition", activity)
        return inside(self.root, self.root / activity / f"{name}.json", table=activity)

    def table_path(self, table: str, partition_key: str) -> Path:
        """``<root>/<table>/partition_key=<key>/part-0.parquet``; names checked, the path kept inside the root."""
        check_name(table, "table", table if is_safe_name(table) else "evidence")
        check_name(partition_key, "partition key", table)
        return inside(self.root, self.root / table / f"{PARTITION_COLUMN}={partition_key}" / "part-0.parquet", table=table)

    def prepare(self) -> dict[str, int]:
        """Before a run computes anything: the root is a folder (created if absent) that takes a
        file, else :class:`EvidenceUnwritable` (read-only, full, not a folder, no permission);
        then the publications of dead writers are finished or undone and their temporary files
        removed (:mod:`qfs_assets.evidence.commit`). Returns what recovery did."""
        try:
            if not _is_object(self.root):
                if self.root.exists() and not self.root.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(self.root))
                self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            write_bytes_atomic(probe, b"probe\n")  # created, written, synced and renamed: what publishing does
            probe.unlink()
            done = commit.recover(self.root)
            done["temporary_removed"] = commit.sweep_temporary(self.root)
            return done
        except OSError as exc:
            raise EvidenceUnwritable.from_os_error(self.root, exc, name_file=False) from None

    @contextlib.contextmanager
    def writing(self, path: Path | None = None):
        """Turn an ``OSError`` of a write under the root into :class:`EvidenceUnwritable`."""
        try:
            yield
        except OSError as exc:
            raise EvidenceUnwritable.from_os_error(self.root, exc, path) from None

    def read_json(self, activity: str, partition: str, key: str | None = None) -> dict | None:
        p = self.json_path(activity, partition, key)
        if not p.exists():
            return None
        return json.loads(p.read_text(encoding="utf-8"))

    def write_table(self, table: str, partition_key: str, data: pa.Table) -> Path:
        """Write (replace) one partition of a detail table (a publication of one file)."""
        path = self.table_path(table, partition_key)
        with self.writing(path):
            commit.publish_files(self.root, [(path, _without_partition_column(data))])
        return path

    def write_json(self, path: Path, doc: dict) -> None:
        with self.writing(path):
            write_bytes_atomic(path, dumps(doc).encode("utf-8"))

    def document(self, result: ActivityResult, criteria: list[Criterion], tables: dict[str, str]) -> dict:
        doc = {
            "schema": SCHEMA_VERSION,
            "activity": result.activity,
            "partition": result.partition,
            "window": {"start": iso_utc(result.window_start), "end": iso_utc(result.window_end)},
            "passed": bool(criteria) and all(c.passed for c in criteria),
            "criteria": [c.as_evidence() for c in criteria],
            "metrics": result.metrics,
            "inputs": result.inputs,
            "parameters": result.parameters,
            "tables": tables,
        }
        doc.update(result.extra)
        return doc

    def sidecar_path(self, json_path: Path, suffix: str) -> Path:
        """A file beside the verdict: ``<stem><suffix>`` (e.g. ``….reconciliation.sql``)."""
        name = json_path.stem + suffix
        check_name(name, "sidecar", json_path.parent.name)
        return inside(self.root, json_path.with_name(name), table=json_path.parent.name)

    def publish(self, result: ActivityResult, criteria: list[Criterion]) -> Path:
        """Publish the partition's detail tables, its sidecars, then its JSON verdict, as one
        transaction (:mod:`qfs_assets.evidence.commit`): after a crash anywhere the partition is
        all old or all new, and the verdict is never seen before its files. Returns the JSON path."""
        partition_key = result.evidence_key or result.partition
        path = self.json_path(result.activity, result.partition, result.evidence_key)
        items: list[tuple[Path, Any]] = []
        tables: dict[str, str] = {}
        for name, data in result.tables.items():
            table_path = self.table_path(name, partition_key)
            items.append((table_path, _without_partition_column(data)))
            tables[name] = f"{name}/{table_path.parent.name}/{table_path.name}"
        for suffix, content in result.sidecars.items():
            items.append((self.sidecar_path(path, suffix), content if isinstance(content, bytes) else content.encode()))
        items.append((path, dumps(self.document(result, criteria, tables)).encode("utf-8")))  # the verdict, last
        with self.writing(path):
            commit.publish_files(self.root, items)
        return path
