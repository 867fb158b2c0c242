"""The evidence store as Prometheus gauges: every activity's latest verdict and headline metrics.

Pure: reads the JSON verdicts (the commit markers of evidence) and the dual-write diff ledger
under an evidence root (a local folder or ``s3://bucket/prefix``) and returns
``prometheus_client`` metric families. Nothing is computed that the evidence does not say: a
metric the evidence leaves null or absent (storage errors in version 1 evidence, a ratio with
no denominator) has no sample rather than a made-up 0.

Names and labels are stable (documented in docs/metrics.md, checked by the tests): every name
starts with ``qfs_assure_``; per-activity series carry ``activity``; there is no partition
label on numeric series (one series per activity, whatever the number of partitions), the
latest partition is in ``qfs_assure_latest_partition_info`` and its start in
``qfs_assure_latest_partition_start_timestamp_seconds``.

Money stays integer minor units in the evidence; Prometheus stores float64, exact up to 2^53
(9.0e15 minor units). Beyond that the gauge is an approximation and the evidence is the record.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from qfs_assets import storage_uri
from qfs_assets.windows import to_utc

log = logging.getLogger(__name__)

PREFIX = "qfs_assure"
ACTIVITIES = (
    "node_health_assessment",
    "economics_sanity_check",
    "dual_write_verification",
    "storage_replay_drill",
    "node_failure_response",
)
LEDGER_PATH = ("dual_write_diff_ledger", "ledger.parquet")
LEDGER_RUNS_KEY = b"qfs.dual_write.runs"
DEFAULT_RESOLUTION_HOURS = 24.0  # as DualWriteParams.resolution_hours (tested equal)
INCONSISTENCY_CATEGORIES = ("missing_in_storage", "missing_in_sor", "version_mismatch", "content_mismatch")


def _ts(value: Any) -> float | None:
    """ISO 8601 text (or a date) as Unix seconds; None when absent or not a time."""
    if value is None or isinstance(value, bool):
        return None
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return to_utc(t).timestamp()


def _num(value: Any) -> float | None:
    """A JSON number or boolean as a float; None (no sample) for null, text, lists, objects."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return None


@dataclass(frozen=True)
class Headline:
    """One headline gauge: ``qfs_assure_<name>`` from the latest verdict's ``metrics[key]``."""

    name: str
    key: str
    help: str
    convert: Callable[[Any], float | None] = _num


