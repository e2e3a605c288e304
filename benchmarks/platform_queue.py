"""Platform figures: time from jobs.create to succeeded for a tiny job (through the OpenAI SDK on a
warm server), and the wall time and peak concurrency of a queue of N tiny jobs drained by a worker pool.

    PYTHONPATH=src python benchmarks/platform_queue.py [--jobs 120] [--workers 3] [--concurrency 2]
                                                       [--database-url postgresql://... | --postgres]

Without --database-url the queue runs on a SQLite file in a temporary TUNEFORGE_HOME. ``--soak`` runs
``platform_soak.py`` instead (300 jobs of 3 projects, a frozen and a killed worker; see its docstring).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def peak_concurrency(intervals: list[tuple[float, float]]) -> int:
    """The most jobs that ran at one moment."""
    return max(sum(1 for s, f in intervals if s <= start < f) for start, _ in intervals)


def create_to_succeeded(settings, data: Path, repeats: int = 3) -> list[float]:
    """Seconds from jobs.create to succeeded, on a server whose worker is already warm."""
    import openai

    from fixtures.platform import running_server, wait_for

    with running_server(settings) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["acme"], max_retries=0)
        uploaded = client.files.create(file=data.open("rb"), purpose="fine-tune")
        method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}}
        times = []
        for index in range(repeats + 1):  # the first one also waits for the forkserver to warm up
            started = time.perf_counter()
            job = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id, method=method,
                                                 extra_body={"tuneforge": {"train": {"precision": "fp32"}}})
            wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "succeeded", every=0.05)
            if index:
                times.append(time.perf_counter() - started)
        return times


def drain_queue(settings, data: Path, *, jobs_count: int, workers: int, concurrency: int) -> tuple[float, int, int]:
    """Submit ``jobs_count`` tiny jobs, drain them with a pool; returns (wall s, peak concurrency, succeeded)."""
    from tuneforge.config import TrainConfig
    from tuneforge.services import files, jobs
    from tuneforge.services.platform import open_platform
    from tuneforge.services.workers import make_worker

    from fixtures.platform import wait_for

    platform = open_platform(settings)
    record = files.upload_path(platform, project="acme", path=data)
    config = TrainConfig(model="tiny-llama", data={"train": record.id},
                         train={"max_steps": 1, "batch_size": 4, "precision": "fp32", "save_steps": 1})
    pool = [make_worker(settings.model_copy(update={"concurrency": concurrency}), name=f"bench{i}") for i in range(workers)]
    threads = [w.start_thread() for w in pool]
    time.sleep(1)
    started = time.perf_counter()
    ids = [jobs.create_train_job(platform, project="acme", config=config).id for _ in range(jobs_count)]
    done = lambda: sum(platform.store.count_jobs().get(s, 0) for s in ("succeeded", "failed")) >= jobs_count  # noqa: E731
    wait_for(done, timeout=3600, every=0.2, what="the queue to drain")
    wall = time.perf_counter() - started
    for w in pool:
        w.stop()
    for t in threads:
        t.join()
    finished = [platform.store.get_job(i) for i in ids]
    peak = peak_concurrency([(j.started_at, j.finished_at) for j in finished])
    return wall, peak, sum(j.status == "succeeded" for j in finished)


def main() -> None:
    import platform_soak

    if "--soak" in sys.argv:
        parser = argparse.ArgumentParser(description=platform_soak.__doc__.splitlines()[0])
        parser.add_argument("--soak", action="store_true")
        platform_soak.add_arguments(parser)
        platform_soak.run(parser.parse_args())
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=120)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--postgres", action="store_true", help="Run the queue on a throwaway PostgreSQL cluster.")
    platform_soak.run(parser.parse_args(), run)


def run(args: argparse.Namespace) -> None:
    """Both measurements."""

    from fixtures.platform import write_chat
    from fixtures.tiny import build_tiny_llama
    from tuneforge.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="tuneforge-bench-"))
    model = build_tiny_llama(root / "tiny-llama")
    data = write_chat(root / "train.jsonl")
    common = dict(poll_seconds=0.1, heartbeat_seconds=0.5, threads_per_job=1, base_models={"tiny-llama": str(model)})
    api = Settings(home=str(root / "api"), database_url=f"sqlite:///{root / 'api.db'}", concurrency=1, **common)
    times = create_to_succeeded(api, data)
    print(f"jobs.create -> succeeded (tiny job, 3 steps, warm server): "
          f"{', '.join(f'{t:.2f}' for t in times)} s (median {sorted(times)[len(times) // 2]:.2f} s)")
    queue = Settings(home=str(root / "queue"), database_url=args.database_url or f"sqlite:///{root / 'q.db'}",
                             **common)
    wall, peak, ok = drain_queue(queue, data, jobs_count=args.jobs, workers=args.workers, concurrency=args.concurrency)
    print(f"{args.jobs} jobs, {args.workers} workers x {args.concurrency}: {wall:.1f} s wall "
          f"({wall / args.jobs:.2f} s/job), peak concurrency {peak}, {ok} succeeded, CPU cores {os.cpu_count()}, "
          f"{queue.database_url.split(':', 1)[0]}")


if __name__ == "__main__":
    main()
