"""Profile LoRA training steps of SmolLM2-135M on the quickstart data: torch.profiler's per-op table and the
time spent outside the model (data loading and collation, callbacks, logging, token counting).

    .venv/bin/python benchmarks/profile_step.py                           # tuneforge's defaults
    .venv/bin/python benchmarks/profile_step.py --speed '{"label_only_loss": false}'   # one switch changed
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback


class StepProfiler(TrainerCallback):
    """Profiles steps ``warmup+1 .. warmup+active`` and times each step inside and between ``training_step``."""

    def __init__(self, *, warmup: int, active: int, rows: int, shapes: bool = False) -> None:
        import torch

        self.warmup, self.active, self.rows, self.shapes = warmup, active, rows, shapes
        self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=shapes)
        self.inside: list[float] = []
        self.outside: list[float] = []
        self._begin = self._end = 0.0

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        now = time.perf_counter()
        if state.global_step == self.warmup:
            self.profiler.start()
        if self._end and state.global_step > self.warmup:
            self.outside.append(now - self._end)  # loader + collation + callbacks + logging of the last step
        self._begin = now

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self._end = time.perf_counter()
        if state.global_step > self.warmup:
            self.inside.append(self._end - self._begin)
        if state.global_step == self.warmup + self.active:
            self.profiler.stop()

    def report(self) -> str:
        averages = self.profiler.key_averages(group_by_input_shape=self.shapes)
        table = averages.table(sort_by="self_cpu_time_total", row_limit=self.rows)
        inside, outside = sum(self.inside), sum(self.outside)
        return (f"{table}\nsteps timed: {len(self.inside)}; per step: {inside / len(self.inside):.3f} s in the step "
                f"(forward, backward, optimizer), {outside / max(len(self.outside), 1):.3f} s between steps "
                f"({100 * outside / (inside + outside):.1f}% of the wall time)")


def main() -> None:
    from tuneforge.config import TrainConfig
    from tuneforge.services.quickstart import write_task_data
    from tuneforge.settings import Settings
    from tuneforge.training import run_training

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--active", type=int, default=4)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--speed", default="{}", help="JSON of train.speed fields")
    parser.add_argument("--shapes", action="store_true", help="one row per op and input shapes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_task_data(Path(tmp))
        train = {"max_steps": args.warmup + args.active, "batch_size": 8, "learning_rate": 3e-4,
                 "precision": args.precision, "max_seq_length": 256, "save_steps": 10_000, "logging_steps": 1}
        speed = json.loads(args.speed)
        if speed:
            train["speed"] = speed
        config = TrainConfig(model="smollm2-135m", method={"name": "lora", "r": 16, "target_modules": "all-linear"},
                             data={"train": str(paths["train"])}, train=train, output_dir=str(Path(tmp) / "run"))
        profiler = StepProfiler(warmup=args.warmup, active=args.active, rows=args.rows, shapes=args.shapes)
        summary = run_training(config, settings=Settings.from_env(), extra_callbacks=[profiler]).summary
    print(profiler.report())
    print(json.dumps({k: summary[k] for k in ("precision", "tokens_per_second", "peak_memory_mb", "final_loss")}))


if __name__ == "__main__":
    main()