#: Headline gauges per activity (the latest partition's value). Stable: documented in docs/metrics.md.
HEADLINES: dict[str, tuple[Headline, ...]] = {
    "node_health_assessment": (
        Headline("node_health_verified_ratio", "verified_ratio", "Verified (AEGIS) nodes over in-service nodes, latest day."),
        Headline("node_health_in_service_nodes", "in_service_nodes", "Nodes in service, latest day."),
        Headline("node_health_verified_nodes", "verified_nodes", "Nodes passing AEGIS verification, latest day."),
        Headline("node_health_proof_success_ratio", "proof_success_rate", "Passed proof challenges over all challenges, latest day."),
        Headline("node_health_proof_challenges", "proof_challenges", "Proof challenges issued, latest day."),
        Headline("node_health_utilization_cv", "utilization_cv", "Population coefficient of variation of node utilisation, latest day."),
        Headline("node_health_utilization_max_over_mean", "utilization_max_over_mean", "Highest node utilisation over the mean, latest day."),
        Headline("node_health_objects_degraded", "objects_degraded", "Live objects with fewer healthy shards than total_shards, latest day."),
        Headline("node_health_objects_unrecoverable", "objects_unrecoverable", "Live objects with fewer healthy shards than data_shards, latest day."),
        Headline("node_health_storage_errors", "storage_errors", "Storage errors reported, latest day (no sample when the feed is absent)."),
        Headline("node_health_corruption_errors", "corruption_errors", "checksum_mismatch storage errors, latest day (no sample when the feed is absent)."),
    ),
    "economics_sanity_check": (
        Headline("economics_fees_atr", "fees_atr", "Fees charged in the latest week, ATR minor units."),
        Headline("economics_rewards_nod", "rewards_nod", "Rewards paid in the latest week (claw-backs included), NOD minor units."),
        Headline("economics_rewards_in_atr", "rewards_in_atr", "Rewards of the latest week converted to ATR minor units."),
        Headline("economics_buffer_atr", "buffer_atr", "Required buffer of the latest week, ATR minor units."),
        Headline("economics_margin_atr", "margin_atr", "fees - rewards_in_atr - buffer of the latest week, ATR minor units (conservation holds when >= 0)."),
        Headline("economics_duplicate_tx_ids", "duplicate_tx_ids", "Duplicate fee transaction ids, latest week."),
        Headline("economics_duplicate_reward_ids", "duplicate_reward_ids", "Duplicate reward ids, latest week."),
        Headline("economics_non_positive_amounts", "non_positive_amounts", "Fee rows and non-adjustment rewards with an amount <= 0, latest week."),
        Headline("economics_rewards_to_failed_nodes", "rewards_to_failed_nodes", "Rewards paid to failed or decommissioned nodes, latest week."),
        Headline("economics_ledger_vs_log_atr", "ledger_vs_log_atr", "Fee ledger minus the EQM log's fee_charged amounts, latest week, ATR minor units."),
    ),
    "dual_write_verification": (
        Headline("dual_write_inconsistencies", "inconsistencies", "Objects inconsistent between the system of record and storage, latest month."),
        Headline("dual_write_sor_objects", "sor_objects", "Objects in the system of record (not deleted, not in flight), latest month."),
        Headline("dual_write_storage_objects", "storage_objects", "Objects in the storage manifest (not deleted, not in flight), latest month."),
        Headline("dual_write_in_flight", "in_flight", "Objects left aside as in flight, latest month."),
        Headline("dual_write_sampled_objects", "sampled_objects", "Manifest objects in the shard sample, latest month."),
        Headline("dual_write_sample_failures", "sample_failures", "Sampled objects whose shards are not sound, latest month."),
        Headline("dual_write_unresolved_over_24h", "unresolved_over_24h", "Diffs still present more than the resolution window after first seen, latest month."),
        Headline("dual_write_resolved_late", "resolved_late", "Diffs resolved after the resolution window inside the latest month."),
    ),
    "storage_replay_drill": (
        Headline("replay_events_replayed", "events_replayed", "EQM events replayed from genesis, latest quarter."),
        Headline("replay_chain_intact", "chain_intact", "1 when the hash chain and seq continuity held, latest quarter."),
        Headline("replay_invalid_events", "invalid_events", "Invalid events met in the replay, latest quarter."),
        Headline("replay_checkpoints_compared", "checkpoints_compared", "Checkpoints inside the quarter compared with the replay."),
        Headline("replay_checkpoints_matched", "checkpoints_matched", "Checkpoints whose state roots the replay matched, latest quarter."),
        Headline("replay_last_event_timestamp_seconds", "last_event_ts", "Time of the last replayed event, latest quarter.", _ts),
    ),
    "node_failure_response": (
        Headline("node_failure_shards_to_move", "shards_to_move", "Shards of the failed node to re-place, latest response."),
        Headline("node_failure_shards_unplaceable", "shards_unplaceable", "Shards the plan could not place, latest response."),
        Headline("node_failure_receivers_unverified", "receivers_unverified", "Receiving nodes failing AEGIS verification, latest response."),
        Headline("node_failure_co_located_objects", "co_located_objects", "Objects with two shards on one node after the plan, latest response."),
        Headline("node_failure_receivers_over_capacity", "receivers_over_capacity", "Receiving nodes over capacity after the plan, latest response."),
        Headline("node_failure_clawback_nod", "clawback_nod", "Rewards clawed back for the failure, latest response, NOD minor units."),
    ),
}

