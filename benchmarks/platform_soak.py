"""Soak: tiny jobs from 3 projects with random priorities, two ``tuneforge worker`` processes on one home,
one worker frozen (SIGSTOP, a VM pause) past --stale-after and one killed mid-run (then replaced).

    PYTHONPATH=src python benchmarks/platform_soak.py [--jobs 300] [--freeze 60] [--postgres | --database-url URL]
    PYTHONPATH=src python benchmarks/platform_queue.py --soak ...   (the same)

Prints: jobs succeeded, jobs run twice (a step event of an older attempt written after a newer attempt
started: must be 0), lost jobs (not finished, or failed because their process died: 0), each project's
share of the first 100 completions, API p95 latency under load, and disk used before and after cleanup.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

PROJECTS = ("alpha", "beta", "gamma")


class Latency:
    """Wall times of API calls made while the queue drains."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def call(self, method, *args, **kwargs):
        """``method(*args, **kwargs)``, timed."""
        started = time.perf_counter()
        answer = method(*args, **kwargs)
        self.seconds.append(time.perf_counter() - started)
        return answer

    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan")


def submit(server, data: Path, *, jobs: int, latency: Latency, seed: int = 0) -> list[str]:
    """Upload the data for each project and create ``jobs`` tiny jobs, projects interleaved at random."""
    import httpx2 as httpx

    rng, ids = random.Random(seed), []
    headers = {p: {"Authorization": f"Bearer {server.keys[p]}"} for p in PROJECTS}
    files = {}
    for project in PROJECTS:
        with data.open("rb") as handle:
            files[project] = httpx.post(server.url + "/v1/files", headers=headers[project], files={"file": handle},
                                        data={"purpose": "fine-tune"}).json()["id"]
    for _ in range(jobs):
        project = rng.choice(PROJECTS)
        body = {"model": "tiny-llama", "data": {"train": files[project]},
                "train": {"max_steps": 3, "batch_size": 4, "precision": "fp32", "save_steps": 1}}
        answer = latency.call(httpx.post, server.url + "/api/v1/fine-tuning/jobs", headers=headers[project], json=body,
                              params={"priority": rng.randint(0, 3)}, timeout=60)
        ids.append(answer.json()["id"])
    return ids


def poll(server, latency: Latency, stop: threading.Event) -> None:
    """Read the API while the queue drains (listing and retrieving), to measure its latency under load."""
    import httpx2 as httpx

    headers = {"Authorization": f"Bearer {server.keys[PROJECTS[0]]}"}
    while not stop.wait(0.2):
        latency.call(httpx.get, server.url + "/v1/fine_tuning/jobs", headers=headers, params={"limit": 20}, timeout=60)


def chaos(settings, workers: list, log_dir: Path, *, freeze: float, stop: threading.Event) -> None:
    """Freeze the first worker's process tree for ``freeze`` seconds; then kill the second and replace it."""
    import psutil

    from fixtures.platform import start_worker

    if stop.wait(15):
        return
    frozen = [psutil.Process(workers[0].pid), *psutil.Process(workers[0].pid).children(recursive=True)]
    for process in frozen:
        process.send_signal(signal.SIGSTOP)
    stop.wait(freeze)
    for process in frozen:
        process.send_signal(signal.SIGCONT)
    if stop.wait(10):
        return
    workers[1].send_signal(signal.SIGKILL)  # the machine dies: its jobs are requeued after --stale-after
    workers.append(start_worker(settings, log_dir / "worker3.log", concurrency=2))


def ran_twice(store, job_id: str) -> bool:
    """Whether a step event of an older attempt was written after a newer attempt's first step event."""
    events = [e for e in store.list_events(job_id, limit=10_000).data if e.data and "attempt" in e.data]
    first_of = {}
    for event in sorted(events, key=lambda e: e.seq):
        first_of.setdefault(event.data["attempt"], event.seq)
    return any(e.data["attempt"] < a and e.seq > first_of[a] for e in events for a in first_of)


