"""The columnar engine loads its compiled kernels while the first day is read (columnar.warm_up)."""

import subprocess
import sys
import threading
from pathlib import Path

from qfs_assets.replay import EVENT_TYPES, columnar
from qfs_assets_tests.test_replay_engine import build_log, place, reg, to_table, write

ROOT = Path(__file__).resolve().parents[1]


def test_the_warm_up_log_takes_every_path_of_the_state_kernels():
    batch = columnar._warm_up_batch()
    assert set(batch.column("event_type").to_pylist()) == set(EVENT_TYPES)
    engine = columnar.ColumnarEngine(checkpoint_seqs=[4])
    engine._threads = False
    engine.feed(batch)
    result = engine.finish()
    assert result.chain_intact and result.invalid_events == [] and result.payload_fallbacks == 0
    shards = engine.table("shards").to_pylist()
    assert [(s["object_id"], s["node_id"], s["shard_hash"]) for s in shards] == [("o0", "n1", "0" * 64)]
    assert [o["deleted"] for o in engine.table("objects").to_pylist()] == [False, True]


def test_warm_up_loads_the_kernels_a_replay_calls_first():
    probe = (
        "from qfs_assets.replay import columnar, kernels as K\n"
        "names = ['parse_payloads', 'insert_needs', 'apply_events', 'flush', 'chain_digests', 'chain_checks',\n"
        "         'gather', 'gather_shard_hashes']\n"
        "assert not any(getattr(K, n).signatures for n in names)\n"
        "columnar.warm_up()\n"
        "print(sorted(n for n in names if not getattr(K, n).signatures))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_threaded_replay_warms_up_while_reading_before_applying_its_first_batch(monkeypatch):
    calls = []
    real_warm_up, real_apply = columnar.warm_up, columnar.ColumnarEngine._apply_rows

    def spy_warm_up():
        reading = any(t.name == "qfs-replay-read" and t.is_alive() for t in threading.enumerate())
        calls.append("warm_up while reading" if reading else "warm_up")
        real_warm_up()

    monkeypatch.setattr(columnar, "_threads_allowed", lambda: True)
    monkeypatch.setattr(columnar, "warm_up", spy_warm_up)
    monkeypatch.setattr(columnar.ColumnarEngine, "_apply_rows",
                        lambda self, w: (calls.append("apply"), real_apply(self, w))[1])
    log = to_table(build_log([reg("n1"), write("o1"), place("o1", 0, "n1")]))
    result = columnar.replay([log])
    assert calls[0] == "warm_up while reading" and set(calls[1:]) == {"apply"}
    assert result.events_replayed == 3 and result.invalid_events == []
    # and results do not depend on it
    monkeypatch.setattr(columnar, "_threads_allowed", lambda: False)
    alone = columnar.replay([log])
    assert (alone.final_roots, alone.checkpoint_roots, alone.chain_intact) == \
        (result.final_roots, result.checkpoint_roots, result.chain_intact)


def test_a_failing_warm_up_costs_only_its_time(monkeypatch):
    def broken():
        raise KeyError("a field kind the warm-up does not know")

    monkeypatch.setattr(columnar, "_threads_allowed", lambda: True)
    monkeypatch.setattr(columnar, "warm_up", broken)
    log = to_table(build_log([reg("n1"), write("o1"), place("o1", 0, "n1")]))
    result = columnar.replay([log])
    assert result.events_replayed == 3 and result.chain_intact
    assert not any(t.name == "qfs-replay-read" and t.is_alive() for t in threading.enumerate())


def test_a_shard_hash_is_written_back_as_its_hex_digits():
    """kernels._unhex (through the save's gather): every byte value, both digits of each."""
    import numpy as np

    from qfs_assets.replay import kernels as K

    raw = bytes(range(256))
    hbin = np.frombuffer(raw, np.uint8).reshape(8, 32).copy()
    rows = np.arange(8)
    offs, out = K.gather_shard_hashes(np.zeros(1, np.uint8), np.zeros(8, np.int64), np.full(8, -1, np.int32), hbin, rows)
    assert bytes(out) == raw.hex().encode() and offs.tolist() == list(range(0, 513, 64))


def test_importing_the_drills_engine_does_not_import_pandas():
    """pandas (~0.15 s of CPU to import) comes with the warm-up, while the first day is read, not
    with the engine's import before the replay starts."""
    probe = ("import sys\n"
             "from qfs_assets.replay import columnar, incremental\n"
             "assert columnar._EVENT_TYPE_SET.to_pylist() == list(columnar.P.EVENT_TYPES)\n"
             "assert columnar._STATUS_NAMES.to_pylist() == list(columnar.NODE_STATUSES)\n"
             "print('pandas' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_the_warm_up_works_once_per_process(monkeypatch):
    columnar.warm_up()  # (loads the kernels, or finds them loaded)
    assert columnar._WARMED

    def no_engine(*args, **kwargs):
        raise AssertionError("a second warm-up replayed its log again")

    monkeypatch.setattr(columnar, "ColumnarEngine", no_engine)
    columnar.warm_up()
