"""What every activity asset does the same way, written once.

An activity asset is three lines: turn its run config into the activity's parameters
(:func:`params_from_config`), call :func:`judge_activity` with the pure assessment, and return
:func:`evidence_result`. In between, :func:`judge_activity` overlaps Great Expectations' import
with the assessment's scans, turns a bad input into a one-line ``dg.Failure`` (no traceback, no
evidence), judges the result with the GX suite built from its criteria, publishes the evidence
(only now, after every input was read and validated) and alerts on a failed verdict.

Run config classes are derived from the activity's parameters model (:func:`config_class`), so
defaults and bounds are written once, in ``qfs_assets/activities/<activity>/params.py``.
"""


import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import dagster as dg
import pydantic

from qfs_assets import registry
from qfs_assets.evidence import gx_suite
from qfs_assets.evidence.model import ActivityResult, Criterion
from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.defs.resources import ExportResource
from qfs_assets.params import Params
from qfs_assets.readers.base import BadInput

T = TypeVar("T")
P = TypeVar("P", bound=Params)

TAG_SOURCE = "qfs/source"


# ---- guards -------------------------------------------------------------------------------------
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


# ---- run config derived from the parameters model -----------------------------------------------
def _config_type(annotation: Any, default: Any) -> tuple[Any, Any] | None:
    """The Dagster config type and default of a parameters field; None for a nested model."""
    if annotation in (int, float, str, bool):
        return annotation, default
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return str, default
    if origin in (typing.Union, types.UnionType) and set(args) <= {int, float}:
        return float, default
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return None
    return str, str(default)  # e.g. an exchange rate, given as text


def config_class(params_cls: type[Params], name: str, doc: str = "", **extra: tuple[Any, Any]) -> type[dg.Config]:
    """A ``dg.Config`` whose fields and defaults are the parameters model's (plus ``extra``).

    The launchpad shows them; :func:`params_from_config` validates them back through the model,
    where the bounds live.
    """
    fields: dict[str, Any] = {}
    for field_name, info in params_cls.model_fields.items():
        typed = _config_type(info.annotation, info.get_default(call_default_factory=True))
        if typed is not None:
            fields[field_name] = (typed[0], pydantic.Field(default=typed[1], description=info.description))
    for field_name, (typ, default) in extra.items():
        fields[field_name] = (typ, default)
    cls = pydantic.create_model(name, __base__=dg.Config, **fields)
    cls.__doc__ = doc or f"Run configuration of {params_cls.__name__} (defaults and bounds in its model)."
    return cls


def params_from_config(params_cls: type[P], config: dg.Config, *, exclude: tuple[str, ...] = (),
                       **overrides: Any) -> P:
    """Validate run config into the activity's parameters; a bad value fails the run in one line."""
    values = {k: v for k, v in config.model_dump().items() if k in params_cls.model_fields and k not in exclude}
    return config_guard(lambda: params_cls.build(values, **overrides))


# ---- inputs ---------------------------------------------------------------------------------------
def validated_partitions(export, table: str, days, **kw) -> dict[str, Any]:
    """Gate one table's export partitions: they exist, every file is readable Parquet with the
    contract's columns and type families; rows are counted from the footers.

    Values (casts, nulls, enumerations, keys) are validated by the activity's assessment in the
    same scans as its aggregates, so a 60M-row shard map is not scanned twice.
    """
    from qfs_assets.readers.base import connect, parquet_metadata

    reader = export.reader()
    con = connect()
    try:
        bad_input_guard(lambda: reader.relation(con, table, list(days), validate=False, **kw))
    finally:
        con.close()
    read = reader.reads[-1]
    return {
        "rows": dg.MetadataValue.int(sum(parquet_metadata(f).num_rows for f in read.files)),
        "files": dg.MetadataValue.int(len(read.files)),
        "partitions": dg.MetadataValue.json(read.partitions),
    }


def input_asset(table: str, *, partitions_def, group: str, description: str,
                days: Callable[[str], list], name: str, **kw) -> dg.AssetsDefinition:
    """An input asset: the export partitions of ``table`` a run of ``partitions_def`` reads, gated."""

    @dg.asset(name=name, partitions_def=partitions_def, group_name=group, kinds={"parquet"}, description=description)
    def _input(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=validated_partitions(export, table, days(context.partition_key), **kw))

    return _input


