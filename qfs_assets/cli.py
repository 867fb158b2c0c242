"""`qfs-assure`: run assurance activities from a shell, through the same Dagster definitions.

    qfs-assure run ACTIVITY --partition YYYY-MM-DD [--export-root P] [--sor-url U] [--evidence-root P]
    qfs-assure demo [--evidence-root P] [--out DIR]
    qfs-assure gaps [--evidence-root P] [--export-root P] [--as-of T] [--grace-hours H]

Exit codes: 0 every criterion passed; 1 a criterion failed (evidence written);
2 bad input or usage (no evidence written); 3 an internal error (a bug: please report it);
4 the system of record did not answer (refused, timed out, stalled, cut: retry later; no evidence
written); 5 the evidence root cannot be written (read-only, full, not a folder; no evidence written,
earlier evidence untouched). 2, 4 and 5 print one line and alert (bad_input, source_unreachable,
evidence_unwritable); 3 alerts run_failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
import warnings
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from qfs_assets import processes, registry
from qfs_assets.registry import Activity

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_SOURCE_UNREACHABLE, EXIT_EVIDENCE_UNWRITABLE = 4, 5
#: a failed step's ``error_kind`` (defs.common.bad_input_guard) -> exit code; the alert kind is the error kind
EXIT_BY_KIND = {"bad_input": EXIT_BAD_INPUT, "source_unreachable": EXIT_SOURCE_UNREACHABLE,
                "evidence_unwritable": EXIT_EVIDENCE_UNWRITABLE}
KIND_BY_EXIT = {code: kind for kind, code in EXIT_BY_KIND.items()}

#: the settings every run reads, as flag -> environment variable (the resources read the variables)
SETTINGS = {"export_root": "QFS_EXPORT_ROOT", "sor_url": "QFS_SOR_URL", "evidence_root": "QFS_EVIDENCE_ROOT"}


UNJUDGED = {"dual_write_diff"}  # activities whose run writes no verdict (no Great Expectations)


class UsageError(Exception):
    pass


def _quiet() -> None:
    """Keep Dagster's and GX's chatter out of the user's terminal."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    for name in ("dagster", "great_expectations", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _instance():
    """DAGSTER_HOME if set; else the project's dagster.yaml in the working directory; else ephemeral."""
    from dagster import DagsterInstance

    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        if not home.is_dir():
            raise UsageError(f"DAGSTER_HOME {home} is not a directory")
        instance = DagsterInstance.get()
        fail_dead_runs(instance)
        return instance, os.environ["DAGSTER_HOME"]
    if Path("dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(Path.cwd())
        instance = DagsterInstance.get()
        fail_dead_runs(instance)
        return instance, str(Path.cwd())
    return DagsterInstance.ephemeral(), None


def fail_dead_runs(instance) -> list[str]:
    """Mark failed the CLI runs of this host still STARTED whose process is gone (killed, out of
    memory, power cut): Dagster's own run monitoring does not watch in-process runs. Returns
    their run ids; never raises."""
    from qfs_assets import processes

    failed: list[str] = []
    try:
        from dagster import DagsterRunStatus, RunsFilter

        runs = instance.get_runs(filters=RunsFilter(
            statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED],
            tags={"qfs/source": "cli", "qfs/host": processes.host()}))
        for run in runs:
            if processes.is_dead(run.tags):
                instance.report_run_failed(run, message=(
                    f"the process that ran it (pid {run.tags.get('qfs/pid')} on {run.tags.get('qfs/host')}) died "
                    "before the run ended; marked failed by qfs-assure at its next start. Any evidence it was "
                    "publishing was finished or undone by the evidence store's recovery."))
                failed.append(run.run_id)
    except Exception as exc:  # noqa: BLE001 - housekeeping never stops a command
        logging.getLogger("qfs_assets").warning("could not check for runs of dead processes: %s", type(exc).__name__)
    return failed


