"""The network's state as the contract defines it, kept compact, plus the indexes the
simulation needs; the eight event types are the only way it changes.

Each ``ev_*`` method validates the event against the contract's invalid-event rules (raising
:class:`InvalidEvent`), applies the effect table of ``qfs-export-v1`` to the state, keeps the
four component roots up to date (:func:`~qfs_assets.contract.hashing.row_hash_int` sums, the
``SetHash`` rule: subtract the hashes of the rows replaced, add those of the rows written)
and appends the event to the log. So the log never holds an invalid event, and the roots are
maintained independently of any replay engine.
"""

from __future__ import annotations

import heapq
import random
from typing import Callable

from qfs_assets.contract.hashing import format_root
from qfs_assets.contract.schema import IN_SERVICE_STATUSES
from qfs_assets.demo.config import DemoConfig
from qfs_assets.demo.eqm_log import EventLog
from qfs_assets.demo.rowtext import ledger_row, node_row, obj_row, row_hash, shard_row


class InvalidEvent(AssertionError):
    """The generator tried to log an event the contract calls invalid (a generator bug)."""


class IndexedSet:
    """Insertion-ordered set with O(1) add/remove/random choice (deterministic, unlike ``set``)."""

    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        self.items: list = []
        self.pos: dict = {}

    def add(self, x) -> None:
        if x not in self.pos:
            self.pos[x] = len(self.items)
            self.items.append(x)

    def discard(self, x) -> None:
        i = self.pos.pop(x, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.pos[last] = i

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, x) -> bool:
        return x in self.pos

    def choice(self, rng: random.Random):
        return self.items[rng.randrange(len(self.items))]


