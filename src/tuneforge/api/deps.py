"""Request dependencies: the platform and the caller's project (from the API key)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from tuneforge.services.platform import Platform, authenticate, authenticate_key, require_admin
from tuneforge.storage.records import ApiKeyRecord


def platform(request: Request) -> Platform:
    """The app's platform (store, artifacts, settings)."""
    return request.app.state.platform


async def json_body(request: Request) -> Any:
    """The request's JSON body as sent, for strict validation ("3" and true are not numbers)."""
    return await request.json()


def project(request: Request) -> str:
    """The project of the request's ``Authorization: Bearer KEY``; 401 otherwise (also revoked or expired)."""
    return authenticate(request.app.state.platform, request.headers.get("authorization"))


def api_key(request: Request) -> ApiKeyRecord:
    """The request's stored key (its project and whether it is an admin key); 401 otherwise."""
    return authenticate_key(request.app.state.platform, request.headers.get("authorization"))


def admin(request: Request) -> ApiKeyRecord:
    """An admin key; 401 without a valid key, 403 with a key that is not an admin key."""
    return require_admin(api_key(request))
