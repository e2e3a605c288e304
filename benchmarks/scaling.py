"""Scaling of training over processes, measured so that a shared machine cannot fake it.

LoRA on SmolLM2-135M (the quickstart task) on 1 and N processes (default 2) at the same global batch: N processes
take ``global_batch / N`` examples each. Every run is the real CLI (``tuneforge train CONFIG --nproc N``: torchrun,
gloo on CPU / NCCL on GPUs) with one thread per process (OMP_NUM_THREADS=1).

Why the figures can be trusted on a machine others use:

- rounds alternate the two counts (1, N, then N, 1, ...): a load that comes and goes hits both alike;
- each run's CPU time is measured over its training steps only (every process of the run, from the first logged
  step to the last; loading excluded), which gives **cores used** (CPU-seconds per second: 1.0 and N when each
  process has a core of its own) and **tokens per CPU-second** (what a core does, whatever the contention);
- the 1-minute load average before each run is printed, and a round whose cores used falls short of its count
  (under 90%) is marked ``contended``: its tokens/s says more about the neighbours than about scaling.

efficiency = tokens/s on N / (N × tokens/s on 1), per round and over the medians of the rounds; tokens/s is every
process's input tokens from the first logged step to the last (``input_tokens`` of ``metrics.jsonl``), over the window
of the CPU time (the first step, which also checks the label-only loss and sets DDP up, is left out of both; the
run's own figure in summary.json counts it in its time). per-core efficiency =
tokens per CPU-second on N / the same on 1: the efficiency N processes reach when each has a core of its own
(what communication and duplicated work cost), a figure that a busy machine does not halve.

    .venv/bin/python benchmarks/scaling.py --rounds 3                 # 1 vs 2 processes, 12 steps, global batch 8
    .venv/bin/python benchmarks/scaling.py --nproc 8 --precision bf16  # 1 vs 8 GPUs
    .venv/bin/python benchmarks/scaling.py --rounds 2 --control        # + N independent runs side by side

``--per-rank`` runs each training under torchrun with a ``tuneforge.training.step_timing.StepTimer``: every process
writes, per step, its examples, tokens (real, padded, label), forward + backward time, time waiting in the gradient
all-reduce, optimizer time and time between steps; the report gives their means per process and how far the dearer
process stands above the mean, step by step. ``--no-balance`` splits global batches by position
(``train.speed.balance_processes: false``, the split before it existed); ``--env KEY=VALUE`` sets a variable in every
run (an allocator: ``--env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4``).

    .venv/bin/python benchmarks/scaling.py --rounds 1 --per-rank            # where each process's step goes

``--control`` adds, to each round, N independent one-process runs of ``global_batch / N`` each, started together
with no communication between them: what N cores of this machine do side by side (shared caches and memory
bandwidth; on a VM, whatever the host shares). Their summed tokens/s against N x one process is the machine's
own ceiling for N processes, and the N-process run against that sum is what DDP itself costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

CONTENDED = 0.9  # cores used below 90% of the process count


@dataclass
class Run:
    """One training run's figures."""

    nproc: int
    load: float  # 1-minute load average before the run
    tokens: int  # every process's input tokens, first logged step to last
    cpu_seconds: float  # every process of the run, the same window
    wall_seconds: float  # the same window
    final_loss: float
    label_only: bool  # the label-only loss ran (train.speed; not stepped aside)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.wall_seconds

    @property
    def cores_used(self) -> float:
        return self.cpu_seconds / self.wall_seconds

    @property
    def tokens_per_cpu_second(self) -> float:
        return self.tokens / self.cpu_seconds

    @property
    def contended(self) -> bool:
        return self.cores_used < CONTENDED * self.nproc


