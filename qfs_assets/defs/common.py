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


import datetime as dt
import json
import math
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import dagster as dg
import pydantic

from qfs_assets import registry, settings
from qfs_assets.evidence import gx_suite
from qfs_assets.evidence.model import ActivityResult, Criterion
from qfs_assets.evidence.store import EvidenceStore, EvidenceUnwritable
from qfs_assets.defs.resources import ExportResource
from qfs_assets.params import Params
from qfs_assets.readers.base import BadInput

T = TypeVar("T")
P = TypeVar("P", bound=Params)

TAG_SOURCE = "qfs/source"
#: run tags of a judged run: ``passed`` / ``failed``, and the failed criteria (comma-separated)
TAG_VERDICT = "qfs/verdict"
TAG_FAILED_CRITERIA = "qfs/failed_criteria"


# ---- guards -------------------------------------------------------------------------------------
def bad_input_guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; an error that is not a bug becomes a dg.Failure carrying its one line (no traceback).

    The step's metadata ``error_kind`` says which (the CLI's exit code and the alert kind follow
    it): ``bad_input`` (a BadInput; also flagged ``bad_input``), ``source_unreachable`` (the
    system of record did not answer) or ``evidence_unwritable`` (the evidence root cannot be
    written)."""
    try:
        return fn()
    except BadInput as exc:
        kind = getattr(exc, "kind", "bad_input")
        metadata = {"error_kind": kind, "table": exc.table, **({"bad_input": True} if kind == "bad_input" else {})}
        raise dg.Failure(description=str(exc), metadata=metadata, allow_retries=False) from None
    except EvidenceUnwritable as exc:
        raise dg.Failure(description=str(exc), metadata={"error_kind": exc.kind}, allow_retries=False) from None


def config_guard(fn: Callable[[], T]) -> T:
    """Run ``fn`` (turning run config into parameters); an invalid value is a usage error, not a bug."""
    try:
        return fn()
    except (ValueError, TypeError) as exc:
        raise dg.Failure(description=f"bad configuration: {exc}", metadata={"bad_input": True, "error_kind": "bad_input"},
                         allow_retries=False) from None


# ---- run config derived from the parameters model -----------------------------------------------
def _config_field(info: Any, default: Any, name: str) -> tuple[Any, Any]:
    """The Dagster config type and field of a parameters field, defaulting to ``default``.

    A field whose type is another parameters model (the node failure response's ``aegis``) is a
    nested config class with that model's deployed values as defaults.
    """
    annotation = info.annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Params):
        section = settings.section_for_model(annotation)
        nested = config_class(annotation, name, f"The [{section}] section's parameters (the deployment's by default).")
        return nested, pydantic.Field(default_factory=nested, description=f"the [{section}] section")
    if annotation in (int, float, str, bool):
        typ = annotation
    elif origin is typing.Literal:
        typ = str
    elif origin in (typing.Union, types.UnionType) and set(args) <= {int, float}:
        typ = float
    else:
        typ, default = str, str(default)  # e.g. an exchange rate, given as text
    return typ, pydantic.Field(default=default, description=info.description)


def config_class(params_cls: type[Params], name: str, doc: str = "", **extra: tuple[Any, Any]) -> type[dg.Config]:
    """A ``dg.Config`` whose fields are the parameters model's (plus ``extra``), with the deployment's
    values as defaults: the configuration file's (:mod:`qfs_assets.settings`) over the model's.

    The launchpad shows them; :func:`params_from_config` validates them back through the model,
    where the bounds live. The file is read (and validated) here, when the code location loads.
    """
    deployed = settings.current().params(settings.section_for_model(params_cls))
    fields: dict[str, Any] = {}
    for field_name, info in params_cls.model_fields.items():
        fields[field_name] = _config_field(info, getattr(deployed, field_name),
                                           name + field_name.title().replace("_", ""))
    for field_name, (typ, default) in extra.items():
        fields[field_name] = (typ, default)
    cls = pydantic.create_model(name, __base__=dg.Config, **fields)
    cls.__doc__ = doc or f"Run configuration of {params_cls.__name__} (defaults and bounds in its model)."
    return cls


def activity_run_config(activity: str) -> dict[str, Any]:
    """The run config of an activity's op with the deployment's parameters: what schedules, the
    node failure sensor and the CLI pass, so every launch path judges by the same file."""
    values = settings.current().config_values(settings.section_of(activity))
    return {"ops": {activity: {"config": values}}}


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
        "partitions": dg.MetadataValue.text(", ".join(str(p) for p in read.partitions) or "—"),
    }


def input_asset(table: str, *, partitions_def, group: str, description: str,
                days: Callable[[str], list], name: str, **kw) -> dg.AssetsDefinition:
    """An input asset: the export partitions of ``table`` a run of ``partitions_def`` reads, gated."""

    @dg.asset(name=name, partitions_def=partitions_def, group_name=group, kinds={"parquet"}, description=description)
    def _input(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=validated_partitions(export, table, days(context.partition_key), **kw))

    return _input


# ---- checks ---------------------------------------------------------------------------------------
def check_specs(asset_key: str, names: list[str], descriptions: dict[str, str] | None = None, *,
                partitions_def: dg.PartitionsDefinition | None = None) -> list[dg.AssetCheckSpec]:
    """The activity's criteria as asset checks, partitioned like the asset.

    With the asset's partitions definition each result is recorded against the partition it judged
    (the UI and GraphQL show one status per partition, and the planned execution of a run's partition
    is completed by its result instead of being left SKIPPED beside a partition-less result).
    Dagster 1.13 marks partitioned checks as a preview feature; its warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(name=n, asset=asset_key, partitions_def=partitions_def,
                              description=(descriptions or {}).get(n, f"evidence-v1 criterion {n}"))
            for n in names
        ]


