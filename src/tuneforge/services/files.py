"""File use cases: store an upload (checked, by sha256), list, read, delete; datasets over files."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tuneforge.errors import ConfigError, NotFoundError, QuotaError
from tuneforge.services.platform import Platform
from tuneforge.storage.records import DatasetRecord, FileRecord, Page, new_id

PURPOSES = ("fine-tune", "batch", "user_data", "assistants", "vision", "evals")


def add_upload(platform: Platform, *, project: str, staged: Path, sha256: str, size: int, filename: str,
               purpose: str, check: Callable[[Path], object] | None = None) -> FileRecord:
    """Keep a fully received upload: check it, move it under its sha256, record it.

    Args:
        check: Run on the staged file before it is kept (the OpenAI routes check that a ``fine-tune``
            file is JSON Lines); what it raises refuses the upload.

    Raises:
        ConfigError: An unknown purpose.
        QuotaError: The project would pass its storage quota (``storage_quota_bytes``).
    """
    try:
        if purpose not in PURPOSES:
            raise ConfigError(f"unknown purpose {purpose[:64]!r}", field="purpose",
                              hint=f"use one of {', '.join(PURPOSES)}")
        check_quota(platform, project=project, adding=size)
        if check is not None:
            check(staged)
        platform.artifacts.commit(staged, sha256)
    finally:
        staged.unlink(missing_ok=True)
    record = FileRecord(id=new_id("file"), project=project, filename=Path(filename).name or "upload",
                        purpose=purpose, bytes=size, sha256=sha256)
    return platform.store.add_file(record)


def upload_path(platform: Platform, *, project: str, path: str | Path, purpose: str = "fine-tune",
                check: Callable[[Path], object] | None = None) -> FileRecord:
    """Upload a local file (the CLI and tests)."""
    digest = hashlib.sha256()
    handle, staged = platform.artifacts.staging_file()
    with handle, open(path, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            handle.write(chunk)
    return add_upload(platform, project=project, staged=staged, sha256=digest.hexdigest(),
                      size=os.path.getsize(path), filename=Path(path).name, purpose=purpose, check=check)


def list_files(platform: Platform, *, project: str, purpose: str | None = None, after: str | None = None,
               limit: int = 100, order: str = "desc") -> Page[FileRecord]:
    """Files of a project."""
    return platform.store.list_files(project=project, purpose=purpose, after=after, limit=limit, order=order)


def get_file(platform: Platform, file_id: str, *, project: str) -> FileRecord:
    """A file of the project; raises NotFoundError."""
    return platform.store.get_file(file_id, project=project)


def file_path(platform: Platform, record: FileRecord) -> Path:
    """Where the bytes of a file are."""
    return platform.artifacts.open(record.sha256)


def check_quota(platform: Platform, *, project: str, adding: int) -> None:
    """Raise QuotaError when ``adding`` bytes would take the project past its storage quota."""
    quota = platform.settings.storage_quota_bytes
    if not quota:
        return
    used = platform.store.project_file_bytes(project)
    if used + adding > quota:
        raise QuotaError(f"project {project} uses {used} of its {quota} bytes of storage; this file has {adding}",
                         hint="delete files the project no longer needs (DELETE /v1/files/ID)")


def delete_file(platform: Platform, file_id: str, *, project: str) -> FileRecord:
    """Forget a file; its bytes go with the last file record that points at them (content-addressed: the
    same bytes uploaded twice are stored once). Jobs and datasets hold their own links to what they read."""
    record = platform.store.delete_file(file_id, project=project)
    if platform.store.file_references(record.sha256) == 0:
        platform.artifacts.path(record.sha256).unlink(missing_ok=True)
    return record


def link_into(platform: Platform, record: FileRecord, target: Path) -> Path:
    """Hard-link (else copy) a file's bytes to ``target`` (a job's own data folder, with a .jsonl name)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source = file_path(platform, record)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def create_dataset(platform: Platform, *, project: str, name: str, file_id: str) -> DatasetRecord:
    """A named dataset over an uploaded file, validated with tuneforge's readers before it is created.

    Raises:
        DataError: The first bad record, with its line (no dataset is created).
    """
    record = platform.store.get_file(file_id, project=project)
    dataset_id = new_id("ds")
    suffix = Path(record.filename).suffix.lower() or ".jsonl"
    path = link_into(platform, record, platform.settings.datasets_dir / f"{dataset_id}{suffix}")
    try:
        fmt, count = read_dataset(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return platform.store.add_dataset(DatasetRecord(id=dataset_id, project=project, name=name, file_id=record.id,
                                                    format=fmt, examples=count))


def read_dataset(path: Path) -> tuple[str, int]:
    """``(format, examples)`` of a data file in any tuneforge format; raises DataError on a bad record."""
    from tuneforge.data import load_examples
    from tuneforge.data.preference import load_preference_pairs
    from tuneforge.errors import DataError

    try:
        examples, fmt = load_examples(path)
        return fmt, len(examples)
    except DataError:
        return "preference", len(load_preference_pairs(path))


def validate_dataset(platform: Platform, dataset_id: str, *, project: str) -> DatasetRecord:
    """Read every record of a dataset (any tuneforge format); store its format and size.

    Raises:
        DataError: The first bad record, with its line.
    """
    dataset = platform.store.get_dataset(dataset_id, project=project)
    record = platform.store.get_file(dataset.file_id, project=project)
    suffix = Path(record.filename).suffix.lower() or ".jsonl"
    fmt, count = read_dataset(link_into(platform, record, platform.settings.datasets_dir / f"{dataset.id}{suffix}"))
    platform.store.update_dataset(dataset.id, format=fmt, examples=count)
    return platform.store.get_dataset(dataset.id, project=project)


def get_dataset(platform: Platform, dataset_id: str, *, project: str) -> DatasetRecord:
    """A dataset of the project; raises NotFoundError."""
    return platform.store.get_dataset(dataset_id, project=project)


def list_datasets(platform: Platform, *, project: str, after: str | None = None,
                  limit: int = 100) -> Page[DatasetRecord]:
    """Datasets of the project, newest first."""
    return platform.store.list_datasets(project=project, after=after, limit=limit)


def input_file(platform: Platform, value: str, *, project: str, target: Path, field: str) -> str:
    """A job's input named by a file id, a dataset id or (with ``allow_local_paths``) a server path, as a
    path the job process can read: ids are linked into the job's own folder at ``target`` (its suffix kept).

    Raises:
        ConfigError: Neither an id nor an allowed path (names ``field``).
        NotFoundError: No such file or dataset in the project.
    """
    if value.startswith("file-"):
        record = platform.store.get_file(value, project=project)
    elif value.startswith("ds-"):
        record = dataset_file(platform, value, project=project)
    elif platform.settings.allow_local_paths:
        return str(Path(value).resolve())
    else:
        raise ConfigError(f"data file {value!r} is neither a file id nor a dataset id", field=field,
                          hint="upload it (POST /v1/files) and pass its id; server paths need allow_local_paths")
    suffix = Path(record.filename).suffix.lower() or ".jsonl"
    return str(link_into(platform, record, target.with_suffix(suffix)))


def dataset_file(platform: Platform, dataset_id: str, *, project: str) -> FileRecord:
    """The file behind a dataset."""
    dataset = platform.store.get_dataset(dataset_id, project=project)
    try:
        return platform.store.get_file(dataset.file_id, project=project)
    except NotFoundError:
        raise NotFoundError(f"dataset '{dataset_id}' lost its file {dataset.file_id}",
                            hint="upload the file again and create a new dataset") from None
