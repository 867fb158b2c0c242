"""The dashboard's replay panel says when the last successful drill ran and how far its log reached.

`judged_at` is written with every evidence file (defs/common.judge_and_publish); the last replayed
event's ts is evidence-v1.1's `metrics.last_event_ts`. Evidence without them shows the page's dash.
"""

import datetime as dt
import re

import pyarrow as pa

from qfs_assets.dashboard.fmt import DASH
from qfs_assets.dashboard.page import build_dashboard
from qfs_assets.evidence.model import ActivityResult, Criterion
from qfs_assets.evidence.store import EvidenceStore

UTC = dt.timezone.utc
METRICS = {"events_replayed": 60_541, "chain_intact": True, "first_broken_seq": None, "invalid_events": 0,
           "checkpoints_compared": 2, "checkpoints_matched": 2, "first_mismatch_seq": None,
           "mismatched_components": [], "final_state_root": "ab" * 32}
CRITERIA = [Criterion("chain_intact", True, True, True), Criterion("deterministic_match", True, 2, 2)]


def publish(root, quarter: dt.date, end: dt.date, *, metrics=None, extra=None, passed=True):
    result = ActivityResult(
        activity="storage_replay_drill", partition=quarter.isoformat(),
        window_start=dt.datetime.combine(quarter, dt.time(), UTC), window_end=dt.datetime.combine(end, dt.time(), UTC),
        metrics={**METRICS, **(metrics or {})}, inputs={}, parameters={}, criteria_specs=[],
        judge_table=pa.table({"x": [1]}), extra=extra or {})
    criteria = CRITERIA if passed else [Criterion("deterministic_match", False, 1, 2)]
    return EvidenceStore(root).publish(result, criteria)


def spans(html: str) -> tuple[str, str]:
    ran = re.search(r'data-testid="replay-last-success-ran-at">([^<]*)<', html).group(1)
    reached = re.search(r'data-testid="replay-last-success-last-event">([^<]*)<', html).group(1)
    return ran, reached


def test_last_successful_drill_shows_when_it_ran_and_the_last_event_it_reached(tmp_path):
    publish(tmp_path, dt.date(2026, 1, 1), dt.date(2026, 4, 1), metrics={"last_event_ts": "2026-03-31T23:58:00Z"},
            extra={"judged_at": dt.datetime(2026, 4, 1, 5, 3, 12, tzinfo=UTC)})
    # a later drill that failed is not the last *successful* one
    publish(tmp_path, dt.date(2026, 4, 1), dt.date(2026, 7, 1), passed=False,
            metrics={"last_event_ts": "2026-06-30T23:59:00Z"}, extra={"judged_at": dt.datetime(2026, 7, 1, 5, tzinfo=UTC)})
    html = build_dashboard(tmp_path).html
    assert spans(html) == ("2026-04-01 05:03 UTC", "2026-03-31 23:58 UTC")
    assert "Last successful drill:</strong> 2026-Q1 (2026-01-01), 60,541 events replayed" in html


def test_evidence_without_the_times_shows_a_dash(tmp_path):
    publish(tmp_path, dt.date(2026, 1, 1), dt.date(2026, 4, 1))
    assert spans(build_dashboard(tmp_path).html) == (DASH, DASH)
