"""Finding 6 of issue 19: after a crash a partition's evidence is all old or all new.

Before the fix the reconciliation ``.sql`` was written after the JSON that is meant to be the
commit marker, and after ``kill -9`` at 6 of 22 points the store held a JSON beside a ``.sql``
of another run, new Parquet beside an old JSON, or Parquet with no JSON; ``.tmp`` files were
never cleaned; killed runs stayed STARTED in the Dagster instance.

Here ``qfs-assure run dual_write_verification`` (three detail tables, the ``.sql`` sidecar, the
verdict, and the diff ledger) is killed with SIGKILL right after each of its file events in
turn (``QFS_CRASH_AFTER=n``, see :mod:`qfs_assets_tests.crashkit`), over evidence an earlier
run left. After each kill, the next start's recovery runs, and every file of the partition must
exist and come from the same run: the old one (killed before the commit point) or the new one.
No staged, temporary or journal file may be left, and the killed runs are marked failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qfs_assets.evidence import commit
from qfs_assets_tests.exportkit import write
from qfs_assets_tests.test_dual_write import Backend, o, sampled_ids, shards_for
from qfs_assets_tests.test_object_storage import BUCKET, s3  # noqa: F401 - the moto fixture

REPO = Path(__file__).resolve().parents[1]
DAY = "2026-03-31"
PARTITION = "2026-03-01"
FILES = {
    "verdict": "dual_write_verification/dual_write_verification_20260301.json",
    "sql": "dual_write_verification/dual_write_verification_20260301.reconciliation.sql",
    "inconsistencies": "dual_write_inconsistencies/partition_key=2026-03-01/part-0.parquet",
    "reconciliation": "dual_write_reconciliation/partition_key=2026-03-01/part-0.parquet",
    "sample_failures": "dual_write_sample_failures/partition_key=2026-03-01/part-0.parquet",
    "resolved_late": "dual_write_resolved_late/partition_key=2026-03-01/part-0.parquet",
}
INDISTINCT = ["resolved_late"]  # empty in both runs: it must exist, but cannot tell them apart


def _state(tmp_path: Path, name: str, sample_failure: bool):
    """An export and a SQLite system of record whose differences all carry ``name``."""
    common = [o(f"x{i}") for i in range(5)]
    man = common + [o(f"{name}-only-in-manifest")]
    shards = [s for r in man for s in shards_for(r)]
    if sample_failure:  # a sampled object with a shard missing: a sample failure of this state only
        broken = o(sampled_ids(1, prefix=f"{name}-sampled-")[0])
        man.append(broken)
        shards += shards_for(broken, skip=(0,))
    root = tmp_path / f"export_{name}"
    write(root, "objects", man, DAY)
    write(root, "shards", shards, DAY)
    b = Backend("sqlite", tmp_path / name, None)
    (tmp_path / name).mkdir()
    b.create(common + [o(f"{name}-only-in-sor")])
    return root, b.path


def crash_report(tmp_path: Path, legacy: bool = False, points: list[int] | None = None) -> dict:
    """Run the crash driver (:mod:`qfs_assets_tests.crashkit`) over an old and a new state."""
    export_old, sor_old = _state(tmp_path, "zqold", sample_failure=False)
    export_new, sor_new = _state(tmp_path, "zqnew", sample_failure=True)
    ev, home, work = tmp_path / "ev", tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()

    def args(export, sor):
        return ["run", "dual_write_verification", "--partition", PARTITION, "--export-root", str(export),
                "--sor-url", f"sqlite:///{sor}", "--evidence-root", str(ev)]

    cfg = {"evidence_root": str(ev), "pristine": str(tmp_path / "pristine"), "work": str(work),
           "dagster_home": str(home), "old_args": args(export_old, sor_old), "new_args": args(export_new, sor_new),
           "files": FILES, "indistinct": INDISTINCT, "marker_old": "zqold", "marker_new": "zqnew", "legacy": legacy,
           "points": points}
    (work / "cfg.json").write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QFS_", "DAGSTER_HOME"))}
    env.update(DAGSTER_HOME=str(home), QFS_GX_WORKER="0", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "qfs_assets_tests.crashkit", str(work / "cfg.json")],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["old_exit"] == 1 and report["old_state"] == "old", report  # criteria fail: inconsistencies
    assert report["new_exit"] == 1 and report["new_state"] == "new", report
    return report


def test_every_kill_point_leaves_each_partition_all_old_or_all_new(tmp_path):
    report = crash_report(tmp_path)
    events, points = report["events"], report["points"]
    assert len(points) == len(events) >= 12, [e["what"] for e in events]
    publication = [e for e in events if e["what"] in ("pending", "staged", "journal", "promoted", "journal removed")]
    k = len(FILES)  # every file of the partition, the verdict included
    assert [e["what"] for e in publication] == (["pending"] + ["staged"] * k + ["journal"] + ["promoted"] * k
                                                + ["journal removed"]), events
    staged, promoted = publication[1:k + 1], publication[k + 2:2 * k + 2]
    assert {e["path"] for e in staged} == set(FILES.values())
    assert staged[-1]["path"] == promoted[-1]["path"] == FILES["verdict"]  # the verdict last, twice
    bad = [p for p in points if not p["killed"] or p["state"] not in ("old", "new") or p["left"]]
    assert not bad, json.dumps(bad, indent=1)
    states = [p["state"] for p in points]
    journal_at = next(e["n"] for e in events if e["what"] == "journal")
    assert states == ["old"] * (journal_at - 1) + ["new"] * (len(points) - journal_at + 1), states
    # each start marks the runs of killed processes failed: every child marked its predecessor's,
    # and the last one is marked by the driver's own start
    assert report["runs_started_before"] == report["runs_marked_failed"] == 1
    assert report["runs_still_started"] == 0
    assert report["runs_failed"] == len(points) and report["runs_succeeded"] == 2
    print(f"\ncrash test: {len(points)} kill points ({states.count('old')} left the partition all old, "
          f"{states.count('new')} all new); events: {', '.join(e['what'] for e in events)}")


def test_the_check_catches_the_protocol_before_the_fix(tmp_path):
    """The same kills over the publication that issue 19 reported (each file renamed on its own,
    the ``.sql`` after the verdict): some kill points leave the partition mixed."""
    # the legacy events: start-up probe, ledger, the four tables renamed one by one, the verdict, the .sql:
    # kill after the first table, after the last table and after the verdict
    report = crash_report(tmp_path, legacy=True, points=[3, 6, 7])
    assert [e["what"] for e in report["events"]] == ["atomic write"] * 8
    mixed = [p for p in report["points"] if p["state"] == "mixed"]
    assert len(mixed) == 3, [(p["n"], p["state"], p["versions"]) for p in report["points"]]
    # e.g. new Parquet beside the old verdict, and a new verdict beside the old .sql
    assert any(p["versions"]["verdict"] == "old" and "new" in p["versions"].values() for p in mixed)
    assert any(p["versions"]["verdict"] == "new" and p["versions"]["sql"] == "old" for p in mixed)


# -- the protocol's two recoveries, on a local folder and in object storage (one code path) ---------
@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return tmp_path / "ev"
    request.getfixturevalue("s3")
    from qfs_assets import storage_uri

    return storage_uri.upath(f"s3://{BUCKET}/commit-{tmp_path.name}")


def _read(path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _leftovers(root) -> list[str]:
    names = [str(p) for p in root.rglob("*") if p.name.endswith((".staged", ".commit", ".pending"))]
    return names


class Died(Exception):
    """Stands for the process dying: the lock is released (as the kernel does), nothing cleaned."""


def _die_at(monkeypatch, where: str) -> None:
    monkeypatch.setattr(commit.Transaction, "abort", lambda self: None)  # a dead process cleans nothing up
    if where == "before the commit point":
        real = commit._write_record

        def write_record(path, doc):
            if path.name.endswith(".commit"):
                raise Died()
            real(path, doc)

        monkeypatch.setattr(commit, "_write_record", write_record)
    else:  # after the first promotion
        real_move = commit._move
        moved = []

        def move(src, dst):
            if moved:
                raise Died()
            real_move(src, dst)
            moved.append(dst)

        monkeypatch.setattr(commit, "_move", move)


@pytest.mark.parametrize("where,expected", [("before the commit point", "old"), ("after the first promotion", "new")])
def test_recovery_finishes_or_undoes_a_dead_publication(root, monkeypatch, where, expected):
    table, verdict = root / "t" / "partition_key=p" / "part-0.parquet", root / "a" / "a_p.json"
    commit.publish_files(root, [(table, b"old table"), (verdict, b"old verdict")])
    _die_at(monkeypatch, where)
    with pytest.raises(Died):
        commit.publish_files(root, [(table, b"new table"), (verdict, b"new verdict")])
    monkeypatch.undo()
    assert _leftovers(root)  # the dead publication left its staged files and records
    done = commit.recover(root)
    assert done == {"rolled_forward": int(expected == "new"), "rolled_back": int(expected == "old")}
    assert (_read(table), _read(verdict)) == (f"{expected} table".encode(), f"{expected} verdict".encode())
    assert _leftovers(root) == []
    assert commit.recover(root) == {"rolled_forward": 0, "rolled_back": 0}  # idempotent


def test_a_live_publication_is_left_alone(tmp_path):
    """Recovery never touches a transaction whose writer still holds its lock."""
    root = tmp_path / "ev"
    target = root / "a" / "x.json"
    with commit.Transaction(root) as tx:
        tx.stage([(target, b"new")])
        assert commit.recover(root) == {"rolled_forward": 0, "rolled_back": 0}
        assert _leftovers(root)
        tx.commit()
    assert target.read_bytes() == b"new" and _leftovers(root) == []


def test_stale_temporary_files_are_swept_at_start(tmp_path):
    import time

    from qfs_assets.evidence.store import EvidenceStore

    root = tmp_path / "ev"
    (root / "t" / "partition_key=p").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    files = {
        "dead": root / "t" / "partition_key=p" / f".part-0.parquet.{dead_pid}.{'a' * 32}.tmp",
        "live": root / "t" / "partition_key=p" / f".part-0.parquet.{os.getpid()}.{'b' * 32}.tmp",
        "old_unnamed": root / "t" / ".x.json.cafe.tmp",
        "young_unnamed": root / "t" / ".y.json.beef.tmp",
        "data": root / "t" / "partition_key=p" / "part-0.parquet",
    }
    for p in files.values():
        p.write_bytes(b"x")
    hour_ago = time.time() - 2 * commit.STALE_SECONDS
    os.utime(files["old_unnamed"], (hour_ago, hour_ago))
    done = EvidenceStore(root).prepare()
    assert done["temporary_removed"] == 2
    assert {k for k, p in files.items() if p.exists()} == {"live", "young_unnamed", "data"}


def test_concurrent_publications_of_one_partition_never_interleave(tmp_path):
    """Writers racing on one partition: after each publication and at the end, its files come
    from one publication (the promotions hold the partition's lock)."""
    import threading

    root = tmp_path / "ev"
    targets = [root / "t1" / "partition_key=p" / "part-0.parquet", root / "t2" / "partition_key=p" / "part-0.parquet",
               root / "a" / "a_p.json"]
    seen: list[set] = []

    def writer(name: str) -> None:
        for i in range(25):
            tag = f"{name}-{i}".encode()
            commit.publish_files(root, [(t, tag) for t in targets])
            with commit._partition_lock(root, "a/a_p.json"):
                seen.append({t.read_bytes() for t in targets})

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("w1", "w2", "w3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(s) == 1 for s in seen), [s for s in seen if len(s) > 1][:3]
    assert len({t.read_bytes() for t in targets}) == 1
    assert _leftovers(root) == []
