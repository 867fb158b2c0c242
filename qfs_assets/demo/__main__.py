"""``python -m qfs_assets.demo OUT [--nodes N --objects N --days N ...]``: generate a demo
deployment and print the time, CPU time and peak RSS (the benchmark entry point; the
product CLI wraps :func:`qfs_assets.demo.generator.generate`)."""

import argparse
import json
import resource
import time
from dataclasses import replace

from qfs_assets.demo.generator import DemoConfig, generate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="generate the QFS demo deployment")
    ap.add_argument("out")
    ap.add_argument("--nodes", type=int, default=DemoConfig.nodes)
    ap.add_argument("--objects", type=int, default=DemoConfig.objects)
    ap.add_argument("--days", type=int, default=DemoConfig.days)
    ap.add_argument("--writes", type=int, default=DemoConfig.writes_per_day)
    ap.add_argument("--updates", type=int, default=DemoConfig.updates_per_day)
    ap.add_argument("--deletes", type=int, default=DemoConfig.deletes_per_day)
    ap.add_argument("--reads", type=int, default=DemoConfig.reads_per_day)
    ap.add_argument("--renews", type=int, default=DemoConfig.renews_per_day)
    ap.add_argument("--seed", type=int, default=DemoConfig.seed)
    ap.add_argument("--sor-url", default=None)
    a = ap.parse_args(argv)
    cfg = replace(DemoConfig(), nodes=a.nodes, objects=a.objects, days=a.days, writes_per_day=a.writes,
                  updates_per_day=a.updates, deletes_per_day=a.deletes, reads_per_day=a.reads,
                  renews_per_day=a.renews, seed=a.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    dep = generate(a.out, cfg, a.sor_url)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(dt, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(rss, 1),
                      "events": dep.event_count, "row_counts": dep.row_counts}, indent=2))


if __name__ == "__main__":
    main()
