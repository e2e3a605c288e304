"""Disk that does not only grow (issue 17, item 6): reference-counted file bytes, a storage quota, stale
uploads removed, ``tuneforge admin gc``, and a checkpoint retention for OpenAI-style jobs."""

from __future__ import annotations

import os
import time

import pytest
from typer.testing import CliRunner

from fixtures.platform import write_chat
from tuneforge.cli.app import app
from tuneforge.errors import QuotaError
from tuneforge.services import files
from tuneforge.services.disk import collect_garbage, remove_stale_uploads
from tuneforge.services.platform import open_platform
from tuneforge.settings import Settings


@pytest.fixture
def platform(tmp_path):
    p = open_platform(Settings(home=str(tmp_path / "home"), storage_quota_bytes=4000))
    yield p
    p.close()


def test_the_bytes_of_a_file_go_with_its_last_record(platform, tmp_path):
    data = write_chat(tmp_path / "train.jsonl")
    first = files.upload_path(platform, project="acme", path=data)
    second = files.upload_path(platform, project="other", path=data)  # the same bytes, stored once
    stored = platform.artifacts.path(first.sha256)
    files.delete_file(platform, first.id, project="acme")
    assert stored.is_file() and files.file_path(platform, second).read_bytes() == data.read_bytes()
    files.delete_file(platform, second.id, project="other")
    assert not stored.exists()


def test_a_project_over_its_storage_quota_gets_413(platform, tmp_path):
    data = write_chat(tmp_path / "train.jsonl")  # 1,860 bytes: two fit in 4,000 bytes, not three
    files.upload_path(platform, project="acme", path=data)
    files.upload_path(platform, project="acme", path=data)
    with pytest.raises(QuotaError, match="of its 4000 bytes") as caught:
        files.upload_path(platform, project="acme", path=data)
    assert "delete files" in caught.value.hint
    files.upload_path(platform, project="other", path=data)  # a quota is per project
    assert list(platform.artifacts.root.glob(".upload-*")) == []


def test_stale_uploads_and_orphans_are_reported_then_freed(platform, tmp_path):
    root = platform.artifacts.root
    root.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600
    stale, fresh = root / ".upload-crashed", root / ".upload-receiving"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y" * 10)
    orphan = platform.artifacts.path("ab" + "0" * 62)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"z" * 1000)
    job_dir = platform.settings.job_dir("ftjob-gone")
    (job_dir / "run").mkdir(parents=True)
    (job_dir / "run" / "adapter.bin").write_bytes(b"w" * 500)
    kept = files.upload_path(platform, project="acme", path=write_chat(tmp_path / "train.jsonl"))
    for path in (stale, orphan, job_dir, platform.artifacts.path(kept.sha256)):
        os.utime(path, (old, old))

    report = collect_garbage(platform, dry_run=True)
    assert report.bytes == {"temporary uploads": 100, "orphaned artifacts": 1000, "folders of deleted jobs": 500}
    assert stale.exists() and orphan.exists()
    settings = platform.settings
    result = CliRunner().invoke(app, ["admin", "gc", "--database-url", settings.database_url, "--home", settings.home])
    assert result.exit_code == 0, result.output
    assert "orphaned artifacts: 1 (1000 bytes)" in result.output and "freed 1600 bytes" in result.output
    assert not stale.exists() and not orphan.exists() and not job_dir.exists() and fresh.exists()
    assert files.file_path(platform, kept).is_file()  # a file's bytes are never collected
    os.utime(fresh, (old, old))
    assert remove_stale_uploads(platform) == 1 and not fresh.exists()  # what the server does at startup


def test_openai_jobs_keep_the_servers_checkpoint_retention():
    from tuneforge.api.openai.protocol import OpenAIJobRequest, to_train_config

    def limit(**train):
        request = OpenAIJobRequest(model="m", training_file="file-1", tuneforge={"train": train} if train else None)
        raw = to_train_config(request, model_path="/m", training_path="/t.jsonl", validation_path=None, seed=1,
                              hyperparameters={"n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 1.0},
                              output_dir="/r", save_total_limit=Settings().checkpoint_retention)
        return raw["train"]["save_total_limit"]

    assert limit() == 3 and limit(save_total_limit=10) == 10  # the request may ask for more


def test_a_new_home_and_database_are_private(tmp_path):
    home = tmp_path / "fresh"
    open_platform(Settings(home=str(home))).close()
    assert (home.stat().st_mode & 0o777, (home / "tuneforge.db").stat().st_mode & 0o777) == (0o700, 0o600)
    assert all(p.stat().st_mode & 0o077 == 0 for p in home.glob("tuneforge.db*"))
