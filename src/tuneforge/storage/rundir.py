"""The run folder of a training run, defined once: its files, its marker, and whether it may be (re)used.

Layout of a run's ``output_dir``::

    tuneforge_run.json   the marker: config hash, status, base model, method, task, model type
    config.yaml          the full config, with every default
    provenance.json      how the run was made: package versions, data sha256, git commit, command, machine
    metrics.jsonl        one row per logged step
    checkpoints/         the Trainer's checkpoint-N folders (resume)
    adapter/             the trained adapter (PEFT format), for adapter methods
    model/               the full model, for methods that train the weights themselves
    summary.json         the run's figures, once it completed (trained_tokens: tokens that carry a
                         loss, times the epochs run; input_tokens: every token fed to the model)
    README.md            a model card

Training writes it; inference, services and the job process read it through :class:`RunDir` only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import ConflictError
from tuneforge.storage.files import atomic_write_text

MARKER = "tuneforge_run.json"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
MODEL = "model"
SUMMARY = "summary.json"
README = "README.md"
PROVENANCE = "provenance.json"
COMPLETED = "completed"  # the marker's status once the outputs are written


@dataclass(frozen=True)
class RunDir:
    """Paths inside a run's ``output_dir`` (see the module's docstring for the layout)."""

    root: Path

    @property
    def marker(self) -> Path:
        """``tuneforge_run.json``: the file that makes a folder a tuneforge run."""
        return self.root / MARKER

    @property
    def config(self) -> Path:
        """``config.yaml``: the run's full config."""
        return self.root / CONFIG

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: the Trainer's checkpoints."""
        return self.root / CHECKPOINTS

    @property
    def adapter(self) -> Path:
        """``adapter/``: the trained adapter of an adapter method."""
        return self.root / ADAPTER

    @property
    def model(self) -> Path:
        """``model/``: the trained full model of a method without an adapter."""
        return self.root / MODEL

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``: per-step metrics."""
        return self.root / METRICS

    @property
    def summary(self) -> Path:
        """``summary.json``: the figures of a completed run."""
        return self.root / SUMMARY

    @property
    def readme(self) -> Path:
        """``README.md``: the model card."""
        return self.root / README

    @property
    def provenance(self) -> Path:
        """``provenance.json``: package versions, data sha256, git commit, command line and machine."""
        return self.root / PROVENANCE

    def read_provenance(self) -> dict[str, Any] | None:
        """The content of ``provenance.json``, or ``None`` for a run written before it existed."""
        return json.loads(self.provenance.read_text()) if self.provenance.is_file() else None

    def write_provenance(self, provenance: dict[str, Any]) -> None:
        """Write ``provenance.json`` (atomically)."""
        atomic_write_text(self.provenance, json.dumps(provenance, indent=2))

    def is_run(self) -> bool:
        """Whether the folder holds a tuneforge run (its marker file)."""
        return self.marker.is_file()

    def has_adapter(self) -> bool:
        """Whether the run saved an adapter (else, once completed, a full model)."""
        return self.adapter.is_dir()

    def read_summary(self) -> dict[str, Any]:
        """The content of ``summary.json`` (a completed run)."""
        return json.loads(self.summary.read_text())

    def read_marker(self) -> dict[str, Any] | None:
        """The marker's content, or ``None`` when this is not a tuneforge run."""
        return json.loads(self.marker.read_text()) if self.marker.is_file() else None

    def write_marker(self, **fields: Any) -> None:
        """Merge ``fields`` into the marker file (atomically)."""
        data = {**(self.read_marker() or {}), **fields}
        atomic_write_text(self.marker, json.dumps(data, indent=2))

    def complete_checkpoints(self) -> list[Path]:
        """The complete checkpoints, oldest first: their trainer state is written last, after the weights, and
        reads back whole (transformers writes it in place, so a kill while it is written leaves it cut short)."""
        if not self.checkpoints.is_dir():
            return []
        complete = [p for p in self.checkpoints.glob("checkpoint-*") if _whole_json(p / "trainer_state.json")]
        return sorted(complete, key=self.checkpoint_step)

    @staticmethod
    def checkpoint_step(folder: Path) -> int:
        """The step of a checkpoint folder (``checkpoint-STEP``)."""
        return int(folder.name.rsplit("-", 1)[1])

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, if any."""
        complete = self.complete_checkpoints()
        return complete[-1] if complete else None


def _whole_json(path: Path) -> bool:
    """Whether ``path`` is a file holding one whole JSON document."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def config_hash(config_dict: dict[str, Any]) -> str:
    """A stable hash of what determines a run's result (the output folder aside)."""
    relevant = {k: v for k, v in config_dict.items() if k != "output_dir"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def prepare_run_dir(run: RunDir, *, digest: str, resume: bool, overwrite: bool) -> Path | None:
    """Check that ``run.root`` may hold this run; return the checkpoint to resume from, if any.

    Raises:
        ConflictError: The folder holds another run, a finished run, or files that are not a run;
            nothing in it is touched.
    """
    marker = run.read_marker()
    occupied = run.root.is_dir() and any(run.root.iterdir())
    if overwrite and occupied:
        if marker is None:
            raise ConflictError(
                f"output_dir {run.root} holds files that are not a tuneforge run; --overwrite would delete them",
                hint="choose another output_dir, or empty the folder yourself",
            )
        shutil.rmtree(run.root)
        return None
    if not occupied:
        return None
    where = f"output_dir {run.root}"
    if marker is None:
        raise ConflictError(f"{where} is not empty and is not a tuneforge run", hint="choose another output_dir")
    if marker.get("config_hash") != digest:
        raise ConflictError(
            f"{where} holds another run (a different config)",
            hint="choose another output_dir, or pass --overwrite to replace that run",
        )
    if marker.get("status") == COMPLETED:
        raise ConflictError(
            f"{where} holds this run, already completed",
            hint="pass --overwrite to train it again, or choose another output_dir",
        )
    if not resume:
        raise ConflictError(
            f"{where} holds an unfinished run of this config",
            hint="pass --resume to continue it from its newest checkpoint, or --overwrite to start over",
        )
    return run.latest_checkpoint()