def _partition_key(activity: Activity, raw: str, instance=None, export_root: str | None = None) -> str:
    from qfs_assets.defs import partitions

    if activity.cadence == "event":
        from qfs_assets.activities.node_failure.detect import failure_from_id, parse_failure_id
        from qfs_assets.defs.node_failure.assets import node_failures
        from qfs_assets.readers.base import BadInput, ExportReader

        try:
            parse_failure_id(raw)
        except (ValueError, IndexError):
            raise UsageError(f"--partition {raw!r} is not {activity.partition_rule}") from None
        if export_root is not None:  # never add a partition for a failure that did not happen
            try:
                failure_from_id(ExportReader(export_root), raw)
            except (KeyError, BadInput):
                raise UsageError(f"no failure {raw} in the export's EQM log or nodes snapshots") from None
        if instance is not None and not instance.has_dynamic_partition(node_failures.name, raw):
            instance.add_dynamic_partitions(node_failures.name, [raw])
        return raw

    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"--partition {raw!r} is not a date (YYYY-MM-DD)") from None
    pdef = partitions.BY_CADENCE[activity.cadence]
    key = day.isoformat()
    if not pdef.has_partition_key(key):
        start = pdef.get_first_partition_key()
        if start and key < start:
            raise UsageError(f"--partition {key} is before the first {activity.cadence} partition {start} (QFS_PARTITIONS_START)")
        raise UsageError(f"--partition {key} is not a {activity.cadence} partition of {activity.name}: it must be "
                         f"{activity.partition_rule}, and its window must have closed")
    return key


def run_config(log_level: str = "CRITICAL", activity: str | None = None) -> dict:
    """Quiet loggers, and the activity's parameters from the deployment's configuration file
    (the same run config the schedules and the node failure sensor pass)."""
    config: dict = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if activity is not None:
        from qfs_assets.defs.common import activity_run_config

        config.update(activity_run_config(activity))
    return config


def deployment_settings():
    """The deployment's configuration file, validated: an invalid one is a usage error (exit 2)."""
    from qfs_assets import settings

    try:
        return settings.current()
    except settings.SettingsError as exc:
        raise UsageError(f"configuration: {exc}") from None


@contextlib.contextmanager
def settings_env(**values: str | None):
    """The run's settings as the environment variables the resources read, restored afterwards.

    Run config is stored with the run and shown in the UI: passing the settings by environment
    keeps the system of record's URL (which may hold a password) out of run storage.
    """
    saved = {var: os.environ.get(var) for var in SETTINGS.values()}
    try:
        for name, value in values.items():
            if value:
                os.environ[SETTINGS[name]] = str(value)
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _setting(name: str, value: str | None, flag: str, why: str) -> str:
    value = value or os.environ.get(SETTINGS[name])
    if not value:
        raise UsageError(f"no {why}: pass {flag} or set {SETTINGS[name]}")
    return value


@dataclass
class Outcome:
    activity: str
    partition: str
    exit_code: int
    passed: bool | None
    failed_criteria: list[str]
    evidence_path: str | None
    message: str
    seconds: float


