"""Request dependencies: the platform and the caller's project (from the API key)."""

from __future__ import annotations

from fastapi import Request

from tuneforge.services.platform import Platform, authenticate


def platform(request: Request) -> Platform:
    """The app's platform (store, artifacts, settings)."""
    return request.app.state.platform


def project(request: Request) -> str:
    """The project of the request's ``Authorization: Bearer KEY``; 401 otherwise."""
    return authenticate(request.app.state.platform, request.headers.get("authorization"))
