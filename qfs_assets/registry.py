"""The registry of assurance activities: every fact about an activity, written once.

Each activity package under :mod:`qfs_assets.activities` declares its facts in its
``__init__.py`` as ``SPECS`` (a tuple of :class:`Activity`): name, cadence, the cron of its
schedule, its runbook, its asset group, its evidence-v1 metric columns and the process settings
its runs need (``process_env``). Everything else reads them from here: the CLI (which partitions
a name accepts, the settings of a run), the jobs (those settings for a Kubernetes run), the
schedules (cron and target partition), alerting (which runbook an alert links, which activity a failed job belongs to), the
dashboard (cadence per activity) and analytics (the columns of a verdict view).

The registry is found, not listed: :func:`activities` imports every sub-package of
``qfs_assets.activities`` and collects its ``SPECS``, so an activity is added by adding its
folders (``activities/<name>/`` and ``defs/<name>/``) and nothing else.

Pure Python: importing this module imports neither Dagster nor any data library.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Cadence = Literal["daily", "weekly", "monthly", "quarterly", "event"]

#: The runbook of every alert that is not a failed criterion of a known activity.
TRIAGE_RUNBOOK = "docs/runbooks/alert-triage.md"

#: What a valid partition key is, per cadence (for messages).
PARTITION_RULES: dict[str, str] = {
    "daily": "any day",
    "weekly": "a Monday",
    "monthly": "the first day of a month",
    "quarterly": "Jan 1, Apr 1, Jul 1 or Oct 1",
    "event": "a failure id <node_id>_<YYYYMMDD>",
}


@dataclass(frozen=True)
class Activity:
    """One assurance activity.

    ``schedule_cron`` (UTC) is when its schedule fires; the run it requests judges the newest
    partition whose window has closed by then. ``None`` for activities fired by a sensor.
    ``uses_system_of_record``: its runs read the Atlas system of record (``QFS_SOR_URL``).
    ``metrics`` are the evidence-v1 metric keys with their column types (``int64``, ``float64``,
    ``bool``, ``string``, ``list<string>``, ``timestamp``, ``json`` for an object), in contract order; an activity that
    writes no verdict (``writes_evidence=False``) has none.
    """

    name: str
    title: str
    cadence: Cadence
    runbook: str
    group: str
    schedule_cron: str | None = None
    writes_evidence: bool = True
    uses_system_of_record: bool = False
    metrics: tuple[tuple[str, str], ...] = ()
    #: for an activity that writes no verdict: the detail table whose partition is its evidence
    evidence_table: str | None = None
    order: int = 100
    summary: str = field(default="", compare=False)
    #: the name of its folders, ``activities/<package>/`` and ``defs/<package>/`` (set by the registry)
    package: str = field(default="", compare=False)
    #: environment for settings a library reads only when it loads (an allocator's, say), as
    #: ``(name, value)`` pairs: ``qfs-assure run`` sets them (unless already set) before any data
    #: library loads, and the activity's job carries them in its ``dagster-k8s/config`` tag for a
    #: run the Kubernetes launcher starts; other launchers' runs inherit the launcher's environment.
    #: What each setting is for: docs/configuration.md ("Process settings of qfs-assure run").
    process_env: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def job_name(self) -> str:
        return f"{self.name}_job"

    @property
    def schedule_name(self) -> str:
        return f"{self.name}_schedule"

    @property
    def partition_rule(self) -> str:
        return PARTITION_RULES[self.cadence]


@lru_cache(maxsize=1)
def _load() -> dict[str, Activity]:
    import qfs_assets.activities as package

    found: list[Activity] = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found.extend(dataclasses.replace(spec, package=info.name) for spec in getattr(module, "SPECS", ()))
    found.sort(key=lambda a: (a.order, a.name))
    out: dict[str, Activity] = {}
    for spec in found:
        if spec.name in out:
            raise RuntimeError(f"activity {spec.name} is declared twice")
        out[spec.name] = spec
    return out


def activities() -> dict[str, Activity]:
    """Every activity by name, in display order."""
    return dict(_load())


def get(name: str) -> Activity:
    """The activity called ``name``; KeyError naming the known ones otherwise."""
    try:
        return _load()[name]
    except KeyError:
        raise KeyError(f"unknown activity {name!r}; one of: {', '.join(_load())}") from None


def with_evidence() -> list[Activity]:
    """The activities that write an evidence-v1 verdict."""
    return [a for a in _load().values() if a.writes_evidence]


def scheduled() -> list[Activity]:
    return [a for a in _load().values() if a.schedule_cron]


def by_job(job_name: str) -> Activity | None:
    """The activity a job runs, or None for a job that is not an activity's."""
    for a in _load().values():
        if a.job_name == job_name:
            return a
    return None


def runbook_for(activity: str) -> str:
    """The activity's runbook, or the alert triage runbook for anything else."""
    spec = _load().get(activity)
    return spec.runbook if spec else TRIAGE_RUNBOOK


def runbooks() -> dict[str, str]:
    return {a.name: a.runbook for a in _load().values()}