def tree_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of a process and its descendants (the launcher and its workers)."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def write_config(workdir: Path, nproc: int, *, steps: int, global_batch: int, precision: str,
                 balance: bool = True) -> Path:
    from tuneforge.services.quickstart import write_task_data

    paths = write_task_data(workdir)
    config = {
        "model": "smollm2-135m", "method": "lora", "data": {"train": str(paths["train"])},
        "train": {"max_steps": steps, "batch_size": global_batch // nproc, "learning_rate": 3e-4,
                  "precision": precision, "max_seq_length": 256, "save_steps": 10_000, "logging_steps": 1,
                  "speed": {"balance_processes": balance}},
        "output_dir": str(workdir / f"run-{nproc}"),
    }
    path = workdir / f"scaling-{nproc}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(nproc: int, *, steps: int, global_batch: int, precision: str, workdir: Path, balance: bool = True,
        per_rank: bool = False, env_extra: dict[str, str] | None = None) -> Run:
    """Train once on ``nproc`` processes, sampling the CPU time of its processes at its first and last step.

    ``per_rank``: run :func:`rank_worker` under torchrun instead of the CLI, each process timing its steps
    (``workdir/steps-N/steps-rankR.jsonl``, see ``tuneforge.training.step_timing``).
    """
    path = write_config(workdir, nproc, steps=steps, global_batch=global_batch, precision=precision, balance=balance)
    load = os.getloadavg()[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    command = [sys.executable, "-m", "tuneforge.cli.app", "train", str(path), "--nproc", str(nproc), "--overwrite"]
    if per_rank:  # one process without the launcher, as the CLI runs it
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
        command = [sys.executable, *launcher, __file__, "--rank-worker", str(path), str(workdir / f"steps-{nproc}")]
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process, first, last = psutil.Process(child.pid), None, None
    for line in child.stdout:  # plain lines off a terminal: "step K/N ..." once per logged step (rank 0)
        if line.startswith("step "):
            sample = (time.perf_counter(), tree_cpu_seconds(process))
            first = first or sample
            last = sample
    _, stderr = child.communicate()
    if child.returncode != 0 or first is None or last is first:
        raise SystemExit(f"the {nproc}-process run failed:\n{stderr[-3000:]}")
    run_dir = workdir / f"run-{nproc}"
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tokens = [r["input_tokens"] for r in rows if "input_tokens" in r]  # one row per step line (logging_steps 1)
    return Run(nproc=nproc, load=load, tokens=tokens[-1] - tokens[0], cpu_seconds=last[1] - first[1],
               wall_seconds=last[0] - first[0], final_loss=summary["final_loss"],
               label_only=summary["label_only_loss"])


def rank_worker(config_path: str, folder: str) -> None:
    """One process of a ``--per-rank`` run (under torchrun): train with a StepTimer; rank 0 prints its steps."""
    from tuneforge.config.loader import load_config
    from tuneforge.config.models import TrainConfig
    from tuneforge.progress import ProgressKind
    from tuneforge.settings import Settings
    from tuneforge.training import run_training
    from tuneforge.training.step_timing import StepTimer

    main_process = os.environ.get("RANK", "0") == "0"

    def progress(event) -> None:
        if main_process and event.kind is ProgressKind.STEP:
            print(f"step {event.step}/{event.total}", flush=True)

    run_training(load_config(config_path, TrainConfig), settings=Settings.from_env(), overwrite=True,
                 progress=progress, extra_callbacks=[StepTimer(Path(folder))])


def per_rank_report(folder: Path, *, nproc: int) -> None:
    """Per process, the means over the steps (the first left out) of the StepTimer's figures; then, step by step,
    how far the dearer process's padded tokens and compute time stand above the processes' mean."""
    fields = ("examples", "tokens", "padded_tokens", "label_tokens", "compute_s", "allreduce_s", "optimizer_s",
              "between_s", "step_s")
    print(f"  per rank ({nproc} process{'es' if nproc > 1 else ''}; means over steps 2..):")
    print("  " + f"{'rank':>4} " + " ".join(f"{f:>13}" for f in fields))
    ranks = [[json.loads(line) for line in path.read_text().splitlines()][1:]
             for path in sorted(folder.glob("steps-rank*.jsonl"))]
    for rows in ranks:
        means = [statistics.fmean(r.get(f, 0.0) for r in rows) for f in fields]
        print("  " + f"{rows[0]['rank']:>4} " + " ".join(f"{m:>13.3f}" if m < 100 else f"{m:>13.1f}" for m in means))
    if len(ranks) > 1:
        def over_mean(field: str) -> float:
            return statistics.fmean(max(r[field] for r in step) / statistics.fmean(r[field] for r in step) - 1
                                    for step in zip(*ranks))
        print(f"  per step, the dearer process above the mean: padded tokens +{over_mean('padded_tokens'):.1%}, "
              f"compute +{over_mean('compute_s'):.1%}")


def row(r: Run, efficiency: float | None) -> str:
    eff = f"{efficiency:>10.0%}" if efficiency is not None else f"{'':>10}"
    return (f"{r.nproc:>9} {r.load:>6.2f} {r.tokens_per_second:>9.1f} {r.cores_used:>10.2f} "
            f"{r.tokens_per_cpu_second:>11.1f} {eff} {r.final_loss:>10.4f}{'' if r.label_only else '  plain loss'}"
            f"{'  contended' if r.contended else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2, help="the count compared with one process")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs (1 and N), alternating their order")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--control", action="store_true",
                        help="also run N independent one-process trainings side by side (the machine's ceiling)")
    parser.add_argument("--per-rank", action="store_true",
                        help="time every step of every process (compute, all-reduce wait, optimizer, tokens)")
    parser.add_argument("--no-balance", action="store_true",
                        help="split global batches by position (train.speed.balance_processes: false)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="set in every run's environment (e.g. MALLOC_ARENA_MAX=1, LD_PRELOAD=...)")
    parser.add_argument("--rank-worker", nargs=2, metavar=("CONFIG", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_worker:
        rank_worker(*args.rank_worker)
        return
    args.env_extra = dict(item.split("=", 1) for item in args.env)
    if args.global_batch % args.nproc:
        parser.error(f"--global-batch {args.global_batch} is not a multiple of --nproc {args.nproc}")
    print(f"{os.cpu_count()} cores; load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"1 vs {args.nproc} processes, global batch {args.global_batch}, {args.steps} steps, {args.rounds} rounds")
    print(f"{'processes':>9} {'load':>6} {'tokens/s':>9} {'cores used':>10} {'tok/CPU-s':>11} {'efficiency':>10} "
          f"{'final loss':>10}")
    runs: dict[int, list[Run]] = {1: [], args.nproc: []}
    controls: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            order = (1, args.nproc) if round_ % 2 == 0 else (args.nproc, 1)
            for nproc in order:
                runs[nproc].append(run(nproc, steps=args.steps, global_batch=args.global_batch,
                                       precision=args.precision, workdir=Path(tmp), balance=not args.no_balance,
                                       per_rank=args.per_rank, env_extra=args.env_extra))
            one, many = runs[1][-1], runs[args.nproc][-1]
            efficiency = many.tokens_per_second / (args.nproc * one.tokens_per_second)
            for r in (one, many):
                print(row(r, efficiency if r is many else None), flush=True)
                if args.per_rank:
                    per_rank_report(Path(tmp) / f"steps-{r.nproc}", nproc=r.nproc)
            if args.control:
                controls.append(side_by_side(args, Path(tmp)))
                print(f"{'control':>9} {controls[-1]:>16.1f}  tokens/s of {args.nproc} independent runs of batch "
                      f"{args.global_batch // args.nproc} side by side: {controls[-1] / (args.nproc * one.tokens_per_second):.0%}"
                      f" of {args.nproc} x one process; the {args.nproc}-process run reached "
                      f"{many.tokens_per_second / controls[-1]:.0%} of them", flush=True)
    report(runs, nproc=args.nproc)
    if controls:
        ceiling = statistics.median(controls) / (args.nproc * statistics.median(r.tokens_per_second for r in runs[1]))
        many = statistics.median(r.tokens_per_second for r in runs[args.nproc])
        print(f"control (median of {len(controls)}): {args.nproc} independent runs side by side reach {ceiling:.0%} of "
              f"{args.nproc} x one process (the machine's ceiling); the {args.nproc}-process run reaches "
              f"{many / statistics.median(controls):.0%} of that ceiling")


def side_by_side(args: argparse.Namespace, workdir: Path) -> float:
    """Summed tokens/s of ``args.nproc`` independent one-process runs of ``global_batch / nproc``, run together."""
    folders = [workdir / f"control-{i}" for i in range(args.nproc)]
    for folder in folders:
        folder.mkdir(exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.nproc) as pool:
        done = list(pool.map(lambda folder: run(1, steps=args.steps, global_batch=args.global_batch // args.nproc,
                                                precision=args.precision, workdir=folder, env_extra=args.env_extra),
                             folders))
    return sum(r.tokens_per_second for r in done)


def report(runs: dict[int, list[Run]], *, nproc: int) -> None:
    """Medians over the rounds, and the same over the rounds that no neighbour slowed down."""
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    for label, keep in (("all rounds", lambda r: True), ("uncontended rounds", lambda r: not r.contended)):
        one = [r for r in runs[1] if keep(r)]
        many = [r for r in runs[nproc] if keep(r)]
        if not one or not many:
            print(f"{label}: none")
            continue
        tps1, tpsn = median([r.tokens_per_second for r in one]), median([r.tokens_per_second for r in many])
        cpu1, cpun = median([r.tokens_per_cpu_second for r in one]), median([r.tokens_per_cpu_second for r in many])
        print(f"{label} (median of {len(one)} and {len(many)}): tokens/s {tps1:.1f} on 1, {tpsn:.1f} on {nproc}: "
              f"efficiency {tpsn / (nproc * tps1):.0%}; tokens per CPU-second {cpu1:.1f} and {cpun:.1f}: "
              f"per-core efficiency {cpun / cpu1:.0%} (what a core of each process does, against one alone)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
