"""Read the records of a data source for import: a JSONL / JSON / CSV / Parquet file or a saved Hugging Face
``datasets`` folder, checked against a size limit and validated record by record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.data.fields import detect_records_format
from tuneforge.data.formats import normalize
from tuneforge.data.preference import load_preference_pairs
from tuneforge.data.readers import Record, read_records
from tuneforge.errors import DataError, TooLargeError


def source_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def read_source(path: str | Path, *, max_bytes: int) -> tuple[list[dict[str, Any]], str]:
    """The records of a data source and their format; every record is validated against it.

    Raises:
        DataError: A missing source, or a malformed record (naming its file and line).
        TooLargeError: The source is over ``max_bytes``.
    """
    path = Path(path)
    rows = read_rows(path, max_bytes=max_bytes)
    records = [row.data for row in rows]
    fmt = detect_records_format(records, source=str(path))
    if fmt == "preference":
        if not path.is_dir():
            load_preference_pairs(path)  # validates each pair, naming its line
    else:
        for row in rows:
            normalize(row, fmt)
    return records, fmt


def read_rows(path: str | Path, *, max_bytes: int) -> list[Record]:
    """The records of a file or saved ``datasets`` folder as read, each with its file and line (unvalidated).

    Raises:
        DataError: A missing or unreadable source; TooLargeError: one over ``max_bytes``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}", hint="check the path")
    size = source_size(path)
    if size > max_bytes:
        raise TooLargeError(f"{path} is {size:,} bytes, over the limit of {max_bytes:,} bytes",
                            hint="split the file, or raise the limit (max_upload_bytes / --max-upload-mb)")
    return _read_hf_folder(path) if path.is_dir() else read_records(path)


def _read_hf_folder(path: Path) -> list[Record]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{path} is not a folder saved with datasets' save_to_disk: {exc}",
                        hint="pass a .jsonl/.json/.csv/.parquet file, or a folder written by Dataset.save_to_disk"
                        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        split = "train" if "train" in loaded else next(iter(loaded))
        loaded = loaded[split]
    rows = [Record(dict(row), str(path), number) for number, row in enumerate(loaded, start=1)]
    if not rows:
        raise DataError("the folder holds no examples", file=str(path), hint="add at least one example")
    return rows
