"""Quality reports of dataset versions, and the local files training reads (with ``since`` / ``replay``)."""

from __future__ import annotations

import os
import random
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.data.fields import TokenCounter, canonical, estimate_tokens, record_hash
from tuneforge.data.quality import ESTIMATE, ReportOptions, build_report
from tuneforge.errors import ConfigError, DataError
from tuneforge.registry.datasets import resolve
from tuneforge.services.datasets import records_of
from tuneforge.services.platform import Platform, open_platform
from tuneforge.settings import Settings
from tuneforge.storage.files import atomic_write_text


class DataReportOptions(BaseModel):
    """What ``tuneforge data report`` measures."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="Count tokens with this model's tokenizer (a builtin alias, a model "
                              "directory or a base model of the server); default: an estimate of ~4 chars/token.")
    max_seq_length: int = Field(2048, ge=1, description="Records longer than this would be truncated in training.")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity from which records are near duplicates.")
    against: str | None = Field(None, description="Another version (NAME:V, e.g. the test set) to check leakage against.")
    language_limit: int = Field(5000, ge=0, description="Records whose language is detected (a seeded sample beyond).")
    seed: int = Field(0, description="Seed of language detection and its sample.")


def token_counter(platform: Platform, model: str | None) -> tuple[TokenCounter, str]:
    """A function counting a text's tokens with ``model``'s tokenizer, and its description; without a model,
    the 4-characters-per-token estimate."""
    if model is None:
        return estimate_tokens, ESTIMATE
    from tuneforge.models.loading import load_tokenizer
    from tuneforge.models.resolve import resolve_model

    reference = platform.settings.base_models.get(model, model)
    tokenizer = load_tokenizer(resolve_model(reference, cache_dir=platform.settings.model_cache_dir).path)
    return (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])), f"tokenizer of {model}"


def report_data(platform: Platform, ref: str, options: DataReportOptions, *, project: str,
                output: str | Path | None = None) -> dict[str, Any]:
    """The quality report of a version (written to ``output`` as JSON, Markdown and PNGs when given)."""
    from tuneforge.data.quality_render import write_report

    version, records = records_of(platform, ref, project=project)
    others = records_of(platform, options.against, project=project)[1] if options.against else None
    count, tokenizer = token_counter(platform, options.model)
    report = build_report(records, fmt=version.format, count_tokens=count, tokenizer=tokenizer, others=others,
                          options=ReportOptions(max_seq_length=options.max_seq_length, threshold=options.threshold,
                                                language_limit=options.language_limit, seed=options.seed))
    report["version"] = {"ref": version.ref, "sha256": version.sha256, "against": options.against}
    if output is not None:
        write_report(report, output, title=f"data quality report: {version.ref}")
    return report


@dataclass(frozen=True)
class MaterializedData:
    """A local JSONL file of a version (or of its records added since an older version, plus a replay sample),
    and what a training run records about the data it used."""

    path: Path
    name: str
    version: int
    sha256: str
    records: int
    since: int | None = None
    replay: float | None = None
    seed: int = 0

    def lineage(self) -> dict[str, Any]:
        """What a run records: ``{"dataset", "version", "ref", "sha256", "records", "since", "replay", "seed"}``."""
        return {"dataset": self.name, "version": self.version, "ref": f"{self.name}:{self.version}",
                "sha256": self.sha256, "records": self.records, "since": self.since, "replay": self.replay,
                "seed": self.seed}


def materialize_data(platform: Platform, ref: str, *, project: str, since: int | None = None,
                     replay: float | None = None, seed: int = 0) -> MaterializedData:
    """Write (once) the local JSONL file training reads for ``ref``.

    With ``since``: the records the version has and version ``since`` of the same data set lacks, plus a
    ``replay`` fraction of the older ones (sampled with ``seed``), in the version's order.

    Raises:
        ConfigError: ``replay`` without ``since``, a ``replay`` outside [0, 1], or ``since`` not older than ``ref``.
        NotFoundError: An unknown data set or version.
    """
    version, records = records_of(platform, ref, project=project)
    if replay is not None and since is None:
        raise ConfigError("replay needs since: it samples the records older than version 'since'", field="replay",
                          hint="add since: N (a version of the same data set)")
    if replay is not None and not 0 <= replay <= 1:
        raise ConfigError(f"replay {replay} is outside [0, 1]", field="replay", hint="a fraction such as 0.2")
    folder = platform.settings.datasets_dir / "versions"
    name = f"{version.name}-v{version.version}-{version.sha256[:12]}"
    if since is not None:
        records = _since(platform, version, records, since=since, replay=replay or 0.0, seed=seed, project=project)
        name += f"-since{since}-replay{replay or 0}-seed{seed}"
    path = folder / f"{name}.jsonl"
    if not path.is_file():
        if since is None:
            _link(platform.artifacts.open(version.sha256), path)
        else:
            atomic_write_text(path, "".join(canonical(r) + "\n" for r in records))
    return MaterializedData(path, version.name, version.version, version.sha256, len(records), since, replay, seed)


def materialize_data_version(platform: Platform, ref: str, *, project: str, since: int | None = None,
                             replay: float | None = None, seed: int = 0) -> Path:
    """The path of :func:`materialize_data` (the resolver a training config's ``{dataset: REF}`` entry calls)."""
    return materialize_data(platform, ref, project=project, since=since, replay=replay, seed=seed).path


def dataset_resolver(settings: Settings, *, project: str) -> Callable[..., Path]:
    """The resolver of a training config's ``{dataset: REF}`` entries for a shell without an open platform (the
    CLI): each call opens the store, writes the version's file (:func:`materialize_data_version`) and closes it."""
    def resolve(ref: str, *, since: int | None, replay: float | None, seed: int) -> Path:
        platform = open_platform(settings)
        try:
            return materialize_data_version(platform, ref, project=project, since=since, replay=replay, seed=seed)
        finally:
            platform.close()

    return resolve


def _since(platform: Platform, version: Any, records: list[dict[str, Any]], *, since: int, replay: float,
           seed: int, project: str) -> list[dict[str, Any]]:
    if since >= version.version:
        raise ConfigError(f"since {since} is not older than {version.ref}", field="since",
                          hint=f"use a version below {version.version}")
    older = resolve(platform.store, f"{version.name}:{since}", project=project)
    left = Counter(record_hash(r) for r in records_of(platform, older.ref, project=project)[1])
    new, old = [], []
    for index, record in enumerate(records):
        key = record_hash(record)
        (old if left[key] else new).append(index)
        left[key] -= 1 if left[key] else 0
    kept = set(new) | set(random.Random(seed).sample(old, round(len(old) * replay)))
    if not kept:
        raise DataError(f"{version.ref} adds no records to version {since} and replay is 0",
                        hint="use an older 'since', or a replay fraction above 0")
    return [r for i, r in enumerate(records) if i in kept]


def _link(source: Path, target: Path) -> None:
    """Hard-link (else copy) an artifact to ``target`` through a temporary name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    try:
        os.link(source, staged)
    except OSError:
        shutil.copyfile(source, staged)
    os.replace(staged, target)
