"""The simulation: the network's operations day by day, from genesis.

Each day's operations (writes, updates, deletes, reads, renewals, the rebalancer, hourly
proof challenges, the epoch close, and the incidents of the schedule) are drawn from one
seeded ``random.Random`` and run in time order; every state change goes through the
:class:`~qfs_assets.demo.state.NetworkState` event methods, so it is validated, applied and
logged. At each day's end the day's tables are written and a checkpoint is taken.
Memory is the state plus one day. No wall clock, no iteration over hash-ordered sets.
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

from qfs_assets.contract.schema import IN_SERVICE_STATUSES, TABLES
from qfs_assets.demo.config import (
    DAY,
    DELETE_FEE,
    EPOCH_CLOSE,
    GB,
    GET_BASE,
    GET_PER_GB,
    HOUR,
    MINUTE,
    NOD,
    PUT_BASE,
    PUT_PER_GB,
    REGIONS,
    RENEW_BASE,
    RENEW_PER_GB,
    SEC,
    DemoConfig,
    account_id,
    node_id,
    object_id,
    sha_hex,
)
from qfs_assets.demo.eqm_log import EventLog
from qfs_assets.demo.export_writer import Sink, write_snapshots
from qfs_assets.demo.incidents import INCIDENT_PLAN, Incident, Schedule, incident_list
from qfs_assets.demo.ledgers import Ledgers
from qfs_assets.demo.state import NetworkState
from qfs_assets.windows import day_start_us


class Simulation:
    """Run it with :meth:`run_day` for each of :attr:`days`, then :meth:`finish`."""

    def __init__(self, cfg: DemoConfig, export_root: Path) -> None:
        self.cfg = cfg
        self.root = export_root
        self.rng = random.Random(cfg.seed)
        self.schedule = Schedule.of(cfg)
        self.days = list(self.schedule.days)
        self.log = EventLog()
        self.state = NetworkState(cfg, self.log)
        self.ledgers = Ledgers(cfg, self.state, self.schedule)
        self.counts: dict[str, int] = {t: 0 for t in TABLES}
        self.last_objects_path: Path | None = None
        self.next_object = 1
        self.accounts = [account_id(i) for i in range(1, cfg.accounts + 1)]
        total_cap_guess = cfg.nodes * 2_500 * GB
        self.mean_size = max(
            1 << 20,
            int(total_cap_guess * cfg.initial_fill * cfg.data_shards / (cfg.total_shards * max(cfg.objects, 1))),
        )

    def incidents(self) -> list[Incident]:
        return incident_list(self.cfg, self.schedule)

    # ------------------------------------------------------------------ the day's sinks

    def _open_day(self, d: date) -> None:
        self.log.open_day(Sink.day(self.root, "eqm", d))
        self.ledgers.open_day(self.root, d)
        self.s_proofs = Sink.day(self.root, "proofs", d)
        self.ch_n = 0
        self.passed_today: dict[str, int] = {}
        self.bad_today: dict[tuple[str, int], None] = {}

    # ------------------------------------------------------------------ operations

    def _draw_size(self) -> int:
        s = int(self.mean_size * self.rng.lognormvariate(-0.32, 0.8))
        return max(1 << 20, min(s, 12 * self.mean_size))

    def op_register(self, ts: int) -> None:
        rng, cfg, st = self.rng, self.cfg, self.state
        for i in range(1, cfg.nodes + 1):
            nid = node_id(i)
            stake = rng.randint(1_000, 6_000) * NOD
            if nid in self.schedule.understaked:
                stake = rng.randint(500, 950) * NOD
            cap = rng.randint(1_000, 4_000) * GB
            st.weight[nid] = rng.uniform(0.85, 1.15)
            st.ev_node_registered(ts + i * 1000, nid, REGIONS[(i - 1) % len(REGIONS)], cap, stake)
            st.registered_at[nid] = self.log.last_ts
            st.heartbeat[nid] = self.log.last_ts
            st.software[nid] = "13.5.0"

    def op_write(self, ts: int, d: date) -> None:
        cfg, rng, st = self.cfg, self.rng, self.state
        size = self._draw_size()
        k, n = cfg.data_shards, cfg.total_shards
        sb = -(-size // k)
        targets = st.pick(n, lambda x: st.fits(x, sb))
        if len(targets) < n:
            return  # no room: the write is rejected, nothing is logged
        oid = object_id(self.next_object)
        self.next_object += 1
        ch = sha_hex(f"{cfg.seed}:{oid}:1")
        st.ev_object_written(ts, oid, 1, ch, size, k, n)
        for idx, nid in enumerate(targets):
            st.ev_shard_placed(ts, oid, idx, nid, sha_hex(f"{ch}:{idx}"), sb)
        owner = self.accounts[rng.randrange(len(self.accounts))]
        st.owner[oid] = owner
        st.updated_at[oid] = self.log.last_ts
        self.ledgers.fee(ts, owner, oid, "put", PUT_BASE + size * PUT_PER_GB // GB, d)

    def op_update(self, ts: int, d: date) -> None:
        st = self.state
        if not len(st.live):
            return
        rng, cfg = self.rng, self.cfg
        oid = st.live.choice(rng)
        e = st.objs[oid]
        version = e[0] + 1
        size = max(1 << 20, int(e[2] * rng.uniform(0.9, 1.15)))
        k, n = e[3], e[4]
        sb = -(-size // k)
        placement = list(st.obj_nodes[oid])
        # Keep each shard where it is when its node is in service and has room; else re-place it.
        for idx in range(n):
            cur = placement[idx]
            if cur is not None and st.in_service(cur):
                old = st.shards[(oid, idx)][2]
                if st.used[cur] - old + sb <= st.cap[cur] * cfg.max_fill:
                    continue
            others = {v for i, v in enumerate(placement) if i != idx}
            got = st.pick(1, lambda x: x not in others and st.fits(x, sb))
            if not got:
                return  # no room: rejected
            placement[idx] = got[0]
        ch = sha_hex(f"{cfg.seed}:{oid}:{version}")
        st.ev_object_written(ts, oid, version, ch, size, k, n)
        for idx in range(n):
            st.ev_shard_placed(ts, oid, idx, placement[idx], sha_hex(f"{ch}:{idx}"), sb)
        st.updated_at[oid] = self.log.last_ts
        self.ledgers.fee(ts, st.owner[oid], oid, "put", PUT_BASE + size * PUT_PER_GB // GB, d)

    def op_delete(self, ts: int, d: date) -> None:
        st = self.state
        if not len(st.live):
            return
        oid = st.live.choice(self.rng)
        st.ev_object_deleted(ts, oid, st.objs[oid][0] + 1)
        st.updated_at[oid] = self.log.last_ts
        self.ledgers.fee(ts, st.owner[oid], oid, "delete", DELETE_FEE, d)

    def op_read(self, ts: int, d: date) -> None:
        st = self.state
        if not len(st.live):
            return
        oid = st.live.choice(self.rng)
        acct = self.accounts[self.rng.randrange(len(self.accounts))]
        self.ledgers.fee(ts, acct, oid, "get", GET_BASE + st.objs[oid][2] * GET_PER_GB // GB, d)

    def op_renew(self, ts: int, d: date) -> None:
        st = self.state
        if not len(st.live):
            return
        oid = st.live.choice(self.rng)
        self.ledgers.fee(ts, st.owner[oid], oid, "renew", RENEW_BASE + st.objs[oid][2] * RENEW_PER_GB // GB, d)

    def move(self, ts: int, key: tuple[str, int], dst: str) -> None:
        self.state.ev_shard_moved(ts, key, self.state.shards[key][0], dst)

    def _move_target(self, key: tuple[str, int], exclude: str | None = None) -> str | None:
        st = self.state
        sb = st.shards[key][2]
        holders = set(st.obj_nodes[key[0]])
        got = st.pick(1, lambda x: x not in holders and x != exclude and st.fits(x, sb))
        return got[0] if got else None

    def op_rebalance(self, ts: int) -> None:
        """The daily rebalancer: a few moves from the fullest to the emptiest in-service node."""
        st = self.state
        for _ in range(self.cfg.rebalance_moves_per_day):
            serving = [x for x in st.node_order if st.in_service(x) and len(st.node_shards[x])]
            if len(serving) < 2:
                return
            src = max(serving, key=lambda x: (st.util(x), x))
            for _try in range(8):
                key = st.node_shards[src].choice(self.rng)
                dst = self._move_target(key, exclude=src)
                if dst is not None and st.util(src) - st.util(dst) > 0.01:
                    self.move(ts, key, dst)
                    break

    def op_status(self, ts: int, nid: str, status: str) -> None:
        self.state.ev_node_status_changed(ts, nid, status)
        if status not in IN_SERVICE_STATUSES:
            self.state.heartbeat[nid] = self.log.last_ts - 2 * MINUTE  # heartbeats stop

    def op_repair(self, ts: int, nid: str, batches_left: int) -> None:
        """Re-create the failed node's shards elsewhere (shard_moved), a share per batch."""
        held = self.state.node_shards[nid]
        todo = -(-len(held) // batches_left)
        for key in sorted(held.items)[:todo]:
            dst = self._move_target(key)
            if dst is not None:
                self.move(ts, key, dst)

    def op_recover(self, ts: int, nid: str) -> None:
        st = self.state
        self.op_status(ts, nid, "active")
        # The rebalancer refills the empty node up to the mean (weighted) utilisation.
        for _ in range(len(st.shards)):
            serving = [x for x in st.node_order if st.in_service(x)]
            mean = sum(st.util(x) for x in serving) / len(serving)
            if st.util(nid) >= 0.98 * mean:
                break
            src = max((x for x in serving if x != nid), key=lambda x: (st.util(x), x))
            moved = False
            for _try in range(20):
                key = st.node_shards[src].choice(self.rng)
                if nid not in st.obj_nodes[key[0]] and st.fits(nid, st.shards[key][2]):
                    self.move(ts, key, nid)
                    moved = True
                    break
            if not moved:
                break

    def op_proofs(self, ts: int, hour: int) -> None:
        rng, st = self.rng, self.state
        p = self.s_proofs.cols
        day = f"{self._day:%Y%m%d}"
        for nid in st.node_order:
            if not st.in_service(nid):
                continue
            held = st.node_shards[nid]
            if not len(held):
                continue
            oid, idx = held.choice(rng)
            self.ch_n += 1
            issued = ts + rng.randrange(0, 50 * SEC)
            if (nid, hour) in self.bad_today:
                outcome = "timeout" if self.ch_n % 2 else "failed"
            else:
                outcome = "passed"
                self.passed_today[nid] = self.passed_today.get(nid, 0) + 1
            if outcome == "timeout":
                latency = None
            elif outcome == "failed":
                latency = rng.randint(40, 2_500)
            else:
                latency = max(5, min(4_000, int(rng.lognormvariate(4.787, 0.45))))  # median ~120 ms
            p["challenge_id"].append(f"ch-{day}-{self.ch_n:07d}")
            p["issued_at"].append(issued)
            p["node_id"].append(nid)
            p["object_id"].append(oid)
            p["shard_index"].append(idx)
            p["outcome"].append(outcome)
            p["latency_ms"].append(latency)
        if self.s_proofs.full():
            self.s_proofs.flush()

    # ------------------------------------------------------------------ the day

    def run_day(self, i: int, d: date) -> None:
        cfg, rng, st, sched = self.cfg, self.rng, self.state, self.schedule
        self._open_day(d)
        self._day = d
        day0 = day_start_us(d)
        ops: list[tuple] = []
        n = 0

        def at(t: int, prio: int, kind: str, *args) -> None:
            nonlocal n
            ops.append((day0 + t, prio, n, kind, args))
            n += 1

        def spread(count: int, kind: str, lo: int = MINUTE, hi: int = EPOCH_CLOSE - 10 * MINUTE) -> None:
            for _ in range(count):
                at(rng.randrange(lo, hi), 5, kind)

        if i == 0:
            at(0, 0, "register")
            spread(cfg.objects, "write", 10 * MINUTE, 20 * HOUR)
        spread(cfg.writes_per_day, "write")
        spread(cfg.updates_per_day, "update")
        spread(cfg.deletes_per_day, "delete")
        spread(cfg.reads_per_day, "read")
        spread(cfg.renews_per_day, "renew")
        if i > 0:
            at(4 * HOUR, 3, "rebalance")
        hours = list(range(24))[: cfg.challenges_per_node]
        for h in hours:
            at(h * HOUR + 30 * MINUTE, 6, "proofs", h)
        at(EPOCH_CLOSE, 9, "epoch")

        plan = INCIDENT_PLAN
        if cfg.node_failure:
            nf = plan["node_failure"]
            if i == nf["day"]:
                at(nf["fail_at"], 1, "status", sched.fail_node, "failed")
            if i in nf["repair_days"]:
                per_day = 4
                for b in range(per_day):
                    left = (nf["repair_days"][-1] - i) * per_day + (per_day - b)
                    at(2 * HOUR + b * 6 * HOUR, 2, "repair", sched.fail_node, left)
            if i == nf["recovery_day"]:
                at(nf["recover_at"], 1, "recover", sched.fail_node)
        if cfg.maintenance:
            m = plan["maintenance"]
            if i == m["day"]:
                at(m["at"], 1, "status", sched.blip_node, "degraded")
            if i == m["recovery_day"]:
                at(m["recover_at"], 1, "status", sched.blip_node, "active")

        # Bad proof outcomes of the day: at most one per node, at a random hour.
        if i == 0:
            candidates = [node_id(j) for j in range(1, cfg.nodes + 1)]
        else:
            candidates = list(st.node_order)
        expected = (cfg.nodes if i == 0 else sum(1 for x in candidates if st.in_service(x))) * len(hours)
        if cfg.poor_proofs and i == plan["poor_proofs"]["day"]:
            bad = round(expected * plan["poor_proofs"]["bad_rate"])
        else:
            bad = round(expected * cfg.normal_bad_proof_rate * rng.uniform(0.5, 1.5))
        for nid in rng.sample(candidates, min(bad, len(candidates))):
            self.bad_today[(nid, hours[rng.randrange(len(hours))])] = None

        ops.sort(key=lambda o: (o[0], o[1], o[2]))
        handlers = {
            "write": lambda ts, a: self.op_write(ts, d),
            "update": lambda ts, a: self.op_update(ts, d),
            "delete": lambda ts, a: self.op_delete(ts, d),
            "read": lambda ts, a: self.op_read(ts, d),
            "renew": lambda ts, a: self.op_renew(ts, d),
            "proofs": lambda ts, a: self.op_proofs(ts, *a),
            "epoch": lambda ts, a: self.ledgers.epoch(ts, i, d, self.passed_today),
            "rebalance": lambda ts, a: self.op_rebalance(ts),
            "status": lambda ts, a: self.op_status(ts, *a),
            "repair": lambda ts, a: self.op_repair(ts, *a),
            "recover": lambda ts, a: self.op_recover(ts, *a),
            "register": lambda ts, a: self.op_register(ts),
        }
        for ts, _prio, _n, kind, args in ops:
            handlers[kind](ts, args)
        del ops
        if self.log.last_ts >= day0 + DAY:  # pragma: no cover
            raise AssertionError("an event spilled into the next day")
        self._end_of_day(i, d, day0)

    def _end_of_day(self, i: int, d: date, day0: int) -> None:
        rng, st = self.rng, self.state
        end = day0 + DAY
        for j, nid in enumerate(st.node_order, start=1):
            if st.in_service(nid):
                st.heartbeat[nid] = end - rng.randrange(5 * SEC, 30 * MINUTE)
            if i >= 24 + (j % 4):
                st.software[nid] = "13.5.1"

        self.counts["eqm"] += self.log.close_day()
        self.ledgers.close_day(self.counts)
        self.counts["proofs"] += self.s_proofs.close()
        self.last_objects_path = write_snapshots(st, self.root, d, self.counts)
        self.log.checkpoint(st.roots())

    def finish(self) -> None:
        self.counts["checkpoints"] = self.log.finish(self.root)
