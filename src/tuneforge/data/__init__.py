"""Data files, formats, chat templates and tokenization."""

from __future__ import annotations

from pathlib import Path

from tuneforge.data.formats import Example, detect_format, normalize
from tuneforge.data.readers import Record, read_records
from tuneforge.data.tokenize import IGNORE_INDEX, DatasetStats, render_prompt, tokenize_examples


def load_examples(path: str | Path, *, fmt: str = "auto", system_prompt: str | None = None) -> tuple[list[Example], str]:
    """Read and validate a whole data file before anything uses it.

    Returns:
        The normalized examples and the format they were read as.

    Raises:
        DataError: On the first bad record, naming its file and line.
    """
    records = read_records(path)
    chosen = detect_format(records[0]) if fmt == "auto" else fmt
    return [normalize(record, chosen, system_prompt=system_prompt) for record in records], chosen


__all__ = [
    "IGNORE_INDEX",
    "DatasetStats",
    "Example",
    "Record",
    "detect_format",
    "load_examples",
    "normalize",
    "read_records",
    "render_prompt",
    "tokenize_examples",
]
