"""Disk that does not only grow: stale temporary files, orphaned artifacts and folders (``tuneforge admin gc``).

What the platform writes under ``TUNEFORGE_HOME`` and what frees it:

- ``artifacts/ab/<sha256>``: uploaded and result files. Deleting a file removes its bytes with the last
  file record that points at them (``services.files.delete_file``); ``gc`` frees artifacts no record
  points at (a crash between writing the bytes and the record).
- ``artifacts/.upload-*``: uploads being received. A crash leaves them behind: the server removes stale
  ones at startup, and ``gc`` does too.
- ``jobs/<job id>/``: a job's run directory and data links, removed when the job is deleted; ``gc`` frees
  the folders of jobs that no longer exist. A fine-tuning job keeps ``checkpoint_retention`` checkpoints.
- ``datasets/<dataset id>.*``: a dataset's link to its file; ``gc`` frees those of deleted datasets.

Anything modified within ``grace_seconds`` is left alone: another server on the same home may be writing it
(an upload is streamed to disk before its record exists).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.services.platform import Platform
from tuneforge.storage.files import folder_bytes

GRACE_SECONDS = 600.0


@dataclass
class GarbageReport:
    """What a collection found (and freed, unless it was a dry run): paths and bytes, by category."""

    freed: bool
    found: dict[str, list[str]] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)

    def add(self, category: str, path: Path) -> None:
        """Count ``path`` (a file or a folder) under ``category``."""
        self.found.setdefault(category, []).append(str(path))
        self.bytes[category] = self.bytes.get(category, 0) + folder_bytes(path)

    @property
    def total_bytes(self) -> int:
        """Bytes of everything found."""
        return sum(self.bytes.values())


def _old(path: Path, *, before: float) -> bool:
    try:
        return path.stat().st_mtime < before
    except FileNotFoundError:
        return False


def stale_uploads(platform: Platform, *, grace_seconds: float = GRACE_SECONDS) -> list[Path]:
    """Temporary upload files (``.upload-*``) not written to for ``grace_seconds``."""
    root, before = platform.artifacts.root, time.time() - grace_seconds
    return [p for p in root.glob(".upload-*") if _old(p, before=before)] if root.is_dir() else []


def remove_stale_uploads(platform: Platform, *, grace_seconds: float = GRACE_SECONDS) -> int:
    """Delete stale temporary upload files (the server does it at startup); returns how many."""
    stale = stale_uploads(platform, grace_seconds=grace_seconds)
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def collect_garbage(platform: Platform, *, dry_run: bool = False, grace_seconds: float = GRACE_SECONDS) -> GarbageReport:
    """Find (and, unless ``dry_run``, delete) what no record points at: stale uploads, orphaned artifacts,
    folders of deleted jobs and links of deleted datasets."""
    report, before, store = GarbageReport(freed=not dry_run), time.time() - grace_seconds, platform.store
    for path in stale_uploads(platform, grace_seconds=grace_seconds):
        report.add("temporary uploads", path)
    artifacts = platform.artifacts.root
    in_use = store.file_hashes()
    for path in sorted(artifacts.glob("??/*")) if artifacts.is_dir() else []:
        if path.name not in in_use and _old(path, before=before):
            report.add("orphaned artifacts", path)
    jobs_root = platform.settings.home_dir / "jobs"
    folders = {p.name: p for p in jobs_root.iterdir() if p.is_dir()} if jobs_root.is_dir() else {}
    present = store.present_ids("jobs", list(folders))
    for name, path in sorted(folders.items()):
        if name not in present and _old(path, before=before):
            report.add("folders of deleted jobs", path)
    links = {p.stem: p for p in platform.settings.datasets_dir.glob("*")} if platform.settings.datasets_dir.is_dir() else {}
    kept = store.present_ids("datasets", list(links))
    for name, path in sorted(links.items()):
        if name not in kept and _old(path, before=before):
            report.add("links of deleted datasets", path)
    if not dry_run:
        for paths in report.found.values():
            for path in map(Path, paths):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return report
