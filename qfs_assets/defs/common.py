"""What every activity asset does the same way: judge with GX, publish evidence, report.

An activity's pure code returns an ActivityResult; :func:`judge_and_publish` validates its
judge table with the Great Expectations suite built from its criteria, writes the evidence
(only now, after every input was read and validated) and returns the check results and
stable, plottable metadata for the Dagster UI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import dagster as dg

from qfs_assets.evidence import gx_suite
from qfs_assets.evidence.model import ActivityResult, Criterion
from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.readers.base import BadInput

RUNBOOKS = {
    "node_health_assessment": "docs/runbooks/node-failure.md",
    "economics_sanity_check": "docs/runbooks/conservation-violation.md",
    "dual_write_verification": "docs/runbooks/dual-write-rollback.md",
    "storage_replay_drill": "docs/runbooks/replay-from-logs.md",
    "node_failure_response": "docs/runbooks/node-failure.md",
}

T = TypeVar("T")


def bad_input_guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; a BadInput becomes a dg.Failure carrying the one-line message (no traceback)."""
    try:
        return fn()
    except BadInput as exc:
        raise dg.Failure(description=str(exc), metadata={"bad_input": True, "table": exc.table}, allow_retries=False) from None


def config_guard(fn: Callable[[], T]) -> T:
    """Run ``fn`` (turning run config into parameters); an invalid value is a usage error, not a bug."""
    try:
        return fn()
    except (ValueError, TypeError) as exc:
        raise dg.Failure(description=f"bad configuration: {exc}", metadata={"bad_input": True}, allow_retries=False) from None


def validated_partitions(export, table: str, days, **kw) -> dict[str, Any]:
    """Gate one table's export partitions: they exist, every file is readable Parquet with the
    contract's columns and type families; rows are counted from the footers.

    Values (casts, nulls, enumerations, keys) are validated by the activity's assessment in the
    same scans as its aggregates, so a 60M-row shard map is not scanned twice.
    """
    import pyarrow.parquet as pq

    from qfs_assets.readers.base import connect

    reader = export.reader()
    con = connect()
    try:
        bad_input_guard(lambda: reader.relation(con, table, list(days), validate=False, **kw))
    finally:
        con.close()
    read = reader.reads[-1]
    return {
        "rows": dg.MetadataValue.int(sum(pq.read_metadata(f).num_rows for f in read.files)),
        "files": dg.MetadataValue.int(len(read.files)),
        "partitions": dg.MetadataValue.json(read.partitions),
    }


def check_specs(asset_key: str, names: list[str], descriptions: dict[str, str] | None = None) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name=n, asset=asset_key, description=(descriptions or {}).get(n, f"evidence-v1 criterion {n}"))
        for n in names
    ]


def _scalar_metadata(metrics: dict[str, Any]) -> dict[str, Any]:
    """Numeric metrics as stable metadata keys (the UI plots them over partitions)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            out[k] = dg.MetadataValue.bool(v)
        elif isinstance(v, int):
            out[k] = dg.MetadataValue.int(v)
        elif isinstance(v, float):
            out[k] = dg.MetadataValue.float(v)
    return out


def verdict_markdown(result: ActivityResult, criteria: list[Criterion]) -> str:
    passed = all(c.passed for c in criteria)
    lines = [f"**{result.activity} {result.partition}: {'PASSED' if passed else 'FAILED'}**", "",
             "| criterion | passed | observed | threshold |", "|---|---|---|---|"]
    for c in criteria:
        lines.append(f"| {c.name} | {'yes' if c.passed else 'NO'} | {c.observed} | {c.threshold} |")
    runbook = RUNBOOKS.get(result.activity)
    if runbook and not passed:
        lines += ["", f"Runbook: `{runbook}`"]
    return "\n".join(lines)


def judge(result: ActivityResult) -> list[Criterion]:
    return gx_suite.validate(result.activity, result.judge_table, result.criteria_specs, result.metrics)


def judge_and_publish(result: ActivityResult, store: EvidenceStore, context=None) -> tuple[list[Criterion], Path]:
    """Judge with GX, publish the evidence, and alert the configured sinks if a criterion failed."""
    criteria = judge(result)
    path = store.publish(result, criteria)
    if context is not None and not all(c.passed for c in criteria):
        from qfs_assets.alerting.dagster_hooks import alert_on_evidence

        alert_on_evidence(context, json.loads(path.read_text(encoding="utf-8")), path)  # never raises
    return criteria, path


def check_results(asset_key: str, criteria: list[Criterion]) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=c.name,
            passed=c.passed,
            severity=dg.AssetCheckSeverity.ERROR if c.could_not_run else dg.AssetCheckSeverity.WARN,
            metadata={
                "observed": dg.MetadataValue.json(c.observed) if isinstance(c.observed, (dict, list)) else c.observed,
                "threshold": dg.MetadataValue.json(c.threshold) if isinstance(c.threshold, (dict, list)) else c.threshold,
                **({"detail": c.detail} if c.detail else {}),
            },
        )
        for c in criteria
    ]


def evidence_metadata(result: ActivityResult, criteria: list[Criterion], path: Path) -> dict[str, Any]:
    return {
        **_scalar_metadata(result.metrics),
        "passed": dg.MetadataValue.bool(all(c.passed for c in criteria)),
        "failed_criteria": dg.MetadataValue.int(sum(not c.passed for c in criteria)),
        "evidence_path": dg.MetadataValue.path(os.fspath(path)),
        "verdict": dg.MetadataValue.md(verdict_markdown(result, criteria)),
    }
