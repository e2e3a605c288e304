"""``tuneforge serve`` with a bad model reference fails before uvicorn starts: one 'error:' line naming the argument,
a 'hint:' line, exit code 1, no traceback (the real CLI in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "tuneforge.cli.app", "serve"]


def run_serve(tmp_path, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The CLI's entry point in this process (``tuneforge serve ARGS``): exit code, stdout, stderr."""
    from tuneforge.cli.app import main

    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TUNEFORGE_DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "argv", ["tuneforge", "serve", *args, "--port", "1"])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def assert_refused(code: int, out: str, err: str, argument: str, *needles: str) -> None:
    assert code == 1, out + err
    assert "Traceback" not in out + err and "Application startup failed" not in out + err
    assert "Uvicorn" not in out + err and "tuneforge serve on http" not in out  # the port never opened
    assert f"error: tuneforge serve {argument}: " in err and "hint: " in err
    for needle in needles:
        assert needle in err, err


def test_a_missing_path_fails_before_the_server_starts(tmp_path):
    """The real CLI in a subprocess."""
    env = {**os.environ, "TUNEFORGE_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("TUNEFORGE_DATABASE_URL", None)
    argument = str(tmp_path / "missing" / "model")
    result = subprocess.run([*CLI, argument, "--port", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert_refused(result.returncode, result.stdout, result.stderr, argument, f"model '{argument}' not found",
                   "check the path")


@pytest.mark.parametrize(
    ("argument", "engine", "needle"),
    [
        ("bot=no-such-model", "torch", "model 'no-such-model' not found"),
        ("{tmp}/empty", "torch", "model directory {tmp}/empty has no config.json"),
        ("{tmp}/empty", "llamacpp", "model directory {tmp}/empty has no config.json"),
    ],
)
def test_an_unknown_name_or_a_folder_that_is_no_model_fails_for_every_engine(tmp_path, monkeypatch, capsys,
                                                                             argument, engine, needle):
    (tmp_path / "empty").mkdir()
    argument = argument.format(tmp=tmp_path)
    code, out, err = run_serve(tmp_path, monkeypatch, capsys, argument, "--engine", engine)
    if engine != "torch" and "package, which is not installed" in err:
        assert code == 1 and "pip install 'tuneforge[" in err  # an engine not installed is refused first
        return
    assert_refused(code, out, err, argument, needle.format(tmp=tmp_path))
