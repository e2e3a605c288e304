"""Run folders read back: provenance (how a run was made), the list of runs, one run, two runs' differences."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from tuneforge.data.readers import SUFFIXES
from tuneforge.errors import NotFoundError
from tuneforge.storage.files import file_sha256
from tuneforge.storage.rundir import MARKER, RunDir

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "tuneforge")


def collect_provenance(
    config: Any, *, config_file: str | Path | None = None, command: list[str] | None = None
) -> dict[str, Any]:
    """What made a run, written to its ``provenance.json``: versions, data, code, command and machine.

    Args:
        config: The run's TrainConfig.
        config_file: The YAML file it came from; the git commit of its folder is recorded (with a dirty flag).
        command: The command line (``sys.argv``, from the shell), or ``None`` (API / job runs).

    Returns:
        ``created_at``, ``packages`` (name: version, ``None`` when not installed), ``data_sha256`` (path:
        sha256 of each data file the config names), ``git`` (``commit``, ``dirty``, ``folder``; ``None``
        outside a repository), ``command``, ``config_file`` and ``machine``.
    """
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": {name: _version(name) for name in PACKAGES},
        "data_sha256": {path: file_sha256(path) for path in data_files(config.data.model_dump(mode="json"))},
        "git": git_state(Path(config_file).resolve().parent) if config_file else None,
        "command": command,
        "config_file": str(config_file) if config_file else None,
        "machine": machine(),
    }


def data_files(value: Any) -> list[str]:
    """The data files named anywhere in a data config (strings ending in a data suffix that exist), in order."""
    if isinstance(value, dict):
        return [f for v in value.values() for f in data_files(v)]
    if isinstance(value, list):
        return [f for v in value for f in data_files(v)]
    if isinstance(value, str) and value.lower().endswith(SUFFIXES) and Path(value).is_file():
        return [value]
    return []


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_state(folder: Path) -> dict[str, Any] | None:
    """The commit checked out in ``folder``'s repository and whether files differ from it (``None`` outside one)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status), "folder": str(folder)}


def machine() -> dict[str, Any]:
    """CPU model, GPU model (if any), threads and Python of this machine."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "gpus": torch.cuda.device_count() if gpu else 0,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class RunRow:
    """One line of ``tuneforge runs list``."""

    path: Path
    created_at: str | None
    model: str | None
    method: str | None
    status: str | None
    final_loss: float | None
    eval_loss: float | None
    steps: int | None


def list_runs(folder: str | Path) -> list[RunRow]:
    """The run folders in ``folder`` (itself, its children and grandchildren), newest first.

    Raises:
        NotFoundError: ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"folder {folder} not found", hint="pass the folder that holds your runs' output_dir")
    markers = sorted({*folder.glob(MARKER), *folder.glob(f"*/{MARKER}"), *folder.glob(f"*/*/{MARKER}")})
    rows = [_row(RunDir(m.parent)) for m in markers]
    return sorted(rows, key=lambda r: r.created_at or "", reverse=True)


def _row(run: RunDir) -> RunRow:
    marker = run.read_marker() or {}
    summary = run.read_summary() if run.summary.is_file() else {}
    last = _last_metrics(run)
    provenance = run.read_provenance() or {}
    created = provenance.get("created_at") or datetime.fromtimestamp(
        run.marker.stat().st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
    return RunRow(
        path=run.root, created_at=created, model=marker.get("model"), method=marker.get("method"),
        status=marker.get("status"), final_loss=summary.get("final_loss", last.get("loss")),
        eval_loss=summary.get("eval_loss", last.get("eval_loss")), steps=summary.get("global_step", last.get("step")),
    )


def _last_metrics(run: RunDir) -> dict[str, Any]:
    """The newest value of each figure in ``metrics.jsonl`` (a run that has not completed has no summary)."""
    last: dict[str, Any] = {}
    if run.metrics.is_file():
        for line in run.metrics.read_text().splitlines():
            if line.strip():
                last.update(json.loads(line))
    return last


def show_run(path: str | Path) -> dict[str, Any]:
    """Everything a run folder says about itself: marker, config, summary, provenance, last metrics.

    Raises:
        NotFoundError: ``path`` is not a tuneforge run folder.
    """
    run = _run(path)
    return {
        "path": str(run.root),
        "marker": run.read_marker(),
        "config": yaml.safe_load(run.config.read_text()) if run.config.is_file() else None,
        "summary": run.read_summary() if run.summary.is_file() else None,
        "provenance": run.read_provenance(),
        "last_metrics": _last_metrics(run) or None,
    }


@dataclass(frozen=True)
class Difference:
    """One value that differs between two runs (``None`` where a run lacks it)."""

    section: str
    key: str
    a: Any
    b: Any


def diff_runs(a: str | Path, b: str | Path) -> list[Difference]:
    """The config and provenance values (and summary figures) that differ between two runs, by dotted key.

    Raises:
        NotFoundError: A path is not a tuneforge run folder.
    """
    first, second = show_run(a), show_run(b)
    found = []
    for section in ("config", "provenance", "summary"):
        left, right = flatten(first[section] or {}), flatten(second[section] or {})
        found += [Difference(section, key, left.get(key), right.get(key))
                  for key in sorted(left.keys() | right.keys()) if left.get(key) != right.get(key)]
    return found


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b.c": leaf}`` (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _run(path: str | Path) -> RunDir:
    run = RunDir(Path(path))
    if not run.is_run():
        raise NotFoundError(f"{path} is not a tuneforge run folder (no {run.marker.name})",
                            hint="pass a run's output_dir; 'tuneforge runs list DIR' lists the runs in a folder")
    return run
