"""Weekly economics sanity: the week's fee and reward ledgers, the EQM fee flow, the verdict."""

import datetime as dt

import dagster as dg

from qfs_assets import registry
from qfs_assets.activities.economics.assess import ACTIVITY, assess_economics
from qfs_assets.activities.economics.params import EconomicsParams
from qfs_assets.defs import partitions
from qfs_assets.defs.common import (activity_job, check_specs, config_class, evidence_result, input_asset,
                                    judge_activity, params_from_config)
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.windows import week_days

SPEC = registry.get(ACTIVITY)
GROUP = SPEC.group
CHECKS = ["conservation", "ledger_integrity", "no_rewards_to_failed_nodes", "ledger_matches_log"]
EconomicsConfig = config_class(EconomicsParams, "EconomicsConfig",
                               "Parameters (evidence-v1 defaults); the evidence records the values used. "
                               "atr_per_nod is a ratio of integers, e.g. '3/7'.")


def _week(key: str) -> list[dt.date]:
    return week_days(dt.date.fromisoformat(key))


def _input(name: str, table: str, description: str, **kw) -> dg.AssetsDefinition:
    return input_asset(table, name=name, partitions_def=partitions.weekly, group=GROUP, days=_week,
                       description=description, required=False, **kw)


fee_ledger = _input("fee_ledger", "fees", "The week's ATR fee ledger (`fees/date=`): partitions present, files "
                    "readable with the contract's columns.")
reward_ledger = _input("reward_ledger", "rewards", "The week's NOD reward ledger (`rewards/date=`): partitions "
                       "present, files readable with the contract's columns.")
eqm_fee_flow = _input("eqm_fee_flow", "eqm", "The week's EQM events (`eqm/date=`): the fee_charged flow the ledger "
                      "must match.", columns=["ts", "event_type", "payload"])


@dg.asset(
    partitions_def=partitions.weekly,
    group_name=GROUP,
    kinds={"json", "parquet"},
    deps=[fee_ledger, reward_ledger, eqm_fee_flow],
    check_specs=check_specs(ACTIVITY, CHECKS, partitions_def=partitions.weekly),
    description="Weekly economics sanity evidence (evidence-v1 `economics_sanity_check`): ATR fees >= NOD rewards "
                f"(converted at atr_per_nod, rounded up) + buffer, in integer minor units. Runbook: {SPEC.runbook}",
)
def economics_sanity_check(context: dg.AssetExecutionContext, config: EconomicsConfig,
                           export: ExportResource, evidence: EvidenceResource) -> dg.MaterializeResult:
    params = params_from_config(EconomicsParams, config)
    week_start = dt.date.fromisoformat(context.partition_key)
    judged = judge_activity(context, evidence.store(), lambda: assess_economics(export.reader(), week_start, params),
                            params)
    return evidence_result(judged)


economics_sanity_check_job = activity_job(ACTIVITY)