def _failure_message(result) -> tuple[int, str]:
    """Map a failed run to (exit code, one line)."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.step_failure_data
        user = data.user_failure_data
        if user is not None and user.metadata:
            kind = user.metadata.get("error_kind")
            kind = getattr(kind, "value", kind) or ("bad_input" if "bad_input" in user.metadata else None)
            if kind in EXIT_BY_KIND:
                return EXIT_BY_KIND[kind], user.description or kind.replace("_", " ")
        err = data.error
        while err is not None and err.cause is not None and "BadInput" not in err.cls_name:
            err = err.cause
        if err is not None:
            return EXIT_INTERNAL, f"internal error in step {event.step_key}: {err.cls_name}: {err.message.strip().splitlines()[0]}"
    return EXIT_INTERNAL, "the run failed (see the Dagster UI for the run's logs)"


def prefetch_judge(activity_name: str) -> None:
    """Start GX's helper process when a run of ``activity_name`` will be judged: it imports GX
    (~2 s of CPU) on the other core while this process imports Dagster and the definitions and
    runs the assets. On a small partition the helper's import is the longer of the two, so
    `qfs-assure run` calls this before anything else it imports (an unknown activity starts
    nothing; a helper that is never asked is killed at exit)."""
    if activity_name in UNJUDGED or activity_name not in registry.activities():
        return
    from qfs_assets.evidence import gx_suite

    gx_suite.prefetch()


def execute(activity_name: str, partition: str, *, export_root=None, sor_url=None, evidence_root=None,
            defs=None, instance=None) -> Outcome:
    """Materialise one activity partition through ``defs`` and read back its verdict."""
    t0 = time.perf_counter()
    try:
        activity = registry.get(activity_name)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    export_root = _setting("export_root", export_root, "--export-root", "export root (the folder the deployment publishes)")
    evidence_root = _setting("evidence_root", evidence_root, "--evidence-root", "evidence root")
    if activity.uses_system_of_record:
        sor_url = _setting("sor_url", sor_url, "--sor-url", "system of record URL")
    deployment_settings()
    prefetch_judge(activity.name)  # (`qfs-assure run` started it already, before its first import)
    if defs is None:  # the whole code location when it is loaded already, else the activity's own folder
        if "qfs_assets.definitions" in sys.modules:
            from qfs_assets.definitions import defs
        else:
            from qfs_assets.activity_definitions import activity_definitions

            defs = activity_definitions(activity.name)
    from qfs_assets.storage_uri import StorageURIError, check_root

    try:  # a refused URL (credentials in it, unknown scheme) is a usage error, before any run
        for root in (export_root, evidence_root):
            if root is not None:
                check_root(root)
    except StorageURIError as exc:
        raise UsageError(str(exc)) from None
    if instance is None:
        instance, _ = _instance()
    key = _partition_key(activity, partition, instance, export_root if activity.cadence == "event" else None)
    job = defs.resolve_job_def(activity.job_name)
    _resume_gc()
    with settings_env(export_root=export_root, sor_url=sor_url, evidence_root=evidence_root):
        result = job.execute_in_process(
            partition_key=key,
            run_config=run_config(activity=activity.name),
            instance=instance,
            raise_on_error=False,
            tags={"qfs/source": "cli", **processes.tags()},
        )
    seconds = time.perf_counter() - t0
    if not result.success:
        code, msg = _failure_message(result)
        _alert_failure(activity_name, key, code, msg, evidence_root)
        return Outcome(activity_name, key, code, None, [], None, msg, seconds)
    path, metadata = None, None
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            if mat.asset_key.to_user_string() == activity_name:
                metadata = mat.metadata
                if "evidence_path" in mat.metadata:
                    path = mat.metadata["evidence_path"].value
    if path is None and metadata is not None and "detail_path" in metadata:  # a step with a detail table only
        n = metadata["inconsistencies"].value if "inconsistencies" in metadata else None
        return Outcome(activity_name, key, EXIT_PASSED, None, [], metadata["detail_path"].value,
                       f"{n} inconsistencies recorded in the diff ledger" if n is not None else "done", seconds)
    if path is None:
        return Outcome(activity_name, key, EXIT_INTERNAL, None, [], None, "the run wrote no evidence", seconds)
    from qfs_assets.readers.base import as_path  # a local file or an s3:// object

    doc = json.loads(as_path(path).read_text(encoding="utf-8"))
    failed = [c["name"] for c in doc["criteria"] if not c["passed"]]
    return Outcome(activity_name, key, EXIT_PASSED if doc["passed"] else EXIT_FAILED, doc["passed"], failed, path,
                   "passed" if doc["passed"] else "failed: " + ", ".join(failed), seconds)


def _alert_failure(activity: str, partition: str, code: int, message: str, evidence_root: str | None) -> None:
    """A failed CLI run alerts like a daemon-launched one (run-status sensors do not see in-process runs).

    Deduplicated with the sensor's alerts by the alert ledger; never raises.
    """
    try:
        from qfs_assets.alerting.config import load_config
        from qfs_assets.alerting.dispatch import dispatch
        from qfs_assets.alerting.model import alert_for_failure

        kind = KIND_BY_EXIT.get(code, "run_failed")
        root = evidence_root  # text: an s3:// root must not become a Path
        dispatch(alert_for_failure(kind, activity, partition, message), load_config(evidence_root=root))
    except Exception:  # noqa: BLE001 - alerting never changes the run's outcome
        logging.getLogger("qfs_assets.alerting").error("could not alert on the failed run of %s %s", activity, partition)


def _print_outcome(o: Outcome) -> None:
    if o.exit_code == EXIT_PASSED and o.passed is None:
        print(f"{o.activity} {o.partition}: {o.message}")
        print(f"detail: {o.evidence_path}")
    elif o.exit_code in (EXIT_PASSED, EXIT_FAILED):
        print(f"{o.activity} {o.partition}: {'PASSED' if o.passed else 'FAILED'}"
              + ("" if o.passed else f" ({', '.join(o.failed_criteria)})"))
        print(f"evidence: {o.evidence_path}")
    else:
        print(f"qfs-assure: {o.message}", file=sys.stderr)


def cmd_run(args) -> int:
    saved = os.environ.get("QFS_REPLAY_START_FROM")
    if getattr(args, "start_from", None):
        os.environ["QFS_REPLAY_START_FROM"] = args.start_from  # read by the replay drill's config
    try:
        outcome = execute(
            args.activity,
            args.partition,
            export_root=args.export_root or os.environ.get("QFS_EXPORT_ROOT"),
            sor_url=args.sor_url or os.environ.get("QFS_SOR_URL"),
            evidence_root=args.evidence_root or os.environ.get("QFS_EVIDENCE_ROOT"),
        )
    finally:
        if saved is None:
            os.environ.pop("QFS_REPLAY_START_FROM", None)
        else:
            os.environ["QFS_REPLAY_START_FROM"] = saved
    _print_outcome(outcome)
    return outcome.exit_code


def demo_partitions(activity: Activity, first: dt.date, last: dt.date) -> list[str]:
    """Every partition of ``activity`` whose window starts in [first, last] or contains ``first``;
    for the quarterly replay drill, only quarters that end by ``last``: the log must cover the
    whole quarter (contract v1.1), so a quarter the demo stops in is bad input by design."""
    from qfs_assets.defs import partitions

    pdef = partitions.BY_CADENCE[activity.cadence]
    keys = []
    for key in pdef.get_partition_keys():
        start, end = partitions.window(pdef, key)
        if activity.cadence == "quarterly" and end.date() > last + dt.timedelta(days=1):
            continue
        if start.date() <= last and end.date() > first:
            keys.append(key)
    return keys


ROW = "{:<26} {:<19} {:<7} {}"


def _print_row(o: Outcome) -> None:
    passed = {EXIT_PASSED: "true", EXIT_FAILED: "false"}.get(o.exit_code, "error")
    if o.passed is None and o.exit_code == EXIT_PASSED:
        passed = "-"
    detail = ", ".join(o.failed_criteria) if o.failed_criteria else (
        o.message if o.passed is None or o.exit_code >= EXIT_BAD_INPUT else "-")
    print(ROW.format(o.activity, o.partition, passed, detail), flush=True)


def cmd_demo(args) -> int:
    from qfs_assets.demo.generator import DemoConfig, generate

    out = Path(args.out)
    evidence_root = args.evidence_root or os.environ.get("QFS_EVIDENCE_ROOT") or "evidence_store"
    t0 = time.perf_counter()
    print(f"Generating the demo deployment in {out}/ ...", flush=True)
    dep = generate(out, DemoConfig())
    print(f"  {dep.event_count} EQM events over {len(dep.days)} days ({dep.start} .. {dep.end}); "
          f"export {dep.export_root}; system of record {dep.sor_url}  ({time.perf_counter() - t0:.1f}s)")
    print("  injected incidents: " + ", ".join(i.name for i in dep.incidents))
    print()
    deployment_settings()
    from qfs_assets.definitions import defs

    instance, home = _instance()
    rows: list[Outcome] = []
    print(ROW.format("activity", "partition", "passed", "failed criteria"))
    missed = {(i.activity, p.isoformat()) for i in dep.incidents if i.name == "missed_run" for p in i.partitions}
    for activity in registry.activities().values():
        if activity.cadence == "event":
            continue
        for key in demo_partitions(activity, dep.start, dep.end):
            if (activity.name, key) in missed:
                print(ROW.format(activity.name, key, "-", "not judged (missed run: see the evidence watchdog below)"))
                continue
            o = execute(activity.name, key, export_root=str(dep.export_root), sor_url=dep.sor_url,
                        evidence_root=evidence_root, defs=defs, instance=instance)
            rows.append(o)
            _print_row(o)
    rows += _respond_to_failures(defs, instance, str(dep.export_root), evidence_root)
    _demo_watch(dep, evidence_root)
    judged = [o for o in rows if o.passed is not None or o.exit_code >= EXIT_BAD_INPUT]
    failed = sum(o.exit_code == EXIT_FAILED for o in judged)
    errors = [o for o in judged if o.exit_code >= EXIT_BAD_INPUT]
    print()
    print(f"{len(judged)} partitions judged in {time.perf_counter() - t0:.0f}s: {len(judged) - failed - len(errors)} passed, "
          f"{failed} failed (the injected incidents), {len(errors)} errors.")
    print(f"Evidence: {Path(evidence_root).resolve()}")
    with settings_env(evidence_root=evidence_root):
        dash = defs.resolve_job_def("storage_assurance_dashboard_job").execute_in_process(
            run_config=run_config(), instance=instance, raise_on_error=False)
    if dash.success:
        print(f"Dashboard: {(Path(evidence_root) / 'dashboard' / 'index.html').resolve()}")
    print(f"Analysts: {Path(sys.executable).parent / 'qfs-assure'} query \"SELECT * FROM evidence_verdicts WHERE NOT passed\"")
    env_file = _write_demo_env(dep, evidence_root)
    if env_file:
        print(f"Settings for `dagster dev`: {env_file} (the demo's export, system of record and evidence root)")
    if home:
        print(f"Dagster UI: DAGSTER_HOME={home} {Path(sys.executable).parent / 'dagster'} dev"
              "   (then open http://127.0.0.1:3000)")
    else:
        print("Dagster UI: run the demo from the repository root to record its runs in the project's dagster.yaml instance.")
    return EXIT_INTERNAL if errors else EXIT_PASSED


def _demo_watch(dep, evidence_root: str) -> None:
    """One tick of the storage errors sensor over the whole feed, and the evidence watchdog as of the
    morning after the export's last day: their alerts go to the configured sinks (outbox only without)."""
    from qfs_assets.defs.freshness.sensors import alert_gaps
    from qfs_assets.defs.storage_errors.sensors import process
    from qfs_assets.monitoring.storage_errors import ErrorsCursor

    with settings_env(export_root=str(dep.export_root), evidence_root=evidence_root):
        _, read, sent = process(None, str(dep.export_root), evidence_root, None, cursor=ErrorsCursor.from_start())
        print(f"\nstorage_errors_sensor: {read} partitions read, {sent} alert(s) (corruption and error bursts)")
        as_of = dt.datetime.combine(dep.end + dt.timedelta(days=1), dt.time(12), tzinfo=dt.timezone.utc)
        from qfs_assets.alerting.config import load_config

        grace = load_config(evidence_root=evidence_root).evidence_grace_hours
        found, text = gaps_report(evidence_root, str(dep.export_root), as_of, grace)
        alert_gaps(None, found, evidence_root)
        print("evidence_watchdog " + text)


