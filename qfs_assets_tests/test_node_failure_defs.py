"""The node failure sensor and response through `defs`, on the demo deployment."""

import json

import dagster as dg

from qfs_assets.definitions import defs
from qfs_assets.defs.node_failure.assets import node_failures
from qfs_assets.defs.node_failure.sensors import node_failure_sensor
from qfs_assets.defs.resources import EvidenceResource, ExportResource

FAILURE = "node-0007_20260311"


def tick(instance, export_root, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  resources={"export": ExportResource(export_root=str(export_root)),
                                             "evidence": EvidenceResource(evidence_root=str(export_root.parent / "ev"))})
    return node_failure_sensor(ctx)


def test_sensor_fires_once_per_failure_and_the_response_plans_it(demo, tmp_path):
    with dg.instance_for_test() as instance:
        first = tick(instance, demo.export_root)
        assert [r.partition_key for r in first.run_requests] == [FAILURE]
        assert first.run_requests[0].run_key == FAILURE
        assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [[FAILURE]]
        # the next tick (same export, advanced cursor) launches nothing, and neither does a restart
        again = tick(instance, demo.export_root, first.cursor)
        assert again.run_requests == [] and again.dynamic_partitions_requests == []

        instance.add_dynamic_partitions(node_failures.name, [FAILURE])
        job = defs.resolve_job_def("node_failure_response_job")
        ev = tmp_path / "ev"
        result = job.execute_in_process(
            partition_key=FAILURE, instance=instance, raise_on_error=False,
            run_config={"resources": {"export": {"config": {"export_root": str(demo.export_root)}},
                                      "evidence": {"config": {"evidence_root": str(ev)}}}})
        assert result.success
    doc = json.loads((ev / "node_failure_response" / f"{FAILURE}.json").read_text())
    assert doc["passed"] is True, doc["criteria"]
    m = doc["metrics"]
    assert m["node_id"] == "node-0007"
    assert m["shards_to_move"] == 379 and m["shards_unplaceable"] == 0
    assert m["receivers_verified"] == m["receiving_nodes"] > 0
    # the storage reward paid on the failure day was already clawed back by the demo's adjustment of
    # the next day: the proposal is net of it (nothing left to claw back) and says so
    assert m["clawback_gross_nod"] > 0 and m["clawback_nod"] == 0
    assert m["existing_adjustments_nod"] == -m["clawback_gross_nod"] and m["rewards_already_clawed_back"] == 1
    assert "already clawed back by 1 adjustment(s)" in doc["clawback_netting"]["note"]
    assert {c["name"] for c in doc["criteria"]} == {"all_shards_placed", "receivers_verified", "no_co_location",
                                                    "capacity_respected"}


def test_clawback_stops_at_the_repair(demo):
    """Rewards earned after the node is active again are legitimate: not clawed back."""
    import datetime as dt

    from qfs_assets.activities.node_failure.detect import failure_from_id
    from qfs_assets.activities.node_failure.assess import respond_to_failure
    from qfs_assets.readers.base import ExportReader

    reader = ExportReader(demo.export_root)
    failure = failure_from_id(reader, FAILURE)
    on_the_day = respond_to_failure(reader, failure, dt.date(2026, 3, 11))
    after_repair = respond_to_failure(reader, failure, dt.date(2026, 3, 20))
    assert after_repair.metrics["recovered_at"] == dt.datetime(2026, 3, 16, 6, 0, tzinfo=dt.timezone.utc)
    assert on_the_day.metrics["recovered_at"] is None
    claws = after_repair.tables["node_failure_reward_adjustments"].to_pylist()
    assert all(c["clawed_ts"] < after_repair.metrics["recovered_at"] for c in claws)
    assert after_repair.metrics["clawback_gross_nod"] >= on_the_day.metrics["clawback_gross_nod"] > 0
