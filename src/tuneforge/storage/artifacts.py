"""Artifact files under TUNEFORGE_HOME, named by their sha256 and written atomically."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from tuneforge.errors import NotFoundError


class Artifacts:
    """Content-addressed files: ``ROOT/ab/abcdef...`` for a sha256 ``abcdef...``.

    Args:
        root: The folder (``$TUNEFORGE_HOME/artifacts`` by default in the platform settings).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """Where the artifact of that hash lives."""
        return self.root / sha256[:2] / sha256

    def staging_file(self) -> tuple[BinaryIO, Path]:
        """An open temporary file on the artifacts' file system, for a writer that streams into it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".upload-", dir=self.root)
        return os.fdopen(fd, "wb"), Path(name)

    def commit(self, staged: Path, sha256: str) -> Path:
        """Move a fully written staging file to its final name (atomic rename; a duplicate is dropped)."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            staged.unlink(missing_ok=True)
            os.utime(target)  # in use again: a garbage collection spares recently touched artifacts
        else:
            os.replace(staged, target)
        return target

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        """Store ``data``; returns its sha256 and path."""
        digest = hashlib.sha256(data).hexdigest()
        handle, staged = self.staging_file()
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return digest, self.commit(staged, digest)

    def put_file(self, source: str | Path) -> tuple[str, Path]:
        """Copy a file in; returns its sha256 and path."""
        digest = hashlib.sha256()
        handle, staged = self.staging_file()
        with handle, open(source, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        return digest.hexdigest(), self.commit(staged, digest.hexdigest())

    def open(self, sha256: str) -> Path:
        """The path of a stored artifact; raises NotFoundError when it is gone."""
        path = self.path(sha256)
        if not path.is_file():
            raise NotFoundError(f"artifact {sha256} is missing under {self.root}", hint="restore TUNEFORGE_HOME from a backup")
        return path

    def remove_tree(self, path: str | Path) -> None:
        """Delete a folder the platform wrote (a run directory)."""
        shutil.rmtree(path, ignore_errors=True)