DEMO_ENV_MARKER = "# written by qfs-assure demo"


def _write_demo_env(dep, evidence_root: str) -> Path | None:
    """A ``.env`` in the working directory with the demo's settings, for ``dagster dev``.

    Written only when there is none, or when the one there is the demo's own (its first line is
    the marker): an operator's ``.env`` is never touched.
    """
    path = Path(".env")
    if path.exists() and not path.read_text(encoding="utf-8").startswith(DEMO_ENV_MARKER):
        return None
    lines = [DEMO_ENV_MARKER,
             f"QFS_EXPORT_ROOT={Path(dep.export_root).resolve()}",
             f"QFS_SOR_URL={dep.sor_url}",
             f"QFS_EVIDENCE_ROOT={Path(evidence_root).resolve()}",
             # the partitions end with the demo's data, so the UI's plots (its newest 120 partitions) show it
             f"QFS_PARTITIONS_END={(dep.end + dt.timedelta(days=1)).isoformat()}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path.resolve()


def _respond_to_failures(defs, instance, export_root: str, evidence_root: str) -> list[Outcome]:
    """One tick of the node failure sensor over the export, then each response it requests.

    The tick's cursor is then saved in the instance's state of the sensor, as the daemon saves it
    after a tick: the first ``dagster-daemon`` start on this instance continues from it and does
    not respond to the same failures again.
    """
    import dagster as dg

    from qfs_assets.defs.node_failure.sensors import node_failure_sensor, save_cursor
    from qfs_assets.defs.resources import EvidenceResource, ExportResource

    ctx = dg.build_sensor_context(instance=instance, resources={"export": ExportResource(export_root=export_root),
                                                                "evidence": EvidenceResource(evidence_root=evidence_root)})
    tick = node_failure_sensor(ctx)
    rows = []
    for request in tick.run_requests:
        o = execute("node_failure_response", request.partition_key, export_root=export_root,
                    evidence_root=evidence_root, defs=defs, instance=instance)
        rows.append(o)
        _print_row(o)
    if tick.cursor:
        save_cursor(instance, tick.cursor)
    return rows


def _evidence_root(args) -> str:
    return args.evidence_root or os.environ.get("QFS_EVIDENCE_ROOT") or "evidence_store"


def cmd_query(args) -> int:
    from qfs_assets.analytics.query import main_query

    return main_query(_evidence_root(args), args.sql, max_rows=args.max_rows, fmt=args.format)


def cmd_tables(args) -> int:
    from qfs_assets.analytics.query import main_tables

    return main_tables(_evidence_root(args))


def cmd_dashboard(args) -> int:
    from qfs_assets.dashboard import render_dashboard

    root = Path(_evidence_root(args))
    if not root.is_dir():
        raise UsageError(f"evidence root {root} does not exist (run `qfs-assure demo` or an activity first)")
    out = render_dashboard(root, Path(args.out) if args.out else root / "dashboard" / "index.html")
    print(f"dashboard: {out.resolve()}")
    return EXIT_PASSED


def gaps_report(evidence_root: str, export_root: str | None, as_of: dt.datetime, grace_hours: float) -> tuple[list, str]:
    """(gaps, text): per activity, the closed partitions without evidence and what fills them."""
    from qfs_assets.defs.freshness.sensors import find
    from qfs_assets.monitoring.gaps import by_activity, fill_commands

    found = find(evidence_root, export_root, as_of, grace_hours)
    lines = [f"closed partitions without evidence as of {as_of.isoformat()} (due {grace_hours:g} h after the "
             f"scheduled run), evidence root {evidence_root}:"]
    if not found:
        lines.append("  none")
    for activity, gaps in by_activity(found).items():
        lines.append(f"{activity}: {len(gaps)} missing")
        for g in gaps:
            lines.append(f"  {g.partition}  window {g.window_start:%Y-%m-%d %H:%M} .. {g.window_end:%Y-%m-%d %H:%M} UTC, "
                         f"scheduled {g.scheduled_at:%Y-%m-%d %H:%M}, due {g.due:%Y-%m-%d %H:%M}")
        backfill, *runs = fill_commands(activity, gaps)
        lines.append("  fill in-process:")
        lines += [f"    .venv/bin/{c}" for c in runs]
        lines.append("  or as a Dagster backfill (daemon, from the repository root):")
        lines.append(f"    .venv/bin/{backfill}")
    return found, "\n".join(lines)


def cmd_gaps(args) -> int:
    from qfs_assets.alerting.config import AlertConfigError, load_config

    evidence_root = _evidence_root(args)
    if args.grace_hours is not None:
        grace = args.grace_hours
    else:
        try:
            grace = load_config(evidence_root=evidence_root).evidence_grace_hours
        except AlertConfigError as exc:
            raise UsageError(str(exc)) from None
    try:
        as_of = (dt.datetime.fromisoformat(args.as_of.replace("Z", "+00:00")) if args.as_of
                 else dt.datetime.now(dt.timezone.utc))
    except ValueError:
        raise UsageError(f"--as-of {args.as_of!r} is not an ISO 8601 time") from None
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.timezone.utc)
    found, text = gaps_report(evidence_root, args.export_root or os.environ.get("QFS_EXPORT_ROOT"), as_of, grace)
    print(text)
    return EXIT_FAILED if found else EXIT_PASSED


