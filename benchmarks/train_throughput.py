"""Training throughput and peak memory of LoRA, QLoRA, DoRA... on SmolLM2-135M (the quickstart task).

Each method runs in its own process, so the peak resident memory is that method's alone.

    .venv/bin/python benchmarks/train_throughput.py                  # lora and qlora, 20 steps each
    .venv/bin/python benchmarks/train_throughput.py --methods lora full --steps 10 --precision fp32
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run_one(method: str, steps: int, precision: str, workdir: Path) -> dict:
    from tuneforge.config import TrainConfig
    from tuneforge.services.quickstart import write_task_data
    from tuneforge.settings import Settings
    from tuneforge.training import run_training

    paths = write_task_data(workdir)
    config = TrainConfig(
        model="smollm2-135m",
        method=method,
        data={"train": str(paths["train"])},
        train={"max_steps": steps, "batch_size": 8, "learning_rate": 3e-4, "precision": precision,
               "max_seq_length": 256, "save_steps": 10_000},
        output_dir=str(workdir / f"run-{method}"),
    )
    summary = run_training(config, settings=Settings.from_env(), overwrite=True).summary
    keys = ("method", "precision", "device", "global_step", "trained_tokens", "tokens_per_second", "peak_memory_mb",
            "runtime_seconds", "trainable_parameters", "final_loss")
    return {k: summary[k] for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["lora", "qlora"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_one(args.one, args.steps, args.precision, Path(tmp))))
        return
    print(f"{'method':8} {'precision':9} {'steps':>5} {'tokens/s':>9} {'peak MiB':>9} {'trainable':>10} {'seconds':>8}")
    for method in args.methods:
        out = subprocess.run(
            [sys.executable, __file__, "--one", method, "--steps", str(args.steps), "--precision", args.precision],
            capture_output=True, text=True, check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['method']:8} {r['precision']:9} {r['global_step']:>5} {r['tokens_per_second']:>9.1f} "
              f"{r['peak_memory_mb']:>9.0f} {r['trainable_parameters']:>10,} {r['runtime_seconds']:>8.1f}")


if __name__ == "__main__":
    main()
