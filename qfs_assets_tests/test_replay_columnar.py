"""The columnar engine (the drill's) against the frozen per-event reference engine, the oracle
(``qfs_assets_tests/reference_engine.py``).

``test_replay_engine`` runs every engine test on both engines; here both replay the same logs
and every result field must be equal: chain verdict and reasons, invalid events and reasons,
roots at every checkpoint, checkpoint comparison, the state exported at the first mismatch and
the final state, on hand-made, fuzzed, broken and hypothesis-generated logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qfs_assets.contract.hashing import canonical_json
from qfs_assets.replay import columnar as C
from qfs_assets_tests import reference_engine as E
from qfs_assets_tests.test_replay_engine import (
    BASE,
    CLEAN,
    INVALID_CASES,
    _broken_variants,
    _random_log,
    batches_of,
    build_log,
    delete,
    fee,
    move,
    place,
    reg,
    reward,
    status,
    to_table,
    write,
)

COMPONENTS = ("nodes", "objects", "shards", "ledger")


def result_key(r):
    """Every result field but timings and the payload_fallbacks diagnostic."""
    cmp = r.checkpoint_comparison
    return (r.events_replayed, r.chain_intact, r.first_broken_seq, r.chain_break, r.chain_breaks, r.invalid_events,
            r.checkpoint_roots, r.final_roots, r.unreached_checkpoints, r.limit_reached, r.last_seq, r.last_ts,
            None if cmp is None else cmp.rows(),
            {s: {c: t.to_pylist() for c, t in comps.items()} for s, comps in r.snapshots.items()})


def both(batches_fn, with_state=True, columnar_kw=None, **kw):
    """Replay with both engines; assert identical results (and final states); return them.
    ``columnar_kw``: options only the columnar engine has (``expected_events``)."""
    ref_engine = E.ReplayEngine(**kw)
    for b in batches_fn():
        if not ref_engine.feed(b):
            break
    ref = ref_engine.finish()
    out = []
    new = C.replay(batches_fn(), engine_out=out, **kw, **(columnar_kw or {}))
    assert result_key(new) == result_key(ref)
    if with_state:
        for c in COMPONENTS:
            try:
                want = ref_engine.table(c).to_pylist()
            except (OverflowError, pa.ArrowInvalid):  # a ledger sum beyond int64 cannot be exported
                with pytest.raises((OverflowError, pa.ArrowInvalid)):
                    out[0].table(c)
                continue
            assert out[0].table(c).to_pylist() == want, c
    return ref, new


def test_clean_log_every_seq_a_checkpoint():
    rows = build_log(CLEAN)
    both(lambda: [to_table(rows)], checkpoint_seqs=range(-1, len(rows) + 2))


@pytest.mark.parametrize("case", INVALID_CASES, ids=[c[0] for c in INVALID_CASES])
def test_every_invalid_event_kind(case):
    rows = build_log(BASE + [case[1]] + [write("o1", 9), place("o1", 1, "n2")])
    ref, _ = both(lambda: [to_table(rows)], checkpoint_seqs=[len(BASE) - 1, len(BASE)])
    assert len(ref.invalid_events) == 1


@pytest.mark.parametrize("seed", range(6))
def test_fuzzed_and_broken_logs_in_batches_with_limits(seed):
    rnd = random.Random(seed)
    rows = build_log(_random_log(rnd, 400))
    cps = sorted(rnd.sample(range(-1, len(rows) + 3), 30))
    for variant in _broken_variants(rows):
        size = rnd.choice([1, 7, 50, 1000])
        both(lambda: batches_of(variant, size), checkpoint_seqs=cps, batch_rows=rnd.choice([3, 64, 1000]))
        both(lambda: batches_of(variant, size), checkpoint_seqs=cps, through_seq=len(variant) // 2)
        both(lambda: [to_table(variant)], checkpoint_seqs=cps,
             before_ts=variant[len(variant) // 3]["ts"])


@pytest.mark.parametrize("seed", range(3))
def test_tables_sized_from_the_log_row_count_give_identical_results(seed, monkeypatch):
    """``expected_events`` (the drill passes the log's row count) only changes how the tables
    grow: exact, too small, too large or absurd, in small batches, on clean and broken logs. The
    logs are long enough for the tables to outgrow their first size, and a spy checks that the
    projection was used (tables grown with a scale) when the count is right."""
    grown = []
    room = C._State._room

    def spy(self, required, cap, have):
        grown.append(self.scale)
        return room(self, required, cap, have)

    monkeypatch.setattr(C._State, "_room", spy)
    rnd = random.Random(200 + seed)
    rows = build_log(_random_log(rnd, 2500))
    cps = sorted(rnd.sample(range(-1, len(rows) + 3), 20))
    for variant in _broken_variants(rows)[:2]:
        for hint in (len(variant), len(variant) // 7, len(variant) * 13, 1, 10**9):
            grown.clear()
            size = rnd.choice([1, 9, 40])
            both(lambda: batches_of(variant, size), checkpoint_seqs=cps, batch_rows=rnd.choice([3, 17, 64]),
                 columnar_kw={"expected_events": hint})
            if hint == len(variant):
                assert any(scale is not None for scale in grown), "the projection was never used"


def test_projected_slots_stay_within_a_few_times_the_keys():
    """A projection from a bulk start (a tenth of the log seen with most of its keys) must not
    size the resident slot arrays for keys that never come: at most _GROW times what is needed."""
    st = C._State()
    st.scale = 64.0
    assert st._slots_for(1000, 990) == C._GROW * 1000
    assert st._slots_for(1000, 10) == 1000  # a projection below what is needed changes nothing
    st.scale = None
    assert st._slots_for(1000, 990) == 1000


def _published(roots_at, rows, tamper=None):
    """Checkpoint rows from replayed roots; ``tamper=(seq, component)`` falsifies one root."""
    out = []
    for s, r in sorted(roots_at.items()):
        row = {"seq": s, "ts": rows[s]["ts"], **{f"{c}_root": getattr(r, c) for c in COMPONENTS + ("state",)}}
        if tamper and tamper[0] == s:
            row[f"{tamper[1]}_root"] = "f" * 64
        out.append(row)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_checkpoint_comparison_and_state_at_the_first_mismatch(seed):
    rnd = random.Random(100 + seed)
    rows = build_log(_random_log(rnd, 300))
    cps = sorted(rnd.sample(range(len(rows)), 12))
    ref = E.replay([to_table(rows)], checkpoint_seqs=cps)
    for comp in COMPONENTS:
        published = _published(ref.checkpoint_roots, rows, tamper=(cps[4], comp))
        _, new = both(lambda: batches_of(rows, 33), expected_checkpoints=pa.Table.from_pylist(published))
        assert new.snapshots and list(new.snapshots[cps[4]]) == [comp]
    published = _published(ref.checkpoint_roots, rows)
    published.append(dict(published[0], seq=len(rows) + 5))  # never reached
    both(lambda: [to_table(rows)], expected_checkpoints=published)


def test_awkward_strings_and_big_numbers():
    """Escapes, quotes, control characters, non-ASCII, non-canonical payloads, int64 edges and a
    ledger sum beyond int64 (roots only: the state cannot be exported as int64)."""
    ids = ['n"q', "n\\b", "n\n\t\x01", "nœ€😀", "n\x7f", "n"]
    events = [reg(i, region=f"r-{i}", cap=2**63 - 1, stake=-(2**63)) for i in ids]
    for k, i in enumerate(ids):
        events += [write(f"o{i}", 1, size=-1, k=-(2**15), n=2**15 - 1, ch=f"c{i}\u2028"),
                   place(f"o{i}", -(2**31), i, nbytes=2**63 - 1), place(f"o{i}", 2**31 - 1, ids[k - 1]),
                   move(f"o{i}", -(2**31), i, ids[k - 2]), status(i, "failed"), reward(f"r{i}", i, -5),
                   fee(f"t{i}", f"acct{i}", 7, f"o{i}")]
    events += [("fee_charged", json.dumps({"tx_id": "tj", "account_id": "é", "object_id": None,
                                           "operation": "get", "amount_atr": 3})),
               ("fee_charged", canonical_json({"tx_id": "tk", "account_id": "a", "object_id": None,
                                               "operation": "get", "amount_atr": 3}).replace("a", "\\u0061", 1)),
               ("object_deleted", '{"object_id":"on","version":-0}'),
               ("object_deleted", '{"object_id":"on","version":01}'),
               ("object_deleted", '{"object_id":"on","version":1e3}'),
               delete("on", 2**63 - 1), write("on", 2**63 - 1)]
    hexes = [hashlib.sha256(b"x").hexdigest(), hashlib.sha256(b"x").hexdigest().upper(), "0" * 64, "g" * 64,
             "a" * 63, "f" * 65]
    for k, h in enumerate(hexes):  # shard hashes stored as 32 bytes (lowercase hex) or as text (the rest)
        events += [("shard_placed", {"object_id": "on", "shard_index": k, "node_id": "n", "shard_hash": h,
                                     "shard_bytes": k}),
                   ("shard_placed", {"object_id": "on", "shard_index": k, "node_id": "n", "shard_hash": hexes[k - 1],
                                     "shard_bytes": k})]
    events += [write("on", 2**63 - 1), delete("on", 2**63 - 1)]
    rows = build_log(events)
    both(lambda: batches_of(rows, 5), checkpoint_seqs=range(len(rows)))
    big = build_log([fee("t1", "a", 2**63 - 1), fee("t2", "a", 2**63 - 1), reg("n"), reward("r1", "n", -(2**63)),
                     reward("r2", "n", -(2**63)), fee("t3", "a", -(2**63)), fee("t4", "a", 5)])
    both(lambda: [to_table(big)], with_state=False, checkpoint_seqs=range(len(big)))


_IDS = st.sampled_from(["n0", "n1", "n2", "x", "é", 'q"', "o0", "o1"])
_INTS = st.one_of(st.integers(-3, 12), st.sampled_from([2**63 - 1, -(2**63), 2**31, 2**15]))


@st.composite
def _event(draw):
    kind = draw(st.integers(0, 9))
    i, j, k = draw(_IDS), draw(_IDS), draw(_IDS)
    n = draw(_INTS)
    if kind == 0:
        return reg(i, draw(st.sampled_from(["eu", "us"])))
    if kind == 1:
        return status(i, draw(st.sampled_from(["active", "failed", "bogus"])))
    if kind == 2:
        return write(j, n, size=draw(_INTS), k=draw(st.integers(-2, 5)))
    if kind == 3:
        return delete(j, n)
    if kind == 4:
        return place(j, draw(st.integers(-1, 3)), i, draw(_INTS))
    if kind == 5:
        return move(j, draw(st.integers(-1, 3)), i, k)
    if kind == 6:
        return fee(f"t{draw(st.integers(0, 6))}", i, n, draw(st.one_of(st.none(), _IDS)))
    if kind == 7:
        return reward(f"r{draw(st.integers(0, 6))}", i, n)
    et, p = draw(st.sampled_from([write("o0", 9), fee("t9", "a", 1), reg("n9"), delete("o1", 50)]))
    text = draw(st.sampled_from([json.dumps(p), canonical_json(p) + " ", canonical_json({**p, "z": 1}),
                                 canonical_json(p)[:-1], canonical_json(p).replace(":", ": ", 1)]))
    return (draw(st.sampled_from([et, "bogus"])), text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(_event(), min_size=0, max_size=60), size=st.integers(1, 70),
       cps=st.lists(st.integers(-1, 65), max_size=8), tamper=st.integers(0, 4))
def test_hypothesis_logs_give_identical_results(events, size, cps, tamper):
    rows = build_log(events)
    if rows and tamper:  # break the chain in one of four ways, or not
        variants = _broken_variants(rows) if len(rows) > 40 else [rows]
        rows = variants[min(tamper, len(variants) - 1)]
    both(lambda: batches_of(rows, size), checkpoint_seqs=cps, batch_rows=max(1, size // 2))


def test_portable_sha256_matches_hashlib(tmp_path):
    """Without a loadable libcrypto the kernels use their own SHA-256: same digests."""
    code = (
        "import hashlib, numpy as np\n"
        "from qfs_assets.replay import kernels as K\n"
        "assert not K.HAVE_OPENSSL\n"
        "msgs = [b'', b'a', b'x' * 55, b'y' * 56, b'z' * 64, bytes(range(256)) * 3]\n"
        "data = np.frombuffer(b''.join(msgs), np.uint8)\n"
        "offs = np.cumsum([0] + [len(m) for m in msgs]).astype(np.int64)\n"
        "out = np.empty((len(msgs), 32), np.uint8)\n"
        "K.sha256_many(data, offs, out)\n"
        "assert [bytes(r) for r in out] == [hashlib.sha256(m).digest() for m in msgs]\n"
        "print('ok')\n"
    )
    env = dict(os.environ, QFS_REPLAY_PORTABLE_SHA="1", NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_openssl_sha256_is_used_here_and_matches_hashlib():
    import numpy as np

    from qfs_assets.replay import kernels as K

    assert K.HAVE_OPENSSL  # the machines this project runs on have it (hashlib's libcrypto)
    msgs = [b"", b"abc", b"q" * 1000]
    data = np.frombuffer(b"".join(msgs), np.uint8)
    offs = np.cumsum([0] + [len(m) for m in msgs]).astype(np.int64)
    out = np.empty((3, 32), np.uint8)
    K.sha256_many(data, offs, out)
    assert [bytes(r) for r in out] == [hashlib.sha256(m).digest() for m in msgs]


@pytest.mark.parametrize("size", [1, 5, 64, 1 << 18])
def test_state_chunks_hold_every_row_once(size):
    """The saved state's chunks (``_State.chunks``, the key strings built once for all chunks of
    shards) hold exactly the component's rows, whatever the chunk size."""
    rows = build_log(_random_log(random.Random(11), 400))
    out = []
    C.replay([to_table(rows)], engine_out=out)
    st = out[0].state
    for c in COMPONENTS:
        parts = list(st.chunks(c, size))
        got = sorted(r for t in parts for r in (tuple(d.values()) for d in t.to_pylist()))
        want = sorted(tuple(d.values()) for d in out[0].table(c).to_pylist())
        assert got == want and want, c
        if c == "shards":
            assert max(t.num_rows for t in parts) <= size