def cmd_trace(args) -> int:
    from qfs_assets.analytics.trace import main_trace

    return main_trace(
        _setting("export_root", args.export_root, "--export-root", "export root"),
        args.evidence_root or os.environ.get("QFS_EVIDENCE_ROOT") or "evidence_store",
        tx_id=args.tx_id, object_id=args.object_id, as_json=args.json,
        sor_url=args.sor_url or os.environ.get("QFS_SOR_URL"), day=args.day,
    )


def _load_dotenv() -> None:
    """Settings from ``./.env`` (as ``dagster dev`` reads them); the environment wins over the file."""
    path = Path(".env")
    if path.is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


def cmd_metrics(args) -> int:
    from qfs_assets.observability.exporter import main_metrics

    return main_metrics(_evidence_root(args), port=args.port, host=args.host, textfile=args.textfile)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qfs-assure", description="QFS Assure: assurance activities over a QFS export.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="judge one partition of an activity and write its evidence")
    r.add_argument("activity", help="one of: " + ", ".join(registry.activities()))
    r.add_argument("--partition", required=True, help="the partition's first day, YYYY-MM-DD")
    r.add_argument("--export-root", help="storage export folder (env QFS_EXPORT_ROOT)")
    r.add_argument("--sor-url", help="system of record SQLAlchemy URL (env QFS_SOR_URL)")
    r.add_argument("--evidence-root", help="evidence store folder (env QFS_EVIDENCE_ROOT)")
    r.add_argument("--start-from", choices=["genesis", "snapshot"],
                   help="storage_replay_drill only: replay from genesis (default) or from the state an earlier "
                        "quarter's drill saved and verified (env QFS_REPLAY_START_FROM)")
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("demo", help="build the demo deployment and judge its whole window")
    d.add_argument("--evidence-root", help="evidence store folder (default evidence_store, env QFS_EVIDENCE_ROOT)")
    d.add_argument("--out", default="demo_deployment", help="where the demo export and system of record go")
    d.set_defaults(func=cmd_demo)
    t = sub.add_parser("trace", help="show where a transaction or an object appears across the export and the evidence")
    ids = t.add_mutually_exclusive_group(required=True)
    ids.add_argument("--tx-id", help="a fee transaction id")
    ids.add_argument("--object-id", help="an object id")
    t.add_argument("--day", help="for --object-id: the day to show shards and proofs of (default: its last snapshot)")
    t.add_argument("--json", action="store_true", help="print JSON instead of text")
    t.add_argument("--export-root", help="storage export folder (env QFS_EXPORT_ROOT)")
    t.add_argument("--evidence-root", help="evidence store folder (env QFS_EVIDENCE_ROOT; default evidence_store)")
    t.add_argument("--sor-url", help="system of record URL, for a direct dual-write comparison (env QFS_SOR_URL)")
    t.set_defaults(func=cmd_trace)
    q = sub.add_parser("query", help="run DuckDB SQL over the evidence store (every table registered as a view)")
    q.add_argument("sql", help='e.g. "SELECT partition, passed FROM node_health_assessment_verdicts"')
    q.add_argument("--evidence-root", help="evidence store folder (env QFS_EVIDENCE_ROOT; default evidence_store)")
    q.add_argument("--max-rows", type=int, default=200)
    q.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    q.set_defaults(func=cmd_query)
    tb = sub.add_parser("tables", help="list the evidence views and their columns")
    tb.add_argument("--evidence-root", help="evidence store folder (env QFS_EVIDENCE_ROOT; default evidence_store)")
    tb.set_defaults(func=cmd_tables)
    g = sub.add_parser("gaps", help="list the closed partitions without evidence, per activity, and the commands that fill them")
    g.add_argument("--evidence-root", help="evidence store folder (env QFS_EVIDENCE_ROOT; default evidence_store)")
    g.add_argument("--export-root", help="storage export folder (env QFS_EXPORT_ROOT): partitions before its first "
                                         "snapshot day are not expected")
    g.add_argument("--as-of", help="judge as of this UTC time (ISO 8601; default now)")
    g.add_argument("--grace-hours", type=float, help="hours after the scheduled run before a partition is missing "
                                                     "(default QFS_ALERT_EVIDENCE_GRACE_HOURS, 6)")
    g.set_defaults(func=cmd_gaps)
    db = sub.add_parser("dashboard", help="render the storage assurance dashboard (one self-contained HTML file)")
    db.add_argument("--evidence-root", help="evidence store folder (env QFS_EVIDENCE_ROOT; default evidence_store)")
    db.add_argument("--out", help="output file (default <evidence root>/dashboard/index.html)")
    db.set_defaults(func=cmd_dashboard)
    m = sub.add_parser("metrics", help="serve the evidence as Prometheus metrics, or write them for node exporter")
    m.add_argument("--evidence-root", help="evidence store folder or s3:// URL (env QFS_EVIDENCE_ROOT; default evidence_store)")
    m.add_argument("--port", type=int, help="serve /metrics on this port (default 9464 unless --textfile is given)")
    m.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    m.add_argument("--textfile", help="write the metrics to this .prom file (node exporter's textfile collector) and exit")
    m.set_defaults(func=cmd_metrics)
    return p


