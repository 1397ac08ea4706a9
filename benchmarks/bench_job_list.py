"""How long the job list takes with many jobs: JobManager's first page, as GET /shielddiff/jobs serves it.

    python benchmarks/bench_job_list.py [--sizes 1000 10000] [--limit 50] [--rounds 5]

For each size, fake finished job folders (status.json, three metrics lines, a checkpoint folder) are
written into a temporary jobs folder; then a page of `--limit` jobs is timed: "first" with a new
JobManager (what a restarted ComfyUI does on its first request), "again" as the median of `--rounds`
further calls on the same manager. The route handler runs exactly this call, in a worker thread.
A JobManager without `page` (an older version) is timed through `summaries()`, its whole list.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the trainer package

from trainer.jobs.queue import JobManager
from trainer.training.job_dir import JobDir

log = logging.getLogger("bench_job_list")


def fake_jobs(root: Path, count: int) -> None:
    for i in range(count):
        job_id = f"2026{1 + i // 86400 % 12:02d}01-{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}-{i % 4096:03x}abc"
        job = JobDir(root / job_id)
        job.write_status("done", pid=None, epoch=3, total=3, lora_name=f"lora-{i}", lora_file=f"lora-{i}.safetensors")
        for epoch in range(3):
            job.append_metrics({"epoch": epoch, "reward_mean": 0.5, "nudity_rate": 0.1, "epoch_seconds": 10.0})
        job.checkpoint_dir(3).mkdir()


def list_page(manager: JobManager, limit: int) -> int:
    if hasattr(manager, "page"):
        return len(manager.page(limit=limit)["jobs"])
    return len(manager.summaries())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("%8s  %10s  %10s  %s", "jobs", "first ms", "again ms", "listed")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="shielddiff-bench-jobs-") as tmp:
            root = Path(tmp) / "jobs"
            fake_jobs(root, size)
            manager = JobManager(root, Path(tmp) / "loras")
            start = time.perf_counter()
            listed = list_page(manager, args.limit)
            first = time.perf_counter() - start
            again = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                list_page(manager, args.limit)
                again.append(time.perf_counter() - start)
            log.info("%8d  %10.1f  %10.1f  %d", size, first * 1000, statistics.median(again) * 1000, listed)


if __name__ == "__main__":
    main()
