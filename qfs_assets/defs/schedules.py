"""The 12-month assurance cadence: one schedule per activity job, RUNNING by default.

Each schedule materialises the partition whose window has just closed, at a fixed UTC hour
after the day's export lands (exports are expected complete by 01:00 UTC):

| schedule | fires (UTC) | partition it runs |
|---|---|---|
| node_health_assessment_schedule | daily 02:00 | yesterday |
| dual_write_diff_schedule | daily 02:30 | yesterday |
| economics_sanity_check_schedule | Mondays 03:00 | the week that ended at Monday 00:00 |
| dual_write_verification_schedule | the 1st, 04:00 | the month that just ended |
| storage_replay_drill_schedule | Jan/Apr/Jul/Oct 1, 05:00 | the quarter that just ended |
"""

import datetime as dt

import dagster as dg

# job name -> (hour, minute, extra kwargs of build_schedule_from_partitioned_job)
CADENCE = {
    "node_health_assessment_job": dict(hour_of_day=2, minute_of_hour=0),
    "dual_write_diff_job": dict(hour_of_day=2, minute_of_hour=30),
    "economics_sanity_check_job": dict(hour_of_day=3, minute_of_hour=0, day_of_week=1),
    "dual_write_verification_job": dict(hour_of_day=4, minute_of_hour=0, day_of_month=1),
}

QUARTERLY_CRON = "0 5 1 1,4,7,10 *"  # custom partitions take no hour offset: a plain schedule instead


def previous_quarter_start(t: dt.datetime) -> dt.date:
    """The first day of the quarter before the one containing ``t``."""
    q_month = 3 * ((t.month - 1) // 3) + 1
    month, year = q_month - 3, t.year
    if month < 1:
        month, year = month + 12, year - 1
    return dt.date(year, month, 1)


def quarterly_schedule(job) -> dg.ScheduleDefinition:
    @dg.schedule(name=job.name.removesuffix("_job") + "_schedule", cron_schedule=QUARTERLY_CRON, job=job,
                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Runs the drill of the quarter that just ended.")
    def _schedule(context: dg.ScheduleEvaluationContext):
        key = previous_quarter_start(context.scheduled_execution_time).isoformat()
        return dg.RunRequest(run_key=key, partition_key=key, tags={"qfs/source": "schedule"})

    return _schedule


def schedules_for(jobs) -> list:
    out = []
    for job in jobs:
        if job.name == "storage_replay_drill_job":
            out.append(quarterly_schedule(job))
            continue
        kwargs = CADENCE.get(job.name)
        if kwargs is None:
            continue
        out.append(
            dg.build_schedule_from_partitioned_job(
                job,
                name=job.name.removesuffix("_job") + "_schedule",
                default_status=dg.DefaultScheduleStatus.RUNNING,
                tags={"qfs/source": "schedule"},
                **kwargs,
            )
        )
    return out
