"""Closed partitions without evidence: the freshness rule behind ``evidence_missing`` and
``qfs-assure gaps``.

An activity's partition is *due* a grace period after the first run of its schedule (the
registry's cron, UTC) at or after the partition's window end: that run judges it. A due
partition with no evidence is a gap: a stopped daemon, a schedule turned off or mistimed, a
run that failed and was never repaired, or evidence deleted. The evidence of an activity that
writes a verdict is its JSON file (``<root>/<activity>/<activity>_YYYYMMDD.json``); for the
daily dual-write diff it is its detail table's partition (the registry's ``evidence_table``).

The expected partitions (keys and windows) are given by the caller (the Dagster partitions of
each cadence), so this module stays free of Dagster. Pure code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from croniter import croniter

from qfs_assets import registry
from qfs_assets.evidence.store import PARTITION_COLUMN

UTC = dt.timezone.utc


@dataclass(frozen=True)
class Gap:
    activity: str
    partition: str
    window_start: dt.datetime
    window_end: dt.datetime
    scheduled_at: dt.datetime
    due: dt.datetime

    @property
    def command(self) -> str:
        return f"qfs-assure run {self.activity} --partition {self.partition}"

    def as_dict(self) -> dict:
        return {"activity": self.activity, "partition": self.partition, "window_start": self.window_start,
                "window_end": self.window_end, "scheduled_at": self.scheduled_at, "due": self.due,
                "command": self.command}


def scheduled_at(cron: str, window_end: dt.datetime) -> dt.datetime:
    """The first tick of ``cron`` (UTC) at or after ``window_end``: the run that judges the partition."""
    start = window_end.astimezone(UTC) - dt.timedelta(seconds=1)
    return croniter(cron, start).get_next(dt.datetime).astimezone(UTC)


def evidence_partitions(evidence_root: str | Path, spec: registry.Activity) -> set[str]:
    """The partition keys (YYYY-MM-DD) that have evidence, from file and folder names only."""
    from qfs_assets import storage_uri

    root = storage_uri.upath(evidence_root)  # a local folder or s3://
    out: set[str] = set()
    if spec.writes_evidence:
        prefix = f"{spec.name}_"
        for p in (root / spec.name).glob(f"{prefix}*.json"):
            stem = p.stem[len(prefix):]
            if len(stem) == 8 and stem.isdigit():
                out.add(f"{stem[:4]}-{stem[4:6]}-{stem[6:]}")
    elif spec.evidence_table:
        for p in (root / spec.evidence_table).glob(f"{PARTITION_COLUMN}=*"):
            if any(p.glob("*.parquet")):
                out.add(p.name.split("=", 1)[1])
    return out


def monitored() -> list[registry.Activity]:
    """The activities whose partitions are expected on a schedule and leave evidence."""
    return [a for a in registry.scheduled() if a.writes_evidence or a.evidence_table]


def find_gaps(evidence_root: str | Path, expected: Mapping[str, Iterable[tuple[str, dt.datetime, dt.datetime]]],
              now: dt.datetime, grace_hours: float, since: dt.date | None = None) -> list[Gap]:
    """Every due partition without evidence, by activity then partition.

    ``expected``: activity -> ``(key, window_start, window_end)`` of its partitions; ``since``: the
    first day there is anything to judge (a partition whose window ends on or before it is not
    expected: the export holds nothing for it).
    """
    now = now.astimezone(UTC)
    grace = dt.timedelta(hours=grace_hours)
    out: list[Gap] = []
    for spec in monitored():
        have = evidence_partitions(evidence_root, spec)
        for key, start, end in expected.get(spec.name, ()):
            if since is not None and end.astimezone(UTC).date() <= since:
                continue
            when = scheduled_at(spec.schedule_cron, end)
            if when + grace > now or key in have:
                continue
            out.append(Gap(spec.name, key, start.astimezone(UTC), end.astimezone(UTC), when, when + grace))
    return out


def by_activity(gaps: Sequence[Gap]) -> dict[str, list[Gap]]:
    out: dict[str, list[Gap]] = {}
    for g in gaps:
        out.setdefault(g.activity, []).append(g)
    return out


def backfill_command(activity: str, partitions: Sequence[str]) -> str:
    """The Dagster backfill of those partitions through the daemon (from the repository root)."""
    return f"dagster job backfill -j {registry.get(activity).job_name} --partitions {','.join(partitions)} --noprompt"


def fill_commands(activity: str, gaps: Sequence[Gap]) -> list[str]:
    return [backfill_command(activity, [g.partition for g in gaps])] + [g.command for g in gaps]
