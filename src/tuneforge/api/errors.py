"""The one error handler: the TuneforgeError tree to HTTP codes, in OpenAI's error envelope."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tuneforge.errors import (
    AuthenticationError, ConfigError, ConflictError, DataError, ForbiddenError, MissingDependencyError, NotFoundError,
    QuotaError, RateLimitError, StorageError, TooLargeError, TuneforgeError,
)

# Most specific first: (class, HTTP status, OpenAI error type, default code)
STATUS: list[tuple[type, int, str, str]] = [
    (AuthenticationError, 401, "invalid_request_error", "invalid_api_key"),
    (ForbiddenError, 403, "invalid_request_error", "permission_denied"),
    (RateLimitError, 429, "requests", "rate_limit_exceeded"),
    (QuotaError, 413, "invalid_request_error", "storage_quota_exceeded"),
    (NotFoundError, 404, "invalid_request_error", "not_found"),
    (ConflictError, 409, "invalid_request_error", "conflict"),
    (TooLargeError, 413, "invalid_request_error", "file_too_large"),
    (ConfigError, 400, "invalid_request_error", "invalid_value"),
    (DataError, 400, "invalid_request_error", "invalid_file"),
    (MissingDependencyError, 501, "server_error", "missing_dependency"),
    (StorageError, 500, "server_error", "storage_error"),
    (TuneforgeError, 400, "invalid_request_error", "invalid_request"),
]


def shorten(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with a note of its length: errors never echo a whole input."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def envelope(status: int, message: str, *, type_: str, code: str | None, param: str | None = None,
             hint: str | None = None) -> JSONResponse:
    """``{"error": {message, type, param, code}}`` (plus tuneforge's ``hint``)."""
    error: dict[str, Any] = {"message": shorten(message, 1000), "type": type_, "param": param and shorten(param, 100),
                             "code": code}
    if hint:
        error["hint"] = hint
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def tuneforge_error(_request: Request, exc: TuneforgeError) -> JSONResponse:
    """Map a library error to its status and envelope."""
    status, type_, code = next((s, t, c) for cls, s, t, c in STATUS if isinstance(exc, cls))
    param = getattr(exc, "param", None) or getattr(exc, "field", None)
    return envelope(status, exc.message, type_=type_, code=getattr(exc, "code", None) or code, param=param,
                    hint=exc.hint)


def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request body or query that does not validate: 400 naming the field."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    message = f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid value')}"
    if "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {shorten(repr(err['input']), 100)})"
    return envelope(400, message, type_="invalid_request_error", code="invalid_value", param=".".join(loc) or None)


def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    """Unknown routes and methods, in the same envelope."""
    return envelope(exc.status_code, str(exc.detail), type_="invalid_request_error", code=None)


def unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    """A bug: answered 500 without internals. Not logged here: Starlette re-raises it after this answer and
    the server (uvicorn) logs it with its traceback, once."""
    return envelope(500, "internal server error; the server log has the details", type_="server_error", code=None)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(TuneforgeError, tuneforge_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
