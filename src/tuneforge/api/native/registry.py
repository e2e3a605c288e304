"""``/api/v1/registry``: registered models, versions, aliases, lineage and retention (``tuneforge registry``)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.api import deps
from tuneforge.errors import ConfigError
from tuneforge.services import registry, registry_jobs
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/api/v1/registry", tags=["model registry (native)"])
Plat = Depends(deps.platform)
Proj = Depends(deps.project)


def actor(request: Request) -> str:
    """Who an action is recorded as: the prefix of the caller's API key (the part the server keeps)."""
    key = (request.headers.get("authorization") or "").partition(" ")[2].strip()
    return f"key:{key[:8]}"


Actor = Depends(actor)


class RegisterRequest(BaseModel):
    """What to register: the model of a succeeded fine-tuning job, or (with allow_local_paths) a server path."""

    model_config = ConfigDict(extra="forbid")

    job_id: str | None = Field(None, description="A succeeded fine-tuning job of the project.")
    path: str | None = Field(None, description="A run directory, checkpoint, adapter or model folder, or .gguf file "
                             "on the server (needs allow_local_paths).")


class AliasRequest(BaseModel):
    """Where an alias points."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version the alias points at.")


class PruneRequest(BaseModel):
    """A retention rule."""

    model_config = ConfigDict(extra="forbid")

    keep: int = Field(ge=0, description="Newest versions kept; aliased versions are always kept.")


@router.get("/models")
def list_models(platform: Platform = Plat, project: str = Proj) -> dict:
    """Registered models of the project: newest version, number of versions, aliases."""
    return {"data": registry.list_registered(platform, project=project)}


@router.get("/models/{ref}")
def show_model(ref: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """``NAME``: its versions, aliases and alias moves; ``NAME:V`` or ``NAME@ALIAS``: that version."""
    return registry.show(platform, ref, project=project)


@router.post("/models/{name}/versions")
def register_version(name: str, body: RegisterRequest, platform: Platform = Plat, project: str = Proj,
                     who: str = Actor) -> dict:
    """Register the next version of NAME from a job or (with allow_local_paths) a server path."""
    if (body.job_id is None) == (body.path is None):
        raise ConfigError("give exactly one of job_id and path", field="job_id")
    if body.job_id is not None:
        version = registry_jobs.register_job(platform, body.job_id, project=project, name=name, created_by=who)
    elif not platform.settings.allow_local_paths:
        raise ConfigError("this server does not accept server paths", field="path",
                          hint="register a job's model with job_id, or start the server with --allow-local-paths")
    else:
        version = registry.register(platform, body.path, project=project, name=name, created_by=who)
    return registry.version_view(version)


@router.put("/models/{name}/aliases/{alias}")
def set_alias(name: str, alias: str, body: AliasRequest, platform: Platform = Plat, project: str = Proj,
              who: str = Actor) -> dict:
    """Point ALIAS at a version (a deploy); the move is recorded."""
    return asdict(registry.set_alias(platform, name, body.version, alias, project=project, actor=who))


@router.post("/models/{name}/aliases/{alias}/rollback")
def rollback_alias(name: str, alias: str, platform: Platform = Plat, project: str = Proj, who: str = Actor) -> dict:
    """Move ALIAS back to where it pointed before its last move."""
    return asdict(registry.rollback_alias(platform, name, alias, project=project, actor=who))


@router.get("/models/{ref}/lineage")
def lineage(ref: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Version -> job/run -> config -> dataset sha256 -> base model."""
    return registry.lineage(platform, ref, project=project)


@router.get("/datasets/{sha256}/versions")
def trained_on(sha256: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """The versions trained on the dataset file with this sha256."""
    digest, versions = registry.trained_on(platform, sha256, project=project, files=False)
    return {"dataset_sha256": digest, "data": [registry.version_view(v) for v in versions]}


@router.post("/models/{name}/prune")
def prune(name: str, body: PruneRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """Delete the artifacts of old versions no alias points at; says what it freed."""
    result = registry.prune(platform, name, project=project, keep=body.keep)
    return {"pruned": [v.version for v in result.pruned], "bytes_freed": result.bytes_freed, "kept": result.kept}


class SplitRequest(BaseModel):
    """How an alias's traffic is split over versions (an A/B test)."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[int, float] = Field(description="Version -> share of the traffic, summing to 1 ({\"8\": 1.0} ends "
                                      "the split).")


class AbReportRequest(BaseModel):
    """Which A/B test to report on, and how."""

    model_config = ConfigDict(extra="forbid")

    alias: str = Field("production", description="The split alias.")
    metric: str = Field("score", description="score (feedback, higher is better) or latency_ms (lower is better).")
    since: float | None = Field(None, description="Requests from this Unix time (default: since the split started).")
    min_samples: int = Field(30, ge=1, description="Fewest values per version for a verdict.")
    promote: bool = Field(False, description="Move the alias to the winner when the verdict names one.")


@router.put("/models/{name}/aliases/{alias}/split")
def split_alias(name: str, alias: str, body: SplitRequest, platform: Platform = Plat, project: str = Proj,
                who: str = Actor) -> dict:
    """Split ALIAS's traffic over versions by weight (sticky per OpenAI 'user'); recorded like any move."""
    return asdict(registry.set_split(platform, project=project, name=name, alias=alias, weights=body.weights,
                                     actor=who))


@router.post("/models/{name}/ab-report")
def ab_report(name: str, body: AbReportRequest, platform: Platform = Plat, project: str = Proj,
              who: str = Actor) -> dict:
    """Per version of the alias's newest split: requests, latency, feedback; the difference with the control, its
    95% bootstrap interval, a permutation test and a verdict (with promote: the alias moves to the winner)."""
    from tuneforge.services.ab import ab_report as report

    return report(platform, name, project=project, alias=body.alias, metric=body.metric, since=body.since,
                  min_samples=body.min_samples, promote=body.promote, actor=who)