def soak(args: argparse.Namespace) -> None:
    """Run the soak and print its figures."""
    from fixtures.platform import running_server, start_worker, wait_for, write_chat
    from fixtures.tiny import build_tiny_llama
    from tuneforge.services.disk import collect_garbage
    from tuneforge.services.platform import open_platform
    from tuneforge.settings import Settings
    from tuneforge.storage.files import folder_bytes

    root = Path(tempfile.mkdtemp(prefix="tuneforge-soak-"))
    model, data = build_tiny_llama(root / "tiny-llama"), write_chat(root / "train.jsonl")
    settings = Settings(home=str(root / "home"), database_url=args.database_url or "", concurrency=0,
                        poll_seconds=0.2, heartbeat_seconds=1.0, stale_after_seconds=args.stale_after,
                        threads_per_job=1, base_models={"tiny-llama": str(model)})
    latency, stop = Latency(), threading.Event()
    with running_server(settings, projects=PROJECTS, workers=0) as server:
        workers = [start_worker(settings, root / f"worker{i}.log", concurrency=2) for i in (1, 2)]
        helpers = [threading.Thread(target=poll, args=(server, latency, stop), daemon=True),
                   threading.Thread(target=chaos, args=(settings, workers, root), kwargs={"freeze": args.freeze,
                                                                                         "stop": stop}, daemon=True)]
        for helper in helpers:
            helper.start()
        started = time.perf_counter()
        ids = submit(server, data, jobs=args.jobs, latency=latency)
        platform = open_platform(settings)
        store = platform.store
        final = ("succeeded", "failed", "cancelled")
        try:
            wait_for(lambda: all(store.get_job(i).status in final for i in ids), timeout=args.timeout, every=2.0,
                     what="every job to finish")
        except AssertionError as exc:
            print(exc)
        wall = time.perf_counter() - started
        stop.set()
        for worker in workers:
            worker.send_signal(signal.SIGCONT)
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=120)
        report(platform, ids, wall=wall, latency=latency, args=args)
        used = folder_bytes(settings.home_dir)
        collect_garbage(platform, grace_seconds=0)
        print(f"disk: {used / 2**20:.1f} MiB under the home after the run, "
              f"{folder_bytes(settings.home_dir) / 2**20:.1f} MiB after 'admin gc' "
              f"(jobs kept, {platform.settings.checkpoint_retention} checkpoints each at most)")
        platform.close()


def report(platform, ids: list[str], *, wall: float, latency: Latency, args: argparse.Namespace) -> None:
    """Print the soak's figures."""
    store = platform.store
    jobs = [store.get_job(i) for i in ids]
    died = [j for j in jobs if j.error and j.error.get("code") == "job_process_died"]
    lost = [j for j in jobs if j.status not in ("succeeded", "failed", "cancelled")] + died
    twice = [j.id for j in jobs if j.attempts > 1 and ran_twice(store, j.id)]
    first = sorted((j for j in jobs if j.finished_at), key=lambda j: j.finished_at)[:100]
    share = Counter(j.project for j in first)
    submitted = Counter(j.project for j in jobs)
    print(f"{len(ids)} jobs from {len(PROJECTS)} projects, 2 workers x 2 (one frozen {args.freeze:.0f} s, one killed), "
          f"{platform.settings.database_url.split(':', 1)[0]}: {wall:.0f} s wall")
    print(f"succeeded {sum(j.status == 'succeeded' for j in jobs)}, run twice {len(twice)}, lost {len(lost)}, "
          f"requeued {sum(j.attempts > 1 for j in jobs)}")
    print(f"share of the first {len(first)} completions: " + ", ".join(
        f"{p} {100 * share[p] / max(len(first), 1):.0f}% (of all jobs submitted: "
        f"{100 * submitted[p] / len(jobs):.0f}%)" for p in PROJECTS))
    print(f"API p95 under load: {latency.p95() * 1000:.0f} ms over {len(latency.seconds)} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The soak's options (also those of ``platform_queue.py --soak``)."""
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--freeze", type=float, default=60.0, help="Seconds the first worker stays frozen.")
    parser.add_argument("--stale-after", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--postgres", action="store_true", help="A throwaway PostgreSQL cluster.")


def run(args: argparse.Namespace, measure=None) -> None:
    """``measure(args)`` (default: the soak) on ``args.database_url``, a throwaway PostgreSQL cluster
    (``args.postgres``), or SQLite."""
    measure = measure or soak
    if args.postgres:
        from fixtures.postgres import postgres_cluster

        with postgres_cluster() as url:
            args.database_url = url
            measure(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
