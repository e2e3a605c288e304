"""Read JSONL, JSON, CSV and Parquet files into records that remember their file and line."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError, MissingDependencyError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class Record:
    """One example as read, with where it came from (``line`` is 1-based; rows for Parquet)."""

    data: dict[str, Any]
    file: str
    line: int


def read_records(path: str | Path) -> list[Record]:
    """Read every record of a data file; a malformed line is a :class:`DataError` naming it.

    Raises:
        DataError: The file is missing, of an unknown type, empty, or has a line that does not parse.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"data file not found: {path}",
            hint="check the path (data.train / data.eval in a training config, --data for eval); relative paths "
            "start from the current folder",
        )
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
    if suffix not in readers:
        raise DataError(
            f"unsupported data file type '{suffix}'", file=str(path), hint=f"use one of {', '.join(SUFFIXES)}"
        )
    records = readers[suffix](path)
    if not records:
        raise DataError("the file holds no examples", file=str(path), hint="add at least one example")
    return records


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _json_error(exc, path, line=number, hint="each line of a .jsonl file must be one JSON object") from None
        records.append(_as_record(value, path, number))
    return records


def _read_text(path: Path) -> str:
    """The file's text; a UTF-8 byte-order mark is skipped, and bytes that are not UTF-8 are a DataError."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column}", file=str(path), line=line,
                        hint="save the file as UTF-8") from None


def _json_error(exc: json.JSONDecodeError, path: Path, *, line: int, hint: str | None = None) -> DataError:
    """A JSON parse error at ``line`` of the file, with the column where the parser stopped (1-based)."""
    if exc.msg.startswith("Extra data") and path.suffix == ".json" and exc.colno == 1:
        hint = "this looks like JSON Lines (one object per line): rename the file to .jsonl"
    return DataError(f"not valid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}", file=str(path), line=line,
                     hint=hint)


def _read_json(path: Path) -> list[Record]:
    text = _read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(exc, path, line=exc.lineno) from None
    if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), list):
        value = next(iter(value.values()))  # {"data": [...]} style
    if not isinstance(value, list):
        raise DataError("a .json data file must hold a list of objects", file=str(path), line=1)
    # Line numbers: the line where each top-level object starts.
    starts = _object_start_lines(text)
    return [_as_record(item, path, starts[i] if i < len(starts) else i + 1) for i, item in enumerate(value)]


def _object_start_lines(text: str) -> list[int]:
    decoder, lines, index = json.JSONDecoder(), [], text.find("[") + 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "]":
            return lines
        lines.append(text.count("\n", 0, index) + 1)
        try:
            _, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            return lines


def _read_csv(path: Path) -> list[Record]:
    records = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if None in row:
                raise DataError(
                    "the row has more fields than the header", file=str(path), line=reader.line_num,
                    hint="quote fields that contain commas",
                )
            records.append(Record(dict(row), str(path), reader.line_num))
    return records


def _read_parquet(path: Path) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("pyarrow", extra="parquet", purpose="reading .parquet files") from None
    rows = pq.read_table(path).to_pylist()
    return [Record(row, str(path), number) for number, row in enumerate(rows, start=1)]


def _as_record(value: Any, path: Path, line: int) -> Record:
    if not isinstance(value, dict):
        raise DataError(f"expected a JSON object, got {type(value).__name__}", file=str(path), line=line)
    return Record(value, str(path), line)
