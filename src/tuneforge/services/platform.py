"""The platform's state, handed to every platform service: settings, the store, the artifact files."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from tuneforge.errors import AuthenticationError, ConfigError, ConflictError, ForbiddenError
from tuneforge.settings import Settings
from tuneforge.storage.artifacts import Artifacts
from tuneforge.storage.base import Store
from tuneforge.storage.records import ApiKeyRecord, now

LAST_USED_RESOLUTION = 60.0  # seconds: a key's last use is written at most this often


@dataclass
class Platform:
    """What the services of the server and the CLI work on."""

    settings: Settings
    store: Store
    artifacts: Artifacts

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()


def open_platform(settings: Settings) -> Platform:
    """Open the store (migrating it) and the artifact folder that ``settings`` name."""
    from tuneforge.storage.sql import SqlStore

    if not settings.home_dir.exists():  # the home holds keys' hashes, data and models: owner only
        settings.home_dir.mkdir(parents=True, mode=0o700)
    return Platform(settings=settings, store=SqlStore(settings.database_url), artifacts=Artifacts(settings.artifacts_dir))


def create_api_key(platform: Platform, *, project: str, admin: bool = False, expires_in: float | None = None) -> str:
    """Make a key for ``project``; only its sha256 is stored, so the key is shown once.

    Args:
        platform: The platform.
        project: 1-64 letters, digits, '-' or '_'.
        admin: The key may also use the admin routes (keys of every project, global figures).
        expires_in: Seconds until the key stops working (``None``: never).
    """
    if not project or len(project) > 64 or not project.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"invalid project name {project[:80]!r}", field="project",
                          hint="use 1-64 letters, digits, '-' or '_'")
    if expires_in is not None and expires_in <= 0:
        raise ConfigError(f"expires_in must be positive, got {expires_in}", field="expires_in",
                          hint="e.g. 30d, 12h or 3600 (seconds)")
    key = f"tf-{secrets.token_urlsafe(32)}"
    expires_at = now() + expires_in if expires_in is not None else None
    platform.store.add_api_key(project=project, key_hash=_hash(key), prefix=key[:8], expires_at=expires_at,
                               is_admin=admin)
    return key


def authenticate(platform: Platform, authorization: str | None) -> str:
    """The project of an ``Authorization: Bearer KEY`` header.

    Raises:
        AuthenticationError: No header, or an unknown, revoked or expired key.
    """
    return authenticate_key(platform, authorization).project


def authenticate_key(platform: Platform, authorization: str | None) -> ApiKeyRecord:
    """The stored key of an ``Authorization: Bearer KEY`` header (its use is recorded, once a minute).

    Raises:
        AuthenticationError: No header, or an unknown, revoked or expired key.
    """
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError("missing API key: send 'Authorization: Bearer KEY'",
                                  hint="create a key with 'tuneforge keys create --project NAME'")
    record = platform.store.get_api_key(_hash(key.strip()))
    if record is None:
        raise AuthenticationError("incorrect API key provided", hint="create a key with 'tuneforge keys create'")
    at = now()
    refusal = record.refusal(at)
    if refusal is not None:
        raise AuthenticationError(f"this API key ({record.id}) was {refusal}",
                                  hint="ask the server's administrator for a new key ('tuneforge keys create')")
    if record.last_used_at is None or at - record.last_used_at >= LAST_USED_RESOLUTION:
        platform.store.touch_api_key(record.key_hash, at=at)
    return record


def key_record(platform: Platform, key: str) -> ApiKeyRecord:
    """The stored record of a key just made (without counting it as a use).

    Raises:
        NotFoundError: No such key.
    """
    from tuneforge.errors import NotFoundError

    record = platform.store.get_api_key(_hash(key))
    if record is None:
        raise NotFoundError("no such API key", hint="see 'tuneforge keys list'")
    return record


def require_admin(record: ApiKeyRecord) -> ApiKeyRecord:
    """``record`` if it is an admin key; raises ForbiddenError."""
    if not record.is_admin:
        raise ForbiddenError(f"the key {record.id} is not an admin key",
                             hint="admin routes need a key made with 'tuneforge keys create --admin'")
    return record


def list_api_keys(platform: Platform, *, project: str | None = None) -> list[ApiKeyRecord]:
    """Keys (hashes and metadata, never the keys), oldest first, of one project or every project."""
    return platform.store.list_api_keys(project=project)


def revoke_api_key(platform: Platform, key_id: str) -> ApiKeyRecord:
    """Revoke a key now: it answers 401 from its next request on.

    Raises:
        NotFoundError: No key with this id.
    """
    record = platform.store.find_api_key(key_id)
    platform.store.disable_api_key(record.key_hash, at=now())
    return platform.store.find_api_key(key_id)


def rotate_api_key(platform: Platform, key_id: str, *, expires_in: float | None = None) -> str:
    """A new key for the same project (admin as the old one); the old key is revoked. Returns the new key.

    Raises:
        NotFoundError: No key with this id.
        ConflictError: The key was revoked already.
    """
    record = platform.store.find_api_key(key_id)
    if record.disabled_at is not None:
        raise ConflictError(f"the key {record.id} is revoked already", hint="create a new key with 'tuneforge keys create'")
    key = create_api_key(platform, project=record.project, admin=record.is_admin, expires_in=expires_in)
    platform.store.disable_api_key(record.key_hash, at=now())
    return key


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
