"""``/api/v1/data``: versioned datasets (the ``tuneforge data`` commands over HTTP).

Under ``/api/v1/data`` rather than ``/api/v1/datasets``, which names the uploaded-file datasets of the
fine-tuning API (``ds-...`` ids). A version is named by a reference in the path: ``NAME:3``,
``NAME@latest`` or ``NAME``. Sources are uploaded files (``POST /v1/files``), named by their id.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.api.native.kind_routes import Plat, Proj
from tuneforge.services import data_reports, datasets, files
from tuneforge.services.data_reports import DataReportOptions
from tuneforge.services.datasets import CleanOptions, DataOutcome, SplitOptions, version_view
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/api/v1/data", tags=["data (native)"])


class ImportRequest(BaseModel):
    """A new version of data set ``name`` from an uploaded file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="Data set name.")
    file_id: str = Field(..., description="Id of an uploaded file (POST /v1/files).")


class AppendRequest(BaseModel):
    """Records of an uploaded file to append to the newest version."""

    model_config = ConfigDict(extra="forbid")

    file_id: str = Field(..., description="Id of an uploaded file (POST /v1/files).")


def _outcome(outcome: DataOutcome) -> dict[str, Any]:
    return {**version_view(outcome.version), "created": outcome.created, "note": outcome.note}


def _source(platform: Platform, file_id: str, *, project: str) -> Any:
    record = files.get_file(platform, file_id, project=project)
    target = platform.settings.datasets_dir / "sources" / f"{record.id}{_suffix(record.filename)}"
    return files.link_into(platform, record, target)


def _suffix(filename: str) -> str:
    return "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ".jsonl"


@router.get("")
def list_data_sets(platform: Platform = Plat, project: str = Proj) -> dict:
    """The data sets of the project."""
    return {"data": [{"name": d.name, "created_at": d.created_at}
                     for d in datasets.list_data_sets(platform, project=project)]}


@router.post("")
def import_data(body: ImportRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """Import an uploaded file as a new version of ``name``."""
    path = _source(platform, body.file_id, project=project)
    return _outcome(datasets.import_data(platform, path, project=project, name=body.name))


@router.post("/pairs")
def import_pairs(body: ImportRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """A preference (DPO) version of ``name`` from an uploaded file of comparisons or ratings."""
    path = _source(platform, body.file_id, project=project)
    return _outcome(datasets.pairs_data(platform, path, project=project, name=body.name))


@router.get("/{name}/versions")
def list_versions(name: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """The versions of a data set, oldest first."""
    return {"data": [version_view(v) for v in datasets.list_data_versions(platform, name, project=project)]}


@router.post("/{name}/append")
def append_data(name: str, body: AppendRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """Version V+1 = the newest version + the uploaded file's new records."""
    path = _source(platform, body.file_id, project=project)
    return _outcome(datasets.append_data(platform, name, path, project=project))


@router.get("/{ref}")
def show_version(ref: str, head: int = Query(5, ge=0, le=1000), platform: Platform = Plat,
                 project: str = Proj) -> dict:
    """A version with its lineage and first records."""
    return datasets.show_data(platform, ref, project=project, head=head)


@router.get("/{ref}/diff/{other}")
def diff_versions(ref: str, other: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Records added, removed and changed from ``ref`` to ``other``."""
    return datasets.diff_data(platform, ref, other, project=project)


@router.post("/{ref}/clean")
def clean_version(ref: str, body: CleanOptions, platform: Platform = Plat, project: str = Proj) -> dict:
    """A cleaned version that records what it removed."""
    return _outcome(datasets.clean_data(platform, ref, body, project=project))


@router.post("/{ref}/split")
def split_version(ref: str, body: SplitOptions, platform: Platform = Plat, project: str = Proj) -> dict:
    """Train and test versions with no record in both."""
    train, test = datasets.split_data(platform, ref, body, project=project)
    return {"train": _outcome(train), "test": _outcome(test)}


@router.post("/{ref}/report")
def report_version(ref: str, body: DataReportOptions, platform: Platform = Plat, project: str = Proj) -> dict:
    """The quality report of a version (JSON; the CLI also writes Markdown and PNGs)."""
    return data_reports.report_data(platform, ref, body, project=project)
