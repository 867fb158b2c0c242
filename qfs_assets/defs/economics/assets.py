"""Weekly economics sanity: the week's fee and reward ledgers, the EQM fee flow, the verdict.

Runbook: docs/runbooks/conservation-violation.md
"""

import datetime as dt

import dagster as dg

from qfs_assets.defs import partitions
from qfs_assets.evidence import gx_suite
from qfs_assets.defs.common import (
    bad_input_guard,
    config_guard,
    check_results,
    check_specs,
    evidence_metadata,
    judge_and_publish,
    validated_partitions,
)
from qfs_assets.defs.economics.metrics import ACTIVITY, EconomicsParams, assess_economics
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.readers.base import days_between

GROUP = "economics"
RUNBOOK = "docs/runbooks/conservation-violation.md"
CHECKS = ["conservation", "ledger_integrity", "no_rewards_to_failed_nodes", "ledger_matches_log"]


class EconomicsConfig(dg.Config):
    """Parameters (evidence-v1 defaults); the evidence records the values used."""

    atr_per_nod: str = "1/1"  # a ratio of integers, e.g. "3/7"
    buffer_bps: int = 500
    buffer_min_atr: int = 0

    def params(self) -> EconomicsParams:
        return EconomicsParams(atr_per_nod=self.atr_per_nod, buffer_bps=self.buffer_bps, buffer_min_atr=self.buffer_min_atr)


def _week(context: dg.AssetExecutionContext) -> list[dt.date]:
    start = dt.date.fromisoformat(context.partition_key)
    return days_between(start, start + dt.timedelta(days=7))


@dg.asset(partitions_def=partitions.weekly, group_name=GROUP, kinds={"parquet"},
          description="The week's ATR fee ledger (`fees/date=`): partitions present, files readable with the contract's columns.")
def fee_ledger(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=validated_partitions(export, "fees", _week(context), required=False))


@dg.asset(partitions_def=partitions.weekly, group_name=GROUP, kinds={"parquet"},
          description="The week's NOD reward ledger (`rewards/date=`): partitions present, files readable with the contract's columns.")
def reward_ledger(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=validated_partitions(export, "rewards", _week(context), required=False))


@dg.asset(partitions_def=partitions.weekly, group_name=GROUP, kinds={"parquet"},
          description="The week's EQM events (`eqm/date=`): the fee_charged flow the ledger must match.")
def eqm_fee_flow(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=validated_partitions(export, "eqm", _week(context), required=False,
                                                              columns=["ts", "event_type", "payload"]))


@dg.asset(
    partitions_def=partitions.weekly,
    group_name=GROUP,
    kinds={"json", "parquet"},
    deps=[fee_ledger, reward_ledger, eqm_fee_flow],
    check_specs=check_specs(ACTIVITY, CHECKS),
    description="Weekly economics sanity evidence (evidence-v1 `economics_sanity_check`): ATR fees >= NOD rewards "
                f"(converted at atr_per_nod, rounded up) + buffer, in integer minor units. Runbook: {RUNBOOK}",
)
def economics_sanity_check(context: dg.AssetExecutionContext, config: EconomicsConfig,
                           export: ExportResource, evidence: EvidenceResource) -> dg.MaterializeResult:
    gx_suite.prefetch()  # GX's import overlaps the DuckDB scans
    week_start = dt.date.fromisoformat(context.partition_key)
    params = config_guard(config.params)
    result = bad_input_guard(lambda: assess_economics(export.reader(), week_start, params))
    criteria, path = judge_and_publish(result, evidence.store(), context)
    return dg.MaterializeResult(metadata=evidence_metadata(result, criteria, path),
                                check_results=check_results(ACTIVITY, criteria))


economics_sanity_check_job = dg.define_asset_job(
    f"{ACTIVITY}_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Weekly economics sanity check (Monday to Monday, UTC).",
)

defs = dg.Definitions(
    assets=[fee_ledger, reward_ledger, eqm_fee_flow, economics_sanity_check],
    jobs=[economics_sanity_check_job],
)