# ---- checks ---------------------------------------------------------------------------------------
def check_specs(asset_key: str, names: list[str], descriptions: dict[str, str] | None = None) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name=n, asset=asset_key, description=(descriptions or {}).get(n, f"evidence-v1 criterion {n}"))
        for n in names
    ]


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


# ---- judging and publishing -----------------------------------------------------------------------
def judge(result: ActivityResult) -> list[Criterion]:
    return gx_suite.validate(result.activity, result.judge_table, result.criteria_specs, result.metrics)


def judge_and_publish(result: ActivityResult, store: EvidenceStore, context=None) -> tuple[list[Criterion], Path]:
    """Judge with GX, publish the evidence, and alert the configured sinks if a criterion failed."""
    criteria = judge(result)
    path = store.publish(result, criteria)
    if context is not None and not all(c.passed for c in criteria):
        from qfs_assets.defs.alerting.sensors import alert_on_evidence

        alert_on_evidence(context, json.loads(path.read_text(encoding="utf-8")), path)  # never raises
    return criteria, path


@dataclass
class Judged:
    """An activity's result, its verdicts and where its evidence was published."""

    result: ActivityResult
    criteria: list[Criterion]
    path: Path

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.result.metrics


def judge_activity(context, store: EvidenceStore, assess: Callable[[], ActivityResult]) -> Judged:
    """Prefetch GX, assess (a bad input fails the run in one line), judge, publish, alert."""
    gx_suite.prefetch()  # GX's import overlaps the assessment's DuckDB scans
    result = bad_input_guard(assess)
    criteria, path = judge_and_publish(result, store, context)
    return Judged(result, criteria, path)


def _scalar_metadata(metrics: Mapping[str, Any]) -> dict[str, Any]:
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
    if not passed:
        lines += ["", f"Runbook: `{registry.runbook_for(result.activity)}`"]
    return "\n".join(lines)


def evidence_metadata(result: ActivityResult, criteria: list[Criterion], path: Path) -> dict[str, Any]:
    return {
        **_scalar_metadata(result.metrics),
        "passed": dg.MetadataValue.bool(all(c.passed for c in criteria)),
        "failed_criteria": dg.MetadataValue.int(sum(not c.passed for c in criteria)),
        "evidence_path": dg.MetadataValue.path(str(path)),
        "verdict": dg.MetadataValue.md(verdict_markdown(result, criteria)),
    }


def evidence_result(judged: Judged, **extra_metadata: Any) -> dg.MaterializeResult:
    """The activity asset's materialization: its metrics, verdict, evidence path and check results."""
    activity = judged.result.activity
    return dg.MaterializeResult(
        asset_key=activity,
        metadata={**evidence_metadata(judged.result, judged.criteria, judged.path), **extra_metadata},
        check_results=check_results(activity, judged.criteria),
    )


# ---- jobs and schedules ---------------------------------------------------------------------------
def activity_job(activity: str, selection: dg.AssetSelection | None = None, description: str | None = None):
    """The job of an activity (named after it in the registry), by default its asset group."""
    spec = registry.get(activity)
    return dg.define_asset_job(spec.job_name, selection=selection or dg.AssetSelection.groups(spec.group),
                               description=description or f"{spec.title}: {spec.summary}.")


def cadence_schedule(activity: str, job, partitions_def: dg.TimeWindowPartitionsDefinition) -> dg.ScheduleDefinition:
    """The activity's schedule: at its registry cron (UTC) it runs the newest closed partition."""
    from qfs_assets.defs.partitions import closed_partition_before

    spec = registry.get(activity)
    if not spec.schedule_cron:
        raise ValueError(f"activity {activity} has no schedule in the registry")

    @dg.schedule(name=spec.schedule_name, cron_schedule=spec.schedule_cron, job=job, execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"{spec.title} at `{spec.schedule_cron}` (UTC): judges the {spec.cadence} partition "
                             "whose window has just closed.")
    def _schedule(context: dg.ScheduleEvaluationContext):
        key = closed_partition_before(partitions_def, context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason("no closed partition yet")
        return dg.RunRequest(run_key=key, partition_key=key, tags={TAG_SOURCE: "schedule"})

    return _schedule
