"""``/api/v1/admin``: API keys of every project (list, create, revoke, rotate), for admin keys only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.api import deps
from tuneforge.services import platform as keys
from tuneforge.services.platform import Platform
from tuneforge.storage.records import ApiKeyRecord

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], dependencies=[Depends(deps.admin)])
Plat = Depends(deps.platform)


class KeyRequest(BaseModel):
    """A new key."""

    model_config = ConfigDict(extra="forbid", strict=True)

    project: str = Field(max_length=64, description="The project the key acts for.")
    admin: bool = Field(False, description="Also allow the admin routes.")
    expires_in: int | None = Field(None, ge=1, le=10 * 365 * 86400, description="Seconds until it expires.")


class RotateRequest(BaseModel):
    """Options of a rotation."""

    model_config = ConfigDict(extra="forbid", strict=True)

    expires_in: int | None = Field(None, ge=1, le=10 * 365 * 86400, description="Seconds until the new key expires.")


def key_object(record: ApiKeyRecord) -> dict[str, Any]:
    """A key as the admin routes show it (never the key or its hash)."""
    return {"object": "api_key", "id": record.id, "prefix": record.prefix, "project": record.project,
            "admin": record.is_admin, "created_at": int(record.created_at),
            "expires_at": record.expires_at and int(record.expires_at),
            "disabled_at": record.disabled_at and int(record.disabled_at),
            "last_used_at": record.last_used_at and int(record.last_used_at)}


@router.get("/keys")
def list_keys(project: str | None = Query(None, max_length=64), platform: Platform = Plat) -> dict:
    """Keys of every project (or of one), oldest first."""
    return {"object": "list", "data": [key_object(k) for k in keys.list_api_keys(platform, project=project)]}


@router.post("/keys")
def create_key(body: KeyRequest, platform: Platform = Plat) -> dict:
    """A new key; the answer is the only time it is shown."""
    key = keys.create_api_key(platform, project=body.project, admin=body.admin, expires_in=body.expires_in)
    return {"key": key, **key_object(keys.key_record(platform, key))}


@router.post("/keys/{key_id}/revoke")
def revoke_key(key_id: str, platform: Platform = Plat) -> dict:
    """Revoke a key: it answers 401 from its next request on."""
    return key_object(keys.revoke_api_key(platform, key_id))


@router.post("/keys/{key_id}/rotate")
def rotate_key(key_id: str, body: RotateRequest | None = None, platform: Platform = Plat) -> dict:
    """A new key for the same project; the old one is revoked."""
    key = keys.rotate_api_key(platform, key_id, expires_in=body.expires_in if body else None)
    return {"key": key, **key_object(keys.key_record(platform, key))}
