"""``/api/v1/updates``: incremental update cycles as jobs (``tuneforge update`` on the platform)."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge.api.native.kind_routes import Plat, Proj, add_job_routes, job_view
from tuneforge.services import update_kind
from tuneforge.services.platform import Platform
from tuneforge.services.update_kind import UpdateJobRequest

router = APIRouter(prefix="/api/v1/updates", tags=["updates (native)"])


@router.post("")
def create_update(body: UpdateJobRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """Queue one update cycle: continue NAME@from's adapter on the records added since 'since', gate, go live."""
    return job_view(platform, update_kind.create_update_job(platform, project=project, request=body))


add_job_routes(router, kind="serve_update")
