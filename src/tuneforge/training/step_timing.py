"""Per-process, per-step timing of a training run: instrumentation for ``benchmarks/scaling.py --per-rank``.

Off by default: it runs only when a :class:`StepTimer` is among the run's callbacks (``run_training(...,
extra_callbacks=[StepTimer(folder)])``); the Trainer of causal-LM tasks then times each training step through it.
Each process appends one JSON line per optimizer step to ``folder/steps-rank{R}.jsonl``:

- ``examples``, ``tokens`` (not padding), ``padded_tokens`` (computed on), ``label_tokens`` of its batches;
- ``compute_s``: forward + backward, less the wait at the end of the gradient all-reduce;
- ``allreduce_s``: from the moment DDP hands the last gradient bucket to the all-reduce to its completion (the
  all-reduce itself and the wait for the slowest process); timed by a DDP communication hook that wraps torch's
  default ``allreduce_hook``; 0 on one process;
- ``optimizer_s``: clipping is before it; the optimizer step alone;
- ``step_s``: the step's wall time from the Trainer's step begin to its end; ``between_s``: from the previous step's
  end to this one's begin (fetching and collating the batch, the Trainer's token counts gathered across processes,
  logging).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Times each step of this process and writes one line per optimizer step (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.rank = 0
        self._hooked = False
        self._buckets: list[tuple[float, float]] = []  # (handed to the all-reduce, completed), this micro-batch
        self._row: dict[str, Any] = {}
        self._marks: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self.rank = args.process_index
        self.folder.mkdir(parents=True, exist_ok=True)
        self._path = self.folder / f"steps-rank{self.rank}.jsonl"
        self._path.write_text("")
        self._marks["end"] = time.perf_counter()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        now = time.perf_counter()
        self._row = {"rank": self.rank, "step": state.global_step + 1, "examples": 0, "tokens": 0, "padded_tokens": 0,
                     "label_tokens": 0, "compute_s": 0.0, "allreduce_s": 0.0,
                     "between_s": now - self._marks.get("end", now)}
        self._marks["begin"] = now

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self._marks["optimizer"] = time.perf_counter()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self._row["optimizer_s"] = time.perf_counter() - self._marks["optimizer"]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        now = time.perf_counter()
        self._row["step_s"] = now - self._marks["begin"]
        self._marks["end"] = now
        with self._path.open("a") as handle:
            handle.write(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in self._row.items()})
                         + "\n")

    def time_training_step(self, model: Any, inputs: dict[str, Any], step: Callable[[], Any]) -> Any:
        """Run ``step`` (forward + backward of one micro-batch) and add its figures to this step's row."""
        self._hook(model)
        self._count(inputs)
        self._buckets.clear()
        started = time.perf_counter()
        loss = step()
        took = time.perf_counter() - started
        wait = self._buckets[-1][1] - self._buckets[-1][0] if self._buckets else 0.0
        self._row["compute_s"] += took - wait
        self._row["allreduce_s"] += wait
        return loss

    def _count(self, inputs: dict[str, Any]) -> None:
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        labels = inputs["shift_labels"] if "shift_labels" in inputs else inputs["labels"][..., 1:]
        self._row["examples"] += ids.shape[0] if mask is not None else int((inputs["position_ids"] == 0).sum())
        self._row["tokens"] += int(mask.sum()) if mask is not None else ids.numel()
        self._row["padded_tokens"] += ids.numel()
        self._row["label_tokens"] += int((labels != -100).sum())

    def _hook(self, model: Any) -> None:
        """Register the timing all-reduce hook on a DDP model, once (before its first backward)."""
        if self._hooked:
            return
        self._hooked = True
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model.register_comm_hook(state=self._buckets, hook=timed_allreduce)


def timed_allreduce(buckets, bucket):  # noqa: ANN001, ANN201 (DDP checks the annotations: none, or torch's own)
    """torch's default all-reduce of a gradient bucket, noting when it was handed over and when it completed.

    Args:
        buckets: Where ``(handed, completed)`` perf-counter times are appended.
        bucket: DDP's ``GradBucket``.
    """
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    handed = time.perf_counter()

    def done(future):  # noqa: ANN001, ANN202
        buckets.append((handed, time.perf_counter()))
        return future.value()

    return allreduce_hook(None, bucket).then(done)
