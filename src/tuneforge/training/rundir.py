"""The run directory: what it holds, whether it may be used, and its marker file."""

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
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class RunDir:
    """Paths inside a run's ``output_dir``."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def read_marker(self) -> dict[str, Any] | None:
        """The marker's content, or ``None`` when this is not a tuneforge run."""
        return json.loads(self.marker.read_text()) if self.marker.is_file() else None

    def write_marker(self, **fields: Any) -> None:
        """Merge ``fields`` into the marker file (atomically)."""
        data = {**(self.read_marker() or {}), **fields}
        atomic_write_text(self.marker, json.dumps(data, indent=2))

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (one whose trainer state was written last, after the weights)."""
        if not self.checkpoints.is_dir():
            return None
        complete = [
            p for p in self.checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()
        ]
        return max(complete, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


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
    if marker.get("status") == "completed":
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
