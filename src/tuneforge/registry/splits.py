"""A/B traffic splits of an alias: parse and check the weights, and assign a request to a version.

Assignment hashes ``name@alias`` and the request's key (OpenAI's ``user`` field) with sha256 into [0, 1)
and walks the versions' cumulative weights in version order: the same user lands on the same version for
as long as the weights stay, and a share of ``w`` of the users lands on a version of weight ``w``.
"""

from __future__ import annotations

import hashlib

from tuneforge.errors import ConfigError

TOLERANCE = 1e-6


def parse_weights(text: str) -> dict[int, float]:
    """``"7=0.9,8=0.1"`` -> ``{7: 0.9, 8: 0.1}`` (checked by :func:`check_weights`).

    Raises:
        ConfigError: Not ``VERSION=WEIGHT`` pairs, or weights that do not sum to 1.
    """
    weights: dict[int, float] = {}
    for item in (part.strip() for part in text.split(",")):
        version, _, weight = item.partition("=")
        try:
            weights[int(version)] = float(weight)
        except ValueError:
            raise ConfigError(f"{item!r} in --to is not VERSION=WEIGHT", field="to",
                              hint="e.g. --to 7=0.9,8=0.1") from None
    return check_weights(weights)


def check_weights(weights: dict[int, float]) -> dict[int, float]:
    """The weights of a split: versions ≥ 1, weights in (0, 1], summing to 1; zero weights are left out.

    Raises:
        ConfigError: Naming the version or the sum.
    """
    kept = {int(v): float(w) for v, w in weights.items() if float(w) != 0.0}
    for version, weight in kept.items():
        if not 1 <= version < 2**31 or not 0 < weight <= 1:
            raise ConfigError(f"version {str(version)[:20]} has weight {weight}: versions are 1 to 2^31-1 and weights "
                              "in (0, 1]",
                              field="weights", hint="e.g. 7=0.9,8=0.1")
    total = sum(kept.values())
    if not kept or abs(total - 1) > TOLERANCE:
        raise ConfigError(f"the weights sum to {total:g}, not 1", field="weights",
                          hint="give every version's share, e.g. 7=0.9,8=0.1; 8=1.0 ends the split")
    return kept


def unit_hash(text: str) -> float:
    """A stable number in [0, 1) from ``text`` (the first 8 bytes of its sha256)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def assign_version(weights: dict[int, float], *, key: str) -> int:
    """The version that answers the request with routing ``key`` (e.g. ``bot@production|user-17``)."""
    point, total = unit_hash(key), 0.0
    versions = sorted(weights)
    for version in versions:
        total += weights[version]
        if point < total:
            return version
    return versions[-1]  # rounding: the sum may fall a hair short of 1
