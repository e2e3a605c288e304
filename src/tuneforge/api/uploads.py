"""Multipart uploads streamed to a staging file, stopped at the size limit (never read whole into memory).

A malformed body (two file parts, a filename over 255 characters, a missing closing boundary, a field sent
twice) is a 400 naming the problem; the rest of the body is read and dropped first, so the keep-alive
connection stays usable for the next request.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from python_multipart.exceptions import ParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from tuneforge.errors import ConfigError, TooLargeError
from tuneforge.storage.artifacts import Artifacts

FIELD_LIMIT = 64 * 1024  # form fields other than the file (purpose, ...)
FILENAME_LIMIT = 255  # characters of an uploaded file's name (most file systems' limit)


@dataclass
class Upload:
    """A received upload: the file part on disk, the other fields in memory."""

    path: Path
    filename: str
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    def __init__(self, artifacts: Artifacts, limit: int) -> None:
        self.limit = limit
        self.handle, self.path = artifacts.staging_file()
        self.digest = hashlib.sha256()
        self.size, self.filename, self.fields = 0, None, {}
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value, self._name = b"", b"", None
        self._is_file, self._buffer = False, bytearray()
        self.complete = False  # the closing boundary was read

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._hfield, "on_header_value": self._hvalue,
                "on_header_end": self._hend, "on_headers_finished": self._hdone, "on_part_data": self._data,
                "on_part_end": self._end, "on_end": self._finished}

    def _finished(self) -> None:
        self.complete = True

    def _begin(self) -> None:
        self._headers, self._buffer = {}, bytearray()

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _hdone(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        self._is_file = b"filename" in options
        if self._is_file:
            if self.filename is not None:
                raise ConfigError("the upload has more than one file part", field="file",
                                  hint="send one file per request, as the 'file' form field")
            name = options[b"filename"].decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
            if len(name) > FILENAME_LIMIT:
                raise ConfigError(f"the file name is {len(name)} characters long (at most {FILENAME_LIMIT})",
                                  field="file", hint=f"rename the file: {name[:40]}...")
            self.filename = name
        elif self._name in self.fields:
            raise ConfigError(f"the form field '{self._name[:64]}' is sent twice", field=self._name[:64])

    def _data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            self.size += len(chunk)
            if self.size > self.limit:
                raise TooLargeError(f"the file is larger than this server's limit of {self.limit} bytes",
                                    hint="split the file, or start the server with a larger --max-upload-mb")
            self.digest.update(chunk)
            self.handle.write(chunk)
        else:
            self._buffer += chunk
            if len(self._buffer) > FIELD_LIMIT:
                raise ConfigError(f"form field '{self._name}' is too long", field=self._name)

    def _end(self) -> None:
        if not self._is_file and self._name:
            self.fields[self._name] = self._buffer.decode("utf-8", "replace")


async def receive_upload(request: Request, artifacts: Artifacts, *, limit: int) -> Upload:
    """Stream a ``multipart/form-data`` body with one file part to a staging file.

    Raises:
        TooLargeError: The declared or received size passes ``limit`` (reading stops there).
        ConfigError: Not multipart, or no file part.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise ConfigError("expected a multipart/form-data body with a 'file' part", field="file")
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit + FIELD_LIMIT:
        raise TooLargeError(f"the upload ({declared} bytes) is larger than this server's limit of {limit} bytes",
                            hint="split the file, or start the server with a larger --max-upload-mb")
    receiver = _Receiver(artifacts, limit)
    parser = MultipartParser(options[b"boundary"], receiver.callbacks())
    stream = request.stream()
    try:
        with receiver.handle:
            async for chunk in stream:
                _write(parser, chunk)
            parser.finalize()
        if not receiver.complete:
            raise ConfigError("the multipart body ended before its closing boundary (a truncated upload?)",
                              field="file", hint="send the upload again")
    except BaseException as exc:
        receiver.path.unlink(missing_ok=True)
        if isinstance(exc, ConfigError):
            await _drain(stream, limit=limit + FIELD_LIMIT)
        raise
    if receiver.filename is None:
        receiver.path.unlink(missing_ok=True)
        raise ConfigError("the upload has no file part", field="file", hint="send the file as the 'file' form field")
    return Upload(receiver.path, receiver.filename, receiver.size, receiver.digest.hexdigest(), receiver.fields)


def _write(parser: MultipartParser, chunk: bytes) -> None:
    try:
        parser.write(chunk)
    except ParseError as exc:
        if "header size" in str(exc):  # the parser's own bound on a part's headers (its file name)
            raise ConfigError(f"a part's headers are too long: the file name may be at most {FILENAME_LIMIT} "
                              "characters", field="file", hint="rename the file") from None
        raise ConfigError(f"the multipart body is malformed: {str(exc)[:200]}", field="file",
                          hint="send a multipart/form-data body (e.g. curl -F file=@data.jsonl -F purpose=fine-tune)") from None


async def _drain(stream: AsyncIterator[bytes], *, limit: int) -> None:
    """Read what is left of a refused body (up to ``limit`` bytes), so the connection can serve the next request."""
    read = 0
    try:
        async for chunk in stream:
            read += len(chunk)
            if read > limit:
                return
    except Exception:  # noqa: BLE001 - the stream was consumed already, or the client went away
        return
