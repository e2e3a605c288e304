"""API keys can be listed, revoked, rotated and expire (issue 17, item 2): the CLI and the services."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from tuneforge.cli.app import app
from tuneforge.errors import AuthenticationError, ConflictError, ForbiddenError, NotFoundError
from tuneforge.services.platform import (
    authenticate, authenticate_key, create_api_key, open_platform, require_admin, revoke_api_key,
)
from tuneforge.settings import Settings


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'keys.db'}"


def cli(*args):
    result = CliRunner().invoke(app, ["keys", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_list_revoke_rotate_and_expire_from_the_cli(url, tmp_path):
    key = cli("create", "--project", "acme", "--database-url", url).strip()
    admin = cli("create", "--admin", "--database-url", url).strip()
    created = time.monotonic()
    short = cli("create", "--project", "acme", "--expires-in", "3s", "--database-url", url).strip()
    platform = open_platform(Settings(database_url=url, home=str(tmp_path)))
    assert authenticate(platform, f"Bearer {key}") == "acme" and authenticate(platform, f"Bearer {short}") == "acme"
    assert require_admin(authenticate_key(platform, f"Bearer {admin}")).project == "admin"
    with pytest.raises(ForbiddenError, match="not an admin key"):
        require_admin(authenticate_key(platform, f"Bearer {key}"))

    rows = [line.split("\t") for line in cli("list", "--database-url", url).splitlines()[1:]]
    assert [(r[2], r[3], r[7]) for r in rows] == [("acme", "no", "active"), ("admin", "yes", "active"),
                                                 ("acme", "no", "active")]
    assert rows[0][5] != "-"  # last used: recorded by the authentication above
    assert key not in "".join(map(str, rows)) and all(r[0].startswith("key_") for r in rows)

    time.sleep(max(0.0, created + 3.1 - time.monotonic()))
    with pytest.raises(AuthenticationError, match="expired"):
        authenticate(platform, f"Bearer {short}")
    new = cli("rotate", rows[0][0], "--database-url", url).strip()
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(platform, f"Bearer {key}")
    assert authenticate(platform, f"Bearer {new}") == "acme"
    assert "revoked" in cli("revoke", rows[1][0], "--database-url", url)
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(platform, f"Bearer {admin}")
    with pytest.raises(NotFoundError):
        revoke_api_key(platform, "key_0000000000000000")
    with pytest.raises(NotFoundError):
        revoke_api_key(platform, "../x")
    from tuneforge.services.platform import rotate_api_key
    with pytest.raises(ConflictError):
        rotate_api_key(platform, rows[1][0])
    platform.close()


def test_a_bad_duration_or_project_is_refused(url):
    result = CliRunner().invoke(app, ["keys", "create", "--project", "acme", "--expires-in", "soon",
                                      "--database-url", url])
    assert result.exit_code != 0 and "--expires-in 'soon' is not a duration" in str(result.exception)
    assert CliRunner().invoke(app, ["keys", "create", "--database-url", url]).exit_code != 0
    platform = open_platform(Settings(database_url=url, home="/tmp"))
    with pytest.raises(AuthenticationError):
        authenticate(platform, "Bearer tf-not-a-key")
    with pytest.raises(Exception, match="expires_in"):
        create_api_key(platform, project="acme", expires_in=-5)
    platform.close()
