"""``/v1/files``: OpenAI's Files API (upload streamed, list, retrieve, delete, content)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from tuneforge.api import deps
from tuneforge.api.openai.file_checks import check_jsonl
from tuneforge.api.openai.objects import as_page, file_object
from tuneforge.api.uploads import receive_upload
from tuneforge.services import files
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/v1/files", tags=["files (OpenAI)"])
UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string", "example": "fine-tune"}},
}}}}}


@router.post("", openapi_extra=UPLOAD_SCHEMA)
async def create_file(request: Request, project: str = Depends(deps.project)) -> dict:
    """Upload a file (multipart: ``file``, ``purpose``); fine-tune files must be JSON Lines."""
    platform: Platform = request.app.state.platform
    upload = await receive_upload(request, platform.artifacts, limit=platform.settings.max_upload_bytes)
    purpose = upload.fields.get("purpose", "")
    record = await run_in_threadpool(
        files.add_upload, platform, project=project, staged=upload.path, sha256=upload.sha256, size=upload.size,
        filename=upload.filename, purpose=purpose, check=check_jsonl if purpose == "fine-tune" else None,
    )
    return file_object(record)


@router.get("")
def list_files(purpose: str | None = None, after: str | None = None, limit: int = Query(10000, ge=1, le=10000),
               order: Literal["asc", "desc"] = "desc", platform: Platform = Depends(deps.platform),
               project: str = Depends(deps.project)) -> dict:
    """Files of the project."""
    return as_page(files.list_files(platform, project=project, purpose=purpose, after=after, limit=limit, order=order),
                   file_object)


@router.get("/{file_id}")
def retrieve_file(file_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """One file."""
    return file_object(files.get_file(platform, file_id, project=project))


@router.delete("/{file_id}")
def delete_file(file_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Forget a file."""
    record = files.delete_file(platform, file_id, project=project)
    return {"object": "file", "id": record.id, "deleted": True}


@router.get("/{file_id}/content")
def file_content(file_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)):
    """The file's bytes."""
    record = files.get_file(platform, file_id, project=project)
    return FileResponse(files.file_path(platform, record), filename=record.filename,
                        media_type="text/csv" if record.filename.endswith(".csv") else "application/octet-stream")
