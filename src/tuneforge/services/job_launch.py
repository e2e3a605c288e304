"""A train job on several processes: the job process runs ``tuneforge train --nproc N`` under torchrun and
relays what rank 0 writes (``metrics.jsonl``) to the job's progress.

The job's config is written beside its run folder (``<run>.launch/config.yaml``, its data sets already resolved
to files) with the launcher's output (``launcher.log``). The processes inherit the job's GPUs
(``CUDA_VISIBLE_DEVICES``, set by the job process from ``worker --gpus``). Pause and cancel reach them as
SIGTERM through the launcher: each saves a checkpoint after its step and stops; a resumed job continues from it.
"""

from __future__ import annotations

import ctypes
import json
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tuneforge.config import TrainConfig
from tuneforge.errors import TuneforgeError
from tuneforge.jobs.kinds import JobContext, JobPaused
from tuneforge.progress import ProgressEvent, ProgressKind
from tuneforge.services.launch import LaunchPlan, check_plan, launch_command, train_arguments
from tuneforge.storage.files import atomic_write_text
from tuneforge.storage.rundir import RunDir

POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 60.0  # for the processes to finish their step and write a checkpoint


def job_nproc(job: Any) -> int:
    """Processes a train job asks for: ``tuneforge.nproc`` of its request (1 when absent)."""
    return max(1, int((job.request or {}).get("nproc") or 1))


def run_launched(context: JobContext, config: TrainConfig, *, nproc: int) -> dict[str, Any]:
    """Train ``config`` on ``nproc`` processes of this machine; return the run's summary.

    Raises:
        JobPaused: The job was asked to pause; the processes saved a checkpoint.
        TuneforgeError: The processes failed (the launcher log's tail is in the message).
        ConfigError: More processes than the GPUs handed to the job.
    """
    plan = LaunchPlan(nproc=nproc)
    check_plan(plan)
    if context.devices and len(context.devices) < nproc:
        raise TuneforgeError(f"the job asks for {nproc} processes but holds {len(context.devices)} GPU(s)",
                             hint="start the worker with --gpus listing enough GPUs")
    side = context.run_dir.with_name(context.run_dir.name + ".launch")
    side.mkdir(parents=True, exist_ok=True)
    config_file, log = side / "config.yaml", side / "launcher.log"
    atomic_write_text(config_file, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    command = launch_command(plan, cli_args=train_arguments(str(config_file), resume=True))
    home = ["env", f"TUNEFORGE_HOME={context.settings.home}"]  # the processes' model cache: this platform's home
    context.recorder.message(f"Launching {nproc} training processes: {' '.join(command)}")
    with log.open("ab") as out:
        launcher = subprocess.Popen([*home, *command], stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=_end_with_parent)
    code, paused = _follow(context, launcher, RunDir(context.run_dir), train=config.train)
    if paused:
        raise JobPaused()
    if code != 0:
        raise TuneforgeError(f"the training processes failed (exit code {code}): {_tail(log)}",
                             hint=f"the full output is in {log}")
    return RunDir(context.run_dir).read_summary()


def _follow(context: JobContext, launcher: subprocess.Popen, run: RunDir, *, train: Any) -> tuple[int, bool]:
    """Relay new ``metrics.jsonl`` rows as steps until the launcher ends; a pause or a cancel (SIGTERM to this
    process) is passed on as SIGTERM. Returns the exit code and whether the job paused."""
    cancelled: list[bool] = []

    def on_term(*_: object) -> None:
        cancelled.append(True)
        launcher.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    seen, paused = _relay(context, run, seen=-1, train=train), False  # rows of an earlier attempt are known
    try:
        while True:
            try:
                code = launcher.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                code = None
            seen = _relay(context, run, seen=seen, train=train)
            if code is not None:
                break
            if context.pause.is_set() and not paused:
                paused = True
                launcher.send_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if cancelled:
        sys.exit(143)  # the worker records the cancel once this process ends
    return code, paused and code != 0


def _relay(context: JobContext, run: RunDir, *, seen: int, train: Any) -> int:
    """Send the rows of ``metrics.jsonl`` after the first ``seen`` to the job's progress; return the new count
    (``seen=-1``: send nothing, just count)."""
    if not run.metrics.is_file():
        return max(seen, 0)
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines() if line.strip()]
    for row in rows[len(rows) if seen < 0 else seen:]:
        total = train.max_steps or estimated_total_steps(row, epochs=train.epochs)
        if "loss" in row:
            data = {k: row[k] for k in ("loss", "learning_rate", "tokens_per_second", "epoch") if k in row}
            context.recorder(ProgressEvent(ProgressKind.STEP, step=row["step"], total=total, data=data))
        if "eval_loss" in row:
            context.recorder(ProgressEvent(ProgressKind.METRICS, step=row["step"], total=total,
                                           data={"eval_loss": row["eval_loss"]}))
    return max(seen, len(rows))


def estimated_total_steps(row: dict[str, Any], *, epochs: float) -> int | None:
    """The run's steps from a row's step and epoch (the Trainer's epoch is step / steps per epoch)."""
    if not row.get("epoch"):
        return None
    return math.ceil(round(row["step"] / row["epoch"] * epochs, 6))


def _end_with_parent() -> None:
    """In the launcher, before it starts: end it (SIGTERM) when the job process dies, as the worker's watchdog
    ends a job process whose worker died, so that a requeued job never trains twice (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _tail(log: Path, *, lines: int = 6) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    errors = [line for line in text if "error" in line.lower()]
    return " | ".join((errors or text)[-lines:])
