"""Quarterly replay drill: the EQM log replayed from genesis must reproduce every checkpoint."""

from qfs_assets.registry import Activity

SPECS = (
    Activity(
        name="storage_replay_drill",
        title="Quarterly replay drill",
        cadence="quarterly",
        schedule_cron="0 5 1 1,4,7,10 *",
        runbook="docs/runbooks/replay-from-logs.md",
        group="replay_drill",
        order=50,
        summary="replay of the EQM log from genesis reproduces every checkpoint's state roots",
        # Arrow's allocator (mimalloc) keeps the pages it frees instead of returning them to the
        # system after 10 ms: a drill frees and reads ~40 MB of log per day, and a page taken back
        # from the system is zeroed again by the kernel (dear on virtual machines). Measured on the
        # 10M-event log: ~35% fewer page faults, ~0.1-0.5 s less CPU, ~130 MB more peak memory.
        # OpenBLAS (numpy's, and scipy's, which numba's import loads) without its thread pool:
        # nothing in a drill calls BLAS, and the pool costs ~0.1 s of CPU to start per library.
        process_env=(("MIMALLOC_PURGE_DELAY", "-1"), ("OPENBLAS_NUM_THREADS", "1")),
        metrics=(
            ("events_replayed", "int64"), ("chain_intact", "bool"), ("first_broken_seq", "int64"),
            ("invalid_events", "int64"), ("checkpoints_compared", "int64"), ("checkpoints_matched", "int64"),
            ("first_mismatch_seq", "int64"), ("mismatched_components", "list<string>"),
            ("final_state_root", "string"), ("last_event_ts", "timestamp"),
        ),
    ),
)