#: Per-activity gauges (label ``activity``) and what they mean; the docs list the same names.
ACTIVITY_GAUGES = {
    "verdict_passed": "1 when every criterion of the activity's latest partition passed, else 0.",
    "verdict_criteria_failed": "Criteria that failed in the activity's latest partition.",
    "criterion_passed": "1 when the criterion passed in the activity's latest partition (label criterion).",
    "latest_partition_start_timestamp_seconds": "Start of the latest judged partition's window.",
    "latest_window_end_timestamp_seconds": "End of the latest judged partition's window (last evidence time).",
    "last_run_timestamp_seconds": "When evidence of the activity was last written (a run completed; bad input writes none).",
    "last_passed_window_end_timestamp_seconds": "End of the window of the latest partition that passed (no sample if none did).",
    "evidence_partitions": "Partitions with a verdict in the evidence store.",
    "evidence_unreadable_files": "Verdict files that could not be read or parsed (left out of every other series).",
}
LEDGER_GAUGES = {
    "dual_write_open_diffs": "Differences open in the diff ledger after its latest run.",
    "dual_write_open_diffs_by_category": "Open differences by category (label category).",
    "dual_write_oldest_open_diff_first_seen_timestamp_seconds": "When the oldest open difference was first seen.",
    "dual_write_oldest_open_diff_age_seconds": "Age of the oldest open difference at the ledger's latest run.",
    "dual_write_open_diffs_over_resolution_window": "Open differences older than the resolution window at the ledger's latest run.",
    "dual_write_resolution_window_seconds": "The resolution window those ages are judged against (the latest verification's resolution_hours).",
    "dual_write_ledger_last_run_timestamp_seconds": "as_of time of the diff ledger's latest run.",
    "dual_write_ledger_runs": "Runs (daily diffs and monthly verifications) applied to the diff ledger.",
}
INCONSISTENCY_GAUGE = "dual_write_inconsistencies_by_category"
STORAGE_ERROR_CLASS_GAUGE = "node_health_storage_errors_by_class"
INFO_NAME = "latest_partition"  # qfs_assure_latest_partition_info{activity, partition, evidence_key}


def metric_names() -> list[str]:
    """Every family name the exporter can expose (without the _info suffix of the info family)."""
    names = [f"{PREFIX}_{n}" for n in ACTIVITY_GAUGES]
    names += [f"{PREFIX}_{h.name}" for hs in HEADLINES.values() for h in hs]
    names += [f"{PREFIX}_{n}" for n in LEDGER_GAUGES]
    names += [f"{PREFIX}_{INCONSISTENCY_GAUGE}", f"{PREFIX}_{STORAGE_ERROR_CLASS_GAUGE}", f"{PREFIX}_{INFO_NAME}_info"]
    return names


# ---- reading the evidence ----------------------------------------------------------------------


@dataclass(frozen=True)
class VerdictFile:
    activity: str
    stem: str  # <activity>_YYYYMMDD or, for node failure responses, <node>_YYYYMMDD
    path: str  # within the filesystem
    mtime: float | None

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.stem[-8:], self.stem)


def _mtime(info: dict) -> float | None:
    for key in ("mtime", "LastModified", "last_modified"):
        v = info.get(key)
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, dt.datetime):
            return to_utc(v).timestamp()
    return None


