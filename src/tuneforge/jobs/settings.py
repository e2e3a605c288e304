"""Settings of the platform (server and workers): one pydantic model, from flags or the environment."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.settings import database_url, tuneforge_home


class PlatformSettings(BaseModel):
    """How the server and its workers run. Every field can be set by a ``tuneforge server`` flag."""

    model_config = ConfigDict(extra="forbid")

    home: str = Field(default_factory=lambda: str(tuneforge_home()),
                      description="TUNEFORGE_HOME: artifacts, run directories and the default SQLite file.")
    database_url: str = Field(default_factory=database_url,
                              description="sqlite:///PATH or postgresql://... (TUNEFORGE_DATABASE_URL).")
    concurrency: int = Field(2, ge=0, description="Jobs one worker runs at once (0: the server runs none).")
    threads_per_job: int = Field(0, ge=0, description="torch threads of a job process (0: CPU cores / concurrency).")
    poll_seconds: float = Field(0.5, gt=0, description="How often an idle worker looks for queued jobs.")
    heartbeat_seconds: float = Field(2.0, gt=0, description="How often a worker reports that its jobs live.")
    stale_after_seconds: float = Field(
        30.0, gt=0, description="A running job whose worker was silent this long is requeued (its worker died)."
    )
    max_upload_bytes: int = Field(512 * 2**20, ge=1, description="Largest accepted upload; larger ones get 413.")
    base_models: dict[str, str] = Field(
        default_factory=dict,
        description="Base models jobs may name in 'model', beyond the builtin aliases: name -> local model "
        "directory (TUNEFORGE_BASE_MODELS='name=path,name2=path2').",
    )
    allow_local_paths: bool = Field(False, description="Also accept a local model directory as 'model'.")

    @property
    def artifacts_dir(self) -> Path:
        """Where uploaded and result files are kept, by sha256."""
        return Path(self.home) / "artifacts"

    def run_dir(self, job_id: str) -> Path:
        """The run directory (checkpoints, adapter, metrics) of a job."""
        return Path(self.home) / "jobs" / job_id / "run"

    def data_dir(self, job_id: str) -> Path:
        """The job's own links to its training and validation files."""
        return Path(self.home) / "jobs" / job_id / "data"

    def job_threads(self) -> int:
        """torch threads per job process."""
        if self.threads_per_job:
            return self.threads_per_job
        return max(1, (os.cpu_count() or 1) // max(self.concurrency, 1))


def base_models_from_env() -> dict[str, str]:
    """``TUNEFORGE_BASE_MODELS='name=path,name2=path2'`` as a mapping."""
    text = os.environ.get("TUNEFORGE_BASE_MODELS", "")
    pairs = [item.split("=", 1) for item in text.split(",") if "=" in item]
    return {name.strip(): path.strip() for name, path in pairs}
