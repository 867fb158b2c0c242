"""The assurance cadence, proven tick by tick.

Every schedule's cron, the partition each tick targets across month, quarter and year boundaries,
and the run config it passes (the deployment's parameters, by default the evidence-v1 numbers
written here by hand) are pinned: moving a schedule, changing the partition it targets or a
default threshold fails a test here.
"""

import datetime as dt
import json
import os
import subprocess
import sys

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from qfs_assets import settings
from qfs_assets.definitions import defs

UTC = dt.timezone.utc

#: schedule -> (cron, job, op whose config it passes)
EXPECTED_SCHEDULES = {
    "node_health_assessment_schedule": ("0 2 * * *", "node_health_assessment_job", "node_health_assessment"),
    "dual_write_diff_schedule": ("30 2 * * *", "dual_write_diff_job", "dual_write_diff"),
    "economics_sanity_check_schedule": ("0 3 * * 1", "economics_sanity_check_job", "economics_sanity_check"),
    "dual_write_verification_schedule": ("0 4 1 * *", "dual_write_verification_job", "dual_write_verification"),
    "storage_replay_drill_schedule": ("0 5 1 1,4,7,10 *", "storage_replay_drill_job", "storage_replay_drill"),
}

NODE_HEALTH = {"min_verified_ratio": 0.95, "min_proof_success_rate": 0.99, "max_utilization_cv": 0.25,
               "max_utilization_max_over_mean": 1.5, "heartbeat_max_age_seconds": 3600,
               "min_stake_nod": 100_000_000_000, "min_node_pass_bps": 9500}
DUAL_WRITE = {"sample_bps": 100, "resolution_hours": 24, "method": "pg_hash", "batch_rows": 131072}
#: op -> the config every launch passes by default (evidence-v1 thresholds, the code's knobs)
EXPECTED_CONFIG = {
    "node_health_assessment": NODE_HEALTH,
    "dual_write_diff": DUAL_WRITE,
    "dual_write_verification": DUAL_WRITE,
    "economics_sanity_check": {"atr_per_nod": "1/1", "buffer_bps": 500, "buffer_min_atr": 0},
    "storage_replay_drill": {"batch_rows": 262144, "start_from": "genesis"},
    "node_failure_response": {"aegis": NODE_HEALTH, "batch_rows": 65536},
}


def t(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


#: schedule -> [(tick, partition it judges)], across month, quarter and year boundaries
TICKS = {
    "node_health_assessment_schedule": [
        ("2026-02-01 02:00", "2026-01-31"), ("2026-03-01 02:00", "2026-02-28"), ("2026-04-01 02:00", "2026-03-31"),
        ("2026-07-01 02:00", "2026-06-30"), ("2027-01-01 02:00", "2026-12-31"), ("2028-03-01 02:00", "2028-02-29"),
    ],
    "dual_write_diff_schedule": [
        ("2026-02-01 02:30", "2026-01-31"), ("2026-04-01 02:30", "2026-03-31"), ("2027-01-01 02:30", "2026-12-31"),
    ],
    "economics_sanity_check_schedule": [
        ("2026-03-02 03:00", "2026-02-23"),  # a week that ends in a new month
        ("2026-04-06 03:00", "2026-03-30"),  # the week across the Q1/Q2 boundary (Mon 03-30 .. Sun 04-05)
        ("2027-01-04 03:00", "2026-12-28"),  # the week across the year (Mon 12-28 .. Sun 01-03)
    ],
    "dual_write_verification_schedule": [
        ("2026-02-01 04:00", "2026-01-01"), ("2026-04-01 04:00", "2026-03-01"), ("2027-01-01 04:00", "2026-12-01"),
    ],
    "storage_replay_drill_schedule": [
        ("2026-04-01 05:00", "2026-01-01"), ("2026-07-01 05:00", "2026-04-01"), ("2026-10-01 05:00", "2026-07-01"),
        ("2027-01-01 05:00", "2026-10-01"),
    ],
}

#: schedule -> the ticks of 2026-12-20 .. 2027-04-02 (the fire times themselves, year and quarter crossed)
FIRE_TIMES = {
    "dual_write_verification_schedule": ["2027-01-01 04:00", "2027-02-01 04:00", "2027-03-01 04:00",
                                         "2027-04-01 04:00"],
    "storage_replay_drill_schedule": ["2027-01-01 05:00", "2027-04-01 05:00"],
    "economics_sanity_check_schedule": ["2026-12-21 03:00", "2026-12-28 03:00", "2027-01-04 03:00"],  # first three
}


def schedules() -> dict[str, dg.ScheduleDefinition]:
    return {s.name: s for s in defs.schedules}


def evaluate(name: str, when: dt.datetime):
    schedule = schedules()[name]
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def()) as context:
        return schedule.evaluate_tick(context)