@dataclass
class EvidenceView:
    """A read-only view of the evidence store's verdicts and ledger, with a parse cache.

    The cache is keyed on (path, mtime, size), so a scrape re-reads only files that changed.
    """

    root: str
    _cache: dict[tuple, dict | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.fs, self.path = storage_uri.filesystem(self.root)

    def verdict_files(self, activity: str) -> list[VerdictFile]:
        folder = posixpath.join(self.path, activity) if storage_uri.is_remote(self.root) else f"{self.path}/{activity}"
        try:
            entries = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return []
        out = []
        for info in entries:
            name = posixpath.basename(info["name"].rstrip("/"))
            if info.get("type") != "file" or not name.endswith(".json") or name.startswith("."):
                continue
            out.append(VerdictFile(activity, name[: -len(".json")], info["name"], _mtime(info)))
        return sorted(out, key=lambda v: v.sort_key)

    def load(self, vf: VerdictFile) -> dict | None:
        key = (vf.path, vf.mtime)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        try:
            with self.fs.open(vf.path, "rb") as fh:
                doc = json.loads(fh.read().decode("utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("criteria"), list):
                raise ValueError("not an evidence verdict")
        except Exception as exc:  # noqa: BLE001 - one bad file must not take the exporter down
            log.warning("unreadable verdict %s: %s", storage_uri.url(self.fs, vf.path), type(exc).__name__)
            doc = None
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != vf.path}
            self._cache[key] = doc
        return doc

    def ledger(self):
        """(episodes table, runs list) of the diff ledger, or None when there is none."""
        import pyarrow.parquet as pq

        path = "/".join([self.path, *LEDGER_PATH])
        try:
            with self.fs.open(path, "rb") as fh:
                tbl = pq.read_table(fh)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            log.warning("unreadable diff ledger %s: %s", storage_uri.url(self.fs, path), type(exc).__name__)
            return None
        meta = (tbl.schema.metadata or {}).get(LEDGER_RUNS_KEY)
        runs = json.loads(meta) if meta else []
        return tbl, runs


# ---- the snapshot: plain data, then metric families ----------------------------------------------


@dataclass
class Sample:
    name: str  # without the prefix
    labels: dict[str, str]
    value: float


@dataclass
class Snapshot:
    samples: list[Sample] = field(default_factory=list)
    infos: list[dict[str, str]] = field(default_factory=list)

    def add(self, name: str, value: float | None, **labels: str) -> None:
        if value is not None:
            self.samples.append(Sample(name, labels, float(value)))

    def value(self, name: str, **labels: str) -> float | None:
        for s in self.samples:
            if s.name == name and s.labels == labels:
                return s.value
        return None


def _activity_samples(view: EvidenceView, activity: str, snap: Snapshot) -> dict | None:
    files = view.verdict_files(activity)
    docs = [(vf, view.load(vf)) for vf in files]
    good = [(vf, d) for vf, d in docs if d is not None]
    snap.add("evidence_partitions", len(good), activity=activity)
    snap.add("evidence_unreadable_files", len(docs) - len(good), activity=activity)
    mtimes = [vf.mtime for vf, _ in good if vf.mtime is not None]
    if mtimes:
        snap.add("last_run_timestamp_seconds", max(mtimes), activity=activity)
    if not good:
        return None
    vf, latest = good[-1]
    passed = bool(latest.get("passed"))
    criteria = [c for c in latest.get("criteria", []) if isinstance(c, dict) and "name" in c]
    snap.add("verdict_passed", passed, activity=activity)
    snap.add("verdict_criteria_failed", sum(not c.get("passed") for c in criteria), activity=activity)
    for c in criteria:
        snap.add("criterion_passed", bool(c.get("passed")), activity=activity, criterion=str(c["name"]))
    window = latest.get("window") or {}
    snap.add("latest_partition_start_timestamp_seconds", _ts(window.get("start")), activity=activity)
    snap.add("latest_window_end_timestamp_seconds", _ts(window.get("end")), activity=activity)
    for _, d in reversed(good):
        if d.get("passed") is True:
            snap.add("last_passed_window_end_timestamp_seconds", _ts((d.get("window") or {}).get("end")), activity=activity)
            break
    snap.infos.append({"activity": activity, "partition": str(latest.get("partition", "")), "evidence_key": vf.stem})
    metrics = latest.get("metrics") or {}
    for h in HEADLINES.get(activity, ()):
        snap.add(h.name, h.convert(metrics.get(h.key)))
    return latest


def _node_health_extra(latest: dict, snap: Snapshot) -> None:
    by_class = (latest.get("metrics") or {}).get("storage_errors_by_class")
    if isinstance(by_class, dict):
        for cls, n in sorted(by_class.items()):
            snap.add(STORAGE_ERROR_CLASS_GAUGE, _num(n), error_class=str(cls))


def _dual_write_extra(latest: dict | None, snap: Snapshot) -> None:
    if latest is None:
        return
    metrics = latest.get("metrics") or {}
    for cat in INCONSISTENCY_CATEGORIES:
        snap.add(INCONSISTENCY_GAUGE, _num(metrics.get(cat)), category=cat)


def _ledger_samples(view: EvidenceView, resolution_hours: float, snap: Snapshot) -> None:
    got = view.ledger()
    if got is None:
        return
    tbl, runs = got
    snap.add("dual_write_ledger_runs", len(runs))
    snap.add("dual_write_resolution_window_seconds", resolution_hours * 3600)
    if not runs:
        return
    last = max(runs, key=lambda r: (_ts(r["as_of"]) or 0.0, r["run_key"]))
    as_of = _ts(last["as_of"])
    snap.add("dual_write_ledger_last_run_timestamp_seconds", as_of)
    open_rows = [r for r in tbl.select(["category", "first_seen", "resolved_at"]).to_pylist() if r["resolved_at"] is None]
    snap.add("dual_write_open_diffs", len(open_rows))
    for cat in INCONSISTENCY_CATEGORIES:
        snap.add("dual_write_open_diffs_by_category", sum(r["category"] == cat for r in open_rows), category=cat)
    if open_rows and as_of is not None:
        firsts = [r["first_seen"].timestamp() for r in open_rows]
        snap.add("dual_write_oldest_open_diff_first_seen_timestamp_seconds", min(firsts))
        snap.add("dual_write_oldest_open_diff_age_seconds", as_of - min(firsts))
        # as the ledger's unresolved_over: first_seen < as_of - window
        snap.add("dual_write_open_diffs_over_resolution_window", sum(f < as_of - resolution_hours * 3600 for f in firsts))
    else:
        snap.add("dual_write_open_diffs_over_resolution_window", 0)


def snapshot(view: EvidenceView) -> Snapshot:
    """Everything the exporter exposes, as plain samples (names without the prefix)."""
    snap = Snapshot()
    latest: dict[str, dict | None] = {}
    for activity in ACTIVITIES:
        latest[activity] = _activity_samples(view, activity, snap)
    if latest["node_health_assessment"] is not None:
        _node_health_extra(latest["node_health_assessment"], snap)
    _dual_write_extra(latest["dual_write_verification"], snap)
    hours = DEFAULT_RESOLUTION_HOURS
    dw = latest["dual_write_verification"]
    if dw is not None and _num((dw.get("parameters") or {}).get("resolution_hours")):
        hours = float(dw["parameters"]["resolution_hours"])
    _ledger_samples(view, hours, snap)
    return snap


def _help(name: str) -> str:
    for table in (ACTIVITY_GAUGES, LEDGER_GAUGES):
        if name in table:
            return table[name]
    for hs in HEADLINES.values():
        for h in hs:
            if h.name == name:
                return h.help
    return {
        INCONSISTENCY_GAUGE: "Inconsistent objects by category (label category), latest month.",
        STORAGE_ERROR_CLASS_GAUGE: "Storage errors by error_class (label error_class), latest day (no samples when the feed is absent).",
    }.get(name, name)


def families(snap: Snapshot) -> list[Metric]:
    """The snapshot as prometheus_client metric families (stable order)."""
    grouped: dict[str, list[Sample]] = {}
    for s in snap.samples:
        grouped.setdefault(s.name, []).append(s)
    out: list[Metric] = []
    for name, samples in grouped.items():
        labelnames = sorted({k for s in samples for k in s.labels})
        fam = GaugeMetricFamily(f"{PREFIX}_{name}", _help(name), labels=labelnames)
        for s in samples:
            fam.add_metric([s.labels.get(k, "") for k in labelnames], s.value)
        out.append(fam)
    if snap.infos:
        info = InfoMetricFamily(f"{PREFIX}_{INFO_NAME}", "The latest judged partition of each activity.",
                                labels=["activity"])
        for i in snap.infos:
            info.add_metric([i["activity"]], {"partition": i["partition"], "evidence_key": i["evidence_key"]})
        out.append(info)
    return out


class EvidenceCollector(Collector):
    """A prometheus_client collector reading the evidence store at every scrape."""

    def __init__(self, evidence_root: str) -> None:
        self.view = EvidenceView(evidence_root)

    def collect(self) -> Iterator[Metric]:
        yield from families(snapshot(self.view))

    def describe(self) -> Iterable[Metric]:
        return []  # do not scrape at registration
