"""Calibration examples: read and validated before any work, sampled with the recipe's seed."""

from __future__ import annotations

import random
from typing import Any

from tuneforge.compression.recipe import CalibrationSettings
from tuneforge.errors import DataError


def calibration_examples(settings: CalibrationSettings, *, seed: int) -> list[Any]:
    """``settings.samples`` examples of the calibration file (all of them when it has fewer).

    Raises:
        DataError: The file is missing, empty or has a bad record (names the file and line).
    """
    from tuneforge.data import load_examples

    try:
        examples, _ = load_examples(settings.data, fmt=settings.format)
    except DataError as exc:
        raise DataError(f"calibration data: {exc.message}", hint=exc.hint or "set calibration.data to a data file "
                        "in a training format (the recipe's 'calibration' block)") from None
    if len(examples) <= settings.samples:
        return examples
    return random.Random(seed).sample(examples, settings.samples)
