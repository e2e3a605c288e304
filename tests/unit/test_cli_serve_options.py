"""``tuneforge serve``: a bad option value names the option the user typed (``--max-batch``), not the field."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from tuneforge.cli import serving as serving_cli
from tuneforge.errors import ConfigError

app = typer.Typer()
app.command()(serving_cli.serve)


@pytest.mark.parametrize("args,option,bound", [(["--max-batch", "0"], "--max-batch", "greater than or equal to 1"),
                                               (["--max-batch", "100000"], "--max-batch", "less than or equal to 512"),
                                               (["--adapter-cache", "0"], "--adapter-cache", "greater than or equal"),
                                               (["--threads", "100000"], "--threads", "less than or equal to 1024")])
def test_a_bad_serve_option_names_the_option(tmp_path, monkeypatch, args, option, bound):
    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["smollm2", *args])
    assert isinstance(result.exception, ConfigError), result.output
    message = str(result.exception)
    assert message.startswith(f"{option}: ") and bound in message and "field '" not in message
