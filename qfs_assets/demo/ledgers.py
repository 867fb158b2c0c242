"""The two ledgers of the export: ``fees`` (ATR paid by accounts) and ``rewards`` (NOD paid to
nodes at each epoch close), each row logged as its EQM event and credited to the ledger state.

Reward policy (:mod:`qfs_assets.demo.config`): each epoch's pool is its fees times
``REWARD_RATIO`` (the reward-overrun week pays its incident ratio instead), split
``STORAGE_SHARE_PCT`` for storage (pro rata of bytes held) and the rest for proofs (pro rata of
passed challenges), among in-service nodes. With the ``reward_to_failed_node`` incident the
failed node gets one storage reward on its failure day, clawed back by an ``adjustment`` the
next day.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from qfs_assets.demo.config import REWARD_RATIO, STORAGE_SHARE_PCT, DemoConfig
from qfs_assets.demo.export_writer import Sink
from qfs_assets.demo.incidents import INCIDENT_PLAN, Schedule
from qfs_assets.demo.state import NetworkState


class Ledgers:
    def __init__(self, cfg: DemoConfig, state: NetworkState, schedule: Schedule) -> None:
        self.cfg = cfg
        self.state = state
        self.log = state.log
        self.schedule = schedule
        self.failed_reward_amount = 0
        self.fees: Sink | None = None
        self.rewards: Sink | None = None
        self.tx_n = 0
        self.day_fees = 0

    def open_day(self, root: Path, d: date) -> None:
        self.fees = Sink.day(root, "fees", d)
        self.rewards = Sink.day(root, "rewards", d)
        self.tx_n = 0
        self.day_fees = 0

    def close_day(self, counts: dict[str, int]) -> None:
        for s in (self.fees, self.rewards):
            counts[s.name] += s.close()

    def fee(self, ts: int, account: str, oid: str | None, op: str, amount: int, d: date) -> None:
        self.tx_n += 1
        tx = f"tx-{d:%Y%m%d}-{self.tx_n:07d}"
        self.state.ev_fee_charged(ts, tx, account, oid, op, amount)
        s = self.fees
        f = s.cols
        f["tx_id"].append(tx)
        f["ts"].append(self.log.last_ts)
        f["account_id"].append(account)
        f["object_id"].append(oid)
        f["operation"].append(op)
        f["amount_atr"].append(amount)
        self.day_fees += amount
        if s.full():
            s.flush()

    def reward(self, ts: int, epoch: int, nid: str, kind: str, amount: int) -> None:
        rid = f"rw-{epoch:05d}-{nid}-{kind}"
        self.state.ev_reward_paid(ts, rid, epoch, nid, kind, amount)
        s = self.rewards
        r = s.cols
        r["reward_id"].append(rid)
        r["ts"].append(self.log.last_ts)
        r["epoch"].append(epoch)
        r["node_id"].append(nid)
        r["kind"].append(kind)
        r["amount_nod"].append(amount)
        if s.full():
            s.flush()

    def epoch(self, ts: int, i: int, d: date, passed_today: dict[str, int]) -> None:
        """Close epoch ``i + 1`` (day ``d``): pay the day's pool to the in-service nodes."""
        cfg, state = self.cfg, self.state
        epoch = i + 1
        num, den = REWARD_RATIO
        if cfg.reward_overrun and self.schedule.in_overrun_week(d):
            num, den = INCIDENT_PLAN["reward_overrun"]["ratio"]
        pool = self.day_fees * num // den
        storage_pool = pool * STORAGE_SHARE_PCT // 100
        proof_pool = pool - storage_pool
        serving = [x for x in state.node_order if state.in_service(x)]
        total_used = sum(state.used[x] for x in serving)
        total_passed = sum(passed_today.get(x, 0) for x in serving)
        for nid in serving:
            if total_used:
                amt = storage_pool * state.used[nid] // total_used
                if amt > 0:
                    self.reward(ts, epoch, nid, "storage", amt)
            if total_passed:
                amt = proof_pool * passed_today.get(nid, 0) // total_passed
                if amt > 0:
                    self.reward(ts, epoch, nid, "proof", amt)
        if cfg.reward_to_failed_node and cfg.node_failure:
            plan = INCIDENT_PLAN["reward_to_failed_node"]
            fail_node = self.schedule.fail_node
            if i == plan["day"] and serving:
                self.failed_reward_amount = max(1, storage_pool // len(serving))
                self.reward(ts, epoch, fail_node, "storage", self.failed_reward_amount)
            elif i == plan["clawback_day"] and self.failed_reward_amount:
                self.reward(ts, epoch, fail_node, "adjustment", -self.failed_reward_amount)
