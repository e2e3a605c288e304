"""The server's own paths never reach a client: JSON answers show ``$TUNEFORGE_HOME/...`` and base model names.

Job records, events, errors and model listings keep the server's absolute paths in the store (the operator's
CLI shows them); this ASGI middleware rewrites them in every ``application/json`` answer, in one place,
whatever route or error produced it. File downloads (other content types) pass through untouched.
"""

from __future__ import annotations

import json
from typing import Any

from tuneforge.settings import Settings

HOME = "$TUNEFORGE_HOME"


def replacements(settings: Settings) -> list[tuple[bytes, bytes]]:
    """(JSON-escaped server path, what a client sees instead), longest paths first."""
    pairs = {str(settings.home_dir): HOME, str(settings.home_dir.resolve()): HOME}
    for name, path in settings.base_models.items():
        pairs.setdefault(path.rstrip("/"), f"<base model {name}>")
    escaped = [(json.dumps(k)[1:-1].encode(), json.dumps(v)[1:-1].encode()) for k, v in pairs.items() if len(k) > 1]
    return sorted(escaped, key=lambda pair: -len(pair[0]))


class RedactPaths:
    """ASGI middleware: replace the server's paths in JSON answers (see the module docstring)."""

    def __init__(self, app: Any, *, settings: Settings) -> None:
        self.app, self.pairs = app, replacements(settings)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body = bytearray()

        async def redacting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if not headers.get(b"content-type", b"").startswith(b"application/json"):
                    start["pass"] = True
                    await send(message)
                    return
                start.update(message)
                return
            if start.get("pass") or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send_redacted(start, bytes(body), send)

        await self.app(scope, receive, redacting_send)

    async def _send_redacted(self, start: dict[str, Any], body: bytes, send: Any) -> None:
        for old, new in self.pairs:
            body = body.replace(old, new)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
