"""The node failure sensor and response through `defs`, on the demo deployment."""

import json

import dagster as dg

from qfs_assets.definitions import defs
from qfs_assets.defs.node_failure.assets import node_failure_sensor, node_failures
from qfs_assets.defs.resources import ExportResource

FAILURE = "node-0007_20260311"


def tick(instance, export_root, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  resources={"export": ExportResource(export_root=str(export_root))})
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
    assert m["clawback_nod"] > 0  # the storage reward paid on the failure day
    assert {c["name"] for c in doc["criteria"]} == {"all_shards_placed", "receivers_verified", "no_co_location",
                                                    "capacity_respected"}