_GC_PAUSED = False


def one_shot_settings(activity_name: str) -> None:
    """Process-wide settings of ``qfs-assure run`` (one activity partition, then the process
    ends), made before any data library loads:

    * the cyclic garbage collector is paused until the run starts (:func:`_resume_gc`):
      importing Dagster and the definitions and building the instance allocate millions of
      objects that live as long as the process, and the collector's passes over them cost
      ~0.3-0.5 s of CPU per run (measured on the drill: 21.3-22.7 s of CPU with it, 20.8-21.3 s
      without). The run itself has the collector (frozen objects are never scanned again);
    * the activity's ``process_env`` (see :class:`qfs_assets.registry.Activity`), unless the
      operator set those variables already.

    Only the console script calls it (:func:`entry`): :func:`main` called in a longer-lived
    process (the tests) leaves that process as it is."""
    import gc

    global _GC_PAUSED
    gc.disable()
    _GC_PAUSED = True
    try:
        activity = registry.get(activity_name)
    except KeyError:
        return  # (reported by the run itself)
    for name, value in activity.process_env:
        os.environ.setdefault(name, value)


def _resume_gc() -> None:
    """The collector back on once the run is about to start, if :func:`one_shot_settings` paused
    it: what the process holds by then (modules, definitions, instance) is frozen, so the run's
    collections never scan it."""
    import gc

    global _GC_PAUSED
    if _GC_PAUSED:
        gc.freeze()
        gc.enable()
        _GC_PAUSED = False