def test_every_schedule_has_the_expected_cron_job_and_status():
    found = {name: (s.cron_schedule, s.job_name, s.execution_timezone, s.default_status)
             for name, s in schedules().items()}
    assert found == {name: (cron, job, "UTC", dg.DefaultScheduleStatus.RUNNING)
                     for name, (cron, job, _) in EXPECTED_SCHEDULES.items()}


#: sensor -> its minimum interval in seconds, as docs/architecture.md ("Cadence, sensors, alerting") and
#: docs/configuration.md say: every 5 min, every minute, every 15 min, at least every 30 s and 60 s
EXPECTED_SENSOR_INTERVALS = {
    "node_failure_sensor": 5 * 60,
    "storage_errors_sensor": 60,
    "evidence_watchdog": 15 * 60,
    "alert_on_run_failure": 30,
    "alert_on_failed_checks": 60,
}


def test_every_sensor_evaluates_as_often_as_documented_and_runs_by_default():
    sensors = {s.name: s for s in defs.sensors}
    assert {n: sensors[n].minimum_interval_seconds for n in EXPECTED_SENSOR_INTERVALS} == EXPECTED_SENSOR_INTERVALS
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())


@pytest.mark.parametrize("name", sorted(FIRE_TIMES))
def test_the_schedules_fire_at_the_expected_times_across_the_year(name):
    cron = EXPECTED_SCHEDULES[name][0]
    ticks = cron_string_iterator(t("2026-12-20 00:00").timestamp(), cron, "UTC")
    expected = [t(s) for s in FIRE_TIMES[name]]
    got = []
    for tick in ticks:
        if tick > t("2027-04-02 00:00") or len(got) == len(expected):
            break
        got.append(tick)
    assert got == expected


@pytest.mark.parametrize("name, when, partition",
                         [(name, when, partition) for name, ticks in TICKS.items() for when, partition in ticks])
def test_each_tick_judges_the_window_that_just_closed_with_the_deployment_config(name, when, partition, monkeypatch):
    for var in ("QFS_EXPORT_ROOT", "QFS_EVIDENCE_ROOT", "QFS_SOR_URL"):  # the resources' settings, for validation
        monkeypatch.setenv(var, "/nowhere")
    data = evaluate(name, t(when))
    [request] = data.run_requests
    op = EXPECTED_SCHEDULES[name][2]
    assert request.partition_key == partition
    assert request.run_key == partition
    assert request.tags["qfs/source"] == "schedule"
    assert request.run_config == {"ops": {op: {"config": EXPECTED_CONFIG[op]}}}
    # the run config is valid for the job (types and names of the config class)
    job = defs.resolve_job_def(EXPECTED_SCHEDULES[name][1])
    assert dg.validate_run_config(job, request.run_config)


def test_no_run_before_the_first_partition_closed():
    data = evaluate("node_health_assessment_schedule", t("2026-01-01 02:00"))
    assert data.run_requests == [] and "no closed partition" in data.skip_message


