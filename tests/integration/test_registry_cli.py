"""The registry through the CLI: ``train --register`` and ``eval name@alias`` in real subprocesses, the registry
commands in this process (typer's runner, the same app) to spare a Python start per command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tuneforge.cli.app import app
from tuneforge.errors import ConfigError

CLI = [sys.executable, "-m", "tuneforge.cli.app"]


def test_train_register_alias_eval_lineage_and_prune(tiny_model, memorize_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TUNEFORGE_PROJECT", "team")
    monkeypatch.delenv("TUNEFORGE_DATABASE_URL", raising=False)
    env = dict(os.environ)

    def tuneforge(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)

    def here(*args: object) -> str:
        result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    def shown(*args: object) -> dict:
        return json.loads(here("registry", *args))

    config = {"model": str(tiny_model), "method": "lora", "data": {"train": str(memorize_data)},
              "train": {"max_steps": 2, "batch_size": 4, "precision": "fp32"}, "output_dir": str(tmp_path / "run")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    trained = tuneforge("train", tmp_path / "c.yaml", "--register", "bot")
    assert trained.returncode == 0, trained.stderr
    assert "registered bot:1 (adapter" in trained.stdout

    # An adapter version cannot be a base model: a clear error before any training.
    (tmp_path / "c2.yaml").write_text(yaml.safe_dump({**config, "model": "bot:1", "output_dir": str(tmp_path / "r2")}))
    with pytest.raises(ConfigError, match="bot:1, an adapter") as refused:
        CliRunner().invoke(app, ["train", str(tmp_path / "c2.yaml")], catch_exceptions=False)
    assert "base model" in refused.value.hint and not (tmp_path / "r2").exists()

    assert "registered bot:2" in here("registry", "register", tmp_path / "run", "--name", "bot")
    here("registry", "alias", "bot", "1", "production")
    here("registry", "alias", "bot", "2", "production")
    assert "production: 2 -> 1 (rolled back)" in here("registry", "rollback", "bot", "production")

    evaluated = tuneforge("eval", "bot@production", "--data", memorize_data, "--limit", "2", "--max-new-tokens", "2",
                          "--latency-samples", "0")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "bot@production is bot:1" in evaluated.stderr and "scores attached to bot:1" in evaluated.stdout
    one = shown("show", "bot:1")
    assert one["aliases"] == ["production"] and any(s.get("examples") == 2 for s in one["scores"].values())

    digest = hashlib.sha256(memorize_data.read_bytes()).hexdigest()
    lineage = shown("lineage", "bot:1")
    assert lineage["dataset_sha256"] == digest and lineage["run_dir"] == str((tmp_path / "run").resolve())
    assert lineage["config"]["train"]["max_steps"] == 2
    assert [v["ref"] for v in shown("lineage", "--dataset", memorize_data)["versions"]] == ["bot:1", "bot:2"]

    # bot:2 holds the same bytes as the aliased bot:1: pruned, but nothing deleted.
    assert "pruned versions: 2; freed 0.0 MiB (0 bytes); kept: 1" in here("registry", "prune", "bot", "--keep", "0")
    assert Path(one["artifact_path"]).is_dir()
    (listed,) = shown("list", "--json")
    assert (listed["name"], listed["latest_version"], listed["stored"], listed["aliases"]) == \
        ("bot", 2, 1, {"production": 1})