def main(argv: Sequence[str] | None = None, *, one_shot: bool = False) -> int:
    """The CLI; ``one_shot``: the process ends after this command (the console script), so a
    ``run`` may apply :func:`one_shot_settings`."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse prints its own usage line
        return EXIT_BAD_INPUT if exc.code else EXIT_PASSED
    _quiet()
    _load_dotenv()
    if args.command == "run":
        if one_shot:
            one_shot_settings(args.activity)
        prefetch_judge(args.activity)
    try:
        if args.command in ("run", "demo"):  # commands that alert: wrong alerting settings stop them first
            from qfs_assets.alerting.config import AlertConfigError, load_config

            try:
                load_config()
            except AlertConfigError as exc:
                raise UsageError(str(exc)) from None
        return args.func(args)
    except UsageError as exc:
        print(f"qfs-assure: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, not a user error: one line, details on request
        if os.environ.get("QFS_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"qfs-assure: internal error: {type(exc).__name__}: {first} (set QFS_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


def entry() -> None:
    """The ``qfs-assure`` console script: :func:`main`, then an exit without the interpreter's teardown.

    Tearing down the modules and heaps of Dagster, DuckDB and Arrow costs 0.5-1.5 s of CPU (the
    most after a big diff or drill) at the end of every command, after its work and output are done. This exit first does what the
    teardown must do (the threads' own exit: non-daemon threads and thread pools are joined; the
    ``atexit`` functions: log handlers flushed, temporary folders removed, the GX helper stopped;
    stdout and stderr flushed), then ends the process with the exit code.
    """
    code = main(one_shot=True)
    import atexit
    import threading

    threading._shutdown()  # what the interpreter's teardown does first (joins non-daemon threads)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
