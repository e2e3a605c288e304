"""The model registry's records: registered models, their versions, aliases (plain or an A/B split) and the
history of alias moves. ``storage.records`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tuneforge.storage.record_base import now


class VersionStatus(StrEnum):
    """A model version's state: ``ready`` (its artifact is on disk) or ``pruned`` (bytes deleted, row kept)."""

    READY = "ready"
    PRUNED = "pruned"


@dataclass(frozen=True)
class RegisteredModelRecord:
    """A registered model: a name in a project, with numbered versions (``latest_version`` is the newest)."""

    project: str
    name: str
    latest_version: int = 0
    created_by: str = ""
    created_at: float = field(default_factory=now)


@dataclass(frozen=True)
class ModelVersionRecord:
    """One immutable version of a registered model.

    ``artifact_path`` is a loadable folder (an adapter, a full model, an export) stored once under
    TUNEFORGE_HOME by the sha256 of its files (``artifact_sha256``); ``base_model`` is the reference the
    adapter loads on (for a full model, the one it was tuned from). ``source`` says where it came from
    (``run_dir``, ``job_id``, ``checkpoint``, ``fine_tuned_model``); ``config`` is the resolved training
    config; ``parent_version`` links a compressed output to the version it came from (same name).
    """

    id: str
    project: str
    name: str
    kind: str
    artifact_path: str
    artifact_sha256: str
    base_model: str
    size_bytes: int
    version: int = 0  # given by the Store when the version is added
    source: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    dataset_sha256: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    fine_tuned_model: str | None = None
    parent_version: int | None = None
    status: VersionStatus = VersionStatus.READY
    pruned_at: float | None = None
    created_by: str = ""
    created_at: float = field(default_factory=now)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", VersionStatus(self.status))

    @property
    def ref(self) -> str:
        """``name:version``, the reference that resolves to this version anywhere."""
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class ModelAliasRecord:
    """An alias (``production``, ``staging``, ...) of a registered model and the version it points at."""

    project: str
    name: str
    alias: str
    version: int
    updated_by: str = ""
    updated_at: float = field(default_factory=now)
    weights: list[list[float]] | None = None  # an A/B split: [[version, weight], ...]; ``version`` is its control

    def split(self) -> dict[int, float] | None:
        """The split's weights by version, or ``None`` when the alias points at one version."""
        return split_of(self.weights)


@dataclass(frozen=True)
class AliasMoveRecord:
    """One move of an alias: who moved it when, from which version (``None``: new) to which (``None``: deleted)."""

    project: str
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    action: str = "set"  # set | rollback | delete | split
    actor: str = ""
    created_at: float = field(default_factory=now)
    seq: int | None = None
    weights: list[list[float]] | None = None  # a split's [[version, weight], ...]

    def split(self) -> dict[int, float] | None:
        """The weights this move set, or ``None`` for a move to one version."""
        return split_of(self.weights)


def split_of(weights: list[list[float]] | None) -> dict[int, float] | None:
    """``[[version, weight], ...]`` as stored (JSON keeps list items' types, not dict keys') -> ``{version: weight}``."""
    return None if weights is None else {int(v): float(w) for v, w in weights}


def rollback_target(moves: list[AliasMoveRecord]) -> int | None:
    """Where a rollback sends an alias, given its moves oldest first: the version it pointed at before its
    last move that was not itself rolled back (so repeated rollbacks walk back through the deploys).
    ``None`` when there is nothing to go back to."""
    undone = 0
    for move in reversed(moves):
        if move.action == "rollback":
            undone += 1
        elif undone:
            undone -= 1
        else:
            return move.from_version
    return None
