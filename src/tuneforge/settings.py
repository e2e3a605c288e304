"""The one Settings object: where tuneforge keeps its files, its database, and how the platform runs.

The shells (CLI, API app, ``tuneforge.train``) build it once with :meth:`Settings.from_env` and pass it
down; nothing else in the library reads or writes ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The variables :meth:`Settings.from_env` reads, and the field each one sets.
ENVIRONMENT = {
    "TUNEFORGE_HOME": "home",
    "TUNEFORGE_DATABASE_URL": "database_url",
    "TUNEFORGE_BASE_MODELS": "base_models",
    "TUNEFORGE_ALERT_WEBHOOK_URL": "alert_webhook_url",
}


def default_home() -> str:
    """``~/.tuneforge``: the home when ``TUNEFORGE_HOME`` is not set."""
    return str(Path.home() / ".tuneforge")


class Settings(BaseModel):
    """Where tuneforge's files and database are, and how the server and its workers run.

    Every field can be set by a flag of ``tuneforge server`` / ``tuneforge worker``; the first three also by
    the environment (``TUNEFORGE_HOME``, ``TUNEFORGE_DATABASE_URL``, ``TUNEFORGE_BASE_MODELS``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: str = Field(default_factory=default_home,
                      description="TUNEFORGE_HOME: converted models, artifacts, job folders, stored evaluations and "
                      "the default SQLite file.")
    database_url: str = Field("", description="sqlite:///PATH or postgresql://... (TUNEFORGE_DATABASE_URL); empty: "
                              "the SQLite file tuneforge.db under home.")
    concurrency: int = Field(1, ge=0, description="Jobs one worker runs at once (0: the server runs none).")
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
    alert_webhook_url: str = Field("", description="TUNEFORGE_ALERT_WEBHOOK_URL: each alert is POSTed there as JSON "
                                   "(job, kind, value, threshold, message), with retries; empty: no webhook.")
    stalled_after_seconds: float = Field(
        900.0, gt=0, description="A running job whose progress has not moved this long raises a job_stalled alert.")
    min_free_disk_gb: float = Field(5.0, ge=0, description="Free space under home below this raises a disk_low alert.")
    monitor_seconds: float = Field(30.0, gt=0, description="How often the server runs the platform checks "
                                   "(stalled jobs, free disk).")
    # --- tenants: fair and bounded (issue 17) ---
    max_priority: int = Field(100, ge=-1000, le=1000,
                              description="The highest priority a project's job may ask for (400 above it).")
    priority_caps: dict[str, int] = Field(default_factory=dict,
                                          description="Per-project priority caps (project -> cap), over max_priority.")
    max_queued_jobs_per_project: int = Field(
        1000, ge=0, description="Jobs a project may have waiting (validating or queued); over it: 429. 0: no limit.")
    max_running_jobs_per_project: int = Field(
        0, ge=0, description="Jobs of one project that run at once across the workers (others wait). 0: no limit.")
    storage_quota_bytes: int = Field(
        0, ge=0, description="Bytes of uploaded and result files a project may keep (over it: 413). 0: no quota.")
    checkpoint_retention: int = Field(
        3, ge=1, le=10_000, description="Checkpoints a fine-tuning job keeps when its request does not say: the "
        "newest N (the best one too).")

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{Path(self.home).expanduser() / 'tuneforge.db'}")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment (``environ``, default ``os.environ``); ``overrides`` (flags) win.

        Overrides that are ``None`` are ignored, so a shell can pass its optional flags straight through.
        """
        environ = os.environ if environ is None else environ
        fields: dict[str, Any] = {}
        for variable, name in ENVIRONMENT.items():
            if environ.get(variable):
                fields[name] = environ[variable]
        if "base_models" in fields:
            fields["base_models"] = parse_base_models(fields["base_models"])
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**fields)

    # --- the folders under home, defined here once ------------------------------------------------
    @property
    def home_dir(self) -> Path:
        """``home`` as a path (``~`` expanded)."""
        return Path(self.home).expanduser()

    @property
    def model_cache_dir(self) -> Path:
        """Builtin and GGUF models converted to safetensors."""
        return self.home_dir / "models"

    @property
    def evaluations_dir(self) -> Path:
        """Stored evaluation and comparison results."""
        return self.home_dir / "evaluations"

    @property
    def artifacts_dir(self) -> Path:
        """Uploaded and result files, by sha256."""
        return self.home_dir / "artifacts"

    @property
    def datasets_dir(self) -> Path:
        """Datasets' files, linked from their artifacts."""
        return self.home_dir / "datasets"

    def job_dir(self, job_id: str) -> Path:
        """Everything a job writes: ``run/`` (its run folder or output) and ``data/`` (links to its files)."""
        return self.home_dir / "jobs" / job_id

    def run_dir(self, job_id: str) -> Path:
        """The run directory (checkpoints, adapter, metrics, reports) of a job."""
        return self.job_dir(job_id) / "run"

    def data_dir(self, job_id: str) -> Path:
        """The job's own links to its input files."""
        return self.job_dir(job_id) / "data"

    def priority_cap(self, project: str) -> int:
        """The highest priority a job of ``project`` may ask for."""
        return self.priority_caps.get(project, self.max_priority)

    def job_threads(self) -> int:
        """torch threads per job process."""
        if self.threads_per_job:
            return self.threads_per_job
        return max(1, (os.cpu_count() or 1) // max(self.concurrency, 1))


def parse_base_models(text: str) -> dict[str, str]:
    """``'name=path,name2=path2'`` as a mapping (the form of ``TUNEFORGE_BASE_MODELS``)."""
    pairs = [item.split("=", 1) for item in text.split(",") if "=" in item]
    return {name.strip(): path.strip() for name, path in pairs}


# Process defaults the shells set before any library loads: tuneforge never downloads at run time, and it
# draws its own progress (the CLI's bar, a job's events), so the libraries' bars and advisories stay quiet.
QUIET_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "USE_HUB_KERNELS": "NO",  # transformers' default layer kernels come from the Hub at load time
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def quiet_environment(environ: dict[str, str] | None = None) -> None:
    """Set :data:`QUIET_ENVIRONMENT` where the user has not (the shells call this once, at start)."""
    target = os.environ if environ is None else environ
    for name, value in QUIET_ENVIRONMENT.items():
        target.setdefault(name, value)


# Libraries that log, at import, optional kernels they cannot load on this machine (torchao's CUDA kernels,
# bitsandbytes' and ``kernels``' Hub kernels, offline here) and torch's deprecation notes on torchao's enums: said
# at every start, about nothing tuneforge uses. Their errors still get through.
NOISY_LOGGERS = ("torchao", "bitsandbytes", "kernels", "torch.utils._pytree")


def quiet_library_logs() -> None:
    """Show only errors from :data:`NOISY_LOGGERS` (the CLI without ``--debug``, and the job forkserver)."""
    import logging

    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
