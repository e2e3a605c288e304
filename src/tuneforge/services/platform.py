"""The platform's state, handed to every platform service: settings, the store, the artifact files."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from tuneforge.errors import AuthenticationError
from tuneforge.settings import Settings
from tuneforge.storage.artifacts import Artifacts
from tuneforge.storage.base import Store


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

    return Platform(settings=settings, store=SqlStore(settings.database_url), artifacts=Artifacts(settings.artifacts_dir))


def create_api_key(platform: Platform, *, project: str) -> str:
    """Make a key for ``project``; only its sha256 is stored, so the key is shown once."""
    if not project or len(project) > 64 or not project.replace("-", "").replace("_", "").isalnum():
        from tuneforge.errors import ConfigError

        raise ConfigError(f"invalid project name {project!r}", field="project",
                          hint="use 1-64 letters, digits, '-' or '_'")
    key = f"tf-{secrets.token_urlsafe(32)}"
    platform.store.add_api_key(project=project, key_hash=_hash(key), prefix=key[:8])
    return key


def authenticate(platform: Platform, authorization: str | None) -> str:
    """The project of an ``Authorization: Bearer KEY`` header.

    Raises:
        AuthenticationError: No header, or an unknown key.
    """
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError("missing API key: send 'Authorization: Bearer KEY'",
                                  hint="create a key with 'tuneforge keys create --project NAME'")
    project = platform.store.project_of_key(_hash(key.strip()))
    if project is None:
        raise AuthenticationError("incorrect API key provided", hint="create a key with 'tuneforge keys create'")
    return project


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
