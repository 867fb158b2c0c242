"""What every panel shares: the activities and cadences (from the registry) and the empty panel."""

from __future__ import annotations

from typing import Sequence

from qfs_assets import registry
from qfs_assets.dashboard.catalog import Store
from qfs_assets.dashboard.model import Figure, NoEvidence, Panel
from qfs_assets.dashboard.svg import EmptyChart

#: How a cadence reads on the page; an event-driven activity runs once per node failure.
CADENCE_LABELS = {"event": "per failure"}

MAX_TABLE_ROWS = 50


def evidence_activities() -> list[str]:
    """The registry's activities that write verdicts, in display order."""
    return [a.name for a in registry.with_evidence()]


def cadence(activity: str, default: str = "–") -> str:
    """The activity's cadence as the page shows it ('daily', ..., 'per failure'), from the registry."""
    spec = registry.activities().get(activity)
    if spec is None:
        return default
    return CADENCE_LABELS.get(spec.cadence, spec.cadence)


def subtitle(activity: str, suffix: str = "") -> str:
    """'<activity>, <cadence>' and ``suffix``."""
    return f"{activity}, {cadence(activity)}{suffix}"


def empty_panel(pid: str, title: str, store: Store, activity: str, metrics: Sequence[str],
                charts: Sequence[tuple[str, str]]) -> Panel:
    """The panel of an activity without evidence yet: what will show, and every chart frame."""
    return Panel(pid, title, False, sources=(f"{activity}_verdicts",),
                 figures=[Figure(EmptyChart(cid, t, "", "", "no evidence yet")) for cid, t in charts],
                 no_evidence=NoEvidence(activity, store.root / activity, tuple(metrics)))
