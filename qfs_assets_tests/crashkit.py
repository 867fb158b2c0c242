"""Kill ``qfs-assure run`` at every file event and check the evidence after the next start.

Run as ``python -m qfs_assets_tests.crashkit CONFIG.json`` (by test_crash_consistency.py). The
driver imports the CLI, the definitions and Great Expectations once, then for each kill point
forks a child that runs ``qfs_assets.cli.main(args)`` with ``QFS_CRASH_AFTER=n``: the child
SIGKILLs itself right after its n-th file event (``qfs_assets.evidence.commit.file_event``),
which is a real ``kill -9`` at a known point, chosen by file events rather than by timing.
After each kill the driver does what the next start does (``EvidenceStore.prepare``: recovery
and the sweep of temporary files) and classifies every file of the partition as old or new.
Forking from a warm driver keeps a kill point at about the cost of one in-process run.

Prints one JSON document: the events of an uninterrupted run, and per kill point whether the
child was killed, the partition's state (``old``, ``new`` or what is wrong) and what was left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path


def run_child(args: list[str], env: dict[str, str]) -> tuple[bool, int]:
    """Fork; the child runs the CLI with ``env`` added and exits with its code. Returns
    (killed by SIGKILL, exit code or -signal)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 70
        try:
            os.environ.update(env)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            from qfs_assets import cli

            code = cli.main(args)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status) == signal.SIGKILL, -os.WTERMSIG(status)
    return False, os.WEXITSTATUS(status)


def classify(ev: Path, files: dict[str, str], marker_old: str, marker_new: str,
             indistinct: tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
    """The partition's state: ``old`` / ``new`` when every file exists and all say so, else a reason."""
    import pyarrow.parquet as pq

    versions: dict[str, str] = {}
    for name, rel in files.items():
        path = ev / rel
        if not path.exists():
            versions[name] = "missing"
            continue
        if name in indistinct:  # the same in both runs (e.g. an empty table): must exist, says nothing
            continue
        if path.suffix == ".parquet":
            ids = " ".join(map(str, pq.read_table(path).column("object_id").to_pylist()))
            text = ids or "<empty>"
        else:
            text = path.read_text(encoding="utf-8")
        has_old, has_new = marker_old in text, marker_new in text
        if name == "sample_failures":  # empty in the old state, one failure in the new
            has_old, has_new = text == "<empty>", marker_new in text
        versions[name] = "old" if has_old and not has_new else "new" if has_new and not has_old else "unclear"
    states = set(versions.values())
    return (states.pop() if len(states) == 1 and states <= {"old", "new"} else "mixed"), versions


def leftovers(ev: Path) -> list[str]:
    out = []
    for p in ev.rglob("*"):
        if p.is_file() and (p.name.endswith((".staged", ".tmp")) or ".commits" in p.parts and p.suffix != ".lock"):
            out.append(str(p.relative_to(ev)))
    return sorted(out)


def _use_the_legacy_protocol() -> None:
    """The publication before issue 19 (each file renamed into place on its own, tables, then the
    verdict, then the ``.sql`` after it): to show that the check below catches a mixed partition."""
    from qfs_assets.evidence import store as store_module
    from qfs_assets.evidence.atomic import write_bytes_atomic, write_parquet_atomic

    def publish(self, result, criteria):
        partition_key = result.evidence_key or result.partition
        tables = {}
        for name, data in result.tables.items():
            path = self.table_path(name, partition_key)
            write_parquet_atomic(path, store_module._without_partition_column(data))
            tables[name] = f"{name}/{path.parent.name}/{path.name}"
        path = self.json_path(result.activity, result.partition, result.evidence_key)
        write_bytes_atomic(path, store_module.dumps(self.document(result, criteria, tables)).encode("utf-8"))
        for suffix, content in result.sidecars.items():  # the .sql used to be written after the JSON
            write_bytes_atomic(self.sidecar_path(path, suffix), content.encode() if isinstance(content, str) else content)
        return path

    store_module.EvidenceStore.publish = publish


def main(config_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text())
    # warm up: everything a run imports, once, before any fork
    from qfs_assets import cli  # noqa: F401
    import qfs_assets.definitions  # noqa: F401
    import great_expectations  # noqa: F401
    from qfs_assets.evidence.store import EvidenceStore

    if cfg.get("legacy"):
        _use_the_legacy_protocol()
    ev, pristine = Path(cfg["evidence_root"]), Path(cfg["pristine"])
    work = Path(cfg["work"])
    report: dict = {"points": []}

    killed, code = run_child(cfg["old_args"], {})
    report["old_exit"] = code
    shutil.copytree(ev, pristine)
    report["old_state"], report["old_versions"] = classify(ev, cfg["files"], cfg["marker_old"], cfg["marker_new"], tuple(cfg["indistinct"]))

    log = work / "events.log"
    killed, code = run_child(cfg["new_args"], {"QFS_CRASH_LOG": str(log)})
    report["new_exit"] = code
    report["new_state"], report["new_versions"] = classify(ev, cfg["files"], cfg["marker_old"], cfg["marker_new"], tuple(cfg["indistinct"]))
    events = [ln.split("\t") for ln in log.read_text().splitlines()]
    report["events"] = [{"n": int(n), "what": what, "path": path} for n, what, path in events]

    for n in cfg.get("points") or range(1, len(events) + 1):
        shutil.rmtree(ev)
        shutil.copytree(pristine, ev)
        killed, code = run_child(cfg["new_args"], {"QFS_CRASH_AFTER": str(n)})
        before = leftovers(ev)
        recovered = EvidenceStore(ev).prepare()  # what the next start does
        state, versions = classify(ev, cfg["files"], cfg["marker_old"], cfg["marker_new"], tuple(cfg["indistinct"]))
        report["points"].append({"n": n, "event": events[n - 1][1], "path": events[n - 1][2], "killed": killed,
                                 "exit": code, "state": state, "versions": versions, "left_before_recovery": before,
                                 "recovered": recovered, "left": leftovers(ev)})

    # the next start also marks the killed runs failed
    os.environ["DAGSTER_HOME"] = cfg["dagster_home"]
    from dagster import DagsterInstance, DagsterRunStatus

    instance = DagsterInstance.get()
    started = [r.run_id for r in instance.get_runs() if r.status == DagsterRunStatus.STARTED]
    marked = cli.fail_dead_runs(instance)
    report["runs_started_before"] = len(started)
    report["runs_marked_failed"] = len(marked)
    runs = instance.get_runs()
    report["runs_still_started"] = sum(r.status == DagsterRunStatus.STARTED for r in runs)
    report["runs_failed"] = sum(r.status == DagsterRunStatus.FAILURE for r in runs)
    report["runs_succeeded"] = sum(r.status == DagsterRunStatus.SUCCESS for r in runs)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
