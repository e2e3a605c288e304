"""Scaling of training over processes: tokens/s of LoRA on SmolLM2-135M (the quickstart task) with 1 and N
processes at the same global batch, and the scaling efficiency (tokens/s on N / (N × tokens/s on 1)).

Each run is the real CLI (``tuneforge train CONFIG --nproc N``: torchrun, DDP, gloo on CPU / NCCL on GPUs) with
one thread per process (OMP_NUM_THREADS=1), so that on a CPU machine N processes use N cores. tokens/s is the
run's own figure (every process's input tokens, from the first step to the last, timed on rank 0).

    .venv/bin/python benchmarks/scaling.py                           # 1 and 2 processes, 12 steps, global batch 8
    .venv/bin/python benchmarks/scaling.py --nprocs 1 2 4 8 --precision bf16    # on a machine with 8 GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def run(nproc: int, *, steps: int, global_batch: int, precision: str, workdir: Path) -> dict:
    """Train once on ``nproc`` processes; return the run's summary."""
    from tuneforge.services.quickstart import write_task_data

    paths = write_task_data(workdir)
    config = {
        "model": "smollm2-135m", "method": "lora", "data": {"train": str(paths["train"])},
        "train": {"max_steps": steps, "batch_size": global_batch // nproc, "learning_rate": 3e-4,
                  "precision": precision, "max_seq_length": 256, "save_steps": 10_000, "logging_steps": 1},
        "output_dir": str(workdir / f"run-{nproc}"),
    }
    path = workdir / f"scaling-{nproc}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "tuneforge.cli.app", "train", str(path), "--nproc", str(nproc),
                    "--overwrite"], env=env, check=True, capture_output=True, text=True)
    return json.loads((workdir / f"run-{nproc}" / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"{'processes':>9} {'batch/proc':>10} {'steps':>5} {'tokens/s':>9} {'efficiency':>10} {'final loss':>10} "
          f"{'seconds':>8}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in args.nprocs:
            s = run(nproc, steps=args.steps, global_batch=args.global_batch, precision=args.precision,
                    workdir=Path(tmp))
            base = base or s["tokens_per_second"] / nproc
            efficiency = s["tokens_per_second"] / (nproc * base)
            print(f"{nproc:>9} {args.global_batch // nproc:>10} {s['global_step']:>5} {s['tokens_per_second']:>9.1f} "
                  f"{efficiency:>10.0%} {s['final_loss']:>10.4f} {s['runtime_seconds']:>8.1f}", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
