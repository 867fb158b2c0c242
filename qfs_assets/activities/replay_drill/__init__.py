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
        # Arrow's allocator keeps the pages it frees; neither it nor numpy asks for transparent huge
        # pages; OpenBLAS starts no thread pool (why, and what each is worth: docs/configuration.md,
        # "Process settings of qfs-assure run")
        process_env=(("MIMALLOC_PURGE_DELAY", "-1"), ("MIMALLOC_ALLOW_THP", "0"), ("NUMPY_MADVISE_HUGEPAGE", "0"),
                     ("OPENBLAS_NUM_THREADS", "1")),
        metrics=(
            ("events_replayed", "int64"), ("chain_intact", "bool"), ("first_broken_seq", "int64"),
            ("invalid_events", "int64"), ("checkpoints_compared", "int64"), ("checkpoints_matched", "int64"),
            ("first_mismatch_seq", "int64"), ("mismatched_components", "list<string>"),
            ("final_state_root", "string"), ("last_event_ts", "timestamp"),
        ),
    ),
)
