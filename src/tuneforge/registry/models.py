"""Model versions on disk and by name: references (``name``, ``name:3``, ``name@alias``), folders stored once
by the sha256 of their files, the kind of an artifact, and which versions a retention rule prunes.

Functions over paths and records only; the use cases (register, resolve, alias, prune) are in
``services.registry``, the rows in the Store.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import ConfigError
from tuneforge.storage.records import ModelVersionRecord, VersionStatus

NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
ALIAS = r"[A-Za-z][A-Za-z0-9_-]{0,63}"
_REF = re.compile(rf"^(?P<name>{NAME})(?::(?P<version>[0-9]+)|@(?P<alias>{ALIAS}))?$")
LATEST = "latest"  # ``name@latest`` (= ``name``): the newest version still stored; not an alias one can set
CHUNK = 1 << 20
# Files of a Trainer checkpoint that only resuming needs: a registered checkpoint is stored without them.
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "rng_state")


@dataclass(frozen=True)
class ModelRef:
    """A parsed registry reference: a name, and a version number or an alias (neither: the latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def explicit(self) -> bool:
        """Whether the reference can only mean the registry (``name:3``, ``name@alias``), unlike a bare name
        that may also be a base model or a local folder."""
        return self.version is not None or self.alias is not None

    def __str__(self) -> str:
        return self.name + (f":{self.version}" if self.version is not None else f"@{self.alias}" if self.alias else "")


def parse_ref(ref: str) -> ModelRef | None:
    """``name`` / ``name:3`` / ``name@alias`` as a :class:`ModelRef`; ``None`` for anything else (a path, a
    hub id ``org/model``, an ``ft:`` model id, a file)."""
    match = _REF.match(ref.strip())
    if match is None or ref.strip().endswith((".gguf", ".json", ".yaml")):
        return None
    version = match["version"]
    return ModelRef(match["name"], int(version) if version is not None else None, match["alias"])


def check_name(name: str, *, field: str = "name") -> str:
    """A registered model name; raises ConfigError when it is not 1-128 letters, digits, '.', '_' or '-'."""
    if not re.fullmatch(NAME, name or ""):
        raise ConfigError(f"invalid model name {name!r}", field=field,
                          hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_alias(alias: str) -> str:
    """An alias; raises ConfigError for a malformed one, or for ``latest`` (it always means the newest)."""
    if not re.fullmatch(ALIAS, alias or "") or alias == LATEST:
        raise ConfigError(f"invalid alias {alias!r}", field="alias",
                          hint="use 1-64 letters, digits, '_' or '-', starting with a letter; 'latest' is reserved "
                          "(it always resolves to the newest version)")
    return alias


def name_from(text: str, *, default: str = "model") -> str:
    """A valid registered model name made from free text (a job's suffix, a base model's name)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:128]
    return cleaned or default


def file_sha256(path: str | Path) -> str:
    """The sha256 of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_sha256(path: str | Path) -> str:
    """The sha256 of a folder's content: every file's relative path and sha256, in sorted order (the same
    files give the same digest wherever the folder is and whenever it was written)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in artifact_files(root):
        digest.update(f"{file.relative_to(root).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def artifact_files(root: Path) -> list[Path]:
    """The files of a folder that make the model, sorted (a checkpoint's resume-only files left out)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(RESUME_ONLY))


def store_folder(source: str | Path, *, root: str | Path) -> tuple[str, Path]:
    """Copy a folder (or a single file, kept in a folder) under ``root`` by its digest: ``ROOT/ab/abcdef.../``.

    The same content is stored once (a second copy is skipped); the copy is staged and renamed, so a crash
    never leaves half a folder under its final name.

    Returns:
        The digest and the stored folder.
    """
    source, root = Path(source), Path(root)
    digest = folder_sha256(source) if source.is_dir() else file_sha256(source)
    target = root / digest[:2] / digest
    if target.is_dir():
        return digest, target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        if source.is_dir():
            for file in artifact_files(source):
                (staging / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, staging / file.relative_to(source))
        else:
            shutil.copy2(source, staging / source.name)
        try:
            os.rename(staging, target)
        except OSError:  # a concurrent registration stored the same content first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return digest, target


def kind_of_format(text: str) -> str:
    """The registry kind of a compressed model from its format (``gguf q8_0`` -> ``gguf``, ``torch.ao int8
    dynamic`` -> ``int8``); a plain transformers model (pruned, distilled) is ``full``."""
    words = text.lower().replace("_", " ").split()
    for kind in ("gguf", "onnx", "int8", "int4", "nf4", "fp4"):
        if any(word.startswith(kind) for word in words):
            return kind
    return "full"


def prune_candidates(versions: Iterable[ModelVersionRecord], *, keep: int,
                     aliased: set[int]) -> list[ModelVersionRecord]:
    """The versions a retention rule prunes: every stored version but the ``keep`` newest and the aliased ones.

    Raises:
        ConfigError: ``keep`` below 0.
    """
    if keep < 0:
        raise ConfigError(f"--keep must be 0 or more (got {keep})", field="keep")
    stored = sorted((v for v in versions if v.status is VersionStatus.READY), key=lambda v: v.version, reverse=True)
    return [v for v in stored[keep:] if v.version not in aliased]
