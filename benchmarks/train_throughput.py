"""Training throughput and peak memory of LoRA, QLoRA, DoRA... on SmolLM2-135M (the quickstart task).

Each run is its own process, so the peak resident memory is that run's alone.

    .venv/bin/python benchmarks/train_throughput.py                  # lora and qlora, 20 steps each
    .venv/bin/python benchmarks/train_throughput.py --methods lora full --steps 10 --precision fp32
    .venv/bin/python benchmarks/train_throughput.py --compare-reference --steps 16 --rounds 2
        # the hand-written Trainer + PEFT script (benchmarks/reference_trainer.py) and tuneforge on the same data
        # and steps, in alternation: speed-up, peak RSS of both, fraction of the bf16 matmul peak, load average
    ... --speed '{"label_only_loss": false}'                         # tuneforge with some train.speed switches
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

HERE = Path(__file__).resolve().parent
REFERENCE_LORA = {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}


class CpuClock(TrainerCallback):
    """CPU seconds of this process between the start and the end of training (steadier than wall time when
    other jobs share the cores)."""

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201, D102
        self.started = time.process_time()

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201, D102
        self.seconds = time.process_time() - self.started


def run_one(method: str, steps: int, precision: str, workdir: Path, speed: dict) -> dict:
    from tuneforge.config import TrainConfig
    from tuneforge.services.quickstart import write_task_data
    from tuneforge.settings import Settings
    from tuneforge.training import run_training

    paths = write_task_data(workdir)
    train = {"max_steps": steps, "batch_size": 8, "learning_rate": 3e-4, "precision": precision,
             "max_seq_length": 256, "save_steps": 10_000, **({"speed": speed} if speed else {})}
    config = TrainConfig(model="smollm2-135m", method=REFERENCE_LORA if method == "lora-ref" else method,
                         data={"train": str(paths["train"])}, train=train, output_dir=str(workdir / f"run-{method}"))
    clock = CpuClock()
    summary = run_training(config, settings=Settings.from_env(), overwrite=True, extra_callbacks=[clock]).summary
    summary["tokens_per_cpu_second"] = round(summary["input_tokens"] / clock.seconds, 2)
    keys = ("tokens_per_cpu_second", "method", "precision", "device", "global_step", "trained_tokens",
            "tokens_per_second", "peak_memory_mb",
            "runtime_seconds", "trainable_parameters", "total_parameters", "final_loss")
    return {k: summary[k] for k in keys}


def child(args: list[str]) -> dict:
    """Run a subprocess that prints a JSON line last; that line, with the load average around the run."""
    before = os.getloadavg()[0]
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": (before + os.getloadavg()[0]) / 2}


def bf16_matmul_peak(size: int = 1024, seconds: float = 2.0) -> float:
    """Measured bf16 matmul FLOP/s of this process's threads (a square ``size`` matmul, repeated)."""
    import torch

    a, b = torch.randn(size, size, dtype=torch.bfloat16), torch.randn(size, size, dtype=torch.bfloat16)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started)


def compare_reference(args: argparse.Namespace) -> None:
    from tuneforge.models.resolve import resolve_model
    from tuneforge.services.quickstart import write_task_data
    from tuneforge.settings import Settings

    model_dir = resolve_model("smollm2-135m", cache_dir=Settings.from_env().model_cache_dir).path
    workdir = Path(tempfile.mkdtemp())
    train = write_task_data(workdir)["train"]
    rows = []
    for round_ in range(args.rounds):
        reference = child([str(HERE / "reference_trainer.py"), str(model_dir), str(train), "--steps", str(args.steps),
                           "--output", str(workdir / "ref")])
        ours = child([__file__, "--one", "lora-ref", "--steps", str(args.steps), "--precision", args.precision,
                      "--speed", args.speed])
        rows.append((reference, ours))
        print(f"round {round_ + 1}: reference {reference['tokens_per_second']:.1f} tok/s "
              f"{reference['peak_rss_mb']:.0f} MiB (load {reference['load']:.1f}) | tuneforge "
              f"{ours['tokens_per_second']:.1f} tok/s {ours['peak_memory_mb']:.0f} MiB (load {ours['load']:.1f})"
              f" | speed-up {ours['tokens_per_second'] / reference['tokens_per_second']:.2f}x per wall second, "
              f"{ours['tokens_per_cpu_second'] / reference['tokens_per_cpu_second']:.2f}x per CPU second", flush=True)
    summarize(rows, peak=bf16_matmul_peak(), params=rows[0][1]["total_parameters"])


def summarize(rows: list[tuple[dict, dict]], *, peak: float, params: int) -> None:
    """The comparison table; MFU counts 4 x parameters FLOPs per token (forward + input gradients: LoRA computes
    no weight gradients of the frozen base; the adapters' own FLOPs are negligible)."""
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    ref_tps, our_tps = mean([r["tokens_per_second"] for r, _ in rows]), mean([o["tokens_per_second"] for _, o in rows])
    ref_cpu = mean([r["tokens_per_cpu_second"] for r, _ in rows])
    our_cpu = mean([o["tokens_per_cpu_second"] for _, o in rows])
    ref_mem, our_mem = max(r["peak_rss_mb"] for r, _ in rows), max(o["peak_memory_mb"] for _, o in rows)
    print(f"\n{'':10} {'tokens/s':>9} {'tokens/CPU-s':>13} {'peak RSS MiB':>13} {'bf16 peak %':>12} {'load avg':>9}")
    for name, tps, cpu, mem, side in (("reference", ref_tps, ref_cpu, ref_mem, 0),
                                      ("tuneforge", our_tps, our_cpu, our_mem, 1)):
        load = mean([pair[side]["load"] for pair in rows])
        print(f"{name:10} {tps:>9.1f} {cpu:>13.1f} {mem:>13.0f} {100 * 4 * params * cpu / peak:>11.1f}% {load:>9.2f}")
    print(f"speed-up {our_tps / ref_tps:.2f}x per wall second, {our_cpu / ref_cpu:.2f}x per CPU second; "
          f"peak RSS {our_mem / ref_mem:.2f}x; bf16 matmul peak measured "
          f"{peak / 1e9:.0f} GFLOP/s; {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["lora", "qlora"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--speed", default="{}", help="JSON of train.speed fields for the tuneforge runs")
    parser.add_argument("--compare-reference", action="store_true", help="alternate with the hand-written script")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of --compare-reference")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_one(args.one, args.steps, args.precision, Path(tmp), json.loads(args.speed))))
        return
    if args.compare_reference:
        compare_reference(args)
        return
    print(f"{'method':8} {'precision':9} {'steps':>5} {'tokens/s':>9} {'peak MiB':>9} {'trainable':>10} {'seconds':>8}")
    for method in args.methods:
        r = child([__file__, "--one", method, "--steps", str(args.steps), "--precision", args.precision,
                   "--speed", args.speed])
        print(f"{r['method']:8} {r['precision']:9} {r['global_step']:>5} {r['tokens_per_second']:>9.1f} "
              f"{r['peak_memory_mb']:>9.0f} {r['trainable_parameters']:>10,} {r['runtime_seconds']:>8.1f}")


if __name__ == "__main__":
    main()