class NetworkState:
    """State (what the roots cover) + indexes + facts outside the state (snapshots only)."""

    def __init__(self, cfg: DemoConfig, log: EventLog) -> None:
        self.cfg = cfg
        self.log = log

        # ---- the state of the contract, compact (rows are rebuilt as text to hash them)
        self.nodes: dict[str, list] = {}  # node_id -> [region, capacity, stake, status, hash]
        self.objs: dict[str, list] = {}  # object_id -> [version, content_hash, size, k, n, deleted, hash]
        self.shards: dict[tuple[str, int], list] = {}  # (object_id, idx) -> [node_id, shard_hash, bytes, hash]
        self.ledger: dict[str, list] = {}  # party_id -> [atr_paid, nod_earned, hash]
        self.acc_nodes = self.acc_objects = self.acc_shards = self.acc_ledger = 0
        self.tx_ids: set[str] = set()  # membership only, never iterated
        self.reward_ids: set[str] = set()

        # ---- indexes derived from the state (maintained by the ev_* methods)
        self.obj_nodes: dict[str, list] = {}  # object_id -> [node_id or None] * total_shards
        self.node_shards: dict[str, IndexedSet] = {}  # node_id -> {(object_id, idx)}
        self.used: dict[str, int] = {}  # node_id -> sum(shard_bytes)
        self.cap: dict[str, int] = {}
        self.wcap: dict[str, float] = {}  # capacity * target-fill weight (balancer only)
        self.live = IndexedSet()  # objects not deleted
        self.node_order: list[str] = []  # registration order (= sorted ids)

        # ---- balancer: lazy min-heap of in-service nodes by weighted utilisation
        self.heap: list[tuple[float, str, int]] = []
        self.hver: dict[str, int] = {}

        # ---- facts outside the state (snapshots only)
        self.weight: dict[str, float] = {}
        self.registered_at: dict[str, int] = {}
        self.heartbeat: dict[str, int] = {}
        self.software: dict[str, str] = {}
        self.updated_at: dict[str, int] = {}
        self.owner: dict[str, str] = {}

    def roots(self) -> list[str]:
        """The four component roots, in ``eqm_log.COMPONENTS`` order."""
        return [format_root(a) for a in (self.acc_nodes, self.acc_objects, self.acc_shards, self.acc_ledger)]

    # ------------------------------------------------------------------ balancer

    def in_service(self, n: str) -> bool:
        return self.nodes[n][3] in IN_SERVICE_STATUSES

    def util(self, n: str) -> float:
        """The balancer's key: utilisation relative to the node's target fill (weight ~0.85-1.15,
        an operator setting), so that utilisation is balanced but not unrealistically uniform."""
        return self.used[n] / self.wcap[n]

    def _touch(self, n: str) -> None:
        v = self.hver.get(n, 0) + 1
        self.hver[n] = v
        if self.nodes[n][3] in IN_SERVICE_STATUSES:
            heapq.heappush(self.heap, (self.used[n] / self.wcap[n], n, v))
        if len(self.heap) > 4 * len(self.hver) + 64:
            self.heap = [(self.util(x), x, self.hver[x]) for x in self.node_order if self.in_service(x)]
            heapq.heapify(self.heap)

    def pick(self, count: int, ok: Callable[[str], bool]) -> list[str]:
        """Up to ``count`` distinct in-service nodes, least utilised first, satisfying ``ok``."""
        taken: list[tuple] = []
        aside: list[tuple] = []
        heap, hver = self.heap, self.hver
        while heap and len(taken) < count:
            e = heapq.heappop(heap)
            if hver.get(e[1]) != e[2]:
                continue  # stale
            (taken if ok(e[1]) else aside).append(e)
        for e in taken:
            heapq.heappush(heap, e)
        for e in aside:
            heapq.heappush(heap, e)
        return [e[1] for e in taken]

    def fits(self, n: str, nbytes: int) -> bool:
        return self.used[n] + nbytes <= self.cap[n] * self.cfg.max_fill

    # ------------------------------------------------------------------ the eight event types

    def ev_node_registered(self, ts: int, nid: str, region: str, cap: int, stake: int) -> None:
        if nid in self.nodes:
            raise InvalidEvent(f"node {nid} exists")
        h = row_hash(node_row(nid, region, cap, stake, "active"))
        self.nodes[nid] = [region, cap, stake, "active", h]
        self.acc_nodes += h
        self.node_shards[nid] = IndexedSet()
        self.used[nid] = 0
        self.cap[nid] = cap
        self.wcap[nid] = cap * self.weight.get(nid, 1.0)
        self.node_order.append(nid)
        self._touch(nid)
        self.log.append(ts, "node_registered",
                        f'{{"capacity_bytes":{cap},"node_id":"{nid}","region":"{region}","stake_nod":{stake}}}')

    def ev_node_status_changed(self, ts: int, nid: str, status: str) -> None:
        e = self.nodes.get(nid)
        if e is None:
            raise InvalidEvent(f"status of unknown node {nid}")
        h = row_hash(node_row(nid, e[0], e[1], e[2], status))
        self.acc_nodes += h - e[4]
        e[3], e[4] = status, h
        self._touch(nid)
        self.log.append(ts, "node_status_changed", f'{{"node_id":"{nid}","status":"{status}"}}')

    def ev_object_written(self, ts: int, oid: str, v: int, ch: str, size: int, k: int, n: int) -> None:
        e = self.objs.get(oid)
        if e is not None and v <= e[0]:
            raise InvalidEvent(f"{oid}: version {v} <= {e[0]}")
        h = row_hash(obj_row(oid, v, ch, size, k, n, False))
        if e is not None:
            self.acc_objects -= e[6]
        self.objs[oid] = [v, ch, size, k, n, False, h]
        self.acc_objects += h
        nodes = self.obj_nodes.get(oid)
        if nodes is None or len(nodes) < n:
            self.obj_nodes[oid] = (nodes or []) + [None] * (n - len(nodes or []))
        self.live.add(oid)
        self.log.append(ts, "object_written",
                        f'{{"content_hash":"{ch}","data_shards":{k},"object_id":"{oid}","size_bytes":{size},'
                        f'"total_shards":{n},"version":{v}}}')

    def ev_object_deleted(self, ts: int, oid: str, v: int) -> None:
        e = self.objs.get(oid)
        if e is None:
            raise InvalidEvent(f"delete of unknown object {oid}")
        h = row_hash(obj_row(oid, v, e[1], e[2], e[3], e[4], True))
        self.acc_objects += h - e[6]
        e[0], e[5], e[6] = v, True, h
        nodes = self.obj_nodes[oid]
        for idx, nid in enumerate(nodes):
            if nid is not None:
                self._drop_shard((oid, idx))
                nodes[idx] = None
        self.live.discard(oid)
        self.log.append(ts, "object_deleted", f'{{"object_id":"{oid}","version":{v}}}')

    def _drop_shard(self, key: tuple[str, int]) -> None:
        nid, _shash, sb, h = self.shards.pop(key)
        self.acc_shards -= h
        self.node_shards[nid].discard(key)
        self.used[nid] -= sb
        self._touch(nid)

    def ev_shard_placed(self, ts: int, oid: str, idx: int, nid: str, shash: str, sb: int) -> None:
        e = self.objs.get(oid)
        if e is None:
            raise InvalidEvent(f"shard of unknown object {oid}")
        if nid not in self.nodes:
            raise InvalidEvent(f"shard on unknown node {nid}")
        if e[5]:
            raise InvalidEvent(f"shard of deleted object {oid}")  # stricter than the contract
        key = (oid, idx)
        if key in self.shards:
            self._drop_shard(key)
        pj = shard_row(oid, idx, nid, shash, sb)  # the payload has exactly the row's fields
        h = row_hash(pj)
        self.shards[key] = [nid, shash, sb, h]
        self.acc_shards += h
        self.obj_nodes[oid][idx] = nid
        self.node_shards[nid].add(key)
        self.used[nid] += sb
        self._touch(nid)
        self.log.append(ts, "shard_placed", pj)

    def ev_shard_moved(self, ts: int, key: tuple[str, int], src: str, dst: str) -> None:
        oid, idx = key
        if oid not in self.objs:
            raise InvalidEvent(f"move of unknown object {oid}")
        if dst not in self.nodes:
            raise InvalidEvent(f"move to unknown node {dst}")
        e = self.shards.get(key)
        if e is None or e[0] != src:
            raise InvalidEvent(f"move of {key} from {src}, not its node")
        h = row_hash(shard_row(oid, idx, dst, e[1], e[2]))
        self.acc_shards += h - e[3]
        e[0], e[3] = dst, h
        self.obj_nodes[oid][idx] = dst
        self.node_shards[src].discard(key)
        self.node_shards[dst].add(key)
        self.used[src] -= e[2]
        self.used[dst] += e[2]
        self._touch(src)
        self._touch(dst)
        self.log.append(ts, "shard_moved",
                        f'{{"from_node_id":"{src}","object_id":"{oid}","shard_index":{idx},"to_node_id":"{dst}"}}')

    def _credit(self, party: str, atr: int, nod: int) -> None:
        e = self.ledger.get(party)
        if e is None:
            e = self.ledger[party] = [0, 0, 0]
        e[0] += atr
        e[1] += nod
        h = row_hash(ledger_row(party, e[0], e[1]))
        self.acc_ledger += h - e[2]
        e[2] = h

    def ev_fee_charged(self, ts: int, tx: str, acct: str, oid: str | None, op: str, amount: int) -> None:
        if tx in self.tx_ids:
            raise InvalidEvent(f"duplicate tx_id {tx}")
        self.tx_ids.add(tx)
        self._credit(acct, amount, 0)
        o = "null" if oid is None else f'"{oid}"'
        self.log.append(ts, "fee_charged",
                        f'{{"account_id":"{acct}","amount_atr":{amount},"object_id":{o},"operation":"{op}","tx_id":"{tx}"}}')

    def ev_reward_paid(self, ts: int, rid: str, epoch: int, nid: str, kind: str, amount: int) -> None:
        if nid not in self.nodes:
            raise InvalidEvent(f"reward to unknown node {nid}")
        if rid in self.reward_ids:
            raise InvalidEvent(f"duplicate reward_id {rid}")
        self.reward_ids.add(rid)
        self._credit(nid, 0, amount)
        self.log.append(ts, "reward_paid",
                        f'{{"amount_nod":{amount},"epoch":{epoch},"kind":"{kind}","node_id":"{nid}","reward_id":"{rid}"}}')