def _metadata_value(value: Any) -> Any:
    """A scalar as typed metadata (numbers stay numbers, so the UI plots them); anything else as text."""
    if isinstance(value, bool):
        return dg.MetadataValue.bool(value)
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    return dg.MetadataValue.text(plain(value))


def flat_metadata(prefix: str, value: Any) -> dict[str, Any]:
    """``observed`` / ``threshold`` of a criterion as metadata: a number under ``prefix``, an object as
    one entry per key (``threshold.utilization_cv``), never JSON. None is left out."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flat_metadata(f"{prefix}.{k}", v))
        return out
    return {} if value is None else {prefix: _metadata_value(value)}


def unflat_metadata(metadata: Mapping[str, Any], prefix: str) -> Any:
    """The value :func:`flat_metadata` flattened (plain values), or None."""
    if prefix in metadata:
        return getattr(metadata[prefix], "value", metadata[prefix])
    nested = {k[len(prefix) + 1:]: getattr(v, "value", v) for k, v in metadata.items() if k.startswith(prefix + ".")}
    return nested or None


def check_results(asset_key: str, criteria: list[Criterion]) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=c.name,
            passed=c.passed,
            severity=dg.AssetCheckSeverity.ERROR if c.could_not_run else dg.AssetCheckSeverity.WARN,
            metadata={
                **flat_metadata("observed", c.observed),
                **flat_metadata("threshold", c.threshold),
                **({"detail": dg.MetadataValue.text(c.detail)} if c.detail else {}),
            },
        )
        for c in criteria
    ]


# ---- judging and publishing -----------------------------------------------------------------------
def judge(result: ActivityResult) -> list[Criterion]:
    return gx_suite.validate(result.activity, result.judge_table, result.criteria_specs, result.metrics)


def judge_and_publish(result: ActivityResult, store: EvidenceStore, context=None) -> tuple[list[Criterion], Path]:
    """Judge with GX, publish the evidence, tag the run with the verdict and alert if a criterion failed."""
    criteria = judge(result)
    result.extra.setdefault("judged_at", dt.datetime.now(dt.timezone.utc))
    path = bad_input_guard(lambda: store.publish(result, criteria))  # unsafe name: bad input; unwritable root
    if context is not None:
        tag_run(context, criteria)
    if context is not None and not all(c.passed for c in criteria):
        from qfs_assets.defs.alerting.sensors import alert_on_evidence

        alert_on_evidence(context, json.loads(path.read_text(encoding="utf-8")), path)  # never raises
    return criteria, path


def verdict_tags(criteria: list[Criterion]) -> dict[str, str]:
    failed = sorted(c.name for c in criteria if not c.passed)
    tags = {TAG_VERDICT: "failed" if failed else "passed"}
    if failed:
        tags[TAG_FAILED_CRITERIA] = ",".join(failed)
    return tags


def tag_run(context, criteria: list[Criterion]) -> None:
    """Tag the (running) run with its verdict, so the Runs page filters failed verdicts
    (``qfs/verdict=failed``). Never fails the run."""
    try:
        context.instance.add_run_tags(context.run_id, verdict_tags(criteria))
    except Exception as exc:  # noqa: BLE001 - a tag is a convenience, the evidence is written
        context.log.warning(f"could not tag run {context.run_id} with its verdict: {exc}")


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


def judge_activity(context, store: EvidenceStore, assess: Callable[[], ActivityResult],
                   params: Params | None = None) -> Judged:
    """Prefetch GX, assess (a bad input fails the run in one line), judge, publish, alert.

    With ``params`` (the run's parameters) the evidence records, beside ``parameters``, where
    each came from (``parameter_sources``: default, the deployment file, or this run's config).
    """
    bad_input_guard(store.prepare)  # an evidence root that cannot be written stops the run before any work
    gx_suite.prefetch()  # GX's import overlaps the assessment's DuckDB scans
    result = bad_input_guard(assess)
    if params is not None:
        deployment = settings.current()
        result.extra["parameter_sources"] = deployment.sources(settings.section_of(result.activity), params)
    criteria, path = judge_and_publish(result, store, context)
    return Judged(result, criteria, path)


def _scalar_metadata(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Numeric metrics as stable metadata keys (the UI plots them over partitions); nested objects
    flattened (``storage_errors_by_class.checksum_mismatch``); lists and text left to the evidence."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            out.update(_scalar_metadata(v, f"{prefix}{k}."))
        elif isinstance(v, (bool, int, float)):
            out[prefix + k] = _metadata_value(v)
    return out


def plain(value: Any) -> str:
    """A value as an operator reads it: numbers without float noise, lists and objects as
    ``a, b`` / ``k=v``, None as a dash; never a Python repr."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ") if abs(value) >= 100_000 else str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(plain(v) for v in value) or "—"
    return str(value)


def _cell(value: Any) -> str:
    return plain(value).replace("|", "\\|")


def verdict_markdown(result: ActivityResult, criteria: list[Criterion]) -> str:
    passed = all(c.passed for c in criteria)
    failed = [c.name for c in criteria if not c.passed]
    rules = {s.name: s.description for s in result.criteria_specs}
    head = (f"**PASSED** — {result.activity} {result.partition}: all {len(criteria)} criteria passed" if passed else
            f"**FAILED** — {result.activity} {result.partition}: {len(failed)} of {len(criteria)} criteria failed "
            f"({', '.join(failed)})")
    lines = [head, "", "| criterion | verdict | observed | threshold | rule |", "|---|---|---|---|---|"]
    for c in criteria:
        verdict = "passed" if c.passed else ("**could not run**" if c.could_not_run else "**FAILED**")
        lines.append(f"| {c.name} | {verdict} | {_cell(c.observed)} | {_cell(c.threshold)} | {_cell(rules.get(c.name, ''))} |")
    if not passed:
        lines += ["", f"Runbook: `{registry.runbook_for(result.activity)}`"]
    return "\n".join(lines)


def evidence_metadata(result: ActivityResult, criteria: list[Criterion], path: Path) -> dict[str, Any]:
    """The activity asset's materialization metadata, the verdict first: the verdict (markdown),
    passed, the count of failed criteria, then every numeric metric and parameter (the plots by
    partition), then the evidence file."""
    failed = [c.name for c in criteria if not c.passed]
    return {
        "verdict": dg.MetadataValue.md(verdict_markdown(result, criteria)),
        "passed": dg.MetadataValue.bool(not failed),
        "failed_criteria": dg.MetadataValue.int(len(failed)),
        **({"failed_criteria_names": dg.MetadataValue.text(", ".join(failed))} if failed else {}),
        **_scalar_metadata(result.metrics),
        **{k: v for k, v in flat_metadata("param", result.parameters).items()},
        "evidence_path": dg.MetadataValue.path(str(path)),
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
    tags = None
    if spec.process_env:  # what `qfs-assure run` sets itself, for a run the Kubernetes launcher starts
        tags = {"dagster-k8s/config": {"container_config": {
            "env": [{"name": name, "value": value} for name, value in spec.process_env]}}}
    return dg.define_asset_job(spec.job_name, selection=selection or dg.AssetSelection.groups(spec.group),
                               description=description or f"{spec.title}: {spec.summary}.", tags=tags)


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
        return dg.RunRequest(run_key=key, partition_key=key, tags={TAG_SOURCE: "schedule"},
                             run_config=activity_run_config(activity))

    return _schedule
