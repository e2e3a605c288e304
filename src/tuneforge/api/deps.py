"""Request dependencies: the platform and the caller's project (from the API key)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from tuneforge.services.platform import Platform, authenticate


def platform(request: Request) -> Platform:
    """The app's platform (store, artifacts, settings)."""
    return request.app.state.platform


async def json_body(request: Request) -> Any:
    """The request's JSON body as sent, for strict validation ("3" and true are not numbers)."""
    return await request.json()


def project(request: Request) -> str:
    """The project of the request's ``Authorization: Bearer KEY``; 401 otherwise."""
    return authenticate(request.app.state.platform, request.headers.get("authorization"))