def test_schedules_and_the_sensor_pass_the_deployment_file(tmp_path, monkeypatch, demo):
    path = tmp_path / "qfs-assure.toml"
    path.write_text("[economics]\nbuffer_bps = 0\natr_per_nod = \"3/4\"\n[node_health]\nmin_stake_nod = 1\n",
                    encoding="utf-8")
    monkeypatch.setenv(settings.ENV_VAR, str(path))
    try:
        [request] = evaluate("economics_sanity_check_schedule", t("2026-04-06 03:00")).run_requests
        assert request.run_config["ops"]["economics_sanity_check"]["config"] == {
            "atr_per_nod": "3/4", "buffer_bps": 0, "buffer_min_atr": 0}
        [request] = evaluate("node_health_assessment_schedule", t("2026-04-06 02:00")).run_requests
        assert request.run_config["ops"]["node_health_assessment"]["config"]["min_stake_nod"] == 1

        from qfs_assets.defs.node_failure.sensors import node_failure_sensor
        from qfs_assets.defs.resources import EvidenceResource, ExportResource

        with dg.instance_for_test() as instance:
            ctx = dg.build_sensor_context(instance=instance, resources={
                "export": ExportResource(export_root=str(demo.export_root)),
                "evidence": EvidenceResource(evidence_root=str(tmp_path / "evidence"))})
            [request] = node_failure_sensor(ctx).run_requests
        config = request.run_config["ops"]["node_failure_response"]["config"]
        assert config["aegis"] == {**NODE_HEALTH, "min_stake_nod": 1}  # node health's AEGIS thresholds
    finally:
        monkeypatch.undo()
        settings.reset()


def test_the_launchpad_defaults_are_the_deployment_values():
    """The config classes' defaults (what the launchpad pre-fills) equal what the schedules pass."""
    from qfs_assets.defs.economics.assets import EconomicsConfig
    from qfs_assets.defs.node_failure.assets import NodeFailureConfig
    from qfs_assets.defs.node_health.assets import NodeHealthConfig

    assert NodeHealthConfig().model_dump() == NODE_HEALTH
    assert EconomicsConfig().model_dump() == EXPECTED_CONFIG["economics_sanity_check"]
    assert NodeFailureConfig().model_dump() == {**EXPECTED_CONFIG["node_failure_response"], "as_of": ""}


def test_partitions_end_ends_every_set_for_the_ui_newest_first_listing():
    """QFS_PARTITIONS_END (the demo's .env) ends the sets with the demo's last window, including the
    newest-first listing the UI's plots use (which ignores an end_date, hence an end_offset)."""
    probe = (
        "import json, datetime as dt\n"
        "from dagster._core.definitions.partitions.context import PartitionLoadingContext\n"
        "from dagster._core.definitions.temporal_context import TemporalContext\n"
        "from qfs_assets.defs import partitions as p\n"
        "ctx = PartitionLoadingContext(temporal_context=TemporalContext(effective_dt=dt.datetime.now(dt.timezone.utc),"
        " last_event_id=None), dynamic_partitions_store=None)\n"
        "out = {n: [d.get_last_partition_key(), d.get_paginated_partition_keys(context=ctx, limit=2, ascending=False)"
        ".results] for n, d in p.BY_CADENCE.items()}\n"
        "t = dt.datetime(2026, 4, 14, 2, tzinfo=dt.timezone.utc)\n"
        "out['after_end'] = p.closed_partition_before(p.daily, t)\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "QFS_PARTITIONS_END": "2026-04-13"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"daily": ["2026-04-12", ["2026-04-12", "2026-04-11"]],
                   "weekly": ["2026-04-06", ["2026-04-06", "2026-03-30"]],
                   "monthly": ["2026-04-01", ["2026-04-01", "2026-03-01"]],
                   "quarterly": ["2026-04-01", ["2026-04-01", "2026-01-01"]],
                   "after_end": None}
